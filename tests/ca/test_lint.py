"""Tests for ca.lint: pkilint's RFC 5280 linters over a small EC test hierarchy.

The hierarchy mirrors the DESIGN.md profile: an EC P-384 root, an EC P-256
issuing CA (pathlen 0) and a service-location client certificate, plus a CRL
with one keyCompromise entry, an empty CRL and the root's (empty) ARL. Broken
variants are derived with cryptography where it allows the mistake, and by
re-encoding with asn1crypto where cryptography refuses (zero or negative
serial, notAfter before notBefore).

pkilint 0.13.3 rejects two forms the profile sketch uses, both valid RFC 5280:
a ``2.25.<UUID>`` policy OID (its DER decoder, pyasn1-fasder, handles OID arcs
below 2**32 - 1 only: FATAL ``itu.invalid_asn1_syntax``) and a ``urn:`` URI in
subjectAltName (its URI check, ``validators.url``, wants ``scheme://host``:
ERROR ``pkix.invalid_uri_syntax``). ``test_client_policy_oid_and_san_forms``
pins both; the shared client certificate uses a policy OID under the
documentation PEN 32473 (RFC 5612) and an https URI so that it lints clean and
the broken variants derived from it show exactly one finding each.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asn1crypto.x509
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID
from pkilint.bin import lint_crl as lint_crl_cli
from pkilint.bin import lint_pkix_cert as lint_pkix_cert_cli

import ca.lint
from ca.lint import (
    DECODING_FAILURE_CODE,
    UNHANDLED_EXCEPTION_CODE,
    CrlType,
    LintError,
    LintFinding,
    blocking,
    check_certificate,
    check_crl,
    lint_certificate,
    lint_crl,
)

NOW = dt.datetime(2025, 6, 1, tzinfo=dt.UTC)
UUID_POLICY_OID = x509.ObjectIdentifier(
    f"2.25.{uuid.UUID('6f1c1d2e-2b8a-4c55-9d1e-3a7b0c9e4f12').int}"
)
PEN_POLICY_OID = x509.ObjectIdentifier("1.3.6.1.4.1.32473.1.1")  # RFC 5612 documentation PEN
CRL_URL = "http://pki.ehrca.test/crl/issuing-ca-1.crl"
CA_ISSUERS_URL = "http://pki.ehrca.test/ca/issuing-ca-1.cer"
OCSP_URL = "http://ocsp.ehrca.test/"
URN_SAN = "urn:ehrca:hcp:HCP-7K3Q9M2T:sl:1"
URL_SAN = "https://ehrca.test/hcp/HCP-7K3Q9M2T/sl/1"
CHINESE_NAME = "屯門𨋢口診所"  # 𨋢 is U+282E2, outside the BMP

KU_NONE: dict[str, bool] = {
    "digital_signature": False,
    "content_commitment": False,
    "key_encipherment": False,
    "data_encipherment": False,
    "key_agreement": False,
    "key_cert_sign": False,
    "crl_sign": False,
    "encipher_only": False,
    "decipher_only": False,
}
CA_KEY_USAGE = x509.KeyUsage(**{**KU_NONE, "key_cert_sign": True, "crl_sign": True})
CLIENT_KEY_USAGE = x509.KeyUsage(**{**KU_NONE, "digital_signature": True})


def _utf8(oid: x509.ObjectIdentifier, value: str) -> x509.NameAttribute[str]:
    return x509.NameAttribute(oid, value, _type=_ASN1Type.UTF8String)


def _ca_name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "HK", _type=_ASN1Type.PrintableString),
            _utf8(NameOID.ORGANIZATION_NAME, "eHR Test CA"),
            _utf8(NameOID.COMMON_NAME, common_name),
        ]
    )


ROOT_NAME = _ca_name("eHR Test Root CA")
ISSUING_NAME = _ca_name("eHR Test Issuing CA 1")
CLIENT_NAME = x509.Name(
    [
        x509.NameAttribute(NameOID.COUNTRY_NAME, "HK", _type=_ASN1Type.PrintableString),
        _utf8(NameOID.ORGANIZATION_NAME, "Tuen Mun Lift Entrance Clinic"),
        _utf8(NameOID.ORGANIZATION_NAME, CHINESE_NAME),
        _utf8(NameOID.ORGANIZATIONAL_UNIT_NAME, "Tuen Mun Main Clinic"),
        _utf8(NameOID.COMMON_NAME, "HCP-7K3Q9M2T-SL-1"),
    ]
)


@dataclasses.dataclass(frozen=True)
class Pki:
    """DER artifacts of the test hierarchy plus what is needed to derive variants."""

    root_key: ec.EllipticCurvePrivateKey
    issuing_key: ec.EllipticCurvePrivateKey
    root: x509.Certificate
    issuing: x509.Certificate
    client: x509.Certificate
    crl: bytes
    empty_crl: bytes
    root_arl: bytes

    def der(self, cert: x509.Certificate) -> bytes:
        return cert.public_bytes(Encoding.DER)


def _ski(key: ec.EllipticCurvePrivateKey) -> x509.SubjectKeyIdentifier:
    return x509.SubjectKeyIdentifier.from_public_key(key.public_key())


def _aki(issuer_key: ec.EllipticCurvePrivateKey) -> x509.AuthorityKeyIdentifier:
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(_ski(issuer_key))


def _ca_builder(
    subject: x509.Name,
    issuer: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    issuer_key: ec.EllipticCurvePrivateKey,
    path_length: int | None,
    *,
    key_usage: x509.KeyUsage | None = CA_KEY_USAGE,
    with_ski: bool = True,
) -> x509.CertificateBuilder:
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW)
        .not_valid_after(NOW + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
    )
    if key_usage is not None:
        builder = builder.add_extension(key_usage, critical=True)
    if with_ski:
        builder = builder.add_extension(_ski(key), critical=False)
    if key is not issuer_key:
        builder = builder.add_extension(_aki(issuer_key), critical=False)
    return builder


def _client_builder(
    issuing_key: ec.EllipticCurvePrivateKey,
    key: ec.EllipticCurvePrivateKey,
    *,
    key_usage: x509.KeyUsage = CLIENT_KEY_USAGE,
    policy_oid: x509.ObjectIdentifier = PEN_POLICY_OID,
    san_uri: str = URL_SAN,
    basic_constraints_critical: bool | None = True,
) -> x509.CertificateBuilder:
    builder = x509.CertificateBuilder()
    if basic_constraints_critical is not None:
        builder = builder.add_extension(
            x509.BasicConstraints(ca=False, path_length=None), critical=basic_constraints_critical
        )
    return (
        builder.subject_name(CLIENT_NAME)
        .issuer_name(ISSUING_NAME)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW)
        .not_valid_after(NOW + dt.timedelta(days=825))
        .add_extension(key_usage, critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(_ski(key), critical=False)
        .add_extension(_aki(issuing_key), critical=False)
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(san_uri)]),
            critical=False,
        )
        .add_extension(
            x509.CRLDistributionPoints(
                [
                    x509.DistributionPoint(
                        full_name=[x509.UniformResourceIdentifier(CRL_URL)],
                        relative_name=None,
                        reasons=None,
                        crl_issuer=None,
                    )
                ]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityInformationAccess(
                [
                    x509.AccessDescription(
                        AuthorityInformationAccessOID.CA_ISSUERS,
                        x509.UniformResourceIdentifier(CA_ISSUERS_URL),
                    ),
                    x509.AccessDescription(
                        AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(OCSP_URL)
                    ),
                ]
            ),
            critical=False,
        )
        .add_extension(
            x509.CertificatePolicies([x509.PolicyInformation(policy_oid, None)]), critical=False
        )
    )


def _crl(
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    number: int,
    revoked: list[x509.RevokedCertificate],
) -> bytes:
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer)
        .last_update(NOW + dt.timedelta(days=30))
        .next_update(NOW + dt.timedelta(days=37))
        .add_extension(x509.CRLNumber(number), critical=False)
        .add_extension(_aki(issuer_key), critical=False)
    )
    for entry in revoked:
        builder = builder.add_revoked_certificate(entry)
    return builder.sign(issuer_key, hashes.SHA256()).public_bytes(Encoding.DER)


@pytest.fixture(scope="module")
def pki() -> Pki:
    root_key = ec.generate_private_key(ec.SECP384R1())
    issuing_key = ec.generate_private_key(ec.SECP256R1())
    client_key = ec.generate_private_key(ec.SECP256R1())
    root = _ca_builder(ROOT_NAME, ROOT_NAME, root_key, root_key, None).sign(
        root_key, hashes.SHA384()
    )
    issuing = _ca_builder(ISSUING_NAME, ROOT_NAME, issuing_key, root_key, 0).sign(
        root_key, hashes.SHA384()
    )
    client = _client_builder(issuing_key, client_key).sign(issuing_key, hashes.SHA256())
    revoked = (
        x509.RevokedCertificateBuilder()
        .serial_number(client.serial_number)
        .revocation_date(NOW + dt.timedelta(days=29))
        .add_extension(x509.CRLReason(x509.ReasonFlags.key_compromise), critical=False)
        .add_extension(x509.InvalidityDate(NOW + dt.timedelta(days=28)), critical=False)
        .build()
    )
    return Pki(
        root_key=root_key,
        issuing_key=issuing_key,
        root=root,
        issuing=issuing,
        client=client,
        crl=_crl(ISSUING_NAME, issuing_key, 7, [revoked]),
        empty_crl=_crl(ISSUING_NAME, issuing_key, 8, []),
        root_arl=_crl(ROOT_NAME, root_key, 1, []),
    )


def _codes(findings: list[LintFinding]) -> set[str]:
    return {finding.code for finding in findings}


def _reencode(der: bytes, mutate: Callable[[Any], None]) -> bytes:
    """Re-encode a certificate after ``mutate`` changed its TBS (signature left stale)."""
    cert = asn1crypto.x509.Certificate.load(der)
    mutate(cert["tbs_certificate"])
    return bytes(cert.dump(force=True))


# --- the good hierarchy -------------------------------------------------------------


@pytest.mark.parametrize("which", ["root", "issuing", "client"])
def test_good_certificates_have_no_blocking_findings(pki: Pki, which: str) -> None:
    der = pki.der(getattr(pki, which))
    findings = lint_certificate(der)
    assert blocking(findings) == []
    check_certificate(der)


def test_good_certificates_report_ski_method(pki: Pki) -> None:
    # cryptography's from_public_key is RFC 5280 method 1 (SHA-1 of the key bits).
    for cert in (pki.root, pki.issuing, pki.client):
        assert "pkix.subject_key_identifier_method_1_identified" in _codes(
            lint_certificate(pki.der(cert))
        )


def test_client_subject_names_raise_nothing(pki: Pki) -> None:
    # C=HK PrintableString, two O attributes (English, and Chinese with a
    # character outside the BMP), OU and CN as UTF8String: no finding at all.
    findings = lint_certificate(pki.der(pki.client))
    assert [f for f in findings if ".subject." in f.node_path] == []
    assert [(f.severity, f.code) for f in findings] == [
        ("INFO", "pkix.subject_key_identifier_method_1_identified")
    ]


@pytest.mark.parametrize(
    "critical", [True, False, None], ids=["critical", "non-critical", "absent"]
)
def test_end_entity_basic_constraints_is_not_linted(pki: Pki, critical: bool | None) -> None:
    # RFC 5280 4.2.1.9 lets an end-entity certificate carry basicConstraints
    # critical, non-critical or not at all; pkilint only forbids pathLen there.
    key = ec.generate_private_key(ec.SECP256R1())
    builder = _client_builder(pki.issuing_key, key, basic_constraints_critical=critical)
    findings = lint_certificate(pki.der(builder.sign(pki.issuing_key, hashes.SHA256())))
    assert [(f.severity, f.code) for f in findings] == [
        ("INFO", "pkix.subject_key_identifier_method_1_identified")
    ]


@pytest.mark.parametrize(
    ("policy_oid", "san_uri", "expected"),
    [
        (PEN_POLICY_OID, URL_SAN, []),
        (UUID_POLICY_OID, URL_SAN, [("FATAL", "itu.invalid_asn1_syntax", "certificatePolicies")]),
        (PEN_POLICY_OID, URN_SAN, [("ERROR", "pkix.invalid_uri_syntax", "subjectAltName")]),
        (
            UUID_POLICY_OID,
            URN_SAN,
            [
                ("FATAL", "itu.invalid_asn1_syntax", "certificatePolicies"),
                ("ERROR", "pkix.invalid_uri_syntax", "subjectAltName"),
            ],
        ),
    ],
    ids=["pen-oid-url-san", "uuid-oid-url-san", "pen-oid-urn-san", "uuid-oid-urn-san"],
)
def test_client_policy_oid_and_san_forms(
    pki: Pki,
    policy_oid: x509.ObjectIdentifier,
    san_uri: str,
    expected: list[tuple[str, str, str]],
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    builder = _client_builder(pki.issuing_key, key, policy_oid=policy_oid, san_uri=san_uri)
    cert = builder.sign(pki.issuing_key, hashes.SHA256())
    extension_index = {ext.oid.dotted_string: i for i, ext in enumerate(cert.extensions)}
    paths = {
        "certificatePolicies": f"certificate.tbsCertificate.extensions."
        f"{extension_index['2.5.29.32']}",
        "subjectAltName": f"certificate.tbsCertificate.extensions.{extension_index['2.5.29.17']}"
        ".extnValue.subjectAltName.0.uniformResourceIdentifier",
    }
    found = blocking(lint_certificate(pki.der(cert)))
    assert [(f.severity, f.code, f.node_path) for f in found] == [
        (severity, code, paths[where]) for severity, code, where in expected
    ]
    if expected:
        with pytest.raises(LintError) as info:
            check_certificate(pki.der(cert))
        assert list(info.value.findings) == found
    else:
        check_certificate(pki.der(cert))


@pytest.mark.parametrize("which", ["crl", "empty_crl"])
def test_good_crls_have_no_blocking_findings(pki: Pki, which: str) -> None:
    der: bytes = getattr(pki, which)
    assert blocking(lint_crl(der)) == []
    check_crl(der)
    # CRL number, AKI, keyCompromise reason and invalidity date: nothing to say.
    assert lint_crl(der) == []


def test_root_arl_lints_as_arl(pki: Pki) -> None:
    assert blocking(lint_crl(pki.root_arl, crl_type="arl")) == []
    check_crl(pki.root_arl, crl_type="arl")


def test_unknown_crl_type_is_rejected(pki: Pki) -> None:
    with pytest.raises(ValueError, match="crl_type"):
        lint_crl(pki.crl, crl_type="delta")  # type: ignore[arg-type]


# --- parity with the command-line tools ---------------------------------------------


def _cli_findings(
    main: Callable[[list[str]], int], args: list[str], capsys: pytest.CaptureFixture[str]
) -> list[tuple[str, str, str | None, str]]:
    main(["lint", "-f", "JSON", *args])
    report = json.loads(capsys.readouterr().out)
    return [
        (description["severity"], description["code"], description["message"], result["node_path"])
        for result in report["results"]
        for description in result["finding_descriptions"]
    ]


def _as_tuples(findings: list[LintFinding]) -> list[tuple[str, str, str | None, str]]:
    return [(f.severity, f.code, f.message, f.node_path) for f in findings]


def test_certificate_findings_match_lint_pkix_cert(
    pki: Pki, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    profile_client = _client_builder(
        pki.issuing_key, key, policy_oid=UUID_POLICY_OID, san_uri=URN_SAN
    ).sign(pki.issuing_key, hashes.SHA256())
    for cert in (pki.root, pki.issuing, pki.client, profile_client):
        path = tmp_path / "cert.der"
        path.write_bytes(pki.der(cert))
        cli = _cli_findings(lint_pkix_cert_cli.main, [str(path)], capsys)
        assert _as_tuples(lint_certificate(pki.der(cert))) == cli


@pytest.mark.parametrize(("which", "crl_type"), [("crl", "crl"), ("root_arl", "arl")])
def test_crl_findings_match_lint_crl(
    pki: Pki, which: str, crl_type: CrlType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    der: bytes = getattr(pki, which)
    path = tmp_path / "list.crl"
    path.write_bytes(der)
    cli = _cli_findings(
        lint_crl_cli.main, ["-t", crl_type.upper(), "-p", "PKIX", str(path)], capsys
    )
    assert _as_tuples(lint_crl(der, crl_type=crl_type)) == cli


# --- broken certificates ------------------------------------------------------------


def test_ca_without_key_cert_sign(pki: Pki) -> None:
    ku = x509.KeyUsage(**{**KU_NONE, "digital_signature": True, "crl_sign": True})
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _ca_builder(ISSUING_NAME, ROOT_NAME, key, pki.root_key, 0, key_usage=ku).sign(
        pki.root_key, hashes.SHA384()
    )
    with pytest.raises(LintError) as info:
        check_certificate(pki.der(cert))
    assert _codes(list(info.value.findings)) == {"pkix.ca_certificate_keycertsign_keyusage_not_set"}
    assert all(f.severity == "ERROR" for f in info.value.findings)


def test_ca_without_key_usage(pki: Pki) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _ca_builder(ISSUING_NAME, ROOT_NAME, key, pki.root_key, 0, key_usage=None).sign(
        pki.root_key, hashes.SHA384()
    )
    assert "pkix.ca_certificate_no_ku_extension" in _codes(
        blocking(lint_certificate(pki.der(cert)))
    )


def test_ca_without_ski(pki: Pki) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _ca_builder(ISSUING_NAME, ROOT_NAME, key, pki.root_key, 0, with_ski=False).sign(
        pki.root_key, hashes.SHA384()
    )
    findings = blocking(lint_certificate(pki.der(cert)))
    assert [(f.severity, f.code) for f in findings] == [
        ("ERROR", "pkix.certificate_skid_ca_missing")
    ]


@pytest.mark.parametrize("serial", [0, -1])
def test_serial_out_of_range(pki: Pki, serial: int) -> None:
    def set_serial(tbs: Any) -> None:
        tbs["serial_number"] = serial

    der = _reencode(pki.der(pki.client), set_serial)
    findings = blocking(lint_certificate(der))
    assert [(f.severity, f.code, f.node_path) for f in findings] == [
        (
            "ERROR",
            "pkix.certificate_serial_number_out_of_range",
            "certificate.tbsCertificate.serialNumber",
        )
    ]


def test_not_after_before_not_before(pki: Pki) -> None:
    def swap_validity(tbs: Any) -> None:
        validity = tbs["validity"]
        start, end = validity["not_before"].chosen.native, validity["not_after"].chosen.native
        validity["not_before"] = asn1crypto.x509.Time({"utc_time": end})
        validity["not_after"] = asn1crypto.x509.Time({"utc_time": start})

    der = _reencode(pki.der(pki.client), swap_validity)
    with pytest.raises(LintError) as info:
        check_certificate(der)
    assert _codes(list(info.value.findings)) == {"pkix.certificate_negative_validity_period"}


def test_end_entity_with_key_cert_sign(pki: Pki) -> None:
    ku = x509.KeyUsage(**{**KU_NONE, "digital_signature": True, "key_cert_sign": True})
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _client_builder(pki.issuing_key, key, key_usage=ku).sign(
        pki.issuing_key, hashes.SHA256()
    )
    assert "pkix.ee_certificate_keycertsign_keyusage_set" in _codes(
        blocking(lint_certificate(pki.der(cert)))
    )


# --- malformed input ----------------------------------------------------------------


@pytest.mark.parametrize(
    "der",
    [
        b"",
        b"garbage bytes",
        b"\x30",
        b"\x30\x00",
        b"\x30\x84\xff\xff\xff\xff",
        b"\x30\x03\x02\x01\x01",
    ],
    ids=["empty", "garbage", "truncated", "empty-sequence", "huge-length", "wrong-structure"],
)
@pytest.mark.parametrize("lint", [lint_certificate, lint_crl, check_certificate, check_crl])
def test_malformed_der_raises_lint_error(der: bytes, lint: Callable[[bytes], object]) -> None:
    with pytest.raises(LintError) as info:
        lint(der)
    (finding,) = info.value.findings
    assert (finding.severity, finding.code) == ("FATAL", DECODING_FAILURE_CODE)
    assert finding.code == "itu.invalid_asn1_syntax"
    assert finding.node_path in {"certificate", "certificateList"}
    assert isinstance(info.value, ValueError)


def test_truncated_certificate_raises_lint_error(pki: Pki) -> None:
    with pytest.raises(LintError, match=r"itu\.invalid_asn1_syntax"):
        lint_certificate(pki.der(pki.client)[:-10])


def test_pem_is_not_accepted(pki: Pki) -> None:
    with pytest.raises(LintError, match="not DER-encoded"):
        lint_certificate(pki.client.public_bytes(Encoding.PEM))


def test_crl_is_not_a_certificate(pki: Pki) -> None:
    with pytest.raises(LintError):
        lint_certificate(pki.crl)
    with pytest.raises(LintError):
        lint_crl(pki.der(pki.client))


def test_non_bytes_is_a_type_error(pki: Pki) -> None:
    with pytest.raises(TypeError):
        lint_certificate(pki.client.public_bytes(Encoding.PEM).decode())  # type: ignore[arg-type]


def test_exception_inside_pkilint_becomes_lint_error(
    pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(node: object) -> None:
        raise RuntimeError("validator bug")

    monkeypatch.setattr(ca.lint._CERTIFICATE_VALIDATOR, "validate", explode)
    with pytest.raises(LintError) as info:
        lint_certificate(pki.der(pki.client))
    (finding,) = info.value.findings
    assert (finding.severity, finding.code) == ("FATAL", UNHANDLED_EXCEPTION_CODE)
    assert finding.code == "base.unhandled_exception"
    assert isinstance(info.value.__cause__, RuntimeError)


# --- the small types ----------------------------------------------------------------


def test_blocking_keeps_error_and_fatal_in_order() -> None:
    findings = [
        LintFinding(severity, f"x.{severity.lower()}", None, "certificate")
        for severity in ("INFO", "FATAL", "WARNING", "ERROR", "NOTICE")
    ]
    assert [f.severity for f in blocking(findings)] == ["FATAL", "ERROR"]
    assert blocking(iter(findings)) == blocking(findings)


def test_lint_finding_validates_and_is_frozen() -> None:
    with pytest.raises(ValueError, match="severity"):
        LintFinding("DEBUG", "x.y", None, "certificate")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="code"):
        LintFinding("INFO", "", None, "certificate")
    finding = LintFinding("ERROR", "pkix.x", "detail", "certificate.tbsCertificate")
    with pytest.raises(dataclasses.FrozenInstanceError):
        finding.code = "other"  # type: ignore[misc]
    assert str(finding) == "pkix.x (ERROR) @ certificate.tbsCertificate: detail"


def test_lint_error_carries_findings() -> None:
    finding = LintFinding("ERROR", "pkix.x", None, "certificate")
    error = LintError("certificate fails RFC 5280 lint", [finding])
    assert error.findings == (finding,)
    assert "pkix.x (ERROR)" in str(error)
