"""Database layer: one SQLAlchemy ``Base``, engine and session factories, Alembic migrations.

Every package owns its models (``ca.models``, ``registration.models`` ...) and
declares them on :class:`db.base.Base`; :mod:`db.models` imports them all so
Alembic sees the complete metadata.
"""
