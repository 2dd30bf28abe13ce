"""camclassd: a streaming camera classification daemon for Raspberry Pi class devices."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("camclassd")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
