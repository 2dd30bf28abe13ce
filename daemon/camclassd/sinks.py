"""Where results go: the sink interface, the JSON-lines stdout sink, and the fan-out that runs
every sink on a thread of its own, off the inference workers."""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Protocol, TextIO

from camclassd.collect import Sample
from camclassd.mqtt.payloads import classification_payload
from camclassd.results import Classification
from camclassd.snapshots import Snapshot

log = logging.getLogger(__name__)

SINK_LOG_INTERVAL_S = 60.0
CLOSE_GRACE_S = 0.5


class Sink(Protocol):
    """Receives every result the publish policy lets through, and every snapshot.

    Called from the fan-out thread only, one item at a time.
    """

    def publish(self, result: Classification) -> None: ...

    def snapshot(self, snapshot: Snapshot) -> None: ...

    def close(self) -> None: ...


class JsonLinesSink:
    """One JSON object per result on a text stream (stdout by default), flushed per line so
    that `camclassd run | jq` shows results as they happen. Snapshots are not printed."""

    def __init__(self, stream: TextIO | None = None, device: str | None = None) -> None:
        self._stream = stream if stream is not None else sys.stdout
        self._device = device
        self._lock = threading.Lock()
        self._gone = False

    def publish(self, result: Classification) -> None:
        line = json.dumps(classification_payload(result, self._device), separators=(",", ":"))
        with self._lock:
            if self._gone:
                return
            try:
                self._stream.write(line + "\n")
                self._stream.flush()
            except BrokenPipeError:
                # The reader went away (`camclassd run | head`): stop writing, say so once.
                self._gone = True
                log.warning("stdout reader went away; results are no longer printed")

    def snapshot(self, snapshot: Snapshot) -> None:
        return None

    def close(self) -> None:
        """The stream belongs to the caller; only flush it."""
        with self._lock:
            if not self._gone:
                try:
                    self._stream.flush()
                except BrokenPipeError:
                    self._gone = True


Item = Classification | Snapshot | Sample


class FanOut:
    """Hands results and snapshots to every sink on one thread of its own.

    The inference workers only append to a bounded queue, so a slow or broken sink never slows
    inference: when the queue is full the oldest result is dropped and `on_drop` counts it
    (a snapshot only when nothing but snapshots is queued). One camera's items keep their
    order. A sink that raises is logged (one traceback, then a line
    a minute) and counted through `on_error`; the other sinks still get the item.
    """

    def __init__(
        self,
        sinks: Sequence[Sink],
        *,
        capacity: int = 256,
        on_published: Callable[[str], None] = lambda camera: None,
        on_drop: Callable[[str], None] = lambda camera: None,
        on_error: Callable[[str], None] = lambda camera: None,
        samples: Callable[[Sample], None] | None = None,
    ) -> None:
        self._sinks = tuple(sinks)  # owned by the caller: never closed here
        self._samples = samples  # where collected examples go (the dataset writer)
        self._capacity = capacity
        self._on_published = on_published
        self._on_drop = on_drop
        self._on_error = on_error
        self._items: deque[Item] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._busy = False
        self._logged: dict[int, float] = {}
        self._thread = threading.Thread(target=self._run, name="camclassd-sinks", daemon=True)
        self._thread.start()

    def submit(self, item: Item) -> None:
        with self._cond:
            if self._closed:
                self._dropped(item)
                return
            if len(self._items) >= self._capacity:
                self._dropped(self._evict())
            self._items.append(item)
            self._cond.notify()

    def _evict(self) -> Item:
        """The oldest result; a snapshot or sample only when nothing else is queued (they are
        rare and asked for: a slow sink should lose a result first)."""
        for index, queued in enumerate(self._items):
            if isinstance(queued, Classification):
                del self._items[index]
                return queued
        return self._items.popleft()

    def close(self, timeout: float) -> bool:
        """Deliver what is queued within `timeout`, drop (and count) what is left, end the
        thread; True if it ended."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(timeout)
        if self._thread.is_alive():
            with self._cond:
                while self._items:
                    self._dropped(self._items.popleft())
            self._thread.join(CLOSE_GRACE_S)  # the item a sink is busy with
        return not self._thread.is_alive()

    def drain(self, timeout: float) -> bool:
        """Wait until everything submitted so far went to the sinks; True if it did."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._items or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._items and not self._closed:
                    self._cond.wait()
                if not self._items:
                    return
                item = self._items.popleft()
                self._busy = True
            try:
                self._deliver(item)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _dropped(self, item: Item) -> None:
        self._on_drop(item.camera)
        if isinstance(item, Sample):
            for job in item.jobs:
                job.lost()

    def _deliver(self, item: Item) -> None:
        if isinstance(item, Sample):
            self._deliver_sample(item)
            return
        delivered = False
        for index, sink in enumerate(self._sinks):
            try:
                if isinstance(item, Snapshot):
                    sink.snapshot(item)
                else:
                    sink.publish(item)
                delivered = True
            except Exception:  # one broken sink must not stop the others or the pipeline
                self._on_error(item.camera)
                self._log_failure(index, sink, item)
        if delivered and isinstance(item, Classification):
            self._on_published(item.camera)

    def _deliver_sample(self, sample: Sample) -> None:
        if self._samples is None:
            return
        try:
            self._samples(sample)
        except Exception:  # automatic collection failing (a full disk) must not stop anything
            self._on_error(sample.camera)
            self._log_failure(-1, None, sample)

    def _log_failure(self, index: int, sink: Sink | None, item: Item) -> None:
        # A sink that fails on every frame would flood the journal: one traceback, then a
        # line at most every SINK_LOG_INTERVAL_S (the errors counter has the exact count).
        now = time.monotonic()
        last = self._logged.get(index)
        if last is not None and now - last < SINK_LOG_INTERVAL_S:
            return
        self._logged[index] = now
        name = type(sink).__name__ if sink is not None else "dataset"
        fields = {"camera": item.camera, "seq": item.seq, "stage": "publish"}
        if last is None:
            log.exception("sink %s failed on %s #%d", name, item.camera, item.seq, extra=fields)
        else:
            log.warning("sink %s is still failing (see the errors counter)", name, extra=fields)
