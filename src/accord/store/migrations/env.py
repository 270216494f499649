"""Alembic environment of the Accord store.

Normally run through :func:`accord.store.db.upgrade`, which passes its own
connection in ``config.attributes["connection"]``. The ``alembic`` command line
also works (``alembic -x url=... upgrade head`` with ``script_location`` set to
this directory); without a URL it uses :func:`accord.store.db.default_url`.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from accord.store.db import default_url, make_engine
from accord.store.tables import metadata

config = context.config
target_metadata = metadata


def _url() -> str:
    return context.get_x_argument(as_dictionary=True).get("url") or default_url()


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things in place; batch mode rebuilds the table.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )


def run_offline() -> None:
    """Emit the SQL instead of running it (``alembic upgrade head --sql``)."""
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    given = config.attributes.get("connection")
    if isinstance(given, Connection):
        _configure(given)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = make_engine(_url())
    try:
        with engine.begin() as connection:
            _configure(connection)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
