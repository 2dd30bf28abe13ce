"""Where classification results go: the sink interface and the JSON-lines stdout sink."""

from __future__ import annotations

import json
import sys
import threading
from typing import Protocol, TextIO

from camclassd.results import Classification, classification_payload


class Sink(Protocol):
    """Receives every result the publish policy lets through. Must not block for long."""

    def publish(self, result: Classification) -> None: ...

    def close(self) -> None: ...


class JsonLinesSink:
    """One JSON object per result on a text stream (stdout by default), flushed per line so
    that `camclassd run | jq` shows results as they happen."""

    def __init__(self, stream: TextIO | None = None, device: str | None = None) -> None:
        self._stream = stream if stream is not None else sys.stdout
        self._device = device
        self._lock = threading.Lock()  # several inference workers may publish at once

    def publish(self, result: Classification) -> None:
        line = json.dumps(classification_payload(result, self._device), separators=(",", ":"))
        with self._lock:
            self._stream.write(line + "\n")
            self._stream.flush()

    def close(self) -> None:
        """The stream belongs to the caller; only flush it."""
        with self._lock:
            self._stream.flush()
