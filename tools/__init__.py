"""Development tools: not part of the product a deployment runs.

``kafka_broker`` runs a local single-node Apache Kafka from Maven jars (tests, the demo, CI);
``demo`` drives broker, topics, worker and simulated traffic end to end; ``gen_strimzi`` and
``gen_reasons`` write files that are generated from the code (``deploy/strimzi/``,
``docs/reasons.md``). The ``atoguard broker`` and ``atoguard demo`` commands are thin wrappers
around the first two.
"""
