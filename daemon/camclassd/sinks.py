"""Where classification results go: the sink interface and the JSON-lines stdout sink."""

from __future__ import annotations

from typing import Protocol

from camclassd.results import Classification


class Sink(Protocol):
    """Receives every result the publish policy lets through. Must not block for long."""

    def publish(self, result: Classification) -> None: ...

    def close(self) -> None: ...
