"""Everything of atoguard that knows Kafka or files; the engine itself is :mod:`detectors`.

The map, one line per part:

* :mod:`streams.runtimes` - the stream worker: the loops that feed Kafka messages through the
  engine's seam. :mod:`~streams.runtimes.quix` (the default, Quix Streams, exactly once, in
  event-time order by :mod:`~streams.runtimes.eventtime`), :mod:`~streams.runtimes.faust`
  (``--runtime faust``, at least once), both around :mod:`streams.driver`.
* :mod:`streams.cli` - the ``atoguard`` command line, one module per subcommand
  (:mod:`~streams.cli.worker` is ``atoguard run``).
* :mod:`streams.topics` - topics and admin: the one registry of topic names, their creation and
  the worker's check that the inputs are co-partitioned.
* :mod:`streams.settings` - where Kafka is and how the topics are laid out (``ATOGUARD_*``).
* :mod:`streams.config` - loading the engine's policy file and its environment overrides.
* :mod:`streams.deadletter` - decoding at the boundary: bad input goes to the dead-letter topic.
* :mod:`streams.metrics` - the worker's Prometheus metrics and ``/healthz``.
* :mod:`streams.driver` - the one path between a message and the engine (decode, key, partition,
  late, duplicates, facts, the partition's models and stored state), for replay, both runtimes
  and the benchmarks (``docs/determinism.md``).
* :mod:`streams.snapshots` - signed snapshot files of the Faust worker's online models (the Quix
  worker keeps them in its checkpointed state).
* :mod:`streams.security` - the connection check, the development-key guard, the worker's ACLs.
* :mod:`streams.replay` - the driver over a JSON Lines file, no broker (``atoguard replay``);
  :mod:`streams.respond` - closed-loop replay, the account service and people played from labels.
* :mod:`streams.tail` - reading an output topic from the command line (``alerts tail``...).
* :mod:`streams.reference_consumer` - what an account service does with a command before acting.
"""
