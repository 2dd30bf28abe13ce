"""Commands in over MQTT: `{prefix}/{device}/cmd/{name}` with a JSON object body.

`parse_command` is pure (bytes -> a typed command or an error) so it can be fuzzed quickly;
`CommandHandler` runs it, calls the target and always answers, and never raises.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Protocol

from camclassd.mqtt.payloads import reply_payload
from camclassd.mqtt.topics import COMMANDS

log = logging.getLogger(__name__)

ALLOWED_KEYS: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        # `paused` (default true; false resumes) lets one topic serve HA's pause switch.
        "pause": frozenset({"id", "paused"}),
        "resume": frozenset({"id"}),
        "status": frozenset({"id"}),
        "reload": frozenset({"id"}),
        "snapshot": frozenset({"id", "camera"}),
    }
)
MAX_ID_CHARS = 128
MAX_SAFE_INT = 2**53  # larger ids would not survive a JavaScript (Node-RED) round trip
CAMERA_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
NAME_SHOWN = 40  # how much of an unknown command name an error message repeats


class CommandTarget(Protocol):
    """What commands act on; implemented by the daemon."""

    def pause(self) -> None: ...

    def resume(self) -> None: ...

    def snapshot(self, camera: str | None) -> None:
        """Raises ValueError for an unknown camera."""

    def reload(self) -> str | None:
        """None when the new config is running, else why it was rejected."""

    def status(self) -> dict[str, Any]: ...


RequestId = str | int | None


@dataclass(frozen=True, slots=True)
class Command:
    name: str
    request_id: RequestId = None
    camera: str | None = None
    paused: bool = True


@dataclass(frozen=True, slots=True)
class CommandError:
    name: str
    message: str
    request_id: RequestId = None


def _check_id(value: object) -> tuple[RequestId, str | None]:
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None, "'id' must be a string or an integer"
    if isinstance(value, int) and abs(value) >= MAX_SAFE_INT:
        return None, f"'id' must be within +-2^53, got {value}"
    if isinstance(value, str) and len(value) > MAX_ID_CHARS:
        return None, f"'id' must be at most {MAX_ID_CHARS} characters"
    return value, None


def parse_command(name: str, body: bytes, max_bytes: int) -> Command | CommandError:
    """A command from its topic name and body. Never raises."""
    if len(body) > max_bytes:
        return CommandError(name, f"command too large: {len(body)} bytes > {max_bytes} bytes")
    if name not in ALLOWED_KEYS:
        shown = name[:NAME_SHOWN] + ("..." if len(name) > NAME_SHOWN else "")
        return CommandError(name, f"unknown command {shown!r}; commands: {', '.join(COMMANDS)}")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        return CommandError(name, f"the body is not UTF-8: {error.reason} at byte {error.start}")
    if not text.strip():
        data: object = {}
    else:
        try:
            data = json.loads(text)
        except ValueError as error:  # JSONDecodeError is a ValueError
            return CommandError(name, f"the body is not valid JSON: {error}")
        except RecursionError:
            return CommandError(name, "the body is nested too deeply")
    if not isinstance(data, dict):
        return CommandError(name, f"the body must be a JSON object, got {type(data).__name__}")

    request_id: RequestId = None
    if "id" in data:
        request_id, problem = _check_id(data["id"])
        if problem is not None:
            return CommandError(name, problem)
    unknown = sorted(str(key) for key in data if key not in ALLOWED_KEYS[name])
    if unknown:
        allowed = ", ".join(sorted(ALLOWED_KEYS[name]))
        shown = ", ".join(repr(key[:NAME_SHOWN]) for key in unknown[:5])
        return CommandError(
            name, f"unknown key(s) {shown} for {name!r}; allowed: {allowed}", request_id
        )

    camera = data.get("camera")
    if camera is not None and (not isinstance(camera, str) or not CAMERA_RE.match(camera)):
        return CommandError(
            name, "'camera' must be a camera name (letters, digits, '-', '_') or null", request_id
        )
    paused = data.get("paused", True)
    if not isinstance(paused, bool):
        return CommandError(name, "'paused' must be true or false", request_id)
    return Command(name, request_id, camera, paused)


Respond = Callable[[dict[str, Any]], None]


class CommandHandler:
    """Runs commands against the target and answers each one exactly once.

    Called in paho's network thread: every command but `reload` is a quick call. `reload` can
    take seconds (a new model and cameras are opened), which would stall keepalives and every
    other message, so it runs in its own thread; a second reload while one runs is refused.
    """

    def __init__(
        self,
        target: CommandTarget,
        *,
        max_bytes: int,
        on_snapshot: Callable[[str | None], None] | None = None,
    ) -> None:
        self._target = target
        self.max_bytes = max_bytes
        self._on_snapshot = on_snapshot
        self._reload_lock = threading.Lock()
        self._reload_thread: threading.Thread | None = None

    def handle(self, name: str, body: bytes, respond: Respond) -> None:
        """Never raises: every failure becomes an error reply (and a log line)."""
        try:
            parsed = parse_command(name, body, self.max_bytes)
            if isinstance(parsed, CommandError):
                log.warning(
                    "rejected MQTT command %r: %s", parsed.name[:NAME_SHOWN], parsed.message
                )
                self._respond(
                    respond,
                    reply_payload(
                        parsed.name, ok=False, request_id=parsed.request_id, error=parsed.message
                    ),
                )
                return
            if parsed.name == "reload":
                self._start_reload(parsed, respond)
                return
            self._respond(respond, self._run(parsed))
        except Exception as error:  # the last line of defence: the daemon must not die here
            log.exception("MQTT command %r failed", name[:NAME_SHOWN])
            self._respond(respond, reply_payload(name, ok=False, error=f"internal error: {error}"))

    def _run(self, command: Command) -> dict[str, Any]:
        rid = command.request_id
        try:
            if command.name == "pause" and command.paused:
                self._target.pause()
            elif command.name in ("pause", "resume"):  # {"paused": false} resumes
                self._target.resume()
            elif command.name == "snapshot":
                # Mark it wanted first: the pipeline may deliver the frame before we return.
                if self._on_snapshot is not None:
                    self._on_snapshot(command.camera)
                self._target.snapshot(command.camera)
                return reply_payload(
                    "snapshot", ok=True, request_id=rid, result={"camera": command.camera}
                )
            elif command.name == "reload":
                error = self._target.reload()
                if error is not None:
                    return reply_payload("reload", ok=False, request_id=rid, error=error)
            return reply_payload(
                command.name, ok=True, request_id=rid, result=self._target.status()
            )
        except ValueError as error:  # the target's way of saying "bad argument"
            return reply_payload(command.name, ok=False, request_id=rid, error=str(error))
        except Exception as error:
            log.exception("MQTT command %r failed", command.name)
            return reply_payload(
                command.name, ok=False, request_id=rid, error=f"{type(error).__name__}: {error}"
            )

    def _start_reload(self, command: Command, respond: Respond) -> None:
        if not self._reload_lock.acquire(blocking=False):
            self._respond(
                respond,
                reply_payload(
                    "reload",
                    ok=False,
                    request_id=command.request_id,
                    error="a reload is already running",
                ),
            )
            return

        def work() -> None:
            try:
                self._respond(respond, self._run(command))
            finally:
                self._reload_lock.release()

        self._reload_thread = threading.Thread(target=work, name="mqtt-reload", daemon=True)
        self._reload_thread.start()

    def join(self, timeout: float) -> None:
        """Wait for a running reload (on stop)."""
        thread = self._reload_thread
        if thread is not None:
            thread.join(timeout)

    @staticmethod
    def _respond(respond: Respond, payload: dict[str, Any]) -> None:
        try:
            respond(payload)
        except Exception:
            log.exception("could not send the reply to MQTT command %r", payload.get("command"))
