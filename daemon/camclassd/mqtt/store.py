"""Store and forward: results kept while the broker is unreachable, newest kept, drops counted.

Not thread-safe by itself: `MqttService` holds one lock around the store and its publish calls,
which is what keeps buffered results ahead of new ones.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Pending:
    topic: str
    payload: bytes
    qos: int
    retain: bool


class Store:
    """A bounded FIFO; when full, the oldest message is dropped (and counted)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: deque[Pending] = deque()
        self.dropped = 0
        self.delivered_after_reconnect = 0

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: Pending) -> None:
        if self.capacity <= 0:
            self.dropped += 1
            return
        if len(self._items) >= self.capacity:
            self._items.popleft()
            self.dropped += 1
        self._items.append(item)

    def put_back(self, item: Pending) -> None:
        """Return a message taken by `pop` that could not be sent: it stays first."""
        if len(self._items) >= self.capacity:
            # Full: the returned message is the oldest, so it is the one to drop.
            self.dropped += 1
            return
        self._items.appendleft(item)

    def resize(self, capacity: int) -> None:
        self.capacity = capacity
        while len(self._items) > max(capacity, 0):
            self._items.popleft()
            self.dropped += 1

    def pop(self) -> Pending | None:
        return self._items.popleft() if self._items else None
