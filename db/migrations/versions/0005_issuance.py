"""issuance: replacement download codes (lost key) and sent expiry notices

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import db.base

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("download_codes") as batch:
        batch.add_column(sa.Column("replaces_certificate_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("replacement_reason", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("requested_by", sa.String(length=128), nullable=True))
        batch.create_foreign_key(
            batch.f("fk_download_codes_replaces_certificate_id_certificates"),
            "certificates",
            ["replaces_certificate_id"],
            ["id"],
        )
    op.create_table(
        "expiry_notices",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("certificate_id", sa.Integer(), nullable=False),
        sa.Column("days_before", sa.Integer(), nullable=False),
        sa.Column("queued_at", db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("mail_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["certificate_id"],
            ["certificates.id"],
            name=op.f("fk_expiry_notices_certificate_id_certificates"),
        ),
        sa.ForeignKeyConstraint(
            ["mail_id"], ["mail_outbox.id"], name=op.f("fk_expiry_notices_mail_id_mail_outbox")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_expiry_notices")),
        sa.UniqueConstraint(
            "certificate_id",
            "days_before",
            name=op.f("uq_expiry_notices_certificate_id_days_before"),
        ),
    )


def downgrade() -> None:
    op.drop_table("expiry_notices")
    with op.batch_alter_table("download_codes") as batch:
        batch.drop_constraint(
            batch.f("fk_download_codes_replaces_certificate_id_certificates"), type_="foreignkey"
        )
        batch.drop_column("requested_by")
        batch.drop_column("replacement_reason")
        batch.drop_column("replaces_certificate_id")
