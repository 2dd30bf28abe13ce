"""`camclassd run`: the long-running service.

Builds the parts once (config -> metrics, MQTT service or stdout sink, engine factory,
pipeline) into one `Runtime`, then serves on the main thread: commands from the inbox (MQTT
commands and SIGHUP's reload come through that one door), and a tick that pings the watchdog
while frames are really handled, updates the STATUS line and publishes metrics every interval.
SIGTERM/SIGINT stop cleanly.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import signal
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from camclassd import __version__
from camclassd.collect import CollectJob, DatasetSink
from camclassd.commands import (
    Command,
    CommandInbox,
    Pending,
    Request,
    answer,
    execute,
    pending_reply,
    refusal,
)
from camclassd.config import Config
from camclassd.configfile import load_config_and_secrets
from camclassd.endpoint import MetricsEndpoint
from camclassd.engine import Engine
from camclassd.errors import EXIT_FAILURE, EXIT_OK, ConfigError, UsageError
from camclassd.metrics import Metrics
from camclassd.mqtt.client import MqttService
from camclassd.mqtt.ha_entities import Features
from camclassd.pipeline import Pipeline
from camclassd.reload import plan
from camclassd.secrets import MqttSecrets
from camclassd.service import Notifier, setup_logging, watchdog_due
from camclassd.sinks import JsonLinesSink, Sink
from camclassd.threads import resolve_threads

log = logging.getLogger("camclassd")

TICK_S = 0.5
REFUSED_WHILE_STOPPING = "the daemon is stopping"


def main(args: argparse.Namespace) -> int:
    overrides = list(getattr(args, "set", None) or [])
    if args.max_frames is not None and args.max_frames < 1:
        raise UsageError(f"--max-frames must be at least 1, not {args.max_frames}")
    daemon = Daemon(args.config, overrides=overrides, log_level=args.log_level)
    return daemon.run(max_frames=args.max_frames)


@dataclass
class Runtime:
    """The running parts, built once per start (the pipeline and MQTT session per reload)."""

    config: Config
    config_digest: str
    metrics: Metrics
    endpoint: MetricsEndpoint  # Prometheus, when [prometheus] enabled
    mqtt: MqttService | None
    sinks: list[Sink]
    pipeline: Pipeline


class Daemon:
    """Owns the runtime; the target of every command (`camclassd.commands`), on the main
    thread only."""

    def __init__(
        self, config_path: Any, *, overrides: list[str] | None = None, log_level: str | None = None
    ) -> None:
        self.config_path = config_path
        self.config_dir = config_path.resolve().parent
        self.overrides = overrides or []
        self.log_level = log_level
        self.notifier = Notifier()
        self.stop_requested = threading.Event()
        self.inbox = CommandInbox()
        self.started_at = datetime.now(UTC)
        # Paused is the daemon's state, not one pipeline's: a reload carries it over.
        self.paused = False
        self._previous_handlers: dict[int, Any] = {}
        self._runtime: Runtime | None = None
        self._pending: list[tuple[Pending, Request]] = []  # commands replied to when done
        # MQTT sessions (and their sinks) a reload replaced: stopped once the replies are out;
        # only then does the new session connect (`_switch_sessions`).
        self._retired: list[tuple[MqttService | None, list[Sink]]] = []
        self._starting: list[MqttService] = []
        self._fatal = False  # a reload left no pipeline running: exit 1 for systemd

    @property
    def runtime(self) -> Runtime:
        if self._runtime is None:
            raise RuntimeError("the daemon is not running")
        return self._runtime

    # ---- the life of the service, top-down ------------------------------------------------

    def run(self, *, max_frames: int | None = None) -> int:
        self._install_signal_handlers()  # a SIGHUP or SIGTERM during start-up must not kill us
        try:
            config, digest, secrets = self._load_config()  # bad file: exit 78, nothing started
            setup_logging(self.log_level or config.logging.level, config.logging.target)
            metrics = Metrics(window=config.metrics.window)
            # Built (credentials, TLS files) before anything starts; connects only later, so a
            # daemon that exits 69 never announces itself online.
            mqtt = self._make_mqtt(config, secrets)
            metrics.on_collect(self._report_link)  # the link's counters in every snapshot
            sinks = self._sinks(config, mqtt)
            pipeline = self._build_pipeline(config, metrics, sinks)
            endpoint = MetricsEndpoint(metrics)
            endpoint.apply(config.prometheus)  # port taken: ConfigError -> exit 78
            try:
                pipeline.start()  # model or camera unusable -> ModelError/SourceError -> 69
            except BaseException:
                endpoint.stop()
                raise
        except BaseException:
            self._restore_signal_handlers()
            raise
        self._runtime = rt = Runtime(config, digest, metrics, endpoint, mqtt, sinks, pipeline)
        try:
            if mqtt is not None:
                mqtt.set_features(_features(pipeline))
                mqtt.start()  # never blocks: the broker may be down, results are buffered
                mqtt.publish_status(self.status())
            self.notifier.ready()
            log.info(
                "camclassd %s ready: model %s, cameras %s",
                __version__,
                config.model.path.name,
                ", ".join(pipeline.cameras),
            )
            exit_code = self._serve(max_frames)
        finally:
            self._shutdown(rt)  # also on an unexpected error: never leave threads running
            self._restore_signal_handlers()
        return exit_code

    def _serve(self, max_frames: int | None) -> int:
        """Serve commands and tick until asked to stop or done; the exit code."""
        watchdog_every = self.notifier.watchdog_interval()
        tick = TICK_S if watchdog_every is None else min(TICK_S, watchdog_every)
        next_tick = time.monotonic()
        next_metrics = next_tick + self.runtime.config.metrics.interval_s
        while not self.stop_requested.is_set():
            request = self.inbox.take(timeout=max(0.0, next_tick - time.monotonic()))
            if request is not None:
                self._serve_request(request)
            if self.stop_requested.is_set() or time.monotonic() < next_tick:
                continue
            rt = self.runtime
            now = time.monotonic()
            next_tick = now + tick
            # A paused daemon is healthy: the pause was asked for.
            healthy = rt.pipeline.paused or watchdog_due(
                rt.pipeline.last_alive, now, rt.config.pipeline.stall_timeout_s
            )
            if healthy:
                self.notifier.watchdog()
            self.notifier.status(self._status_line(healthy))
            self._answer_pending(now)
            if now >= next_metrics:
                next_metrics = now + rt.config.metrics.interval_s
                self._publish_metrics()
            if rt.pipeline.failed:
                # A bug, not a camera outage: exit 1 so that systemd restarts us now rather
                # than after the watchdog timeout.
                log.error("a capture thread crashed; exiting so that the service restarts")
                return EXIT_FAILURE
            if rt.pipeline.finished.is_set():
                log.info("all sources ended; stopping")
                break
            classified = rt.metrics.classified_total() if max_frames is not None else 0
            if max_frames is not None and classified >= max_frames:
                # Checked once a tick; frames in flight still drain: the total may end above N.
                log.info("--max-frames %d reached (%d classified)", max_frames, classified)
                break
        return EXIT_FAILURE if self._fatal else EXIT_OK

    def _serve_request(self, request: Request) -> None:
        """Run one command; queued reloads are served by a single reload."""
        if request.command.name != "reload":
            reply = execute(request.command, self)
            if isinstance(reply, dict):
                answer(request.respond, reply)
            else:
                self._pending.append((reply, request))  # answered by _answer_pending
            return
        reloads = [request]
        others: list[Request] = []
        while (more := self.inbox.take_nowait()) is not None:
            (reloads if more.command.name == "reload" else others).append(more)
        reply = execute(request.command, self)
        assert isinstance(reply, dict)  # a reload is answered at once
        for waiting in reloads:
            answer(waiting.respond, {**reply, "id": waiting.command.request_id})
        for other in others:
            self._serve_request(other)
        self._switch_sessions()

    def _switch_sessions(self) -> None:
        """Stop the sessions a reload replaced, then connect their successors.

        In this order because both use the same client id: connected first, the new session
        would make the broker take the old one over and drop the reply still on its way.
        """
        for mqtt, sinks in self._retired:
            if mqtt is not None:
                mqtt.stop()  # says `offline` on the old topics
            for sink in sinks:
                sink.close()
        self._retired = []
        for mqtt in self._starting:
            mqtt.start()  # results since the swap wait in its outbox
        self._starting = []

    def _answer_pending(self, now: float) -> None:
        """Reply to the commands whose results came in (collect jobs done or timed out)."""
        still: list[tuple[Pending, Request]] = []
        for pending, request in self._pending:
            result = pending.poll(now)
            if result is None:
                still.append((pending, request))
            else:
                answer(request.respond, pending_reply(request.command, pending, result))
        self._pending = still

    def _shutdown(self, rt: Runtime) -> None:
        self.notifier.stopping()
        # Commands that arrive from now on, and those still waiting, are refused at once.
        for request in self.inbox.close(REFUSED_WHILE_STOPPING):
            answer(request.respond, refusal(request.command, REFUSED_WHILE_STOPPING))
        for _, request in self._pending:
            answer(request.respond, refusal(request.command, REFUSED_WHILE_STOPPING))
        self._pending = []
        self._starting = []  # never connected: nothing to say offline
        self._switch_sessions()
        started = time.monotonic()
        if not rt.pipeline.stop(rt.config.pipeline.stop_timeout_s):
            log.warning("some pipeline threads did not stop within the deadline")
        self._publish_metrics()
        rt.endpoint.stop()
        for sink in rt.sinks:
            sink.close()
        if rt.mqtt is not None:
            rt.mqtt.stop()
        elapsed_ms = (time.monotonic() - started) * 1000
        classified = rt.metrics.classified_total()
        log.info("stopped in %.0f ms; %d frames classified in all", elapsed_ms, classified)

    # ---- building blocks -------------------------------------------------------------------

    def _load_config(self) -> tuple[Config, str, MqttSecrets]:
        """The validated config, a digest of the file (for the status payload) and the MQTT
        password and TLS context it names (read once, here)."""
        config, secrets = load_config_and_secrets(self.config_path, overrides=self.overrides)
        try:
            digest = hashlib.sha256(self.config_path.read_bytes()).hexdigest()[:16]
        except OSError as error:  # deleted or replaced between the two reads
            raise ConfigError(f"{self.config_path}: cannot be read: {error}") from None
        return config, digest, secrets

    def _make_mqtt(self, config: Config, secrets: MqttSecrets) -> MqttService | None:
        if not config.mqtt.enabled:
            return None
        return MqttService(config, self.inbox.submit, password=secrets.password, tls=secrets.tls)

    @staticmethod
    def _sinks(config: Config, mqtt: MqttService | None) -> list[Sink]:
        if mqtt is not None:
            return [mqtt]
        return [JsonLinesSink(device=config.device.resolved_id)]

    def _build_pipeline(
        self,
        config: Config,
        metrics: Metrics,
        sinks: list[Sink],
        first_seq: dict[str, int] | None = None,
    ) -> Pipeline:
        model = config.model  # load_config made its paths absolute
        threads = resolve_threads(config)  # "auto": planned for the cores and the sources

        def engine_factory(path: Path = model.path, labels: Path = model.labels) -> Engine:
            # A camera's own model (`[cameras.NAME] model`) runs as [model] says: same threads,
            # same delegate.
            return Engine(path, labels, num_threads=threads, delegate=model.delegate)

        pipeline = Pipeline(
            config,
            engine_factory,
            sinks,
            metrics,
            self.config_dir,
            first_seq=first_seq,
            samples=DatasetSink(config.collect).write,
        )
        if self.paused:
            pipeline.pause()  # before start: not one frame classified while paused
        return pipeline

    def _report_link(self, metrics: Metrics) -> None:
        """The running MQTT session's counters (a reload may have made a new session)."""
        rt = self._runtime
        if rt is not None and rt.mqtt is not None:
            rt.mqtt.report(metrics)

    def _publish_metrics(self) -> None:
        rt = self.runtime
        if rt.mqtt is None:
            return
        rt.mqtt.publish_metrics(rt.metrics.snapshot())

    def _status_line(self, healthy: bool) -> str:
        rt = self.runtime
        # Twice a second on the main thread: the fps alone, not a full snapshot.
        parts = [f"{rt.metrics.fps():.1f} fps"]
        if rt.pipeline.paused:
            parts.append("paused")
        elif not healthy:
            parts.append("STALLED: no frame handled recently")
        for camera, result in sorted(rt.pipeline.last_results.items()):
            if result.top:
                parts.append(f"{camera}: {result.top[0].label} {result.top[0].score:.0%}")
        parts.append(f"mqtt {rt.mqtt.state}" if rt.mqtt is not None else "mqtt off")
        return " | ".join(parts)

    # ---- signals ---------------------------------------------------------------------------

    def _install_signal_handlers(self) -> None:
        def on_stop(signum: int, _frame: FrameType | None) -> None:
            log.info("received %s: stopping", signal.Signals(signum).name)
            self.stop_requested.set()
            self.inbox.wake()

        def on_hup(_signum: int, _frame: FrameType | None) -> None:
            # The reload command through the same door; its answer goes to the log.
            self.inbox.submit(Request(Command("reload"), _log_signal_reload))

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

    # ---- CommandTarget: every command runs here, on the main thread --------------------------

    def set_paused(self, paused: bool) -> None:
        rt = self.runtime
        self.paused = paused
        if paused:
            rt.pipeline.pause()
        else:
            rt.pipeline.resume()
        self._republish_status()

    def collect(self, camera: str, label: str | None, count: int, interval_s: float) -> CollectJob:
        job = CollectJob(camera, label, count, interval_s)
        self.runtime.pipeline.collect(job)  # ValueError for an unknown camera
        log.info(
            "collecting %d frames of %s into %s (%s)",
            count,
            camera,
            self.runtime.config.collect.dir,
            label or "unlabelled",
        )
        return job

    def snapshot(self, camera: str | None) -> None:
        self.runtime.pipeline.request_snapshot(camera)  # ValueError for an unknown camera

    def status(self) -> dict[str, Any]:
        rt = self.runtime
        return {
            "state": "paused" if self.paused else "running",
            "version": __version__,
            "model": rt.config.model.path.stem,
            "cameras": [name for name, camera in rt.config.cameras.items() if camera.enabled],
            "config_digest": rt.config_digest,
            "started_at": self.started_at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        }

    def reload(self) -> str | None:
        """Re-read the config file and apply it; None when applied, else why not (the
        running config stays)."""
        self.notifier.reloading()
        started = time.monotonic()
        try:
            error = self._reload()
        except ConfigError as failure:
            error = str(failure)
        finally:
            self.notifier.ready()
        if error is None:
            log.info(
                "reloaded %s in %.0f ms", self.config_path, (time.monotonic() - started) * 1000
            )
        else:
            log.error("reload rejected, the running config stays: %s", error)
        return error

    def _reload(self) -> str | None:
        rt = self.runtime
        new_config, digest, secrets = self._load_config()
        steps = plan(rt.config, new_config)
        if steps.needs_restart:
            keys = ", ".join(steps.keys("restart"))
            return f"{keys} changed: that takes a restart (systemctl restart camclassd)"
        # First: a port that cannot be bound rejects the reload before anything stops.
        rt.endpoint.apply(new_config.prometheus)
        mqtt, sinks = rt.mqtt, rt.sinks
        if steps.new_session:
            mqtt = self._make_mqtt(new_config, secrets)  # bad secrets were rejected on load
            sinks = self._sinks(new_config, mqtt)
        if steps.new_pipeline or steps.new_session:
            error = self._swap_pipeline(rt, new_config, sinks)
            if error is not None:
                self._restore_endpoint(rt)
                return error
        if steps.new_session:
            # The old session is stopped after this command's reply went out on it, and the
            # new one connects after that (`_switch_sessions`).
            self._retired.append((rt.mqtt, rt.sinks))
            if rt.mqtt is not None:
                rt.mqtt.retire(new_config)
            if mqtt is not None:
                mqtt.set_features(_features(rt.pipeline))
                self._starting.append(mqtt)
            log.info("MQTT: a new session for %s", ", ".join(steps.keys("session")))
        elif mqtt is not None:
            mqtt.apply_config(new_config, _features(rt.pipeline))
        rt.config, rt.config_digest, rt.mqtt, rt.sinks = new_config, digest, mqtt, sinks
        setup_logging(self.log_level or new_config.logging.level, new_config.logging.target)
        self._republish_status()
        return None

    @staticmethod
    def _restore_endpoint(rt: Runtime) -> None:
        """The running config stays: so does its endpoint."""
        try:
            rt.endpoint.apply(rt.config.prometheus)
        except ConfigError as error:
            log.error("%s", error)

    def _swap_pipeline(self, rt: Runtime, config: Config, sinks: list[Sink]) -> str | None:
        old = rt.pipeline
        new = self._build_pipeline(config, rt.metrics, sinks, old.sequence_numbers())
        # Stop the old pipeline first: two interpreters and two cameras open at once would
        # not fit on a small device, and a camera cannot be opened twice.
        old.stop(rt.config.pipeline.stop_timeout_s)
        self.notifier.watchdog()  # a slow drain plus a slow model load must not look hung
        try:
            new.start()
        except Exception as error:  # the new model or camera is unusable: restart the old one
            log.exception("new config could not start; restarting the previous one")
            restored = self._build_pipeline(rt.config, rt.metrics, rt.sinks, old.sequence_numbers())
            try:
                restored.start()
            except Exception as failure:  # neither config runs: exit 1, systemd restarts us
                log.exception("the previous config could not start again either; exiting")
                self._fatal = True
                self.stop_requested.set()
                return f"the new config could not start ({error}) nor the old one ({failure})"
            old.move_collect_jobs_to(restored)
            rt.pipeline = restored
            return f"the new config could not start: {error}"
        finally:
            self.notifier.watchdog()
        old.move_collect_jobs_to(new)
        rt.pipeline = new
        return None

    def _republish_status(self) -> None:
        mqtt = self.runtime.mqtt
        if mqtt is not None:
            mqtt.publish_status(self.status())


def _log_signal_reload(reply: dict[str, Any]) -> None:
    """SIGHUP has no one to answer: the reload's own log line says what happened."""


def _features(pipeline: Pipeline) -> Features:
    """What Home Assistant discovery and the label events need of the running pipeline
    (each camera's model labels, the gated cameras)."""
    return Features.of(labels=pipeline.labels, gate_cameras=pipeline.gated_cameras)
