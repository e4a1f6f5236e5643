"""Tests for issuance.csr: PKCS#10 parsing (PEM and DER, 16 KiB limit), proof of
possession, the key policy (RSA 2048-8192 with e = 65537, EC P-256/P-384) and the list
of ignored subject and extensions. Hypothesis feeds random and mutated requests, which
may only ever be refused with the three CSR errors."""

from __future__ import annotations

import functools
from pathlib import Path

import asn1crypto.core
import asn1crypto.csr
import asn1crypto.keys
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from issuance.csr import MAX_CSR_BYTES, CheckedCSR, check_csr, check_public_key, load_csr
from issuance.errors import CSRKeyRejected, CSRMalformed, CSRSignatureInvalid, CSRTooLarge

CSRKey = (
    ec.EllipticCurvePrivateKey
    | rsa.RSAPrivateKey
    | dsa.DSAPrivateKey
    | ed25519.Ed25519PrivateKey
    | ed448.Ed448PrivateKey
)
SUBJECT_CN = "ignored-subject-aaaa"


@functools.cache
def key(kind: str) -> CSRKey:
    """Test keys, generated once per run."""
    if kind.startswith("rsa-e3-"):
        return rsa.generate_private_key(3, int(kind.removeprefix("rsa-e3-")))
    if kind.startswith("rsa-"):
        return rsa.generate_private_key(65537, int(kind.removeprefix("rsa-")))
    curves: dict[str, ec.EllipticCurve] = {
        "p256": ec.SECP256R1(),
        "p384": ec.SECP384R1(),
        "p521": ec.SECP521R1(),
        "secp256k1": ec.SECP256K1(),
        "brainpoolP256r1": ec.BrainpoolP256R1(),
    }
    if kind in curves:
        return ec.generate_private_key(curves[kind])
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    if kind == "ed448":
        return ed448.Ed448PrivateKey.generate()
    if kind == "dsa":
        return dsa.generate_private_key(2048)
    raise AssertionError(kind)


def make_csr(
    private_key: CSRKey,
    *,
    subject: x509.Name | None = None,
    extensions: tuple[tuple[x509.ExtensionType, bool], ...] = (),
    encoding: serialization.Encoding = serialization.Encoding.DER,
) -> bytes:
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, SUBJECT_CN)])
        if subject is None
        else subject
    )
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    algorithm = (
        None
        if isinstance(private_key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey)
        else hashes.SHA256()
    )
    return builder.sign(private_key, algorithm).public_bytes(encoding)


def with_public_key(csr_der: bytes, spki_der: bytes) -> bytes:
    """``csr_der`` with its subjectPublicKeyInfo replaced (signature left as it was)."""
    request = asn1crypto.csr.CertificationRequest.load(csr_der)
    request["certification_request_info"]["subject_pk_info"] = asn1crypto.keys.PublicKeyInfo.load(
        spki_der
    )
    dumped: bytes = request.dump(force=True)
    return dumped


def spki(public_key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


# --------------------------------------------------------------------------- accepted


@pytest.mark.parametrize("kind", ["p256", "p384", "rsa-2048", "rsa-4096"])
@pytest.mark.parametrize("encoding", [serialization.Encoding.PEM, serialization.Encoding.DER])
def test_accepted_keys(kind: str, encoding: serialization.Encoding) -> None:
    private_key = key(kind)
    checked = check_csr(make_csr(private_key, encoding=encoding))
    assert isinstance(checked, CheckedCSR)
    assert spki(checked.public_key) == spki(private_key.public_key())  # type: ignore[arg-type]
    assert checked.ignored == ("subject",)


def test_pem_with_leading_whitespace_and_crlf() -> None:
    pem = make_csr(key("p256"), encoding=serialization.Encoding.PEM)
    checked = check_csr(b"\r\n  " + pem.replace(b"\n", b"\r\n"))
    assert checked.ignored == ("subject",)


def test_size_limit_is_16_kib() -> None:
    pem = make_csr(key("p256"), encoding=serialization.Encoding.PEM)
    at_limit = pem + b"\n" * (MAX_CSR_BYTES - len(pem))
    assert len(at_limit) == MAX_CSR_BYTES == 16384
    assert check_csr(at_limit).ignored == ("subject",)
    with pytest.raises(CSRMalformed, match="larger than 16384 bytes") as info:
        check_csr(at_limit + b"\n")
    assert isinstance(info.value, CSRTooLarge)  # a CSRMalformed with its own code
    assert info.value.code == "csr_too_large"


def test_ignored_lists_subject_and_extensions() -> None:
    checked = check_csr(
        make_csr(
            key("p256"),
            extensions=(
                (x509.BasicConstraints(ca=True, path_length=None), True),
                (x509.SubjectAlternativeName([x509.DNSName("evil.example")]), False),
            ),
        )
    )
    assert checked.ignored == (
        "subject",
        "extension:basicConstraints",
        "extension:subjectAltName",
    )


def test_ignored_unknown_extension_by_dotted_oid() -> None:
    checked = check_csr(
        make_csr(
            key("p256"),
            subject=x509.Name([]),
            extensions=(
                (
                    x509.UnrecognizedExtension(
                        x509.ObjectIdentifier("1.3.6.1.4.1.32473.9"), b"\x05\x00"
                    ),
                    False,
                ),
                (
                    x509.KeyUsage(
                        digital_signature=True,
                        content_commitment=False,
                        key_encipherment=False,
                        data_encipherment=False,
                        key_agreement=False,
                        key_cert_sign=True,
                        crl_sign=False,
                        encipher_only=False,
                        decipher_only=False,
                    ),
                    True,
                ),
            ),
        )
    )
    assert checked.ignored == ("extension:1.3.6.1.4.1.32473.9", "extension:keyUsage")


def test_nothing_ignored() -> None:
    assert check_csr(make_csr(key("p384"), subject=x509.Name([]))).ignored == ()


# --------------------------------------------------------------------------- key policy


@pytest.mark.parametrize(
    ("kind", "code"),
    [
        ("rsa-1024", "csr_rsa_key_too_small"),
        ("rsa-2040", "csr_rsa_key_too_small"),
        ("rsa-e3-2048", "csr_rsa_exponent"),
        ("p521", "csr_ec_curve_unsupported"),
        ("secp256k1", "csr_ec_curve_unsupported"),
        ("brainpoolP256r1", "csr_ec_curve_unsupported"),
        ("ed25519", "csr_key_type_unsupported"),
        ("ed448", "csr_key_type_unsupported"),
        ("dsa", "csr_key_type_unsupported"),
    ],
)
def test_rejected_keys(kind: str, code: str) -> None:
    with pytest.raises(CSRKeyRejected) as info:
        check_csr(make_csr(key(kind)))
    assert info.value.code == code
    assert info.value.category == "invalid"


def test_exponent_3_is_really_3() -> None:
    private_key = key("rsa-e3-2048")
    assert isinstance(private_key, rsa.RSAPrivateKey)
    assert private_key.public_key().public_numbers().e == 3
    assert private_key.key_size == 2048


def test_rsa_over_8192_bits() -> None:
    # A public key is enough: the key policy runs before the signature check.
    big = rsa.RSAPublicNumbers(65537, (1 << 8199) | 1).public_key()
    assert big.key_size == 8200
    with pytest.raises(CSRKeyRejected) as info:
        check_csr(with_public_key(make_csr(key("rsa-2048")), spki(big)))
    assert info.value.code == "csr_rsa_key_too_large"
    at_limit = rsa.RSAPublicNumbers(65537, (1 << 8191) | 1).public_key()
    assert check_public_key(at_limit) is at_limit


def test_unknown_key_algorithm_is_refused_as_unsupported() -> None:
    request = asn1crypto.csr.CertificationRequest.load(make_csr(key("p256")))
    algorithm = request["certification_request_info"]["subject_pk_info"]["algorithm"]
    algorithm["algorithm"] = "1.3.6.1.4.1.32473.7"
    algorithm["parameters"] = asn1crypto.core.Null()
    with pytest.raises(CSRKeyRejected) as info:
        check_csr(request.dump(force=True))
    assert info.value.code == "csr_key_type_unsupported"


# --------------------------------------------------------------------------- malformed


def test_broken_signature() -> None:
    for kind in ("p256", "rsa-2048"):
        der = make_csr(key(kind))
        assert der.count(SUBJECT_CN.encode()) == 1
        tampered = der.replace(SUBJECT_CN.encode(), SUBJECT_CN.replace("a", "b").encode())
        with pytest.raises(CSRSignatureInvalid, match="does not verify") as info:
            check_csr(tampered)
        assert info.value.code == "csr_signature_invalid"


def test_signature_of_another_key() -> None:
    der = with_public_key(make_csr(key("p256")), spki(key("p384").public_key()))  # type: ignore[arg-type]
    with pytest.raises(CSRSignatureInvalid):
        check_csr(der)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"garbage",
        b"-----BEGIN CERTIFICATE REQUEST-----\nZ2FyYmFnZQ==\n-----END CERTIFICATE REQUEST-----\n",
        b"-----BEGIN CERTIFICATE REQUEST-----\n",
        b"\x30\x03\x02\x01\x01",
        b"\x30\x80",
        b"\x00" * 100,
    ],
)
def test_garbage(data: bytes) -> None:
    with pytest.raises(CSRMalformed) as info:
        check_csr(data)
    assert info.value.category == "bad_request"


def test_certificate_is_not_a_csr() -> None:
    golden = Path(__file__).resolve().parents[1] / "ca" / "data" / "golden_client.der"
    with pytest.raises(CSRMalformed):
        load_csr(golden.read_bytes())


def test_unknown_version_is_malformed() -> None:
    # cryptography raises x509.InvalidVersion (not a ValueError) for version != v1.
    request = asn1crypto.csr.CertificationRequest.load(make_csr(key("p256")))
    request["certification_request_info"]["version"] = 1
    with pytest.raises(CSRMalformed):
        check_csr(request.dump(force=True))


def test_large_garbage_refused_before_parsing() -> None:
    with pytest.raises(CSRMalformed, match="larger than"):
        check_csr(b"\x30" * (MAX_CSR_BYTES + 1))


CSR_ERRORS = (CSRMalformed, CSRSignatureInvalid, CSRKeyRejected)


def check_only_csr_errors(data: bytes) -> None:
    try:
        checked = check_csr(data)
    except CSR_ERRORS:
        return
    assert isinstance(checked.public_key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
@example(b"\x30\x82\xff\xff")
@example(b"-----BEGIN")
def test_random_bytes_only_csr_errors(data: bytes) -> None:
    check_only_csr_errors(data)


@functools.cache
def seed_csrs() -> tuple[bytes, ...]:
    return (
        make_csr(key("p256")),
        make_csr(
            key("rsa-2048"),
            extensions=(
                (x509.BasicConstraints(ca=True, path_length=None), True),
                (x509.SubjectAlternativeName([x509.DNSName("a.example")]), False),
            ),
        ),
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.sampled_from([0, 1]),
    edits=st.lists(
        st.tuples(st.integers(min_value=0), st.integers(0, 255)), min_size=1, max_size=4
    ),
    truncate=st.none() | st.integers(min_value=0),
)
def test_mutated_csrs_only_csr_errors(
    seed: int, edits: list[tuple[int, int]], truncate: int | None
) -> None:
    data = bytearray(seed_csrs()[seed])
    for position, value in edits:
        data[position % len(data)] = value
    if truncate is not None:
        del data[truncate % len(data) :]
    check_only_csr_errors(bytes(data))
