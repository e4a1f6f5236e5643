"""Password hashing: Argon2id with RFC 9106's low-memory profile in production."""

from __future__ import annotations

import pytest

from registration import passwords


@pytest.mark.real_password_hashing
def test_production_parameters_are_argon2id_rfc9106_low_memory() -> None:
    digest = passwords.hash_password("correct horse battery staple")
    assert digest.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    assert passwords.verify_password(digest, "correct horse battery staple")
    assert not passwords.verify_password(digest, "correct horse battery stapler")
    assert not passwords.verify_password(None, "anything")
    assert not passwords.needs_rehash(digest)


def test_tests_run_with_cheap_parameters_and_restore() -> None:
    assert passwords.hash_password("x" * 12).startswith("$argon2id$v=19$m=8,t=1,p=1$")
    previous = passwords.set_cost(time_cost=2, memory_cost_kib=16, parallelism=1)
    try:
        assert passwords.hash_password("x" * 12).startswith("$argon2id$v=19$m=16,t=2,p=1$")
    finally:
        passwords.restore(previous)
    assert passwords.hash_password("x" * 12).startswith("$argon2id$v=19$m=8,t=1,p=1$")
