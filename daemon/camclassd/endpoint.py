"""The optional Prometheus endpoint's life: started, moved and stopped as `[prometheus]` says.

prometheus-client is imported here only once the endpoint is enabled, so a daemon without it
pays nothing (alone, its import costs ~0.1 s and ~11 MiB; after the daemon's own imports
~0.03 s and ~2 MiB).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from camclassd import __version__
from camclassd.config import PrometheusConfig
from camclassd.errors import ConfigError
from camclassd.metrics import Metrics

if TYPE_CHECKING:
    from camclassd.prometheus import Server

log = logging.getLogger(__name__)


class MetricsEndpoint:
    """Owns the HTTP server of the Prometheus endpoint, if one is running."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        self._settings = PrometheusConfig()  # disabled: nothing runs until apply()
        self._server: Server | None = None

    @property
    def port(self) -> int | None:
        """The port it listens on, None when off."""
        return None if self._server is None else self._server.port

    def apply(self, settings: PrometheusConfig) -> None:
        """Serve as `settings` say: start, restart on a new address, or stop.

        A bind failure raises ConfigError (exit 78 at start; a rejected reload), with the
        previous server running again as it was.
        """
        if settings == self._settings and (self._server is not None) == settings.enabled:
            return
        previous = self._settings
        self.stop()  # first: the same port cannot be bound twice
        try:
            self._start(settings)
        except ConfigError:
            if previous.enabled:
                try:
                    self._start(previous)
                except ConfigError as again:  # taken meanwhile: say so, report the first
                    log.error("%s", again)
            raise

    def _start(self, settings: PrometheusConfig) -> None:
        self._settings = settings
        if not settings.enabled:
            return
        from camclassd.prometheus import serve  # noqa: PLC0415 (only when enabled: see above)

        try:
            self._server = serve(self._metrics, settings.host, settings.port, __version__)
        except OSError as error:
            self._settings = PrometheusConfig()
            reason = error.strerror or str(error)
            raise ConfigError(
                f"prometheus: cannot listen on {settings.host}:{settings.port}: {reason}; "
                "set [prometheus] port to a free port, host to an address of this machine, "
                "or enabled = false"
            ) from None
        log.info(
            "Prometheus metrics on http://%s:%d/metrics",
            _url_host(settings.host),
            self._server.port,
            extra={"stage": "metrics"},
        )

    def stop(self) -> None:
        server, self._server = self._server, None
        self._settings = PrometheusConfig()
        if server is not None:
            server.close()


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
