"""Schema migrations with Alembic, driven from code (``ehrca init``, tests, ``ehrca db upgrade``).

The migration scripts ship inside the package (``db/migrations``), so an installed
ehrca can migrate without a checkout.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def alembic_config(database_url: str) -> Config:
    """An Alembic :class:`Config` for ``database_url`` with ehrca's script location."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    """Apply migrations up to ``revision`` (default: the newest) on ``database_url``."""
    command.upgrade(alembic_config(database_url), revision)
