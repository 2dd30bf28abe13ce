"""A real mosquitto broker for the tests, on a free port, that a test can stop and restart."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

# mosquitto started as root drops to the mosquitto user before it reads password, CA and key
# files; those in pytest's private temp directories are then unreadable.
KEEP_USER = "user root\n" if os.geteuid() == 0 else ""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Mosquitto:
    """One mosquitto process. `extra_config` lines are appended to its config file."""

    def __init__(self, workdir: Path, port: int | None = None, extra_config: str = "") -> None:
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(binary).exists():
            raise RuntimeError("mosquitto is not installed: sudo apt install mosquitto")
        self.binary = binary
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.config_path = workdir / "mosquitto.conf"
        self.log_path = workdir / "mosquitto.log"
        self.extra_config = extra_config
        self.process: subprocess.Popen[bytes] | None = None

    def write_config(self) -> None:
        has_listener = "listener" in self.extra_config
        lines = [] if has_listener else [f"listener {self.port} 127.0.0.1", "allow_anonymous true"]
        # set_tcp_nodelay: as docs/mqtt.md recommends; mosquitto's default (Nagle on) holds a
        # small message behind the previous one for up to 40 ms on its way to a subscriber.
        lines += [
            "persistence false",
            "set_tcp_nodelay true",
            f"log_dest file {self.log_path}",
            "log_type all",
        ]
        self.config_path.write_text("\n".join(lines) + "\n" + self.extra_config + "\n")

    def start(self, timeout: float = 10.0) -> None:
        self.write_config()
        self.process = subprocess.Popen(
            [self.binary, "-c", str(self.config_path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {self.log_text()[-2000:]}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"mosquitto did not listen on port {self.port}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
