"""`camclassd run`: the long-running service.

Wires config -> engine -> pipeline -> sinks (MQTT or stdout) and systemd, then ticks: watchdog
pings while frames are really classified, a live STATUS line, metrics every interval, reload on
SIGHUP or the `reload` command, a clean stop on SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import signal
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from camclassd import __version__
from camclassd.config import Config
from camclassd.configfile import load_config
from camclassd.engine import Engine
from camclassd.errors import EXIT_OK, ConfigError
from camclassd.metrics import Metrics
from camclassd.mqtt.client import MqttService, read_password
from camclassd.pipeline import Pipeline
from camclassd.service import Notifier, setup_logging, watchdog_due
from camclassd.sinks import JsonLinesSink, Sink

log = logging.getLogger("camclassd")

TICK_S = 0.5


def main(args: argparse.Namespace) -> int:
    overrides = list(getattr(args, "set", None) or [])
    daemon = Daemon(args.config, overrides=overrides, log_level=args.log_level)
    return daemon.run(max_frames=args.max_frames)


def resolve(config_dir: Path, path: Path) -> Path:
    """Relative paths in the config are relative to the config file's directory."""
    path = path.expanduser()
    return path if path.is_absolute() else (config_dir / path).resolve()


class Daemon:
    """Owns the running pieces and is the target of MQTT commands (see mqtt.commands)."""

    def __init__(
        self, config_path: Path, *, overrides: list[str] | None = None, log_level: str | None = None
    ) -> None:
        self.config_path = config_path
        self.config_dir = config_path.resolve().parent
        self.overrides = overrides or []
        self.log_level = log_level
        self.notifier = Notifier()
        self.stop_requested = threading.Event()
        self.reload_requested = threading.Event()
        self.started_at = datetime.now(UTC)
        self.config: Config | None = None
        self.config_digest = ""
        self.metrics: Metrics | None = None
        self.pipeline: Pipeline | None = None
        self.mqtt: MqttService | None = None
        self.stdout_sink: JsonLinesSink | None = None
        self._reload_lock = threading.Lock()

    # ---- the life of the service, top-down ------------------------------------------------

    def run(self, *, max_frames: int | None = None) -> int:
        config = self._load_config()  # a bad file raises ConfigError -> exit 78, nothing started
        setup_logging(self.log_level or config.logging.level, config.logging.target)
        self.config = config
        self.metrics = Metrics(window=config.metrics.window)
        password = read_password(config.mqtt) if config.mqtt.enabled else None

        self.pipeline = self._build_pipeline(config)
        self.pipeline.start()  # model or camera unusable -> ModelError/SourceError -> exit 69
        if config.mqtt.enabled:
            self.mqtt = MqttService(config, self, password=password)
            self.mqtt.start()  # never blocks: the broker may be down, results are buffered
            self.mqtt.publish_status(self.status())

        self._install_signal_handlers()
        self.notifier.ready()
        log.info(
            "camclassd %s ready: model %s, cameras %s",
            __version__,
            config.model.path.name,
            ", ".join(self.pipeline_cameras(config)),
        )
        try:
            self._tick_until_stopped(max_frames)
        finally:
            self._shutdown()
        return EXIT_OK

    def _tick_until_stopped(self, max_frames: int | None) -> None:
        assert self.config is not None and self.metrics is not None
        watchdog_every = self.notifier.watchdog_interval()
        tick = TICK_S if watchdog_every is None else min(TICK_S, watchdog_every)
        next_metrics = time.monotonic() + self.config.metrics.interval_s
        while not self.stop_requested.wait(tick):
            if self.reload_requested.is_set():
                self.reload_requested.clear()
                self.reload()
                continue
            pipeline = self.pipeline
            assert pipeline is not None
            now = time.monotonic()
            # A paused daemon is healthy: the pause was asked for.
            healthy = pipeline.paused or watchdog_due(
                pipeline.last_classified, now, self.config.pipeline.stall_timeout_s
            )
            if healthy:
                self.notifier.watchdog()
            self.notifier.status(self._status_line(healthy))
            if now >= next_metrics:
                next_metrics = now + self.config.metrics.interval_s
                self._publish_metrics()
            if pipeline.finished.is_set():
                log.info("all sources ended; stopping")
                break
            if max_frames is not None and self.metrics.classified_total() >= max_frames:
                log.info("classified %d frames (--max-frames); stopping", max_frames)
                break

    def _shutdown(self) -> None:
        self.notifier.stopping()
        assert self.config is not None
        started = time.monotonic()
        if self.pipeline is not None and not self.pipeline.stop(
            self.config.pipeline.stop_timeout_s
        ):
            log.warning("some pipeline threads did not stop within the deadline")
        self._publish_metrics()
        if self.mqtt is not None:
            self.mqtt.stop()
        if self.stdout_sink is not None:
            self.stdout_sink.close()
        log.info("stopped in %.0f ms", (time.monotonic() - started) * 1000)

    # ---- building blocks -------------------------------------------------------------------

    def _load_config(self) -> Config:
        config = load_config(self.config_path, overrides=self.overrides)
        self.config_digest = hashlib.sha256(self.config_path.read_bytes()).hexdigest()[:16]
        return config

    def _build_pipeline(self, config: Config, first_seq: dict[str, int] | None = None) -> Pipeline:
        model = config.model
        model_path = resolve(self.config_dir, model.path)
        labels_path = resolve(self.config_dir, model.labels)

        def engine_factory() -> Engine:
            return Engine(
                model_path, labels_path, num_threads=model.num_threads, delegate=model.delegate
            )

        assert self.metrics is not None
        return Pipeline(
            config,
            engine_factory,
            self._sinks(config),
            self.metrics,
            self.config_dir,
            first_seq=first_seq,
        )

    def _sinks(self, config: Config) -> list[Sink]:
        if config.mqtt.enabled:
            return [_LateSink(self)]
        if self.stdout_sink is None:
            self.stdout_sink = JsonLinesSink(device=config.device.resolved_id)
        return [self.stdout_sink]

    @staticmethod
    def pipeline_cameras(config: Config) -> list[str]:
        return [name for name, camera in config.cameras.items() if camera.enabled]

    def _publish_metrics(self) -> None:
        if self.mqtt is None or self.metrics is None:
            return
        snapshot = self.metrics.snapshot()
        snapshot["process"] = self.metrics.process_stats()
        self.mqtt.publish_metrics(snapshot)

    def _status_line(self, healthy: bool) -> str:
        assert self.metrics is not None and self.pipeline is not None
        snapshot = self.metrics.snapshot()
        parts = [f"{snapshot['fps']:.1f} fps"]
        if self.pipeline.paused:
            parts.append("paused")
        elif not healthy:
            parts.append("STALLED: no frame classified recently")
        for camera, result in sorted(self.pipeline.last_results.items()):
            if result.top:
                parts.append(f"{camera}: {result.top[0].label} {result.top[0].score:.0%}")
        parts.append(f"mqtt {self.mqtt.state}" if self.mqtt is not None else "mqtt off")
        return " | ".join(parts)

    # ---- signals ---------------------------------------------------------------------------

    def _install_signal_handlers(self) -> None:
        def on_stop(signum: int, _frame: FrameType | None) -> None:
            log.info("received %s: stopping", signal.Signals(signum).name)
            self.stop_requested.set()

        def on_hup(_signum: int, _frame: FrameType | None) -> None:
            self.reload_requested.set()

        signal.signal(signal.SIGTERM, on_stop)
        signal.signal(signal.SIGINT, on_stop)
        signal.signal(signal.SIGHUP, on_hup)

    # ---- CommandTarget (MQTT commands) and reload --------------------------------------------

    def pause(self) -> None:
        assert self.pipeline is not None
        self.pipeline.pause()
        self._republish_status()

    def resume(self) -> None:
        assert self.pipeline is not None
        self.pipeline.resume()
        self._republish_status()

    def snapshot(self, camera: str | None) -> None:
        assert self.pipeline is not None and self.config is not None
        cameras = self.pipeline_cameras(self.config)
        if camera is not None and camera not in cameras:
            raise ValueError(f"unknown camera {camera!r}; cameras: {', '.join(cameras)}")
        self.pipeline.request_snapshot(camera)

    def reload(self) -> str | None:
        """Re-read the config and apply it; on any error keep the running config."""
        with self._reload_lock:
            self.notifier.reloading()
            started = time.monotonic()
            try:
                error = self._apply_new_config()
            finally:
                self.notifier.ready()
            if error is None:
                log.info(
                    "reloaded %s in %.0f ms", self.config_path, (time.monotonic() - started) * 1000
                )
            else:
                log.error("reload rejected, the running config stays: %s", error)
            return error

    def _apply_new_config(self) -> str | None:
        try:
            new_config = self._load_config()
        except ConfigError as error:
            return str(error)
        old_pipeline = self.pipeline
        assert old_pipeline is not None and self.config is not None
        new_pipeline = self._build_pipeline(new_config, old_pipeline.sequence_numbers())
        # Stop the old pipeline first: two interpreters and two cameras open at once would
        # not fit on a small device, and a camera cannot be opened twice.
        old_pipeline.stop(self.config.pipeline.stop_timeout_s)
        try:
            new_pipeline.start()
        except Exception as error:  # the new model or camera is unusable: restart the old one
            log.exception("new config could not start; restarting the previous one")
            restored = self._build_pipeline(self.config, old_pipeline.sequence_numbers())
            restored.start()
            self.pipeline = restored
            return f"the new config could not start: {error}"
        was_paused = old_pipeline.paused
        self.pipeline = new_pipeline
        if was_paused:
            new_pipeline.pause()
        self.config = new_config
        setup_logging(self.log_level or new_config.logging.level, new_config.logging.target)
        if self.mqtt is not None:
            self.mqtt.apply_config(new_config)
        self._republish_status()
        return None

    def request_reload(self) -> str | None:
        return self.reload()

    def status(self) -> dict[str, Any]:
        assert self.config is not None
        paused = self.pipeline is not None and self.pipeline.paused
        return {
            "state": "paused" if paused else "running",
            "version": __version__,
            "model": self.config.model.path.stem,
            "cameras": self.pipeline_cameras(self.config),
            "config_digest": self.config_digest,
            "started_at": self.started_at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        }

    def _republish_status(self) -> None:
        if self.mqtt is not None:
            self.mqtt.publish_status(self.status())


class _LateSink:
    """Forwards results to the daemon's MQTT service, which is created after the pipeline.

    The pipeline must start (model and cameras open) before the MQTT client is created, so
    that a daemon that exits 69 never announces itself online.
    """

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon

    def publish(self, result: Any) -> None:
        if self.daemon.mqtt is not None:
            self.daemon.mqtt.publish(result)

    def close(self) -> None:
        """The MQTT service outlives pipelines (reload); the daemon stops it."""
