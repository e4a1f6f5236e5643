"""Running a SQLAlchemy-built statement on the DB-API driver's own cursor, for the two
hot reads where SQLAlchemy's per-execution and per-row work costs more than the query:
the CSR collection look-up (``registration.collection``) and the CRL entry stream
(``revocation.service.stream_entry_der``).

SQLAlchemy still builds, compiles and binds the statement (its bind processors); only
execution and row handling are the driver's. Writes never go this way: the SQLite
writer lock (``db.session``) hooks SQLAlchemy's execution.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Dialect
from sqlalchemy.sql.compiler import SQLCompiler

#: ``(dialect name, driver)`` pairs whose cursor is used directly: pysqlite (``qmark``
#: parameters) and psycopg 3 (``pyformat``). Other drivers: SQLAlchemy's execution.
DRIVER_CURSOR_DIALECTS = frozenset({("sqlite", "pysqlite"), ("postgresql", "psycopg")})


def uses_driver_cursor(dialect: Dialect) -> bool:
    """True if statements on ``dialect`` may run on the driver's cursor
    (:data:`DRIVER_CURSOR_DIALECTS`)."""
    return (dialect.name, dialect.driver) in DRIVER_CURSOR_DIALECTS


def driver_parameters(
    compiled: SQLCompiler, params: Mapping[str, Any]
) -> Sequence[Any] | Mapping[str, Any]:
    """``params`` (bind name → value already through its bind processor) in the
    driver's parameter style: a list in ``?`` order for ``qmark`` (pysqlite), the
    mapping itself for named styles (psycopg's ``pyformat``)."""
    order = compiled.positiontup
    return params if order is None else [params[name] for name in order]
