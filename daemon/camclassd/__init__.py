"""camclassd: a streaming camera classification daemon for Raspberry Pi class devices."""

# The one place the version is written; pyproject.toml reads it from here. A literal rather
# than importlib.metadata, which costs ~4 MiB of RSS on a device that counts them.
__version__ = "0.1.0"

__all__ = ["__version__"]
