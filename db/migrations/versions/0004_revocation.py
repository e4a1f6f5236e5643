"""revocation: CRL partitions (certificates.crl_shard, revocations.crl_shard, crls.shard),
OCSP responders and pre-signed OCSP responses

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import db.base

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("certificates") as batch:
        batch.add_column(sa.Column("crl_shard", sa.Integer(), nullable=True))
    with op.batch_alter_table("revocations") as batch:
        batch.add_column(sa.Column("crl_shard", sa.Integer(), nullable=True))
    with op.batch_alter_table("crls") as batch:
        batch.add_column(sa.Column("shard", sa.Integer(), nullable=True))
    op.create_table(
        "ocsp_responders",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("issuer_id", sa.Integer(), nullable=False),
        sa.Column("certificate_id", sa.Integer(), nullable=False),
        sa.Column("key_ref", sa.String(length=255), nullable=False),
        sa.Column("not_valid_before", db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("not_valid_after", db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("created_at", db.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["certificate_id"],
            ["certificates.id"],
            name=op.f("fk_ocsp_responders_certificate_id_certificates"),
        ),
        sa.ForeignKeyConstraint(
            ["issuer_id"],
            ["certificate_authorities.id"],
            name=op.f("fk_ocsp_responders_issuer_id_certificate_authorities"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ocsp_responders")),
    )
    with op.batch_alter_table("ocsp_responders") as batch:
        batch.create_index(batch.f("ix_ocsp_responders_issuer_id"), ["issuer_id"])
    op.create_table(
        "ocsp_responses",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("issuer_id", sa.Integer(), nullable=False),
        sa.Column("serial_number", sa.String(length=40), nullable=False),
        sa.Column("cert_status", sa.String(length=16), nullable=False),
        sa.Column("responder_id", sa.Integer(), nullable=False),
        sa.Column("this_update", db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("next_update", db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("response_der", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["issuer_id"],
            ["certificate_authorities.id"],
            name=op.f("fk_ocsp_responses_issuer_id_certificate_authorities"),
        ),
        sa.ForeignKeyConstraint(
            ["responder_id"],
            ["ocsp_responders.id"],
            name=op.f("fk_ocsp_responses_responder_id_ocsp_responders"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ocsp_responses")),
        sa.UniqueConstraint(
            "issuer_id", "serial_number", name=op.f("uq_ocsp_responses_issuer_id_serial_number")
        ),
    )


def downgrade() -> None:
    op.drop_table("ocsp_responses")
    with op.batch_alter_table("ocsp_responders") as batch:
        batch.drop_index(batch.f("ix_ocsp_responders_issuer_id"))
    op.drop_table("ocsp_responders")
    with op.batch_alter_table("crls") as batch:
        batch.drop_column("shard")
    with op.batch_alter_table("revocations") as batch:
        batch.drop_column("crl_shard")
    with op.batch_alter_table("certificates") as batch:
        batch.drop_column("crl_shard")
