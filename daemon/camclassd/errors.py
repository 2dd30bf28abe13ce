"""Errors that end a command, each carrying the exit code the process should return.

Exit codes follow sysexits.h so that systemd can tell a bad config (never worth a restart)
from a camera that may come back.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 64  # EX_USAGE: bad command-line arguments
EXIT_DATAERR = 65  # EX_DATAERR: input data was unreadable (e.g. an image that does not decode)
EXIT_NOINPUT = 66  # EX_NOINPUT: an input file does not exist
EXIT_UNAVAILABLE = 69  # EX_UNAVAILABLE: model or camera unusable at start
EXIT_CONFIG = 78  # EX_CONFIG: configuration error; the unit lists it in RestartPreventExitStatus


class CamclassdError(Exception):
    """Base class: a problem the user can fix; printed as one line, no traceback."""

    exit_code: int = EXIT_FAILURE


class UsageError(CamclassdError):
    """A command-line argument is out of range."""

    exit_code = EXIT_USAGE


class ConfigError(CamclassdError):
    """The configuration file is missing, not TOML, or fails validation."""

    exit_code = EXIT_CONFIG


class UnavailableError(CamclassdError):
    """A resource needed to start (model, camera, runtime) cannot be used."""

    exit_code = EXIT_UNAVAILABLE


class ModelError(UnavailableError):
    """The model or its labels cannot be loaded or do not fit together."""


class SourceError(UnavailableError):
    """A frame source cannot be opened or stopped delivering frames."""


class InputNotFoundError(CamclassdError):
    """An input file named on the command line does not exist."""

    exit_code = EXIT_NOINPUT


class InputDataError(CamclassdError):
    """An input file exists but cannot be decoded."""

    exit_code = EXIT_DATAERR
