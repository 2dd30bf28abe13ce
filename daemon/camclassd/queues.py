"""The bounded queues between the capture threads and the inference workers."""

from __future__ import annotations

import threading
import time
from collections import deque

from camclassd.frame import Frame


class FrameQueues:
    """One bounded deque per camera behind one condition variable.

    `put` either evicts the camera's oldest frame (drop_oldest) or waits for room (block);
    `take` returns up to n frames round-robin across cameras, waiting at most `max_wait`
    after the first for the batch to fill. After close(), puts are refused and takes drain
    what is left, then return [].
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._queues: dict[str, deque[Frame]] = {}
        self._limits: dict[str, int] = {}
        self._order: list[str] = []
        self._next = 0
        self._closed = False

    def add(self, camera: str, size: int) -> None:
        with self._cond:
            self._queues[camera] = deque()
            self._limits[camera] = size
            self._order.append(camera)

    def put(self, frame: Frame, *, drop_oldest: bool) -> tuple[Frame, str] | None:
        """Queue a frame; returns the frame lost and why ("queue_full" or "shutdown"), if any.

        Evicting, the oldest frame without a snapshot image goes; a frame carrying one is
        never evicted for one that does not (with only such frames queued, the newcomer is
        lost instead).
        """
        with self._cond:
            queue, limit = self._queues[frame.camera], self._limits[frame.camera]
            while not drop_oldest and len(queue) >= limit and not self._closed:
                self._cond.wait()
            if self._closed:
                return frame, "shutdown"
            lost = None
            if len(queue) >= limit:
                victim = next((index for index, old in enumerate(queue) if old.image is None), None)
                if victim is None and frame.image is None:
                    return frame, "queue_full"
                index = 0 if victim is None else victim
                lost = queue[index]
                del queue[index]
            queue.append(frame)
            self._cond.notify_all()
            return None if lost is None else (lost, "queue_full")

    def take(self, n: int, max_wait: float) -> list[Frame]:
        with self._cond:
            while not self._any():
                if self._closed:
                    return []
                self._cond.wait()
            batch = [self._pop()]
            deadline = time.monotonic() + max_wait
            while len(batch) < n:
                if self._any():
                    batch.append(self._pop())
                    continue
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._closed:
                    break
                self._cond.wait(remaining)
            self._cond.notify_all()  # room for producers blocked on a full queue
            return batch

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def discard(self) -> dict[str, int]:
        """Empty every queue; returns how many frames each camera lost."""
        with self._cond:
            lost = {name: len(queue) for name, queue in self._queues.items() if queue}
            for queue in self._queues.values():
                queue.clear()
            self._cond.notify_all()
            return lost

    def depth(self) -> dict[str, int]:
        with self._cond:
            return {name: len(queue) for name, queue in self._queues.items()}

    def _any(self) -> bool:
        return any(self._queues.values())

    def _pop(self) -> Frame:
        for _ in range(len(self._order)):
            name = self._order[self._next % len(self._order)]
            self._next += 1
            if self._queues[name]:
                return self._queues[name].popleft()
        raise IndexError("take from empty queues")
