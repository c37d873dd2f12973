"""The topic registry, the settings and the broker configuration agree with the contract and
with each other; no broker needed."""

from __future__ import annotations

import doctest
import re
from pathlib import Path

import pytest

import streams.settings
import streams.topics
from detectors import contract as c
from tools.kafka_broker import KAFKA_VERSION, POM, Broker, BrokerConfig
from streams.settings import Settings
from streams.topics import input_topic_names, registry, spec, topic_name

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas" / "v1"


def test_registry_holds_exactly_the_contract_topics():
    assert [s.logical for s in registry()] == [*c.INPUT_TOPICS, *c.OUTPUT_TOPICS, c.DECISIONS, c.SIGNALS, c.SIGNALS_OUT]


def test_every_topic_names_an_existing_schema_file():
    missing = [s.value_schema for s in registry() if not any((SCHEMAS.parent / v / s.value_schema).is_file() for v in ("v1", "v3"))]
    assert missing == []


def test_input_topics_share_one_partition_count_from_settings():
    specs = registry(Settings(partitions=12))
    assert {s.partitions for s in specs if s.logical in c.INPUT_TOPICS} == {12}


def test_topic_names_carry_the_prefix():
    assert topic_name(c.DEAD_LETTER) == "ato.dead-letter"
    assert spec(c.DEVICE).name("staging.") == "staging.device"
    assert input_topic_names(Settings(topic_prefix="")) == list(c.INPUT_TOPICS)


def test_an_unknown_topic_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown topic 'payments'"):
        topic_name("payments")


def test_settings_read_the_environment_over_the_defaults():
    env = {"ATOGUARD_BOOTSTRAP_SERVERS": "k1:9092,k2:9093", "ATOGUARD_PARTITIONS": "12"}
    settings = Settings.from_env(env)
    assert settings.servers() == ["k1:9092", "k2:9093"]
    assert (settings.partitions, settings.topic_prefix) == (12, "ato.")


def test_settings_overrides_win_and_none_is_ignored():
    settings = Settings.from_env({"ATOGUARD_TOPIC_PREFIX": "x."}, topic_prefix=None, partitions=2)
    assert (settings.topic_prefix, settings.partitions) == ("x.", 2)


@pytest.mark.parametrize("env, message", [
    ({"ATOGUARD_PARTITIONS": "six"}, "ATOGUARD_PARTITIONS='six': partitions must be int"),
    ({"ATOGUARD_PARTITIONS": "0"}, "partitions must be an integer >= 1"),
    ({"ATOGUARD_BOOTSTRAP_SERVERS": "localhost"}, "'localhost' is not host:port"),
    ({"ATOGUARD_BOOTSTRAP_SERVERS": "h:99999"}, "port in 1..65535"),
    ({"ATOGUARD_TOPIC_PREFIX": "ato/"}, "topic_prefix 'ato/' may only hold"),
])
def test_bad_settings_raise_a_value_error_naming_the_variable(env, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        Settings.from_env(env)


def test_settings_are_frozen():
    with pytest.raises(AttributeError):
        Settings().partitions = 3  # type: ignore[misc]


def test_pom_pins_the_kafka_version_the_code_runs():
    assert f"<kafka.version>{KAFKA_VERSION}</kafka.version>" in POM.read_text()


def test_broker_properties_are_single_node_kraft_on_loopback(tmp_path):
    props = Broker(BrokerConfig(port=19092, data_dir=tmp_path)).properties()
    assert props["process.roles"] == "broker,controller"
    assert props["controller.quorum.bootstrap.servers"] == "127.0.0.1:19093"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert props["auto.create.topics.enable"] == "false"
    internal = [k for k in props if k.endswith(("replication.factor", "min.isr"))]
    assert len(internal) == 5 and {props[k] for k in internal} == {"1"}


def test_broker_config_reads_env_and_rejects_clashing_ports(tmp_path):
    config = BrokerConfig.from_env({"ATOGUARD_BROKER_PORT": "19092",
                                    "ATOGUARD_BROKER_DATA_DIR": str(tmp_path)})
    assert (config.bootstrap, config.ctl_port, config.data_dir) == ("127.0.0.1:19092", 19093, tmp_path)
    with pytest.raises(ValueError, match="must differ"):
        BrokerConfig(port=19092, controller_port=19092)


@pytest.mark.parametrize("module", [streams.settings, streams.topics])
def test_streams_doctests_pass(module):
    result = doctest.testmod(module)
    assert result.failed == 0 and result.attempted > 0
