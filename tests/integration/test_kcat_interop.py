"""Interop with kcat, a librdkafka client nobody here wrote: it reads what atoguard produces,
atoguard decodes what it produces, and with the Java partitioner both place a key alike."""

from __future__ import annotations

import shutil
import subprocess

import orjson
import pytest

from detectors import contract as c
from detectors.events import DeviceEvent, decode
from streams.settings import Settings
from streams.topics import topic_name

KCAT = shutil.which("kcat") or shutil.which("kafkacat")

pytestmark = [
    pytest.mark.kafka,
    pytest.mark.skipif(KCAT is None, reason="kcat is not installed (apt-get install -y kcat)"),
]


def kcat(settings: Settings, *args: str, stdin: bytes | None = None) -> bytes:
    done = subprocess.run([KCAT, "-b", settings.bootstrap_servers, "-q", *args], input=stdin,
                          capture_output=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return done.stdout


def event(event_id: str, account: str) -> dict:
    return {"event_id": event_id, "account_id": account, "ts": 1764000000000,
            "kind": "sim_change", "device_id": "d9"}


def test_kcat_reads_an_event_atoguard_produced(fresh_topics: Settings, producer):
    topic = topic_name(c.DEVICE, fresh_topics.topic_prefix)
    value = orjson.dumps(event("e1", "acct-42"))
    producer.send(topic, key=b"acct-42", value=value).get(timeout=30)

    out = kcat(fresh_topics, "-C", "-t", topic, "-o", "beginning", "-e", "-c", "1",
               "-f", "%k\t%s\n")

    assert out == b"acct-42\t" + value + b"\n"


def test_atoguard_decodes_an_event_kcat_produced(fresh_topics: Settings, consumer_factory):
    topic = topic_name(c.DEVICE, fresh_topics.topic_prefix)
    line = b"acct-7:" + orjson.dumps(event("e7", "acct-7")) + b"\n"

    kcat(fresh_topics, "-P", "-t", topic, "-K:", stdin=line)
    message = next(iter(consumer_factory(topic)))

    record = decode(c.DEVICE, message.value, message.key)
    assert isinstance(record, DeviceEvent)
    assert (record.event_id, record.account_id, record.kind) == ("e7", "acct-7", "sim_change")


def test_kcat_with_murmur2_puts_a_key_on_the_partition_atoguard_does(
        fresh_topics: Settings, producer, consumer_factory):
    # librdkafka's default partitioner (consistent_random, CRC32) differs from the Java one;
    # upstream librdkafka producers must set murmur2_random to keep topics co-partitioned.
    topic = topic_name(c.DEVICE, fresh_topics.topic_prefix)
    keys = [f"acct-{i}" for i in range(8)]
    ours = {k: producer.send(topic, key=k.encode(), value=b"{}").get(timeout=30).partition
            for k in keys}

    lines = b"".join(f"{k}:{{}}\n".encode() for k in keys)
    kcat(fresh_topics, "-P", "-t", topic, "-K:", "-X", "topic.partitioner=murmur2_random",
         stdin=lines)
    theirs: dict[str, set[int]] = {}
    for n, message in enumerate(consumer_factory(topic), start=1):
        theirs.setdefault(message.key.decode(), set()).add(message.partition)
        if n == 2 * len(keys):
            break

    assert theirs == {k: {p} for k, p in ours.items()}
