"""Where classification results go: the sink interface and the JSON-lines stdout sink."""

from __future__ import annotations

import json
import logging
import sys
import threading
from typing import Protocol, TextIO

from camclassd.results import Classification, classification_payload

log = logging.getLogger(__name__)


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

    def close(self) -> None:
        """The stream belongs to the caller; only flush it."""
        with self._lock:
            if not self._gone:
                try:
                    self._stream.flush()
                except BrokenPipeError:
                    self._gone = True
