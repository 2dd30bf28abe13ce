"""sd_notify through a real unix datagram socket, watchdog timing, journald/stderr logging."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from camclassd import service
from camclassd.service import (
    Notifier,
    StderrFormatter,
    StructuredFields,
    journal_handler,
    setup_logging,
    stderr_is_journal,
    watchdog_due,
)
from tests.conftest import REPO

SNIPPET = """
import sys
from camclassd.service import Notifier
notifier = Notifier()
print(notifier.enabled, notifier.watchdog_interval(), flush=True)
notifier.ready("loading done")
notifier.status("9.8 fps | front: tabby 0.71 | mqtt connected\\nsecond line")
notifier.watchdog()
notifier.reloading()
notifier.ready()
notifier.stopping()
"""


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify.sock"))
    sock.settimeout(10)
    yield sock
    sock.close()


def run_snippet(env_extra: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NOTIFY_", "WATCHDOG_"))}
    env.update(env_extra)
    return subprocess.run(
        [sys.executable, "-c", SNIPPET],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def receive(sock: socket.socket, count: int) -> list[str]:
    return [sock.recv(4096).decode() for _ in range(count)]


def test_notifications_reach_a_real_socket(notify_socket: socket.socket) -> None:
    address = notify_socket.getsockname()
    result = run_snippet({"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "30000000"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "15.0"]
    messages = receive(notify_socket, 6)
    assert messages[0] == "READY=1\nSTATUS=loading done"
    assert messages[1] == "STATUS=9.8 fps | front: tabby 0.71 | mqtt connected second line"
    assert messages[2] == "WATCHDOG=1"
    reloading, usec = messages[3].split("\n")
    assert reloading == "RELOADING=1"
    assert usec.startswith("MONOTONIC_USEC=")
    # CLOCK_MONOTONIC is system-wide: the child's stamp is a little before ours.
    stamp = int(usec.removeprefix("MONOTONIC_USEC="))
    assert 0 <= time.monotonic_ns() // 1000 - stamp < 30_000_000
    assert messages[4] == "READY=1"
    assert messages[5] == "STOPPING=1"


def test_abstract_socket(tmp_path: Path) -> None:
    name = f"camclassd-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(10)
        notifier = Notifier({"NOTIFY_SOCKET": "@" + name})
        assert notifier.ready()
        assert sock.recv(4096) == b"READY=1"


def test_no_op_without_notify_socket(notify_socket: socket.socket) -> None:
    result = run_snippet({})
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "None"]
    notify_socket.settimeout(0.2)
    with pytest.raises(TimeoutError):
        notify_socket.recv(4096)
    notifier = Notifier({})
    assert not notifier.enabled
    assert notifier.ready() is False
    assert notifier.watchdog() is False
    assert notifier.watchdog_interval() is None


def test_send_failure_is_not_fatal(tmp_path: Path) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone.sock")})
    assert notifier.enabled
    assert notifier.watchdog() is False


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": str(os.getpid())}, 0.5),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval(env: dict[str, str], expected: float | None) -> None:
    assert Notifier(env).watchdog_interval() == expected


def test_watchdog_due() -> None:
    assert watchdog_due(100.0, 105.0, stall_after=10.0)
    assert not watchdog_due(100.0, 111.0, stall_after=10.0)
    assert not watchdog_due(None, 1.0, stall_after=10.0)
    assert not watchdog_due(200.0, 100.0, stall_after=10.0)  # a stamp from the future: suspect


# ---- logging ---------------------------------------------------------------------------------


@pytest.fixture
def clean_root() -> Iterator[logging.Logger]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield root
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)


def test_journal_handler_sends_upper_case_structured_fields() -> None:
    sent: list[tuple[str, dict[str, Any]]] = []

    # Same signature as systemd.journal.send; lower-case names would clash with record fields.
    def sender(MESSAGE: str, **fields: Any) -> None:  # noqa: N803
        sent.append((MESSAGE, fields))

    handler = journal_handler(sender)
    assert handler is not None, "systemd-python is installed in the venv"
    handler.addFilter(StructuredFields())
    logger = logging.getLogger("camclassd.test.journal")
    logger.propagate = False
    logger.addHandler(handler)
    try:
        logger.warning(
            "camera %s stalled", "front", extra={"camera": "front", "seq": 42, "stage": "capture"}
        )
    finally:
        logger.removeHandler(handler)
    ((message, fields),) = sent
    assert message == "camera front stalled"
    assert fields["CAMERA"] == "front"
    assert fields["SEQ"] == 42
    assert fields["STAGE"] == "capture"
    assert fields["SYSLOG_IDENTIFIER"] == "camclassd"
    assert fields["PRIORITY"] == "4"


def test_reserved_journal_names_in_extra_do_not_break_logging() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "m", (), None)
    record.priority = "high"
    record.camera = "front"
    StructuredFields().filter(record)
    assert record.CAMERA == "front"  # type: ignore[attr-defined]
    assert not hasattr(record, "PRIORITY"), "would clash with JournalHandler's own PRIORITY="


def test_stderr_format_is_compact_with_fields() -> None:
    record = logging.LogRecord(
        "camclassd.pipeline", logging.INFO, __file__, 1, "hello %s", ("x",), None
    )
    record.camera = "front"
    record.seq = 7
    text = StderrFormatter().format(record)
    assert text.endswith(" INFO camclassd.pipeline: hello x [camera=front seq=7]")
    assert StderrFormatter(syslog_prefix=True).format(record) == (
        "<6>camclassd.pipeline: hello x [camera=front seq=7]"
    )


def test_setup_logging_targets(
    clean_root: logging.Logger, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    assert setup_logging("debug", "auto") == "stderr"
    assert clean_root.level == logging.DEBUG
    # No journald to talk to: stderr rather than an error for every record.
    monkeypatch.setattr(service, "JOURNAL_SOCKET", tmp_path / "absent")
    assert setup_logging("info", "journald") == "stderr"
    (tmp_path / "socket").touch()
    monkeypatch.setattr(service, "JOURNAL_SOCKET", tmp_path / "socket")
    assert setup_logging("warning", "journald") == "journald"
    ours = [h for h in clean_root.handlers if getattr(h, "_camclassd_handler", False)]
    assert len(ours) == 1, "a second call replaces the first handler"
    assert clean_root.level == logging.WARNING
    with pytest.raises(ValueError, match="log target"):
        setup_logging("info", "syslog")


def test_stderr_is_journal_matches_dev_and_inode(tmp_path: Path) -> None:
    path = tmp_path / "stream"
    path.write_text("")
    with path.open() as stream:
        stat = os.fstat(stream.fileno())
        env = {"JOURNAL_STREAM": f"{stat.st_dev}:{stat.st_ino}"}
        assert stderr_is_journal(env, stream.fileno())
        assert not stderr_is_journal({"JOURNAL_STREAM": f"{stat.st_dev}:1"}, stream.fileno())
        assert not stderr_is_journal({}, stream.fileno())
        assert not stderr_is_journal({"JOURNAL_STREAM": "junk"}, stream.fileno())


def test_a_full_notify_queue_never_freezes_the_process(notify_socket: socket.socket) -> None:
    """Nobody reads the socket (a busy PID 1): sends give up, other threads keep running.

    systemd.daemon.notify blocks holding the GIL here, which froze the whole daemon.
    """
    notifier = Notifier({"NOTIFY_SOCKET": notify_socket.getsockname()})
    ticks = 0
    stop = threading.Event()

    def count() -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            time.sleep(0.005)

    counter = threading.Thread(target=count)
    counter.start()
    started = time.monotonic()
    queue_length = int(Path("/proc/sys/net/unix/max_dgram_qlen").read_text())
    if queue_length > 100:
        pytest.skip(f"net.unix.max_dgram_qlen is {queue_length}: too slow to fill")
    results = [notifier.status(f"{i}") for i in range(queue_length + 4)]
    elapsed = time.monotonic() - started
    stop.set()
    counter.join()
    assert results.count(True) >= 1 and results.count(False) >= 1
    dropped = results.count(False)
    assert elapsed < dropped * service.NOTIFY_TIMEOUT_S + 2.0
    assert ticks > elapsed / 0.005 / 4, "other threads were starved while notify waited"
