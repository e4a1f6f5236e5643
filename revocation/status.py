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
from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session

from revocation.models import Revocation

#: Called with ``(issuer_id, serial_hex)`` for every revocation the cache learns of.
RevocationListener = Callable[[int, str], None]


class RevocationStatusCache:
    """Thread-safe set of revoked certificates plus the revocation version.

    Listeners added with :meth:`add_listener` (the OCSP response cache, the worker
    notification bus) are called once for each revocation newly learned, by
    :meth:`mark_revoked` or :meth:`refresh`, after the set is updated and outside the
    lock; an exception in a listener propagates to the caller.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._revoked: set[tuple[int, str]] = set()
        self._version = 0
        self._listeners: list[RevocationListener] = []

    def add_listener(self, listener: RevocationListener) -> None:
        """Call ``listener(issuer_id, serial_hex)`` for each revocation learned from now on."""
        self._listeners.append(listener)

    def _notify(self, learned: list[tuple[int, str]]) -> None:
        for issuer_id, serial_hex in learned:
            for listener in self._listeners:
                listener(issuer_id, serial_hex)

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
        learned: list[tuple[int, str]] = []
        with self._lock:
            for row_id, issuer_id, serial in rows:
                if (issuer_id, serial) not in self._revoked:
                    self._revoked.add((issuer_id, serial))
                    learned.append((issuer_id, serial))
                self._version = max(self._version, row_id)
        self._notify(learned)
        return len(rows)

    def mark_revoked(self, issuer_id: int, serial_hex: str) -> None:
        """Record a revocation this process has just committed."""
        with self._lock:
            new = (issuer_id, serial_hex) not in self._revoked
            self._revoked.add((issuer_id, serial_hex))
        if new:
            self._notify([(issuer_id, serial_hex)])

    def is_revoked(self, issuer_id: int, serial_hex: str) -> bool:
        """True if the certificate is known to be revoked."""
        return (issuer_id, serial_hex) in self._revoked
