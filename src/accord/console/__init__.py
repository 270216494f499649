"""The web console: sign in with an API key; KPIs, the exception queue, traces,
reconciliation results and system health, as server-rendered pages.

:func:`console_router` returns the routes under ``/console``;
:func:`accord.api.app.create_app` includes them. See ``docs/console.md``.
"""

from accord.console.routes import COOKIE, console_router
from accord.console.session import SECRET_ENV, ConsoleSession, SessionSigner

__all__ = ["COOKIE", "SECRET_ENV", "ConsoleSession", "SessionSigner", "console_router"]
