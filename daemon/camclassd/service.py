"""systemd integration: sd_notify (READY, STATUS, WATCHDOG, RELOADING, STOPPING) and logging.

Outside systemd (no `NOTIFY_SOCKET`) every notification is a no-op. Notifications go out
through a few lines of socket code rather than `systemd.daemon.notify`: measured here, the
library's notify blocks while holding the GIL when the notify socket's queue is full (a busy
PID 1), which froze every thread of the daemon, the MQTT client included. Our send gives up
after `NOTIFY_TIMEOUT_S` and releases the GIL while it waits. systemd-python is still used for
structured journald logging.
"""

from __future__ import annotations

import importlib
import logging
import os
import socket
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

SYSLOG_IDENTIFIER = "camclassd"
LOG_TARGETS = ("auto", "journald", "stderr")

# Attributes every LogRecord has; anything else came in through `extra=`.
_RECORD_ATTRIBUTES = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}
_JOURNAL_FIELD_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
# Fields JournalHandler passes as explicit keywords: an extra of the same name would clash.
_JOURNAL_RESERVED = frozenset(
    {
        "MESSAGE",
        "PRIORITY",
        "LOGGER",
        "THREAD_NAME",
        "PROCESS_NAME",
        "CODE_FILE",
        "CODE_LINE",
        "CODE_FUNC",
        "SYSLOG_IDENTIFIER",
    }
)
JOURNAL_SOCKET = Path("/run/systemd/journal/socket")
_HANDLER_MARK = "_camclassd_handler"
# sd-daemon(3) priorities, for the `<N>` prefix journald reads on a plain stderr stream.
_SYSLOG_PRIORITY = MappingProxyType(
    {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}
)

Sender = Callable[[str], bool]
# How long one notification may wait for room in systemd's queue before it is dropped.
NOTIFY_TIMEOUT_S = 0.5


# ---- sd_notify ------------------------------------------------------------------------------


class Notifier:
    """Tells systemd how the service is doing; a no-op when not started by systemd.

    `environ` defaults to `os.environ`, read at construction.
    """

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self._socket_path = env.get("NOTIFY_SOCKET", "")
        self._watchdog_usec = env.get("WATCHDOG_USEC", "")
        self._watchdog_pid = env.get("WATCHDOG_PID", "")
        self._send: Sender | None = None
        if self._socket_path:
            self._send = _SocketSender(self._socket_path)

    @property
    def enabled(self) -> bool:
        return self._send is not None

    def notify(self, *assignments: str) -> bool:
        """Send `KEY=value` lines in one datagram; False when not under systemd or on failure."""
        if self._send is None:
            return False
        try:
            return self._send("\n".join(assignments))
        except OSError:
            # systemd gone (shutdown) or its queue full past the timeout: the next tick
            # sends again, and a lost ping is better than a frozen daemon.
            return False

    def ready(self, status: str | None = None) -> bool:
        fields = ["READY=1"]
        if status is not None:
            fields.append(_status_field(status))
        return self.notify(*fields)

    def status(self, text: str) -> bool:
        return self.notify(_status_field(text))

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def reloading(self) -> bool:
        # systemd >= 253 (Type=notify-reload) wants the monotonic time of the reload request.
        return self.notify("RELOADING=1", f"MONOTONIC_USEC={time.monotonic_ns() // 1000}")

    def stopping(self) -> bool:
        return self.notify("STOPPING=1")

    def watchdog_interval(self) -> float | None:
        """Seconds between WATCHDOG=1 pings (half of WatchdogSec=), or None without a watchdog."""
        try:
            usec = int(self._watchdog_usec)
        except ValueError:
            return None
        if usec <= 0:
            return None
        if self._watchdog_pid:
            try:
                if int(self._watchdog_pid) != os.getpid():
                    return None  # the watchdog is meant for another process (e.g. our parent)
            except ValueError:
                return None
        return usec / 1_000_000 / 2


def watchdog_due(last_classified: float | None, now: float, stall_after: float) -> bool:
    """Whether a WATCHDOG=1 ping is deserved: a frame was classified within `stall_after` s.

    All times are `time.monotonic()` seconds. A stalled camera or a hung inference stops the
    pings, so systemd kills and restarts the service after WatchdogSec=.
    """
    if last_classified is None:
        return False
    return 0.0 <= now - last_classified <= stall_after


def _status_field(text: str) -> str:
    # One datagram line per field: a newline in the text would start a bogus field.
    return "STATUS=" + " ".join(text.split("\n"))


class _SocketSender:
    """sd_notify(3) in plain Python: one datagram to $NOTIFY_SOCKET ('@' = abstract socket)."""

    def __init__(self, path: str) -> None:
        self._address = "\0" + path[1:] if path.startswith("@") else path

    def __call__(self, message: str) -> bool:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.settimeout(NOTIFY_TIMEOUT_S)
            sock.sendto(message.encode(), self._address)
        return True


# ---- logging --------------------------------------------------------------------------------


def setup_logging(level: str | int = "info", target: str = "auto") -> str:
    """Configure the root logger; returns the target used: 'journald' or 'stderr'.

    'journald' sends structured entries: fields given with `extra=` (camera, seq, stage, ...)
    become journal fields in upper case (CAMERA=front), SYSLOG_IDENTIFIER=camclassd. 'auto'
    picks journald when stderr is connected to the journal (systemd sets JOURNAL_STREAM), else
    stderr. Calling it again (reload) replaces the handlers it installed before.
    """
    if target not in LOG_TARGETS:
        raise ValueError(f"log target {target!r} is not one of {', '.join(LOG_TARGETS)}")
    numeric = logging.getLevelName(level.upper()) if isinstance(level, str) else level
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r}")
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]:
        root.removeHandler(old)
        old.close()

    to_journal = target == "journald" or (target == "auto" and stderr_is_journal())
    handler: logging.Handler | None = None
    if to_journal and JOURNAL_SOCKET.exists():
        # Without journald (a container, a test) every record would end in a logging error.
        handler = journal_handler()
    chosen = "journald"
    if handler is None:
        handler = logging.StreamHandler(sys.stderr)
        # Without systemd-python but with stderr in the journal: `<N>` prefixes keep priorities.
        handler.setFormatter(StderrFormatter(syslog_prefix=to_journal and stderr_is_journal()))
        chosen = "stderr"
    setattr(handler, _HANDLER_MARK, True)
    handler.addFilter(StructuredFields())
    root.addHandler(handler)
    root.setLevel(numeric)
    return chosen


def stderr_is_journal(environ: Mapping[str, str] | None = None, fd: int = 2) -> bool:
    """True when `fd` is the journal stream systemd connected (JOURNAL_STREAM=dev:inode)."""
    value = (os.environ if environ is None else environ).get("JOURNAL_STREAM", "")
    device, _, inode = value.partition(":")
    try:
        stat = os.fstat(fd)
        return (stat.st_dev, stat.st_ino) == (int(device), int(inode))
    except (OSError, ValueError):
        return False


def journal_handler(sender: Callable[..., Any] | None = None) -> logging.Handler | None:
    """A `systemd.journal.JournalHandler` for camclassd, or None without systemd-python."""
    try:
        journal = importlib.import_module("systemd.journal")  # optional dependency
    except ImportError:
        return None
    kwargs: dict[str, Any] = {"SYSLOG_IDENTIFIER": SYSLOG_IDENTIFIER}
    if sender is not None:
        kwargs["sender_function"] = sender
    handler: logging.Handler = journal.JournalHandler(**kwargs)
    handler.setFormatter(logging.Formatter("%(message)s"))
    return handler


def extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The fields a log call passed with `extra=` (lower-case names as given)."""
    return {
        key: value
        for key, value in record.__dict__.items()
        if key not in _RECORD_ATTRIBUTES and not key.startswith("_") and not key.isupper()
    }


class StructuredFields(logging.Filter):
    """Copies `extra=` fields to upper-case attributes, the names journald accepts.

    JournalHandler sends every record attribute as a field under its own name, and journald
    drops names with lower-case letters: without this, `extra={"camera": "front"}` is lost.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in extra_fields(record).items():
            name = key.upper()
            valid = set(name) <= _JOURNAL_FIELD_CHARS and not name[0].isdigit()
            if valid and name not in _JOURNAL_RESERVED:
                setattr(record, name, value)
        return True


class StderrFormatter(logging.Formatter):
    """`12:00:01.234 INFO camclassd.pipeline: message [camera=front seq=12]`."""

    def __init__(self, *, syslog_prefix: bool = False) -> None:
        # The journal stamps its own time; a terminal wants one.
        fmt = (
            "%(name)s: %(message)s"
            if syslog_prefix
            else "%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
        super().__init__(fmt, datefmt="%H:%M:%S")
        self._syslog_prefix = syslog_prefix

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        return f"{super().formatTime(record, datefmt)}.{int(record.msecs):03d}"

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        fields = extra_fields(record)
        if fields:
            text += " [" + " ".join(f"{key}={value}" for key, value in fields.items()) + "]"
        if self._syslog_prefix:
            priority = _SYSLOG_PRIORITY.get(record.levelno, 6)
            text = "\n".join(f"<{priority}>{line}" for line in text.split("\n"))
        return text
