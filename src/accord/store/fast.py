"""Prepared statements for the hot paths, one SQL text per dialect.

SQLAlchemy Core builds a statement's parameters row by row through every
column's type (a JSON column serialises its value, a timestamp column converts
its datetime), which costs more than the database's own work for the small,
many-row writes of a batch. The statements here are sent as they are to the
driver, with parameter tuples built by the caller: JSON already serialised
(usually the canonical text a digest was taken over anyway), timestamps already
in the form the column stores (:func:`db_time`, once per batch). They write
exactly what the Core statements on the same tables would, so rows read back
through SQLAlchemy are the same.

A statement is written once with ``{p}`` for a parameter and ``{json}`` for a
JSON parameter; :class:`Prepared` turns that into SQLite's ``?`` and
psycopg's ``%s`` (``CAST(%s AS JSON)`` for JSON, since PostgreSQL's ``json``
columns do not take text implicitly).
"""

from __future__ import annotations

import json.encoder
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, CursorResult

__all__ = ["SQLITE_DATETIME", "Prepared", "db_time", "json_strings", "unsupported_dialect"]

#: How SQLAlchemy stores a UTC timestamp on SQLite (text that sorts in time order).
SQLITE_DATETIME = "%Y-%m-%d %H:%M:%S.%f"


#: How json.dumps(..., ensure_ascii=False) writes a string.
_encode_string: Callable[[str], str] = json.encoder.encode_basestring


def json_strings(values: Iterable[str]) -> str:
    """A list of strings as canonical JSON text, without json.dumps' set-up per call."""
    return "[" + ",".join(map(_encode_string, values)) + "]"


def unsupported_dialect(name: str) -> NotImplementedError:
    """The error for a database the store does not support."""
    return NotImplementedError(f"the store supports SQLite and PostgreSQL, not {name}")


def db_time(conn: Connection, at: datetime) -> Any:
    """``at`` (timezone-aware) as a timestamp parameter of ``conn``'s dialect.

    SQLite stores UTC text in SQLAlchemy's format; PostgreSQL takes the aware
    datetime as it is (``timestamptz``).
    """
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"naive datetime {at.isoformat()} refused: pass an aware UTC time")
    name = conn.dialect.name
    if name == "sqlite":
        return at.astimezone(UTC).strftime(SQLITE_DATETIME)
    if name == "postgresql":
        return at.astimezone(UTC)
    raise unsupported_dialect(name)


#: How each dialect's driver writes a parameter, and a JSON one.
_STYLES = {
    "sqlite": {"p": "?", "json": "?"},
    "postgresql": {"p": "%s", "json": "CAST(%s AS JSON)"},
}


class Prepared:
    """One statement in both dialects' parameter styles.

    Any other ``{name}`` in the template is a clause that differs between the
    dialects, given as ``name={"sqlite": …, "postgresql": …}``.
    """

    __slots__ = ("_texts",)

    def __init__(self, template: str, **per_dialect: Mapping[str, str]) -> None:
        self._texts = {
            dialect: template.format(
                **style, **{name: text[dialect] for name, text in per_dialect.items()}
            )
            for dialect, style in _STYLES.items()
        }

    def text(self, conn: Connection) -> str:
        """The statement for ``conn``'s dialect."""
        return self.text_for(conn.dialect.name)

    def text_for(self, dialect: str) -> str:
        """The statement for the dialect named ``dialect`` (``sqlite``, ``postgresql``)."""
        try:
            return self._texts[dialect]
        except KeyError:
            raise unsupported_dialect(dialect) from None

    def run(self, conn: Connection, params: tuple[Any, ...]) -> CursorResult[Any]:
        """Execute once with ``params``, in the caller's transaction."""
        return conn.exec_driver_sql(self.text(conn), params)

    def run_many(self, conn: Connection, rows: Sequence[tuple[Any, ...]]) -> None:
        """Execute once per row (the driver's executemany); nothing for no rows."""
        if not rows:
            return
        text = self.text(conn)
        if len(rows) == 1:
            conn.exec_driver_sql(text, rows[0])
        else:
            conn.exec_driver_sql(text, list(rows))
