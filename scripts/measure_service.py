"""Measure the service as systemd and a dashboard see it, in one run.

Starts a private mosquitto and the real daemon (images source, shipped uint8 model) with a
NOTIFY_SOCKET, then prints: start -> READY=1, SIGHUP -> READY=1 (reload), SIGTERM -> exit,
capture -> receive latency at a subscriber (p50/p99), the reconnect time after a broker outage
and what was delivered and dropped during it.

    .venv/bin/python scripts/measure_service.py [--seconds 10] [--outage 3]
"""

from __future__ import annotations

import argparse
import signal
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.broker import Mosquitto  # noqa: E402
from tests.daemon_helpers import Collector, DaemonProcess, Message, write_config  # noqa: E402

CONFIG = """
[device]
id = "measure"
[cameras.front]
type = "images"
path = "@SAMPLES@/*.jpg"
fps = 20.0
[model]
path = "@MODELS@/efficientnet_lite0_uint8.tflite"
labels = "@MODELS@/imagenet_labels.txt"
num_threads = 1
[mqtt]
host = "127.0.0.1"
port = {port}
reconnect_min_s = 0.5
reconnect_max_s = 2.0
buffer_size = 20
[metrics]
interval_s = 1.0
"""


class NotifyListener:
    """Reads the notify socket all the time, as systemd does, stamping each datagram."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.1)
        self.received: list[tuple[float, str]] = []
        self.running = True
        self.thread = threading.Thread(target=self._listen, daemon=True)
        self.thread.start()

    def _listen(self) -> None:
        while self.running:
            try:
                text = self.sock.recv(4096).decode()
            except TimeoutError:
                continue
            self.received.append((time.monotonic(), text))

    def wait(self, text: str, after: float, timeout: float = 30.0) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for stamp, message in list(self.received):
                if stamp >= after and text in message:
                    return stamp
            time.sleep(0.01)
        raise SystemExit(f"no {text} within {timeout} s")

    def close(self) -> None:
        self.running = False
        self.thread.join()
        self.sock.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="latency sampling time")
    parser.add_argument("--outage", type=float, default=3.0, help="broker outage length")
    parser.add_argument("--verbose", action="store_true", help="print every result's latency")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="camclassd-measure-"))
    broker = Mosquitto(work / "broker")
    broker.start()
    notify = NotifyListener(work / "notify.sock")
    config = write_config(work / "camclassd.toml", CONFIG.format(port=broker.port))
    sub = Collector(broker.host, broker.port, ["camclassd/measure/#"])
    env = {"NOTIFY_SOCKET": str(work / "notify.sock")}
    started = time.monotonic()
    proc = DaemonProcess(config, env=env)
    try:
        ready = notify.wait("READY=1", started) - started
        sub.wait_count("/classification", 3)
        time.sleep(args.seconds)
        received = [
            (
                m.received
                - np.datetime64(m.json()["ts"].rstrip("Z"))
                .astype("datetime64[us]")
                .astype(np.int64)
                / 1e6
            )
            for m in sub.on("/classification")
        ]
        latency_ms = np.array(received) * 1000
        if args.verbose:
            for message, ms in zip(sub.on("/classification"), latency_ms, strict=True):
                payload = message.json()
                print(
                    payload["seq"], payload["top"][0]["label"], f"{ms:.1f}", payload["latency_ms"]
                )

        hup = time.monotonic()
        proc.signal(signal.SIGHUP)
        reloading = notify.wait("RELOADING=1", hup)
        reload_s = notify.wait("READY=1", reloading) - hup

        broker.stop()
        time.sleep(args.outage)
        back = time.monotonic()
        broker.start()

        def after_back(suffix: str) -> list[Message]:
            return [m for m in sub.on(suffix) if m.received_monotonic > back]

        sub.wait_for(lambda _: bool(after_back("/classification")), 30)
        reconnect_s = after_back("/classification")[0].received_monotonic - back
        sub.wait_for(lambda _: bool(after_back("/metrics")), 30)
        mqtt = after_back("/metrics")[-1].json()["mqtt"]

        term = time.monotonic()
        proc.signal(signal.SIGTERM)
        code = proc.wait(30)
        stop_s = time.monotonic() - term
    except BaseException:
        print(proc.log()[-3000:], file=sys.stderr)
        raise
    finally:
        proc.stop()
        notify.close()
        sub.close()
        broker.stop()
    print(f"start -> READY=1            {ready * 1000:8.0f} ms")
    print(f"SIGHUP -> READY=1 (reload)  {reload_s * 1000:8.0f} ms")
    print(f"SIGTERM -> exit {code}           {stop_s * 1000:8.0f} ms")
    print(
        f"capture -> receive          p50 {np.percentile(latency_ms, 50):6.1f} ms   "
        f"p99 {np.percentile(latency_ms, 99):6.1f} ms   (n={latency_ms.size})"
    )
    print(
        f"broker back -> first result {reconnect_s * 1000:8.0f} ms at a subscriber "
        f"(outage {args.outage:.0f} s)"
    )
    print(
        f"outage: delivered after reconnect {mqtt['delivered_after_reconnect']}, "
        f"dropped beyond the buffer {mqtt['dropped']}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
