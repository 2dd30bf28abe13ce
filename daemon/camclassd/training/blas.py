"""One BLAS thread while the head trains.

Its matrix products are many and thin (N x 1280 by 1280 x K): OpenBLAS threads spend more
time waking each other than computing, and on a loaded 2-core machine they ran 5x slower
than one thread. numpy offers no switch, so the loaded OpenBLAS is asked directly (what
threadpoolctl does); without OpenBLAS this does nothing.
"""

from __future__ import annotations

import contextlib
import ctypes
from collections.abc import Iterator
from pathlib import Path

_PREFIXES = ("scipy_openblas", "openblas")
_SUFFIXES = ("64_", "")


def _openblas() -> tuple[ctypes.CDLL, str] | None:
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return None
    paths = sorted({line.split()[-1] for line in maps.splitlines() if "openblas" in line.lower()})
    for path in paths:
        try:
            library = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix in _PREFIXES:
            for suffix in _SUFFIXES:
                if hasattr(library, f"{prefix}_set_num_threads{suffix}") and hasattr(
                    library, f"{prefix}_get_num_threads{suffix}"
                ):
                    return library, f"{prefix}_{{}}_num_threads{suffix}"
    return None


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    found = _openblas()
    if found is None:
        yield
        return
    library, pattern = found
    get = getattr(library, pattern.format("get"))
    get.restype = ctypes.c_int
    set_threads = getattr(library, pattern.format("set"))
    before = int(get())
    set_threads(ctypes.c_int(1))
    try:
        yield
    finally:
        set_threads(ctypes.c_int(before))
