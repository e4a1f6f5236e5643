"""Blocked public keys: a key revoked for keyCompromise (or blocked by an officer)
may never be certified again. Keys are identified by the SHA-256 of their DER
SubjectPublicKeyInfo (as Let's Encrypt's blockedKeys table does), so the same key
in another CSR encoding is still recognised.
"""

from __future__ import annotations

import datetime as dt
import hashlib

from cryptography.hazmat.primitives import serialization
from sqlalchemy import LargeBinary, String, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from ca.keys import PublicKey
from db.base import Base


class BlockedKey(Base):
    """One blocked key: SPKI SHA-256, why, when, by whom."""

    __tablename__ = "blocked_keys"

    spki_sha256: Mapped[bytes] = mapped_column(LargeBinary(32), primary_key=True)
    reason: Mapped[str] = mapped_column(String(64))
    blocked_at: Mapped[dt.datetime]
    blocked_by: Mapped[str] = mapped_column(String(128))


def spki_sha256(public_key: PublicKey) -> bytes:
    """SHA-256 of the DER SubjectPublicKeyInfo of ``public_key`` (32 bytes)."""
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).digest()


def block_key(
    session: Session, public_key: PublicKey, *, reason: str, actor: str, now: dt.datetime
) -> bool:
    """Stage ``public_key`` on the block list (caller commits); False if already there."""
    digest = spki_sha256(public_key)
    if session.get(BlockedKey, digest) is not None:
        return False
    session.add(BlockedKey(spki_sha256=digest, reason=reason, blocked_at=now, blocked_by=actor))
    return True


def is_blocked(session: Session, public_key: PublicKey) -> bool:
    """True if ``public_key`` is on the block list."""
    digest = spki_sha256(public_key)
    return (
        session.scalars(
            select(BlockedKey.spki_sha256).where(BlockedKey.spki_sha256 == digest)
        ).first()
        is not None
    )
