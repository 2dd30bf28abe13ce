"""Frame sources: one small class per kind of camera behind the `Source` interface.

The classes are in their own modules (`camclassd.sources.opencv`, ...), imported by whoever
opens one (`camclassd.cameras` builds them from the config); this package itself holds only
the interface, so importing it costs neither OpenCV nor pydantic.
"""

from __future__ import annotations

from camclassd.sources.base import Backoff, Capture, Source, describe, reopen

__all__ = ["Backoff", "Capture", "Source", "describe", "reopen"]
