"""The scene-change gate on clips of real photos: counts, not timings.

The clips (camclassd.bench.clips) are real scikit-image photos with fresh sensor-like noise per
frame: a still view with a slow lighting drift, real objects appearing on a real background, a
global lighting step with an exposure ramp, and noise only.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from camclassd import cameras
from camclassd.bench import clips
from camclassd.bench.gate import Tracking, render, run_clip
from camclassd.cameras.opencv import OpenCVCamera
from camclassd.config import Config
from camclassd.engine import Engine
from camclassd.gate import SceneGate, make_stage, stage_for
from camclassd.gate_config import GateConfig
from camclassd.metrics import Metrics
from camclassd.mqtt.payloads import gate_open_ratio
from camclassd.pipeline import Pipeline
from camclassd.sources.base import Capture
from camclassd.stage import PassThrough, StageInput
from camclassd.threads import plan_threads, resolve_threads
from tests.conftest import LABELS, REPO, UINT8_MODEL, run_cli

SETTINGS = GateConfig(mode="motion")  # the defaults


@cache
def frames(name: str) -> tuple[clips.Clip, tuple[np.ndarray, ...]]:
    """A clip and its frames resized to the model input (rendered once per test session)."""
    makers = {
        "still": lambda: clips.still(seconds=20),
        "change": lambda: clips.change(seconds=12),
        "step": lambda: clips.lighting_step(seconds=10),
        "noise": lambda: clips.noise_only(seconds=15),
    }
    clip = makers[name]()
    rendered, _ = render(clip, (224, 224))
    return clip, tuple(rendered)


def gate_only(
    name: str, settings: GateConfig = SETTINGS
) -> tuple[clips.Clip, list[tuple[int, str]]]:
    """(clip, [(frame, reason)]) of the frames the gate admits, no label pending."""
    clip, pixels = frames(name)
    gate = SceneGate(settings)
    admitted = []
    for index, view in enumerate(pixels):
        if gate.admit(StageInput("t", view, None, None, index / clip.fps, False)):
            admitted.append((index, str(gate.last_reason)))
    return clip, admitted


def reasons(admitted: Sequence[tuple[int, str]]) -> list[str]:
    return [reason for _, reason in admitted]


def test_still_view_with_drift_reaches_inference_on_few_frames() -> None:
    clip, admitted = gate_only("still")
    assert len(admitted) <= 0.05 * clip.frames
    # Only the first frame and the refreshes: neither noise nor the drift opened the gate.
    last_t = (clip.frames - 1) / clip.fps
    assert reasons(admitted) == ["first"] + ["refresh"] * int(last_t // SETTINGS.refresh_s)


def test_noise_only_never_opens_the_gate() -> None:
    _, admitted = gate_only("noise")
    assert set(reasons(admitted)) == {"first", "refresh"}
    assert [index for index, _ in admitted] == [0, 100]  # t = 0 s and t = 10 s


def test_every_change_is_classified_when_it_first_shows() -> None:
    clip, admitted = gate_only("change")
    assert len(clip.changes) == 4
    opened = {index for index, reason in admitted if reason in ("change", "global")}
    for change in clip.changes:
        later = [index - change for index, _ in admitted if index >= change]
        assert later and min(later) <= 2, f"change at frame {change} classified late or never"
    # And the gate opened for nothing else.
    assert opened <= set(clip.changes)


def test_lighting_step_is_at_most_three_classifications_then_quiet() -> None:
    clip, admitted = gate_only("step")
    assert clip.step is not None
    after = [(index, reason) for index, reason in admitted if index >= clip.step]
    woken = [(index, reason) for index, reason in after if reason != "refresh"]
    assert 1 <= len(woken) <= 3
    assert woken[0] == (clip.step, "global")  # classified at once
    # Quiet once the exposure ramp has settled (5 frames of ramp + settle_frames).
    assert all(index <= clip.step + 5 + SETTINGS.settle_frames + 1 for index, _ in woken)


def test_stable_labels_equal_ungated_with_the_real_engine() -> None:
    clip, pixels = frames("change")
    engine = Engine(UINT8_MODEL, LABELS, num_threads=1)
    tracking = Tracking()
    ungated = run_clip(pixels, clip.fps, PassThrough(), engine, tracking)
    gated = run_clip(pixels, clip.fps, SceneGate(SETTINGS), engine, tracking)
    assert len(ungated.admitted) == clip.frames
    assert len(gated.admitted) < clip.frames / 3
    # Once each change has settled (stable_frames classified frames after it), the stable
    # label is the ungated one on every frame up to the next change.
    bounds = [0, *clip.changes, clip.frames]
    for start, end in itertools.pairwise(bounds):
        settled = start + tracking.stable_frames
        assert gated.stable[settled:end] == ungated.stable[settled:end], (start, end)
    labels = [ungated.stable[end - 1] for end in bounds[1:]]
    assert labels[0] == labels[2] == labels[4] == "espresso"
    assert labels[1] is not None and "cat" in labels[1]
    assert labels[3] == "moped"
    # While a new label was pending, every frame was classified (stable_frames kept its meaning).
    assert "pending" in gated.reasons


def test_difference_cannot_wrap_around() -> None:
    photo = cv2.cvtColor(cv2.imread(str(REPO / "samples" / "coffee.jpg")), cv2.COLOR_BGR2RGB)
    view = cv2.resize(photo[:, 100:500], (224, 224), interpolation=cv2.INTER_LINEAR)
    view = np.clip(view, 20, 255).astype(np.uint8)  # room to darken without clipping at 0
    darker = (view - 10).astype(np.uint8)  # 10 grey levels: under the threshold of 15
    gate = SceneGate(SETTINGS)
    assert gate.admit(StageInput("t", view, None, None, 0.0, False))
    # In uint8, darker - view wraps to 246 on every pixel: the gate would see a global change.
    assert not gate.admit(StageInput("t", darker, None, None, 0.1, False))
    brighter = np.clip(view.astype(np.int16) + 60, 0, 255).astype(np.uint8)
    assert gate.admit(StageInput("t", brighter, None, None, 0.2, False))
    assert gate.last_reason == "global"


def test_the_luma_plane_is_cut_to_the_crop() -> None:
    clip = clips.change(seconds=12)
    before = cv2.cvtColor(clip.render(clip.changes[0] - 1), cv2.COLOR_RGB2YUV)[:, :, 0]
    after = cv2.cvtColor(clip.render(clip.changes[0]), cv2.COLOR_RGB2YUV)[:, :, 0]
    unused = np.zeros((224, 224, 3), np.uint8)  # with a luma plane the pixels are not read
    for crop, expected in (((0, 0, 100, 480), False), ((200, 100, 240, 240), True)):
        gate = SceneGate(SETTINGS)
        assert gate.admit(StageInput("t", unused, before, crop, 0.0, False))
        assert gate.admit(StageInput("t", unused, after, crop, 0.1, False)) is expected, crop
        assert gate.gauges()["scene_changing"] == float(expected)


def test_label_pending_and_refresh_admit_a_still_frame() -> None:
    _, pixels = frames("noise")
    gate = SceneGate(SETTINGS)
    assert gate.admit(StageInput("t", pixels[0], None, None, 0.0, False))
    assert not gate.admit(StageInput("t", pixels[1], None, None, 0.1, False))
    assert gate.admit(StageInput("t", pixels[2], None, None, 0.2, True))
    assert gate.last_reason == "pending"
    assert gate.admit(StageInput("t", pixels[3], None, None, 10.2, False))
    assert gate.last_reason == "refresh"


def test_modes_always_and_auto() -> None:
    cameras = Config.model_validate(
        {
            "cameras": {
                "pi": {"type": "picamera2"},
                "usb": {"type": "opencv", "uri": "/dev/video0"},
                "file": {"type": "opencv", "uri": "door.mp4"},
                "photos": {"type": "images", "path": "x/*.jpg"},
                "test": {"type": "synthetic"},
                "forced": {"type": "synthetic", "gate": {"mode": "motion"}},
            }
        }
    ).cameras
    gated = {name for name, camera in cameras.items() if isinstance(stage_for(camera), SceneGate)}
    assert gated == {"pi", "usb", "forced"}
    assert isinstance(make_stage(GateConfig(mode="always"), live=True), PassThrough)
    assert isinstance(make_stage(GateConfig(mode="motion"), live=False), SceneGate)
    assert isinstance(make_stage(GateConfig(), live=True), SceneGate)
    assert isinstance(make_stage(GateConfig(), live=False), PassThrough)


@pytest.mark.parametrize(
    ("table", "live"),
    [
        ({"type": "picamera2"}, True),
        ({"type": "opencv", "uri": "0"}, True),
        ({"type": "opencv", "uri": "/dev/video2"}, True),
        ({"type": "opencv", "uri": "rtsp://user:pw@cam/stream"}, True),
        ({"type": "opencv", "uri": "HTTP://cam/mjpeg"}, True),
        ({"type": "opencv", "uri": "clip.mp4"}, False),
        ({"type": "images", "path": "photos"}, False),
        ({"type": "synthetic"}, False),
    ],
)
def test_each_camera_type_says_whether_it_is_live(table: dict[str, str], live: bool) -> None:
    """What the gate's 'auto' and check-config's `motion` follow."""
    config = Config.model_validate({"cameras": {"c": table}})
    camera = config.cameras["c"]
    assert cameras.is_live(camera) is live
    assert stage_for(camera).__class__ is (SceneGate if live else PassThrough)


@pytest.mark.parametrize(
    ("line", "key", "why"),
    [
        ("threshold = -3", "cameras.front.gate.threshold = -3 (line 4)", "greater than or equal"),
        ("min_area = 1.5", "cameras.front.gate.min_area = 1.5 (line 4)", "less than or equal"),
        ("refresh_s = 0", "cameras.front.gate.refresh_s = 0 (line 4)", "greater than 0"),
        ("blur = 4", "cameras.front.gate.blur = 4 (line 4)", "must be odd"),
        ("recalibrate = 0.005", "cameras.front.gate.recalibrate", "must be > min_area"),
        ("mdoe = 'motion'", "cameras.front.gate.mdoe", "did you mean 'mode'"),
    ],
)
def test_bad_gate_settings_are_config_errors(tmp_path: Path, line: str, key: str, why: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(f'[cameras.front]\ntype = "picamera2"\n[cameras.front.gate]\n{line}\n')
    done = run_cli("check-config", str(path))
    assert done.returncode == 78, done.stderr
    assert key in done.stderr and why in done.stderr, done.stderr


def test_check_config_says_where_the_gate_runs(tmp_path: Path) -> None:
    path = tmp_path / "ok.toml"
    path.write_text(
        '[cameras.door]\ntype = "picamera2"\n'
        "[cameras.door.gate]\nthreshold = 20\n"
        '[cameras.photos]\ntype = "images"\npath = "x/*.jpg"\n'
        '[cameras.rtsp]\ntype = "opencv"\nuri = "rtsp://cam/s"\ngate = { mode = "always" }\n'
        "[mqtt]\nenabled = false\n"
    )
    done = run_cli("check-config", str(path))
    assert done.returncode == 0, done.stderr
    lines = {line.split(":")[0].strip(): line for line in done.stdout.splitlines()}
    assert "motion on (threshold 20, min_area 0.01, refresh 10 s)" in lines["camera door"]
    assert "motion off (auto: not a live camera)" in lines["camera photos"]
    assert lines["camera rtsp"].endswith("motion off")
    assert "auto threads" in lines["model"]


def test_plan_threads() -> None:
    assert plan_threads(2, [1.0]) == 1  # a decoder takes one of two cores
    assert plan_threads(2, [0.1]) == 2  # a picamera2 lores stream leaves both
    assert plan_threads(4, [1.0]) == 3
    assert plan_threads(16, []) == 4  # capped
    assert plan_threads(2, [1.0, 1.0]) == 1  # never below one
    assert plan_threads(4, [0.1], workers=2) == 2
    assert plan_threads(1, [0.2, 0.2]) == 1
    with pytest.raises(ValueError, match="cores"):
        plan_threads(0, [])


def test_resolve_threads_follows_the_config() -> None:
    video = OpenCVCamera(uri="/videos/door.mp4")
    assert cameras.capture_cores(video) == 1.0
    config = Config.model_validate({"cameras": {"v": video.model_dump()}})
    assert config.model.num_threads == "auto"
    assert resolve_threads(config, cores=2) == 1
    assert resolve_threads(config, cores=4) == 3
    fixed = Config.model_validate(
        {"cameras": {"v": video.model_dump()}, "model": {"num_threads": 3}}
    )
    assert resolve_threads(fixed, cores=2) == 3
    picam = Config()  # [cameras.main] is a picamera2
    assert resolve_threads(picam, cores=2) == 2


def test_clip_video_file_reads_back(tmp_path: Path) -> None:
    path = tmp_path / "clip.mp4"
    clip = clips.change(fps=10.0, seconds=1.0)
    assert clips.write_video(clip, path) == 10
    capture = cv2.VideoCapture(str(path))
    try:
        assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 10
        ok, frame = capture.read()
        assert ok and frame.shape == (clips.HEIGHT, clips.WIDTH, 3)
    finally:
        capture.release()
    # The same frames every time: seeded per frame.
    assert np.array_equal(clip.render(3), clips.change(fps=10.0, seconds=1.0).render(3))


def test_bench_gate_reports_the_targets() -> None:
    done = run_cli("bench", "--gate", "--clip-seconds", "6", "--json", timeout=300)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert [clip["clip"] for clip in report["clips"]] == [
        "still", "change", "lighting step", "noise only"
    ]  # fmt: skip
    names = {target["name"] for target in report["targets"]}
    assert "still: CPU gated / ungated" in names and "gate p50 ms per frame at 1920x1080" in names
    change = next(clip for clip in report["clips"] if clip["clip"] == "change")
    assert change["invokes"]["ungated"] == change["frames"] == 60
    assert all(delay is not None and delay <= 2 for delay in change["delay_frames"])
    assert change["labels_equal"] is True


class ClipSource:
    """A real source over a clip's frames, read once (a file: not live, the pipeline blocks)."""

    live = False

    def __init__(self, name: str, clip: clips.Clip) -> None:
        self.name = name
        self.clip = clip
        self.index = 0

    def open(self) -> None:
        self.index = 0

    def read(self) -> Capture | None:
        if self.index >= self.clip.frames:
            return None
        self.index += 1
        return Capture(pixels=self.clip.render(self.index - 1))

    def close(self) -> None:
        """Nothing to release."""


def run_pipeline(clip: clips.Clip, mode: str) -> tuple[dict[str, int], list[Any], Metrics]:
    """The real Pipeline over `clip` with the gate in `mode`; (counters, results, metrics)."""
    config = Config.model_validate(
        {
            "cameras": {"door": {"type": "synthetic", "gate": {"mode": mode}}},
            "pipeline": {"drop_policy": "block", "queue_size": 1},
        }
    )
    results: list[Any] = []

    class Keep:
        def publish(self, result: Any) -> None:
            results.append(result)

        def snapshot(self, snapshot: Any) -> None:
            """Not used."""

        def close(self) -> None:
            """Nothing to release."""

    metrics = Metrics(window=200)
    pipeline = Pipeline(
        config,
        lambda: Engine(UINT8_MODEL, LABELS, num_threads=1),
        [Keep()],
        metrics,
        REPO,
        source_factory=lambda name, camera: ClipSource(name, clip),
    )
    pipeline.start()
    try:
        assert pipeline.finished.wait(60), "a finite source must finish"
    finally:
        assert pipeline.stop(5.0)
    return metrics.counters(), results, metrics


def test_the_gate_in_the_real_pipeline() -> None:
    clip = clips.change(seconds=12)
    counters, results, metrics = run_pipeline(clip, "motion")
    assert counters["captured"] == clip.frames
    assert counters["captured"] == counters["classified"] + counters["dropped"] + counters["gated"]
    assert counters["gated"] > clip.frames / 2
    # Only classified frames are numbered: no gaps for the gated ones.
    assert [result.seq for result in results] == list(range(1, len(results) + 1))
    ratio = gate_open_ratio(metrics.snapshot().cameras["door"].counters)
    assert ratio == round(counters["classified"] / clip.frames, 4)
    # The stable label changes exactly as without the gate (hysteresis, stable_frames).
    plain_counters, plain, _ = run_pipeline(clip, "always")
    assert plain_counters["gated"] == 0 and plain_counters["classified"] == clip.frames
    changes = [r.stable_label for r in results if r.changed]
    assert changes == [r.stable_label for r in plain if r.changed]
    named = [label.split()[-1] for label in changes if label is not None]
    assert named == ["espresso", "cat", "espresso", "moped", "espresso"]


class StillThenStall:
    """A live camera on a still real scene (a still clip with sensor noise) that stalls after
    `frames` frames: read() then blocks, as a hung camera does."""

    live = True

    def __init__(self, name: str, frames: int) -> None:
        self.name = name
        self.clip = clips.still(seconds=60)
        self.frames = frames
        self.index = 0
        self.release = threading.Event()

    def open(self) -> None:
        self.index = 0

    def read(self) -> Capture | None:
        if self.index >= self.frames:
            self.release.wait(10)  # the stall
            return None
        self.index += 1
        time.sleep(0.02)  # 50 fps
        return Capture(pixels=self.clip.render(self.index % self.clip.frames))

    def close(self) -> None:
        self.release.set()


def test_the_watchdog_follows_gated_frames_and_still_sees_a_stall() -> None:
    """A long still scene is not a stall (the gate skips nearly every frame, yet liveness
    advances), and a camera that stops giving frames still is one."""
    config = Config.model_validate(
        {"cameras": {"door": {"type": "synthetic", "gate": {"mode": "motion", "refresh_s": 60}}}}
    )
    source = StillThenStall("door", frames=120)
    metrics = Metrics(window=200)
    pipeline = Pipeline(
        config,
        lambda: Engine(UINT8_MODEL, LABELS, num_threads=1),
        [],
        metrics,
        REPO,
        source_factory=lambda name, camera: source,
    )
    pipeline.start()
    try:
        ages = []
        while source.index < source.frames:
            time.sleep(0.2)
            ages.append(time.monotonic() - pipeline.last_alive)
        counters = metrics.counters()
        assert counters["gated"] > 10 * counters["classified"]  # a still scene: gated
        assert max(ages[1:]) < 1.0  # ...and the watchdog clock kept running
        time.sleep(1.2)
        assert time.monotonic() - pipeline.last_alive > 1.0  # the stall shows
    finally:
        source.release.set()
        pipeline.stop(5.0)
