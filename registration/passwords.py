"""Password and identity-number hashing with argon2-cffi (Argon2id, RFC 9106).

``PasswordHasher()`` uses argon2-cffi's defaults (RFC 9106 "low memory" profile:
t=3, m=64 MiB, p=4). Hashes carry their parameters, so raising them later only
needs :func:`needs_rehash` on the next login.
"""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()
#: A hash of a random string, verified against when a user does not exist, so that
#: "no such user" and "wrong password" take the same time.
_DUMMY_HASH = _hasher.hash("not-a-real-password-0f3c9a")


def hash_password(password: str) -> str:
    """Return the Argon2id PHC string for ``password``."""
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """True if ``password`` matches ``password_hash``; a ``None`` hash burns the same time
    and returns False."""
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    """True when ``password_hash`` was made with weaker parameters than today's."""
    return _hasher.check_needs_rehash(password_hash)


def set_cost(*, time_cost: int, memory_cost_kib: int, parallelism: int) -> PasswordHasher:
    """Replace the process's Argon2id parameters and return the previous hasher.

    For test suites and benchmarks only (a login costs ~50 ms at the defaults, by
    design); production never calls it. Restore with :func:`restore`.
    """
    global _hasher, _DUMMY_HASH
    previous = _hasher
    _hasher = PasswordHasher(
        time_cost=time_cost, memory_cost=memory_cost_kib, parallelism=parallelism
    )
    _DUMMY_HASH = _hasher.hash("not-a-real-password-0f3c9a")
    return previous


def restore(previous: PasswordHasher) -> None:
    """Put back a hasher returned by :func:`set_cost`."""
    global _hasher, _DUMMY_HASH
    _hasher = previous
    _DUMMY_HASH = _hasher.hash("not-a-real-password-0f3c9a")
