"""`camclassd run`: the long-running service.

Wires config -> engine -> pipeline -> sinks (MQTT or stdout) and systemd, then ticks: watchdog
pings while frames are really classified, a live STATUS line, metrics every interval, reload on
SIGHUP or the `reload` command, a clean stop on SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import queue
import signal
import threading
import time
from concurrent.futures import Future
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from camclassd import __version__
from camclassd.config import Config
from camclassd.configfile import load_config
from camclassd.engine import Engine
from camclassd.errors import EXIT_FAILURE, EXIT_OK, ConfigError, UsageError
from camclassd.metrics import Metrics
from camclassd.mqtt.client import MqttService, read_password
from camclassd.pipeline import Pipeline
from camclassd.service import Notifier, setup_logging, watchdog_due
from camclassd.sinks import JsonLinesSink, Sink
from camclassd.threads import resolve_threads

log = logging.getLogger("camclassd")

TICK_S = 0.5
RELOAD_TIMEOUT_S = 120.0


def main(args: argparse.Namespace) -> int:
    overrides = list(getattr(args, "set", None) or [])
    if args.max_frames is not None and args.max_frames < 1:
        raise UsageError(f"--max-frames must be at least 1, not {args.max_frames}")
    daemon = Daemon(args.config, overrides=overrides, log_level=args.log_level)
    return daemon.run(max_frames=args.max_frames)


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
        # Reloads run on the main thread only, between ticks: a reload from an MQTT command
        # waits there for its answer. (Run on the command's thread, it raced the tick loop,
        # which saw the old pipeline finished and stopped the daemon with exit 0.)
        self.reload_requests: queue.SimpleQueue[Future[str | None] | None] = queue.SimpleQueue()
        self.started_at = datetime.now(UTC)
        self.config: Config | None = None
        self.config_digest = ""
        self.metrics: Metrics | None = None
        self.pipeline: Pipeline | None = None
        self.mqtt: MqttService | None = None
        self.stdout_sink: JsonLinesSink | None = None
        # Paused is the daemon's state, not one pipeline's: a reload carries it over.
        self.paused = False
        self._pause_lock = threading.Lock()
        # Once shutdown starts, reload requests are refused at once instead of waiting.
        self._reloads_closed = False
        self._reload_lock = threading.Lock()
        self._previous_handlers: dict[int, Any] = {}

    # ---- the life of the service, top-down ------------------------------------------------

    def run(self, *, max_frames: int | None = None) -> int:
        self._install_signal_handlers()  # a SIGHUP or SIGTERM during start-up must not kill us
        config, self.config_digest = self._load_config()  # bad file: exit 78, nothing started
        setup_logging(self.log_level or config.logging.level, config.logging.target)
        self.config = config
        self.metrics = Metrics(window=config.metrics.window)
        if config.mqtt.enabled:
            # Built (credentials, TLS files) before anything starts; connects only later, so
            # a daemon that exits 69 never announces itself online.
            self.mqtt = MqttService(config, self, password=read_password(config.mqtt))

        self.pipeline = self._build_pipeline(config)
        try:
            self.pipeline.start()  # model or camera unusable -> ModelError/SourceError -> exit 69
        except BaseException:
            self._restore_signal_handlers()
            raise
        try:
            if self.mqtt is not None:
                self.mqtt.start()  # never blocks: the broker may be down, results are buffered
                self.mqtt.publish_status(self.status())
            self.notifier.ready()
            log.info(
                "camclassd %s ready: model %s, cameras %s",
                __version__,
                config.model.path.name,
                ", ".join(self.pipeline_cameras(config)),
            )
            exit_code = self._tick_until_stopped(max_frames)
        finally:
            self._shutdown()  # also on an unexpected error: never leave threads running
            self._restore_signal_handlers()
        return exit_code

    def _tick_until_stopped(self, max_frames: int | None) -> int:
        """Tick until asked to stop or done; the exit code (1: a capture thread crashed)."""
        assert self.config is not None and self.metrics is not None
        watchdog_every = self.notifier.watchdog_interval()
        tick = TICK_S if watchdog_every is None else min(TICK_S, watchdog_every)
        next_metrics = time.monotonic() + self.config.metrics.interval_s
        while not self.stop_requested.wait(tick):
            if self._serve_reload_requests():
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
            if pipeline.failed:
                # A bug, not a camera outage: exit 1 so that systemd restarts us now rather
                # than after the watchdog timeout.
                log.error("a capture thread crashed; exiting so that the service restarts")
                return EXIT_FAILURE
            if pipeline.finished.is_set():
                log.info("all sources ended; stopping")
                break
            if max_frames is not None and self.metrics.classified_total() >= max_frames:
                log.info("classified %d frames (--max-frames); stopping", max_frames)
                break
        return EXIT_OK

    def _shutdown(self) -> None:
        self.notifier.stopping()
        with self._reload_lock:
            self._reloads_closed = True
        self._serve_reload_requests(refuse="the daemon is stopping")
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

    def _load_config(self) -> tuple[Config, str]:
        """The validated config and a digest of the file, for the status payload."""
        config = load_config(self.config_path, overrides=self.overrides)
        try:
            digest = hashlib.sha256(self.config_path.read_bytes()).hexdigest()[:16]
        except OSError as error:  # deleted or replaced between the two reads
            raise ConfigError(f"{self.config_path}: cannot be read: {error}") from None
        return config, digest

    def _build_pipeline(self, config: Config, first_seq: dict[str, int] | None = None) -> Pipeline:
        model = config.model  # load_config made its paths absolute
        threads = resolve_threads(config)  # "auto": planned for the cores and the sources

        def engine_factory() -> Engine:
            return Engine(model.path, model.labels, num_threads=threads, delegate=model.delegate)

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
        if self.mqtt is not None:
            return [self.mqtt]
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
        # Twice a second on the main thread: the fps alone, not a full snapshot.
        parts = [f"{self.metrics.fps():.1f} fps"]
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
            self.reload_requests.put(None)

        for signum, handler in (
            (signal.SIGTERM, on_stop),
            (signal.SIGINT, on_stop),
            (signal.SIGHUP, on_hup),
        ):
            self._previous_handlers[signum] = signal.signal(signum, handler)

    def _restore_signal_handlers(self) -> None:
        for signum, handler in self._previous_handlers.items():
            signal.signal(signum, handler)
        self._previous_handlers.clear()

    # ---- CommandTarget (MQTT commands) and reload --------------------------------------------

    def pause(self) -> None:
        self._set_paused(True)

    def resume(self) -> None:
        self._set_paused(False)

    def _set_paused(self, paused: bool) -> None:
        with self._pause_lock:
            self.paused = paused
            assert self.pipeline is not None
            if paused:
                self.pipeline.pause()
            else:
                self.pipeline.resume()
        self._republish_status()

    def snapshot(self, camera: str | None) -> None:
        assert self.pipeline is not None and self.config is not None
        cameras = self.pipeline_cameras(self.config)
        if camera is not None and camera not in cameras:
            raise ValueError(f"unknown camera {camera!r}; cameras: {', '.join(cameras)}")
        self.pipeline.request_snapshot(camera)

    def reload(self) -> str | None:
        """Re-read the config and apply it (the `reload` command); None when applied.

        Runs on the main thread between ticks; this waits for its answer.
        """
        answer: Future[str | None] = Future()
        with self._reload_lock:
            if self._reloads_closed:
                return "the daemon is stopping"
            self.reload_requests.put(answer)
        try:
            return answer.result(timeout=RELOAD_TIMEOUT_S)
        except TimeoutError:
            return f"the reload did not finish within {RELOAD_TIMEOUT_S:.0f} s"

    def _serve_reload_requests(self, refuse: str | None = None) -> bool:
        """Do the queued reloads (one reload serves them all); True when there were any."""
        waiting: list[Future[str | None]] = []
        asked = False
        while True:
            try:
                request = self.reload_requests.get_nowait()
            except queue.Empty:
                break
            asked = True
            if request is not None:
                waiting.append(request)
        if not asked:
            return False
        try:
            error = refuse if refuse is not None else self._reload_now()
        except BaseException as failure:  # the old config could not be restarted either
            for request in waiting:
                request.set_result(f"the reload failed and the daemon stops: {failure}")
            raise
        for request in waiting:
            request.set_result(error)
        return True

    def _reload_now(self) -> str | None:
        """Apply the config file again; on any error the running config stays."""
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
            new_config, digest = self._load_config()
        except ConfigError as error:
            return str(error)
        old_pipeline = self.pipeline
        assert old_pipeline is not None and self.config is not None
        if new_config.mqtt.enabled != self.config.mqtt.enabled:
            return (
                "mqtt.enabled changed: that takes a restart (systemctl restart camclassd), "
                "not a reload"
            )
        new_pipeline = self._build_pipeline(new_config, old_pipeline.sequence_numbers())
        # Stop the old pipeline first: two interpreters and two cameras open at once would
        # not fit on a small device, and a camera cannot be opened twice.
        old_pipeline.stop(self.config.pipeline.stop_timeout_s)
        self.notifier.watchdog()  # a slow drain plus a slow model load must not look hung
        try:
            self._start_in_pause_state(new_pipeline)
        except Exception as error:  # the new model or camera is unusable: restart the old one
            log.exception("new config could not start; restarting the previous one")
            restored = self._build_pipeline(self.config, old_pipeline.sequence_numbers())
            self._start_in_pause_state(restored)
            return f"the new config could not start: {error}"
        finally:
            self.notifier.watchdog()
        self.config, self.config_digest = new_config, digest
        setup_logging(self.log_level or new_config.logging.level, new_config.logging.target)
        if self.mqtt is not None:
            self.mqtt.apply_config(new_config)
        self._republish_status()
        return None

    def _start_in_pause_state(self, pipeline: Pipeline) -> None:
        """Start `pipeline` paused or not as the daemon is, and make it the running one."""
        with self._pause_lock:
            if self.paused:
                pipeline.pause()  # before start: not one frame classified while paused
            pipeline.start()
            self.pipeline = pipeline

    def status(self) -> dict[str, Any]:
        assert self.config is not None
        return {
            "state": "paused" if self.paused else "running",
            "version": __version__,
            "model": self.config.model.path.stem,
            "cameras": self.pipeline_cameras(self.config),
            "config_digest": self.config_digest,
            "started_at": self.started_at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        }

    def _republish_status(self) -> None:
        if self.mqtt is not None:
            self.mqtt.publish_status(self.status())
