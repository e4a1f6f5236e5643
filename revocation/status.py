"""Revocation status held in memory for the mTLS listener.

The set of revoked ``(issuer_id, serial_hex)`` pairs is loaded from the database
and kept in step two ways: the process that revokes calls :meth:`mark_revoked`
right after the commit (instant in this process), and every worker polls
:meth:`refresh` (``ehrca serve``: every 0.5 s), which reads only revocations newer than
the last one seen (the ``revocations.id`` high-water mark is the revocation version).

A high-water mark is only safe if ids become visible in increasing order: with a
sequence, a transaction that took id 5 could commit after one that took id 6, and a
poll in between would skip 5 for good. ``revocation.service`` therefore takes the audit
chain's head lock before it inserts a ``revocations`` row and holds it until commit,
so revocations commit one at a time in id order (SQLite serialises writers anyway).
"""

from __future__ import annotations

import threading

from sqlalchemy import select
from sqlalchemy.orm import Session

from revocation.models import Revocation


class RevocationStatusCache:
    """Thread-safe set of revoked certificates plus the revocation version."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._revoked: set[tuple[int, str]] = set()
        self._version = 0

    @property
    def version(self) -> int:
        """Highest ``revocations.id`` seen (0 before the first refresh)."""
        return self._version

    def refresh(self, session: Session) -> int:
        """Load revocations newer than :attr:`version`; return how many were new."""
        rows = session.execute(
            select(Revocation.id, Revocation.issuer_id, Revocation.serial_number)
            .where(Revocation.id > self._version)
            .order_by(Revocation.id)
        ).all()
        with self._lock:
            for row_id, issuer_id, serial in rows:
                self._revoked.add((issuer_id, serial))
                self._version = max(self._version, row_id)
        return len(rows)

    def mark_revoked(self, issuer_id: int, serial_hex: str) -> None:
        """Record a revocation this process has just committed."""
        with self._lock:
            self._revoked.add((issuer_id, serial_hex))

    def is_revoked(self, issuer_id: int, serial_hex: str) -> bool:
        """True if the certificate is known to be revoked."""
        return (issuer_id, serial_hex) in self._revoked
