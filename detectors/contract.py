"""The names of the wire contract (``shared/CONTRACT.md``, v1, Version 2 and Version 3), defined once.

Topic names here are *logical* (no deployment prefix): the same names appear in the
``topic`` field of JSON Lines files. ``streams.topics`` adds the prefix and the partitioning.

v2 is v1 plus the outcome of challenges: two more device kinds, a few optional device fields,
``methods`` and ``contract_version`` on commands, and more lines in the labels file. Every v1
input is a valid v2 input.
"""

from __future__ import annotations

#: The contract this code implements; also the folder of its JSON Schemas (``schemas/v2/``).
CONTRACT_VERSION = "v2"
#: The value of the ``contract_version`` field every command carries (v1 commands had none).
COMMAND_CONTRACT_VERSION = 2

# -- topics ----------------------------------------------------------------------------------
DEVICE = "device"
LOCATION = "location"
TRANSACTION = "transaction"
VERDICTS = "verdicts"
COMMANDS = "commands"
ALERTS = "alerts"
DEAD_LETTER = "dead-letter"
# v3
DECISIONS = "decisions"
SIGNALS = "signals"
SIGNALS_OUT = "signals-out"

EVENT_TOPICS = (DEVICE, LOCATION, TRANSACTION)
INPUT_TOPICS = (*EVENT_TOPICS, VERDICTS)
OUTPUT_TOPICS = (COMMANDS, ALERTS, DEAD_LETTER)

# -- kinds, per event topic -------------------------------------------------------------------
CHALLENGE_PASSED = "challenge_passed"
CHALLENGE_FAILED = "challenge_failed"
#: Device kinds (v2) that report how a challenge of the account service ended.
CHALLENGE_KINDS = frozenset({CHALLENGE_PASSED, CHALLENGE_FAILED})
DEVICE_KINDS = frozenset({
    "login_success", "login_failure", "logout", "device_bound", "password_change",
    "password_reset", "phone_change", "email_change", "mfa_change", "sim_change",
}) | CHALLENGE_KINDS
LOCATION_KINDS = frozenset({"gps_fix", "ip_geo"})
TRANSACTION_KINDS = frozenset({
    "payment", "transfer_out", "withdrawal", "loan_draw", "loan_repayment", "payee_added",
    "credit_inquiry", "limit_change",
})
KINDS = {DEVICE: DEVICE_KINDS, LOCATION: LOCATION_KINDS, TRANSACTION: TRANSACTION_KINDS}

#: Transaction kinds for which ``amount`` is required.
AMOUNT_KINDS = frozenset({"payment", "transfer_out", "withdrawal", "loan_draw", "loan_repayment"})
#: Kinds that move money away from the account holder (what an attacker cashes out with).
MONEY_OUT_KINDS = frozenset({"payment", "transfer_out", "withdrawal", "loan_draw"})
#: Device kinds that change a credential or a contact point of the account.
CREDENTIAL_KINDS = frozenset({
    "password_change", "password_reset", "phone_change", "email_change", "mfa_change", "sim_change",
})

IP_TYPES = frozenset({"residential", "mobile", "hosting", "vpn", "tor", "unknown"})
CHANNELS = frozenset({"app", "web", "api", "pos"})
VERDICT_LABELS = frozenset({"ato", "legit"})
VERDICT_SOURCES = frozenset({"analyst", "user"})

# -- challenges (v2) ---------------------------------------------------------------------------
#: Challenge methods, in the contract's order (not an order of strength).
METHODS = ("sms_otp", "email_otp", "app_push", "totp", "payment_password", "face", "passkey")
#: Why a challenge failed (``reason`` of ``challenge_failed``); ``denied`` is a refused push.
FAILURE_REASONS = ("wrong_code", "timeout", "abandoned", "denied", "mismatch", "not_enrolled")
#: How a ``login_success`` was authenticated (``auth_method``); ``token`` is a refreshed session.
AUTH_METHODS = ("password", "passkey", "sms_otp", "face", "token", "other")
#: The platform's integrity verdict for a device (``attestation``): genuine, not whose it is.
ATTESTATIONS = ("strong", "device", "basic", "failed")

# -- labels file (v2) --------------------------------------------------------------------------
#: ``label`` of an enrolment line: the methods an account has enrolled.
ENROLLED = "enrolled"

# -- commands ---------------------------------------------------------------------------------
STEP_UP = "step_up"
FREEZE = "freeze"
UNFREEZE = "unfreeze"
CLOSE = "close"
ACTIONS = (STEP_UP, FREEZE, UNFREEZE, CLOSE)
#: Commands that carry ``methods`` (v2): a step_up's challenge, a freeze's way back.
METHOD_ACTIONS = frozenset({STEP_UP, FREEZE})

# -- decisions (v3) ---------------------------------------------------------------------------
ALLOW = "allow"
HOLD = "hold"
DENY = "deny"
#: ``decision`` values on ``ato.decisions``.
DECISION_VALUES = (ALLOW, HOLD, DENY)
#: Transaction kinds that get a decision (v3, "Decisions").
DECIDED_KINDS = frozenset({"payment", "transfer_out", "withdrawal", "loan_draw", "payee_added", "limit_change"})
#: The identity re-check every real holder can complete (v3); every account has it enrolled.
ID_CHECK = "id_check"

# -- partners' signals (v3, "Partners' signals") ----------------------------------------------
#: ``kind`` of an ``ato.signals`` message: the last segment of the RISC 1.0 / CAEP 1.0 event
#: type URI, ``-`` as ``_``. The receiver forwards only these.
SIGNAL_KINDS = frozenset({
    "credential_compromise", "account_disabled", "account_enabled", "account_purged",
    "identifier_changed", "identifier_recycled", "recovery_activated", "recovery_information_changed",
    "sessions_revoked", "session_revoked", "credential_change", "assurance_level_change",
    "device_compliance_change", "risk_level_change",
})
#: ``partner_role``: what the receiver's configuration says the transmitter is.
PARTNER_ROLES = ("email_provider", "identity_provider", "carrier", "lender", "other")
#: ``subject_format``: the RFC 9493 format of the subject that was mapped to the account.
SUBJECT_FORMATS = ("email", "phone_number", "iss_sub", "opaque", "account", "did", "uri")
#: ``initiating_entity`` (CAEP 1.0): who started what the partner reports.
INITIATING_ENTITIES = ("admin", "user", "policy", "system")
#: ``reason`` of ``account_disabled`` (RISC 1.0) that says the account was taken over.
HIJACKING = "hijacking"
#: the kinds atoguard writes to ``ato.signals-out``
SHARED_KINDS = ("account_disabled", "account_enabled", "credential_compromise", "session_revoked")
KINDS[SIGNALS] = SIGNAL_KINDS

# -- limits -----------------------------------------------------------------------------------
ID_MAX = 128
TEXT_MAX = 1024
TS_MIN = 0
TS_MAX = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z

# -- dead-letter reasons ----------------------------------------------------------------------
NOT_JSON = "NOT_JSON"
NOT_OBJECT = "NOT_OBJECT"
MISSING_FIELD = "MISSING_FIELD"
WRONG_TYPE = "WRONG_TYPE"
UNKNOWN_KIND = "UNKNOWN_KIND"
OUT_OF_RANGE = "OUT_OF_RANGE"
KEY_MISMATCH = "KEY_MISMATCH"
UNKNOWN_TOPIC = "UNKNOWN_TOPIC"
#: a message without a key (v3: every message is keyed by its account id)
MISSING_KEY = "MISSING_KEY"
#: a message on another partition than murmur2(key) mod N (v3, "Topics and order")
WRONG_PARTITION = "WRONG_PARTITION"
#: below the partition's highest processed ts minus ``max_lateness_ms`` (v3, "Order")
LATE = "late"
DEAD_LETTER_REASONS = (
    NOT_JSON, NOT_OBJECT, MISSING_FIELD, WRONG_TYPE, UNKNOWN_KIND, OUT_OF_RANGE, KEY_MISMATCH,
    UNKNOWN_TOPIC, MISSING_KEY, WRONG_PARTITION, LATE,
)
