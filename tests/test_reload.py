"""What a reload must do, from the one table in camclassd.reload."""

from __future__ import annotations

from typing import Any

from camclassd.config import Config
from camclassd.reload import RULES, plan, rule_for


def config(**sections: Any) -> Config:
    base: dict[str, Any] = {"cameras": {"front": {"type": "synthetic"}}}
    base.update(sections)
    return Config.model_validate(base)


def test_nothing_changed_is_an_empty_plan() -> None:
    steps = plan(config(), config())
    assert not steps.needs_restart and not steps.new_session and not steps.new_pipeline
    assert steps.keys("live") == ()


def test_each_kind_of_change_gets_its_rule() -> None:
    old = config()
    assert plan(old, config(mqtt={"enabled": False})).keys("restart") == ("mqtt.enabled",)
    assert plan(old, config(mqtt={"host": "broker.lan"})).keys("session") == ("mqtt.host",)
    assert plan(old, config(mqtt={"tls": {"enabled": True}})).new_session
    assert plan(old, config(device={"id": "garage"})).new_session
    cameras = config(cameras={"front": {"type": "synthetic"}, "back": {"type": "synthetic"}})
    assert plan(old, cameras).new_pipeline and not plan(old, cameras).new_session
    assert plan(old, config(pipeline={"threshold_high": 0.9})).new_pipeline
    assert plan(old, config(mqtt={"snapshot_interval_s": 5})).new_pipeline
    live = plan(old, config(mqtt={"buffer_size": 10}, metrics={"interval_s": 30}))
    assert set(live.keys("live")) == {"mqtt.buffer_size", "metrics.interval_s"}
    assert not live.new_pipeline and not live.new_session and not live.needs_restart


def test_every_rule_names_a_real_config_key() -> None:
    dumped = config().model_dump()
    for key in RULES:
        node: Any = dumped
        for part in key.split("."):
            assert part in node, key
            node = node[part]
    assert rule_for("mqtt.tls.ca_file") == "session"  # the longest prefix wins
    assert rule_for("logging.level") == "live"
