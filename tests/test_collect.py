"""Collecting examples from the running daemon: the MQTT `collect` command (replied to when
done, within a budget that is never exceeded) and `[collect] auto`, against a real broker and
the real daemon on real photos."""

from __future__ import annotations

import json
import stat
import time
from pathlib import Path

import cv2
import jsonschema

from camclassd.collect import AutoCollect, CollectJob, CollectPolicy
from camclassd.config import CollectConfig
from camclassd.results import Classification, Prediction
from tests.broker import Mosquitto
from tests.daemon_helpers import collector, daemon
from tests.test_daemon import make_config, schema


def with_collect(config: Path, dataset: Path, **keys: object) -> None:
    lines = [f'dir = "{dataset}"'] + [f"{k} = {json.dumps(v)}" for k, v in keys.items()]
    config.write_text(config.read_text() + "\n[collect]\n" + "\n".join(lines) + "\n")


def test_collect_command_saves_frames_then_replies_and_the_budget_holds(
    tmp_path: Path, broker: Mosquitto
) -> None:
    config, device = make_config(tmp_path, broker.port, fps=20.0)
    dataset = tmp_path / "dataset"
    with_collect(config, dataset, max_files=6)
    base = f"camclassd/{device}"
    with collector(broker.host, broker.port, [f"{base}/#"]) as sub, daemon(config) as proc:
        sub.wait_count("/front/classification", 2)

        def command(body: dict[str, object], timeout: float = 20.0) -> dict[str, object]:
            before = len(sub.on("/cmd/collect/reply"))
            sub.client.publish(f"{base}/cmd/collect", json.dumps(body), qos=1)
            reply = sub.wait_count("/cmd/collect/reply", before + 1, timeout)[-1].json()
            jsonschema.validate(reply, schema("command-reply"))
            return dict(reply)

        done = command({"camera": "front", "label": "cup", "count": 2, "interval_s": 0.1})
        assert done["ok"] is True, done
        result = done["result"]
        assert isinstance(result, dict) and result["saved"] == 2
        views = sorted((dataset / "front" / "cup").glob("*.jpg"))
        fulls = sorted((dataset / "front" / "cup" / "_full").glob("*.jpg"))
        assert len(views) == 2 and len(fulls) == 2
        assert cv2.imread(str(views[0])).shape == (224, 224, 3)  # what the model sees
        assert cv2.imread(str(fulls[0])).shape[0] > 224  # the photo as the camera gave it
        assert not any(dataset.rglob("*.tmp*"))  # written atomically, nothing left half-way
        assert stat.S_IMODE((dataset / "front").stat().st_mode) & 0o007 == 0  # not world-readable

        # 4 files are used of 6: of a job of 3 frames (6 files) one fits, then it stops.
        over = command({"camera": "front", "label": "cup", "count": 3, "interval_s": 0.1})
        assert over["ok"] is False and "budget reached" in str(over["error"]), over
        assert "(1 saved)" in str(over["error"])
        assert len(list(dataset.rglob("*.jpg"))) == 6
        for body, problem in [
            ({"camera": "nope"}, "unknown camera"),
            ({"label": "cup"}, "'camera' is required"),
            ({"camera": "front", "count": 0}, "'count' must be"),
            ({"camera": "front", "label": "../etc"}, "'label' must be"),
        ]:
            reply = command(body)
            assert reply["ok"] is False and problem in str(reply["error"]), (body, reply)
        # The daemon keeps classifying through all of it.
        count = len(sub.on("/front/classification"))
        sub.wait_count("/front/classification", count + 3)
        assert proc.alive()


def test_auto_collect_keeps_the_frames_worth_labelling(tmp_path: Path, broker: Mosquitto) -> None:
    config, device = make_config(tmp_path, broker.port, fps=20.0)
    dataset = tmp_path / "dataset"
    # Every frame counts as unsure (top-1 < 1.0); one per 0.2 s; room for 4 files.
    with_collect(config, dataset, auto=True, auto_below=1.0, auto_every_s=0.2, max_files=4)
    with collector(broker.host, broker.port, [f"camclassd/{device}/#"]) as sub, daemon(config):
        sub.wait_count("/front/classification", 30, timeout=30)
        time.sleep(0.5)
    unlabelled = sorted((dataset / "front" / "_unlabelled").glob("*.jpg"))
    assert 1 <= len(unlabelled) <= 4  # newest kept: the budget is never exceeded
    assert len(list(dataset.rglob("*.jpg"))) <= 4


def test_a_job_claims_one_frame_per_interval_and_times_out() -> None:
    policy = CollectPolicy()
    job = CollectJob("front", None, 2, 1.0)
    policy.add(job)
    assert policy.claim(10.0) == [job]
    assert policy.claim(10.5) == []  # within the interval
    job.lost()  # that frame never reached the writer: the next one is claimed instead
    assert policy.claim(10.6) == [job]
    assert policy.claim(11.7) == [job]
    assert policy.claim(13.0) == []  # 2 claimed: the job wants no more
    assert job.poll(time.monotonic()) is None  # not written yet, not timed out
    late = job.poll(job.deadline + 1)
    assert late is not None and late["saved"] == 0 and job.error and "timed out" in job.error


def test_auto_collect_wants_unsure_or_changed_results_rate_limited() -> None:
    auto = AutoCollect(CollectConfig(auto=True, auto_below=0.5, auto_every_s=10))

    def result(score: float, changed: bool = False) -> Classification:
        top = (Prediction(1, "cup", score),)
        return Classification("front", 1, 0.0, "m", top, "cup", changed)

    assert not auto.wants(result(0.9), 0.0)  # sure and unchanged: not worth labelling
    assert auto.wants(result(0.3), 1.0)  # unsure
    assert not auto.wants(result(0.3), 5.0)  # rate-limited
    assert auto.wants(result(0.9, changed=True), 12.0)  # a new stable label
    assert not AutoCollect(CollectConfig()).wants(result(0.1), 0.0)  # off by default
