"""certificates: index on not_valid_after for the expiry-notice scan

The expiry-notice job (``issuance.expiry``) selects issued certificates with
``not_valid_after <= now + days``; without an index that is a full scan of
``certificates`` every run.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("certificates") as batch:
        batch.create_index(
            batch.f("ix_certificates_not_valid_after"), ["not_valid_after"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("certificates") as batch:
        batch.drop_index(batch.f("ix_certificates_not_valid_after"))
