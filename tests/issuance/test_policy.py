"""The CSR key policy beyond parsing: ROCA and Fermat-weak moduli (built here with the
vulnerable constructions), the weak-exponent and small-key refusals through the API,
the block list of keyCompromise keys, and a CSR that asks for CA:TRUE being issued as a
plain client certificate with what was ignored listed."""

from __future__ import annotations

import dataclasses
import functools
import math
import secrets
from collections.abc import Callable
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID, NameOID
from fastapi.testclient import TestClient
from sqlalchemy import select

from api.services import Services
from ca.audit import AuditEvent
from ca.models import CertificateRecord
from issuance.csr import check_csr, has_fermat_factorization, has_roca_fingerprint
from issuance.errors import CSRKeyRejected
from tests.helpers import approved_application, bearer, collect_with_csr, make_csr, officer_token

E = 65537
#: Number of small primes in RSALib's M for 1984-3936-bit keys (Nemec et al., CCS 2017,
#: table 1: M = P_126#, the product of the first 126 primes, 2 ... 701).
ROCA_PRIMES_2048 = 126


def _small_primes(count: int) -> list[int]:
    primes: list[int] = []
    candidate = 2
    while len(primes) < count:
        if all(candidate % p for p in primes if p * p <= candidate):
            primes.append(candidate)
        candidate += 1
    return primes


def _is_probable_prime(n: int, rounds: int = 24) -> bool:
    """Miller-Rabin with random bases (error below 4**-rounds)."""
    if n < 2:
        return False
    for p in _small_primes(30):
        if n % p == 0:
            return n == p
    d, s = n - 1, 0
    while d % 2 == 0:
        d, s = d // 2, s + 1
    for _ in range(rounds):
        x = pow(secrets.randbelow(n - 3) + 2, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(s - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True


def _private_key(p: int, q: int) -> rsa.RSAPrivateKey:
    d = pow(E, -1, math.lcm(p - 1, q - 1))
    numbers = rsa.RSAPrivateNumbers(
        p=p,
        q=q,
        d=d,
        dmp1=rsa.rsa_crt_dmp1(d, p),
        dmq1=rsa.rsa_crt_dmq1(d, q),
        iqmp=rsa.rsa_crt_iqmp(p, q),
        public_numbers=rsa.RSAPublicNumbers(E, p * q),
    )
    return numbers.private_key()


def _roca_prime(m: int, bits: int) -> int:
    """A prime of ``bits`` bits made as RSALib did: ``p = k * M + (65537**a mod M)``
    (Nemec et al., section 2.3), with random ``k`` and ``a``."""
    low = (1 << (bits - 1)) // m + 1
    high = ((1 << bits) - 1) // m
    while True:
        p = (low + secrets.randbelow(high - low)) * m + pow(E, secrets.randbelow(m), m)
        if p.bit_length() == bits and math.gcd(E, p - 1) == 1 and _is_probable_prime(p):
            return p


@functools.cache
def roca_key() -> rsa.RSAPrivateKey:
    """A 2048-bit RSA key with both primes from the vulnerable construction."""
    m = math.prod(_small_primes(ROCA_PRIMES_2048))
    while True:
        p, q = _roca_prime(m, 1024), _roca_prime(m, 1024)
        if (p * q).bit_length() == 2048 and p != q:
            return _private_key(p, q)


def _random_prime(bits: int) -> int:
    while True:
        candidate = secrets.randbits(bits) | (3 << (bits - 2)) | 1
        if _is_probable_prime(candidate):
            return candidate


@functools.cache
def fermat_key() -> rsa.RSAPrivateKey:
    """A 2048-bit RSA key whose primes are neighbours (|p - q| < 2**20)."""
    while True:
        p = _random_prime(1024)
        q = p + 2
        while not _is_probable_prime(q):
            q += 2
        if math.gcd(E, (p - 1) * (q - 1)) == 1 and (p * q).bit_length() == 2048:
            return _private_key(p, q)


def _csr(key: Any, **extensions: x509.ExtensionType) -> bytes:
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "clinic machine")])
    )
    for extension in extensions.values():
        builder = builder.add_extension(extension, critical=False)
    csr: x509.CertificateSigningRequest = builder.sign(key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.PEM)


# --------------------------------------------------------------------------- ROCA, Fermat


def test_roca_fingerprint_is_found_in_the_vulnerable_construction() -> None:
    n = roca_key().public_key().public_numbers().n
    assert n.bit_length() == 2048
    assert has_roca_fingerprint(n) is True
    # Not a property of "being a product of two primes": Fermat's method fails here.
    assert has_fermat_factorization(n) is False


def test_roca_fingerprint_absent_from_ordinary_moduli() -> None:
    real = [rsa.generate_private_key(E, 2048).public_key().public_numbers().n for _ in range(3)]
    random_odd = [secrets.randbits(2048) | (1 << 2047) | 1 for _ in range(2000)]
    assert not any(has_roca_fingerprint(n) for n in real + random_odd)


def test_roca_csr_is_refused() -> None:
    with pytest.raises(CSRKeyRejected) as info:
        check_csr(_csr(roca_key()))
    assert info.value.code == "csr_rsa_roca"
    assert info.value.message.startswith("RSA modulus has the ROCA fingerprint (CVE-2017-15361")


def test_fermat_csr_is_refused() -> None:
    n = fermat_key().public_key().public_numbers().n
    assert has_fermat_factorization(n) and not has_roca_fingerprint(n)
    with pytest.raises(CSRKeyRejected) as info:
        check_csr(_csr(fermat_key()))
    assert info.value.code == "csr_rsa_fermat"
    assert "factorable by Fermat's method" in info.value.message


# --------------------------------------------------------------------------- through the API


REFUSALS: list[tuple[Callable[[], Any], str, str | None]] = [
    (
        functools.partial(rsa.generate_private_key, 65537, 1024),
        "csr_rsa_key_too_small",
        "RSA keys must have at least 2048 bits (got 1024)",
    ),
    (
        functools.partial(rsa.generate_private_key, 3, 2048),
        "csr_rsa_exponent",
        "RSA public exponent must be 65537 (got 3)",
    ),
    (
        functools.partial(ec.generate_private_key, ec.SECP256K1()),
        "csr_ec_curve_unsupported",
        "EC keys must be on P-256 or P-384 (got secp256k1)",
    ),
    (roca_key, "csr_rsa_roca", None),
    (fermat_key, "csr_rsa_fermat", None),
]


def test_refusals_are_422_with_the_rule_and_keep_the_code(
    client: TestClient, services: Services, samples: list[dict[str, Any]]
) -> None:
    reference, token, codes = approved_application(client, services, samples[0])
    url = f"/api/v1/applications/{reference}/service-locations/1/certificate"
    for key, code, detail in REFUSALS:
        refused = client.post(
            url,
            json={"download_code": codes[1], "csr": _csr(key()).decode()},
            headers=bearer(token),
        )
        assert refused.status_code == 422, refused.text
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["code"] == code
        if detail is not None:
            assert refused.json()["detail"] == detail
    # No refusal used up the download code.
    collect_with_csr(client, reference, token, 1, codes[1], make_csr()[1])


def test_keys_revoked_for_key_compromise_are_blocked(
    client: TestClient, services: Services, samples: list[dict[str, Any]]
) -> None:
    reference, token, codes = approved_application(client, services, samples[1])
    key, csr = make_csr()
    first = collect_with_csr(client, reference, token, 1, codes[1], csr)
    security = officer_token(client, services, "sec-block", "security_officer")
    revoked = client.post(
        f"/api/v1/officer/certificates/{first['serial_number']}/revoke",
        json={"reason": "keyCompromise"},
        headers=bearer(security),
    )
    assert revoked.status_code == 200, revoked.text
    # The same key in a new CSR (another subject, another location) is refused.
    _, again = make_csr(key, subject="another request")
    refused = client.post(
        f"/api/v1/applications/{reference}/service-locations/2/certificate",
        json={"download_code": codes[2], "csr": again},
        headers=bearer(token),
    )
    assert refused.status_code == 422, refused.text
    assert refused.json()["code"] == "csr_key_blocked"
    assert "blocked" in refused.json()["detail"] and "keyCompromise" in refused.json()["detail"]
    collect_with_csr(client, reference, token, 2, codes[2], make_csr()[1])


def test_csr_asking_for_a_ca_is_issued_as_a_plain_client_certificate(
    client: TestClient, services: Services, samples: list[dict[str, Any]]
) -> None:
    reference, token, codes = approved_application(client, services, samples[0])
    key = ec.generate_private_key(ec.SECP256R1())
    csr = _csr(
        key,
        bc=x509.BasicConstraints(ca=True, path_length=None),
        ku=x509.KeyUsage(
            digital_signature=True,
            content_commitment=True,
            key_encipherment=False,
            data_encipherment=False,
            key_agreement=False,
            key_cert_sign=True,
            crl_sign=True,
            encipher_only=False,
            decipher_only=False,
        ),
        eku=x509.ExtendedKeyUsage(
            [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CODE_SIGNING]
        ),
        san=x509.SubjectAlternativeName([x509.DNSName("evil.example")]),
    )
    body = collect_with_csr(client, reference, token, 1, codes[1], csr.decode())
    assert body["ignored"] == [
        "subject",
        "extension:basicConstraints",
        "extension:keyUsage",
        "extension:extendedKeyUsage",
        "extension:subjectAltName",
    ]
    certificate = x509.load_pem_x509_certificate(body["certificate_pem"].encode())
    ext = certificate.extensions
    assert ext.get_extension_for_class(x509.BasicConstraints).value.ca is False
    ku = ext.get_extension_for_class(x509.KeyUsage).value
    assert (ku.digital_signature, ku.key_cert_sign, ku.crl_sign, ku.content_commitment) == (
        True,
        False,
        False,
        False,
    )
    assert list(ext.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.CLIENT_AUTH
    ]
    san = ext.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == []
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [
        f"https://id.ehrca.example/hcp/{reference}/sl/1"
    ]
    assert {e.oid for e in ext} == {
        ExtensionOID.BASIC_CONSTRAINTS,
        ExtensionOID.KEY_USAGE,
        ExtensionOID.EXTENDED_KEY_USAGE,
        ExtensionOID.SUBJECT_KEY_IDENTIFIER,
        ExtensionOID.AUTHORITY_KEY_IDENTIFIER,
        ExtensionOID.SUBJECT_ALTERNATIVE_NAME,
        ExtensionOID.CERTIFICATE_POLICIES,
        ExtensionOID.CRL_DISTRIBUTION_POINTS,
        ExtensionOID.AUTHORITY_INFORMATION_ACCESS,
    }
    assert certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == (
        f"{reference}-L1"
    )


def test_lint_error_is_422_with_an_audit_entry_and_keeps_the_code(
    client: TestClient, services: Services, samples: list[dict[str, Any]]
) -> None:
    """A deployment whose identity URI is a ``urn:`` makes pkilint report an ERROR
    (``pkix.invalid_uri_syntax``, see ca.lint): issuance stops before anything is
    reserved, the refusal is in the audit trail, the download code still works."""
    reference, token, codes = approved_application(client, services, samples[0])
    good = services.issuance
    services.issuance = dataclasses.replace(
        good, config=dataclasses.replace(good.config, identity_base_uri="urn:ehrca:test")
    )
    url = f"/api/v1/applications/{reference}/service-locations/1/certificate"
    refused = client.post(
        url, json={"download_code": codes[1], "csr": make_csr()[1]}, headers=bearer(token)
    )
    assert refused.status_code == 422, refused.text
    problem = refused.json()
    assert problem["code"] == "certificate_lint_failed"
    assert problem["detail"].startswith(
        "certificate refused by the linter: certificate fails RFC 5280 lint"
    )
    assert any(f.startswith("pkix.invalid_uri_syntax (ERROR)") for f in problem["findings"])
    with services.sessions() as session:
        event = session.scalars(
            select(AuditEvent).where(AuditEvent.event_type == "certificate.refused")
        ).one()
        assert event.actor == reference
        assert '"stage":"lint"' in event.details and f"CN={reference}-L1" in event.details
        assert (
            session.scalars(
                select(CertificateRecord.id).where(CertificateRecord.profile == "client")
            ).all()
            == []
        )
    services.issuance = good
    collect_with_csr(client, reference, token, 1, codes[1], make_csr()[1])
