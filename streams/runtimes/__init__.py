"""Stream runtimes: the loops that feed Kafka messages through the engine's seam.

* :mod:`streams.runtimes.quix` - Quix Streams (the default of ``atoguard run``): RocksDB state
  with changelogs, exactly once through Kafka transactions, event-time order
  (:mod:`streams.runtimes.eventtime`).
* :mod:`streams.runtimes.faust` - Faust (``atoguard run --runtime faust``), at least once, around :mod:`streams.driver`.
"""
