"""``accord serve`` and ``accord keys``: what the CLI commands run.

``serve`` builds the hub from the settings (embedded default: the SQLite file,
DBOS and the dispatcher threads in this process), starts it, and serves the
API with uvicorn until interrupted; the hub stops after the server.
"""

from __future__ import annotations

import logging

import uvicorn
from opentelemetry.sdk.trace import TracerProvider

from accord.api.app import create_app
from accord.api.observability import configure_logging
from accord.config import Settings
from accord.tracing import install

__all__ = ["serve"]


def serve(settings: Settings, host: str | None = None, port: int | None = None) -> None:
    """Run the hub and the API in this process until Ctrl-C or SIGTERM."""
    from accord.bootstrap import build_hub

    configure_logging()
    hub = build_hub(settings)
    hub.start()
    try:
        provider = TracerProvider()
        install(provider)  # workflow steps and vendor calls join the API's traces
        app = create_app(hub, settings, tracer_provider=provider)
        config = uvicorn.Config(
            app,
            host=host or settings.api.host,
            port=settings.api.port if port is None else port,
            log_config=None,
            log_level=logging.WARNING,
            access_log=False,
            server_header=False,
        )
        uvicorn.Server(config).run()
    finally:
        hub.stop()
