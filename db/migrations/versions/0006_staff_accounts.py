"""staff accounts: people (one login per identity), professional registrations, staff
accounts per provider, user-administrator logins, activation codes, support requests
(issue 3; models in registration/staff_models.py)

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

import db.base

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _utc(name: str, *, nullable: bool = False) -> sa.Column[Any]:
    return sa.Column(name, db.base.UTCDateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "people",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("identity_key", sa.String(length=64), nullable=False),
        sa.Column("identity_document_last4", sa.String(length=4), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=True),
        _utc("created_at"),
        _utc("activated_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_people")),
        sa.UniqueConstraint("email", name=op.f("uq_people_email")),
        sa.UniqueConstraint("identity_key", name=op.f("uq_people_identity_key")),
    )
    op.create_table(
        "professional_registrations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("profession", sa.String(length=48), nullable=False),
        sa.Column("registration_number", sa.String(length=16), nullable=False),
        _utc("created_at"),
        sa.ForeignKeyConstraint(
            ["person_id"],
            ["people.id"],
            name=op.f("fk_professional_registrations_person_id_people"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_professional_registrations")),
        sa.UniqueConstraint(
            "person_id",
            "profession",
            name=op.f("uq_professional_registrations_person_id_profession"),
        ),
        sa.UniqueConstraint(
            "profession",
            "registration_number",
            name=op.f("uq_professional_registrations_profession_registration_number"),
        ),
    )
    op.create_table(
        "staff_accounts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("application_id", sa.Integer(), nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("registration_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column(
            "status",
            sa.Enum("active", "disabled", name="staffaccountstatus", native_enum=False, length=16),
            nullable=False,
        ),
        _utc("opened_at"),
        sa.Column("opened_by", sa.String(length=128), nullable=False),
        _utc("disabled_at", nullable=True),
        sa.Column("disabled_by", sa.String(length=128), nullable=True),
        sa.ForeignKeyConstraint(
            ["application_id"],
            ["applications.id"],
            name=op.f("fk_staff_accounts_application_id_applications"),
        ),
        sa.ForeignKeyConstraint(
            ["person_id"], ["people.id"], name=op.f("fk_staff_accounts_person_id_people")
        ),
        sa.ForeignKeyConstraint(
            ["registration_id"],
            ["professional_registrations.id"],
            name=op.f("fk_staff_accounts_registration_id_professional_registrations"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_staff_accounts")),
        sa.UniqueConstraint(
            "application_id", "person_id", name=op.f("uq_staff_accounts_application_id_person_id")
        ),
    )
    with op.batch_alter_table("staff_accounts", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_staff_accounts_application_id"), ["application_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_staff_accounts_person_id"), ["person_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_staff_accounts_registration_id"), ["registration_id"], unique=False
        )
    op.create_table(
        "user_admin_logins",
        sa.Column("user_admin_id", sa.Integer(), nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=False),
        _utc("activated_at"),
        sa.ForeignKeyConstraint(
            ["person_id"], ["people.id"], name=op.f("fk_user_admin_logins_person_id_people")
        ),
        sa.ForeignKeyConstraint(
            ["user_admin_id"],
            ["user_admins.id"],
            name=op.f("fk_user_admin_logins_user_admin_id_user_admins"),
        ),
        sa.PrimaryKeyConstraint("user_admin_id", name=op.f("pk_user_admin_logins")),
    )
    with op.batch_alter_table("user_admin_logins", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_user_admin_logins_person_id"), ["person_id"], unique=False
        )
    op.create_table(
        "activation_codes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code_sha256", sa.String(length=64), nullable=False),
        sa.Column(
            "purpose",
            sa.Enum("user_admin", "staff", name="activationpurpose", native_enum=False, length=16),
            nullable=False,
        ),
        sa.Column("user_admin_id", sa.Integer(), nullable=True),
        sa.Column("person_id", sa.Integer(), nullable=True),
        _utc("created_at"),
        _utc("expires_at"),
        _utc("used_at", nullable=True),
        sa.Column("failed_attempts", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["person_id"], ["people.id"], name=op.f("fk_activation_codes_person_id_people")
        ),
        sa.ForeignKeyConstraint(
            ["user_admin_id"],
            ["user_admins.id"],
            name=op.f("fk_activation_codes_user_admin_id_user_admins"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_activation_codes")),
        sa.UniqueConstraint("code_sha256", name=op.f("uq_activation_codes_code_sha256")),
    )
    with op.batch_alter_table("activation_codes", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_activation_codes_person_id"), ["person_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_activation_codes_user_admin_id"), ["user_admin_id"], unique=False
        )
    op.create_table(
        "support_requests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("application_id", sa.Integer(), nullable=False),
        sa.Column("subject", sa.String(length=200), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        _utc("created_at"),
        sa.ForeignKeyConstraint(
            ["application_id"],
            ["applications.id"],
            name=op.f("fk_support_requests_application_id_applications"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_support_requests")),
    )
    with op.batch_alter_table("support_requests", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_support_requests_application_id"), ["application_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("support_requests", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_support_requests_application_id"))
    op.drop_table("support_requests")
    with op.batch_alter_table("activation_codes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_activation_codes_user_admin_id"))
        batch_op.drop_index(batch_op.f("ix_activation_codes_person_id"))
    op.drop_table("activation_codes")
    with op.batch_alter_table("user_admin_logins", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_user_admin_logins_person_id"))
    op.drop_table("user_admin_logins")
    with op.batch_alter_table("staff_accounts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_staff_accounts_registration_id"))
        batch_op.drop_index(batch_op.f("ix_staff_accounts_person_id"))
        batch_op.drop_index(batch_op.f("ix_staff_accounts_application_id"))
    op.drop_table("staff_accounts")
    op.drop_table("professional_registrations")
    op.drop_table("people")
