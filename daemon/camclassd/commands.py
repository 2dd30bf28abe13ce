"""One door for commands: the command table, parsing, and the inbox served on the main thread.

Every command is declared once in `COMMANDS` (its name, its arguments and its handler). A
transport (MQTT today) parses a request with `parse_command` (pure: bytes -> a typed command or
an error, so it can be fuzzed), answers a bad one at once, and puts a good one into the
`CommandInbox`; the daemon's main thread takes it from there, runs it against the daemon with
`execute`, and the reply goes back through the request's `respond`. So pause, snapshot, reload
and status all run on one thread, in order, and never race a reload.
"""

from __future__ import annotations

import json
import logging
import queue
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol

from camclassd.mqtt.payloads import reply_payload

log = logging.getLogger(__name__)

MAX_ID_CHARS = 128
MAX_SAFE_INT = 2**53  # larger ids would not survive a JavaScript (Node-RED) round trip
CAMERA_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
LABEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")  # a class folder (training)
NAME_SHOWN = 40  # how much of an unknown command name an error message repeats

RequestId = str | int | None
Respond = Callable[[dict[str, Any]], None]


class Pending(Protocol):
    """A command whose reply comes later (collect): the main thread polls it each tick."""

    error: str | None

    def poll(self, now: float) -> Mapping[str, Any] | None:
        """The reply's result once done, else None (`error` says what went wrong)."""
        ...


class CommandTarget(Protocol):
    """What commands act on; implemented by the daemon."""

    def collect(self, camera: str, label: str | None, count: int, interval_s: float) -> Pending: ...

    def set_paused(self, paused: bool) -> None: ...

    def snapshot(self, camera: str | None) -> None:
        """Raises ValueError for an unknown camera."""

    def reload(self) -> str | None:
        """None when the new config is running, else why it was rejected."""

    def status(self) -> dict[str, Any]: ...


# ---- arguments: each a check that returns the problem, or None ---------------------------------


def _camera(value: object) -> str | None:
    if value is None or (isinstance(value, str) and CAMERA_RE.match(value)):
        return None
    return "'camera' must be a camera name (letters, digits, '-', '_') or null"


def _label(value: object) -> str | None:
    if value is None or (isinstance(value, str) and LABEL_RE.match(value)):
        return None
    return "'label' must be a class folder name (letters, digits, '_', '-', '.'; up to 64) or null"


def _integer(name: str, low: int, high: int) -> Callable[[object], str | None]:
    def check(value: object) -> str | None:
        if isinstance(value, int) and not isinstance(value, bool) and low <= value <= high:
            return None
        return f"{name!r} must be a whole number from {low} to {high}"

    return check


def _number(name: str, low: float, high: float) -> Callable[[object], str | None]:
    def check(value: object) -> str | None:
        if isinstance(value, int | float) and not isinstance(value, bool) and low <= value <= high:
            return None
        return f"{name!r} must be a number from {low:g} to {high:g}"

    return check


def _boolean(name: str) -> Callable[[object], str | None]:
    def check(value: object) -> str | None:
        return None if isinstance(value, bool) else f"{name!r} must be true or false"

    return check


# ---- the table -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CommandSpec:
    name: str
    summary: str
    # argument name -> its check; "id" (the request id) is allowed for every command
    arguments: Mapping[str, Callable[[object], str | None]]
    # runs on the main thread; returns the reply's `result` (or a `Pending` one, replied to
    # when it is done), or raises ValueError for a request the target refuses (the message
    # goes into the error reply)
    handler: Callable[[CommandTarget, Mapping[str, Any]], Mapping[str, Any] | Pending]


def _pause(target: CommandTarget, args: Mapping[str, Any]) -> Mapping[str, Any]:
    target.set_paused(args.get("paused", True))
    return target.status()


def _resume(target: CommandTarget, _args: Mapping[str, Any]) -> Mapping[str, Any]:
    target.set_paused(False)
    return target.status()


def _snapshot(target: CommandTarget, args: Mapping[str, Any]) -> Mapping[str, Any]:
    camera = args.get("camera")
    target.snapshot(camera)
    return {"camera": camera}


def _collect(target: CommandTarget, args: Mapping[str, Any]) -> Pending:
    camera = args.get("camera")
    if camera is None:
        raise ValueError("'camera' is required: which camera's frames to save")
    return target.collect(
        camera, args.get("label"), args.get("count", 10), float(args.get("interval_s", 1.0))
    )


def _reload(target: CommandTarget, _args: Mapping[str, Any]) -> Mapping[str, Any]:
    error = target.reload()
    if error is not None:
        raise ValueError(error)
    return target.status()


def _status(target: CommandTarget, _args: Mapping[str, Any]) -> Mapping[str, Any]:
    return target.status()


COMMANDS: Mapping[str, CommandSpec] = MappingProxyType(
    {
        spec.name: spec
        for spec in (
            CommandSpec(
                "pause",
                'stop classifying (cameras stay open); {"paused": false} resumes',
                MappingProxyType({"paused": _boolean("paused")}),
                _pause,
            ),
            CommandSpec("resume", "classify again", MappingProxyType({}), _resume),
            CommandSpec(
                "snapshot",
                "publish the next frame as a JPEG (one camera, or every camera for null)",
                MappingProxyType({"camera": _camera}),
                _snapshot,
            ),
            CommandSpec(
                "reload", "re-read the config file and apply it", MappingProxyType({}), _reload
            ),
            CommandSpec(
                "collect",
                "save a camera's next frames into the dataset folder (replies when done)",
                MappingProxyType(
                    {
                        "camera": _camera,
                        "label": _label,
                        "count": _integer("count", 1, 1000),
                        "interval_s": _number("interval_s", 0.05, 3600),
                    }
                ),
                _collect,
            ),
            CommandSpec("status", "the status payload", MappingProxyType({}), _status),
        )
    }
)
COMMAND_NAMES = tuple(COMMANDS)


# ---- parsing (pure) --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Command:
    name: str
    request_id: RequestId = None
    args: Mapping[str, Any] = field(default_factory=dict)

    @property
    def camera(self) -> str | None:
        camera: str | None = self.args.get("camera")
        return camera


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
    """A command from its name and JSON-object body. Never raises."""
    if len(body) > max_bytes:
        return CommandError(name, f"command too large: {len(body)} bytes > {max_bytes} bytes")
    spec = COMMANDS.get(name)
    if spec is None:
        shown = name[:NAME_SHOWN] + ("..." if len(name) > NAME_SHOWN else "")
        return CommandError(
            name, f"unknown command {shown!r}; commands: {', '.join(COMMAND_NAMES)}"
        )
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
    unknown = sorted(str(key) for key in data if key != "id" and key not in spec.arguments)
    if unknown:
        allowed = ", ".join(sorted({"id", *spec.arguments}))
        shown = ", ".join(repr(key[:NAME_SHOWN]) for key in unknown[:5])
        return CommandError(
            name, f"unknown key(s) {shown} for {name!r}; allowed: {allowed}", request_id
        )
    args = {key: value for key, value in data.items() if key != "id"}
    for key, value in args.items():
        problem = spec.arguments[key](value)
        if problem is not None:
            return CommandError(name, problem, request_id)
    return Command(name, request_id, MappingProxyType(args))


def error_reply(error: CommandError) -> dict[str, Any]:
    return reply_payload(error.name, ok=False, request_id=error.request_id, error=error.message)


# ---- running (main thread) -------------------------------------------------------------------


def execute(command: Command, target: CommandTarget) -> dict[str, Any] | Pending:
    """Run one command against the target: a reply (or a `Pending` one); never raises."""
    rid = command.request_id
    try:
        result = COMMANDS[command.name].handler(target, command.args)
    except ValueError as error:  # the target's way of saying "bad argument" or "refused"
        return reply_payload(command.name, ok=False, request_id=rid, error=str(error))
    except Exception as error:
        log.exception("command %r failed", command.name)
        return reply_payload(
            command.name, ok=False, request_id=rid, error=f"{type(error).__name__}: {error}"
        )
    if not isinstance(result, Mapping):
        return result  # Pending: the daemon replies with `pending_reply` when it is done
    return reply_payload(command.name, ok=True, request_id=rid, result=result)


def pending_reply(command: Command, pending: Pending, result: Mapping[str, Any]) -> dict[str, Any]:
    """The reply to a command whose result came later."""
    rid = command.request_id
    if pending.error is not None:
        saved = result.get("saved")
        error = pending.error if saved is None else f"{pending.error} ({saved} saved)"
        return reply_payload(command.name, ok=False, request_id=rid, error=error)
    return reply_payload(command.name, ok=True, request_id=rid, result=result)


@dataclass(frozen=True, slots=True)
class Request:
    """A parsed command on its way to the main thread, and how to answer it."""

    command: Command
    respond: Respond


def answer(respond: Respond, reply: dict[str, Any]) -> None:
    """Send a reply; a failure to send is logged, never raised."""
    try:
        respond(reply)
    except Exception:
        log.exception("could not send the reply to command %r", reply.get("command"))


def refusal(command: Command, reason: str) -> dict[str, Any]:
    return reply_payload(command.name, ok=False, request_id=command.request_id, error=reason)


class CommandInbox:
    """The door: transports `submit` from any thread; the main thread `take`s and serves.

    After `close`, a request is refused at once instead of waiting for a server that is gone.
    """

    def __init__(self) -> None:
        # SimpleQueue.put is reentrant: safe from a signal handler (SIGHUP, SIGTERM).
        self._queue: queue.SimpleQueue[Request | None] = queue.SimpleQueue()
        self._closed: str | None = None

    def submit(self, request: Request) -> None:
        reason = self._closed
        if reason is not None:
            answer(request.respond, refusal(request.command, reason))
            return
        self._queue.put(request)
        # Closed between the check and the put: the server is gone, nobody would take it.
        # (No lock: a signal handler submits too.)
        reason = self._closed
        if reason is not None:
            while (late := self.take_nowait()) is not None:
                answer(late.respond, refusal(late.command, reason))

    def wake(self) -> None:
        """Make a waiting `take` return now (None)."""
        self._queue.put(None)

    def take(self, timeout: float | None) -> Request | None:
        """The next request; None on a wake-up or after `timeout` seconds."""
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def take_nowait(self) -> Request | None:
        while True:
            try:
                request = self._queue.get_nowait()
            except queue.Empty:
                return None
            if request is not None:
                return request

    def close(self, reason: str) -> list[Request]:
        """Refuse from now on; returns what was still waiting (to be refused by the caller)."""
        self._closed = reason
        left = []
        while (request := self.take_nowait()) is not None:
            left.append(request)
        return left
