"""The fault suite: workers killed and scaled, the broker restarted, poison, lost state (marked chaos)."""
