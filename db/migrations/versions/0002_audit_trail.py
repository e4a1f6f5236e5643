"""audit trail (hash-chained audit_events, audit_head) and blocked_keys

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import db.base

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    head = op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("last_hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_head")),
    )
    op.bulk_insert(head, [{"id": 1, "seq": 0, "last_hash": "0" * 64}])
    op.create_table(
        "audit_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("at", db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("event_type", sa.String(length=64), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("subject", sa.String(length=128), nullable=True),
        sa.Column("details", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("row_hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_events")),
        sa.UniqueConstraint("seq", name=op.f("uq_audit_events_seq")),
    )
    with op.batch_alter_table("audit_events") as batch:
        batch.create_index(batch.f("ix_audit_events_event_type"), ["event_type"])
        batch.create_index(batch.f("ix_audit_events_actor"), ["actor"])
        batch.create_index(batch.f("ix_audit_events_subject"), ["subject"])


    op.create_table(
        "blocked_keys",
        sa.Column("spki_sha256", sa.LargeBinary(length=32), nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=False),
        sa.Column("blocked_at", db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("blocked_by", sa.String(length=128), nullable=False),
        sa.PrimaryKeyConstraint("spki_sha256", name=op.f("pk_blocked_keys")),
    )


def downgrade() -> None:
    op.drop_table("blocked_keys")
    op.drop_table("audit_events")
    op.drop_table("audit_head")
