"""The `Source` interface every camera implements, what it reads (`Capture`), and the
reopen-with-backoff helper."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from camclassd.errors import SourceError

if TYPE_CHECKING:  # annotations only: importing the interface costs no numpy
    import numpy as np

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Capture:
    """One moment read from a source.

    `pixels` is the RGB uint8 HxWx3 frame the model's crop is taken from. `luma` is the
    source's own luminance plane (HxW uint8, read-only, no colour conversion) where it has one
    (picamera2: the lores Y plane), else None. `make_full`, where the source has a larger image
    of the same moment (picamera2: the main stream of the same request), makes it on demand:
    snapshots and collected samples want it a few times an hour, and copying 1280x720 out of
    every request would cost a Pi memory bandwidth for nothing.
    """

    pixels: np.ndarray
    luma: np.ndarray | None = None
    make_full: Callable[[], np.ndarray] | None = None

    def full_image(self) -> np.ndarray | None:
        """The larger RGB image of this moment as a new contiguous array, None where the source
        has nothing larger. Only until the source's next read(): then the moment is gone.
        Raises SourceError when the source cannot make it."""
        return None if self.make_full is None else self.make_full()


class Source(Protocol):
    """A stream of RGB frames. Opened once, read from one thread, closed once.

    `live` sources (cameras, streams) produce frames whether or not anyone keeps up, so the
    pipeline drops the oldest; non-live ones (files, images) wait for the consumer.
    """

    name: str
    live: bool

    def open(self) -> None:
        """Acquire the device or file; raises SourceError when it cannot."""

    def read(self) -> Capture | None:
        """The next frame; None at the end of a finite stream.

        Raises SourceError on a failure or a stall, after which the caller reopens.
        """

    def close(self) -> None:
        """Release the device; safe to call twice or after a failed open."""


@dataclass(slots=True)
class Backoff:
    """Exponential delays: min_s, 2*min_s, ... capped at max_s; reset() after a success."""

    min_s: float = 0.5
    max_s: float = 30.0
    factor: float = 2.0
    _next: float = field(default=0.0, init=False)

    def __post_init__(self) -> None:
        if not 0 < self.min_s <= self.max_s:
            raise ValueError(f"backoff needs 0 < min_s <= max_s, got {self.min_s}, {self.max_s}")
        self._next = self.min_s

    def next_delay(self) -> float:
        delay = self._next
        self._next = min(self._next * self.factor, self.max_s)
        return delay

    def reset(self) -> None:
        self._next = self.min_s


def describe(name: str, error: BaseException) -> str:
    """Why camera `name` failed, without the "camera NAME: " its own errors start with.

    Sources name themselves in their errors (bench and classify show them as they are); a
    caller that names the camera itself uses this so the prefix is not printed twice.
    """
    text = str(error) or repr(error)
    return text.removeprefix(f"camera {name}: ")


def reopen(
    source: Source,
    stop: threading.Event,
    backoff: Backoff,
    on_retry: Callable[[], None] | None = None,
    on_error: Callable[[], None] | None = None,
) -> bool:
    """Close `source` and open it again, waiting longer after each failure.

    Every attempt is logged and reported through `on_retry` (the pipeline counts them as
    reconnects). Returns True once open, False when `stop` was set first. The wait is on
    `stop`, so shutdown never waits out a long backoff.

    An open() that raises something other than SourceError (a bug, or a library error the
    source does not translate) is retried the same way: it is logged with its traceback the
    first time only, and every one is reported through `on_error`.
    """
    attempt = 0
    unexpected = 0
    fields = {"camera": source.name, "stage": "capture"}
    while not stop.is_set():
        delay = backoff.next_delay()
        attempt += 1
        log.warning(
            "camera %s: reopening in %.1f s (attempt %d)",
            source.name,
            delay,
            attempt,
            extra=fields,
        )
        if stop.wait(delay):
            return False
        if on_retry is not None:
            on_retry()
        _close_quietly(source)
        try:
            source.open()
        except SourceError as error:
            log.warning(
                "camera %s: reopen attempt %d failed: %s",
                source.name,
                attempt,
                describe(source.name, error),
                extra=fields,
            )
            continue
        except Exception as error:
            unexpected += 1
            if on_error is not None:
                on_error()
            log.warning(
                "camera %s: reopen attempt %d failed unexpectedly: %r",
                source.name,
                attempt,
                error,
                exc_info=unexpected == 1,  # one traceback, not one per attempt
                extra=fields,
            )
            continue
        log.info("camera %s: reopened after %d attempt(s)", source.name, attempt, extra=fields)
        backoff.reset()
        return True
    return False


def _close_quietly(source: Source) -> None:
    try:
        source.close()
    except Exception:  # a broken device may fail to close; reopening is what matters
        log.debug("source %s: close failed", source.name, exc_info=True)
