"""The issuance pipeline: profiles as data (validated at load), the named request and
certificate checks one by one, and ``ca.service.issue_certificate`` end to end —
GeneralizedTime past 2049, lint refusals with their audit entry, record before
signing under a crash, and hypothesis round trips of the whole pipeline."""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
from collections.abc import Callable, Iterator
from pathlib import Path

import asn1crypto.x509
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from ca import checks, lint
from ca.audit import AuditEvent, verify_chain
from ca.checks import (
    BuiltCertificate,
    CertificateRequest,
    CheckFailed,
    CheckRefused,
    run_certificate_checks,
    run_request_checks,
)
from ca.config import CAConfig, PkiUrls
from ca.keys import FileKeyStore, KeyType
from ca.models import CertificateRecord, CertificateStatus
from ca.profiles import (
    PROFILES_FILE,
    Issuer,
    ProfileError,
    build_certificate,
    ca_subject,
    client_profile,
    client_subject,
    configured_profiles,
    default_profiles,
    issuing_ca_profile,
    load_profiles,
    ocsp_responder_profile,
    root_profile,
    server_profile,
    sign_certificate,
)
from ca.service import (
    LintRefused,
    Signer,
    initialise_hierarchy,
    issue_certificate,
    load_signer,
    stale_reservations,
)
from db.session import create_db_engine, create_session_factory

DbSigner = tuple["sessionmaker[Session]", FileKeyStore, CAConfig, Signer]

URLS = PkiUrls("http://pki.ehrca.test")
POLICY = "1.3.6.1.4.1.32473.1.1"
START = dt.datetime(2026, 11, 29, 9, 0, 0, tzinfo=dt.UTC)
UTC_TIME_TAG = 0x17
GENERALIZED_TIME_TAG = 0x18

# --------------------------------------------------------------------------- profile data

SHIPPED = PROFILES_FILE.read_text(encoding="utf-8")


def _with(profile: str, replace: str, by: str) -> str:
    """The shipped TOML with one line of ``profile``'s table changed."""
    head, sep, rest = SHIPPED.partition(f"[{profile}]\n")
    body, nxt, tail = rest.partition("\n[")
    assert replace in body, (profile, replace)
    return head + sep + body.replace(replace, by, 1) + nxt + tail


def test_shipped_profiles_exact_values() -> None:
    profiles = default_profiles()
    assert list(profiles) == ["root_ca", "issuing_ca", "client", "mtls_server", "ocsp_responder"]
    root, issuing, client, server, ocsp = profiles.values()
    assert (root.is_ca, root.key_usage, root.path_length, root.issuer_profile) == (
        True,
        frozenset({"key_cert_sign", "crl_sign"}),
        None,
        None,
    )
    assert (root.validity, root.revocation_pointers) == (dt.timedelta(days=7300), False)
    assert (issuing.path_length, issuing.issuer_profile, issuing.validity) == (
        0,
        "root_ca",
        dt.timedelta(days=3650),
    )
    assert issuing.key_usage == {"key_cert_sign", "crl_sign", "digital_signature"}
    assert (client.is_ca, client.key_usage, client.extended_key_usage) == (
        False,
        frozenset({"digital_signature"}),
        (ExtendedKeyUsageOID.CLIENT_AUTH,),
    )
    assert client.certificate_policy == x509.ObjectIdentifier(POLICY)
    assert (client.validity, client.ocsp_pointer, client.issuer_profile) == (
        dt.timedelta(days=730),
        True,
        "issuing_ca",
    )
    assert server.extended_key_usage == (ExtendedKeyUsageOID.SERVER_AUTH,)
    assert (server.validity, server.certificate_policy) == (dt.timedelta(days=397), None)
    assert ocsp.extended_key_usage == (ExtendedKeyUsageOID.OCSP_SIGNING,)
    assert (ocsp.ocsp_no_check, ocsp.validity) == (True, dt.timedelta(days=7))


def test_factories_are_the_shipped_entries() -> None:
    profiles = default_profiles()
    assert root_profile(dt.timedelta(days=7300)) == profiles["root_ca"]
    assert issuing_ca_profile(dt.timedelta(days=3650)) == profiles["issuing_ca"]
    assert (
        client_profile(dt.timedelta(days=730), policy_oid=POLICY, ocsp=True) == profiles["client"]
    )
    assert server_profile(dt.timedelta(days=397)) == profiles["mtls_server"]
    assert ocsp_responder_profile(dt.timedelta(days=7)) == profiles["ocsp_responder"]


def test_ca_config_defaults_match_the_profile_data() -> None:
    assert configured_profiles(CAConfig(urls=URLS)) == default_profiles()


def test_configured_profiles_take_the_settings() -> None:
    config = CAConfig(
        urls=URLS,
        client_validity=dt.timedelta(days=365),
        certificate_policy_oid="1.3.6.1.4.1.32473.9",
    )
    client = configured_profiles(config)["client"]
    assert client.validity == dt.timedelta(days=365)
    assert client.certificate_policy == x509.ObjectIdentifier("1.3.6.1.4.1.32473.9")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            _with("client", "kind =", 'colour = "blue"\nkind ='),
            "profile client: unknown fields ['colour']",
        ),
        (_with("client", 'kind = "end_entity"\n', ""), "profile client: missing fields ['kind']"),
        (
            _with("issuing_ca", '"key_cert_sign", ', ""),
            "profile issuing_ca: a CA must assert keyCertSign, RFC 5280 4.2.1.3",
        ),
        (
            _with("client", "basic_constraints_ca = false", "basic_constraints_ca = true"),
            "profile client: an end entity must have basicConstraints CA:FALSE, RFC 5280 4.2.1.9",
        ),
        (
            _with("root_ca", "basic_constraints_ca = true", "basic_constraints_ca = false"),
            "profile root_ca: a CA must have basicConstraints CA:TRUE, RFC 5280 4.2.1.9",
        ),
        (
            _with(
                "client",
                'key_usage = ["digital_signature"]',
                'key_usage = ["digital_signature", "key_cert_sign"]',
            ),
            "profile client: an end entity must not assert keyCertSign, RFC 5280 4.2.1.3",
        ),
        (
            _with("client", "validity_days = 730", "validity_days = 0"),
            "profile client: validity_days must be positive, got 0",
        ),
        (
            _with("mtls_server", "validity_days = 397", "validity_days = -1"),
            "profile mtls_server: validity_days must be positive, got -1",
        ),
        (
            _with("client", "validity_days = 730", "validity_days = 3651"),
            "profile client: validity 3651 days is above the issuer profile "
            "'issuing_ca''s 3650 days",
        ),
        (
            _with("client", "validity_days = 730", 'validity_days = "730"'),
            "profile client: validity_days must be a int, got '730'",
        ),
        (
            _with("client", "certificate_policy = true", "certificate_policy = 1"),
            "profile client: certificate_policy must be a bool, got 1",
        ),
        (
            _with("client", 'issuer = "issuing_ca"', 'issuer = "nobody"'),
            "profile client: issuer 'nobody' is not a profile of the set",
        ),
        (
            _with("client", 'issuer = "issuing_ca"', 'issuer = "mtls_server"'),
            "profile client: issuer 'mtls_server' is not a CA profile",
        ),
        (
            _with(
                "root_ca",
                "revocation_pointers = false",
                'revocation_pointers = false\nissuer = "issuing_ca"',
            ),
            "profile root_ca: issuer chain has a cycle through 'root_ca'",
        ),
        (
            _with("client", 'extended_key_usage = ["client_auth"]', 'extended_key_usage = ["any"]'),
            "profile client: unknown extended_key_usage ['any']; "
            "allowed: client_auth, server_auth, ocsp_signing",
        ),
        (
            _with("client", 'key_usage = ["digital_signature"]', 'key_usage = ["sign_anything"]'),
            "profile client: unknown key_usage ['sign_anything']",
        ),
        (
            _with(
                "client",
                "certificate_policy = true",
                "certificate_policy = true\nocsp_no_check = true",
            ),
            "profile client: ocsp_no_check is only for OCSP responder certificates",
        ),
        (
            _with(
                "client", "certificate_policy = true", "certificate_policy = true\npath_length = 0"
            ),
            "profile client: pathLenConstraint must be a non-negative integer and only on CA",
        ),
        (
            _with("client", 'kind = "end_entity"', 'kind = "leaf"'),
            "profile client: kind must be one of ['ca', 'end_entity'], got 'leaf'",
        ),
        ("[client\n", "profile data: not valid TOML"),
    ],
)
def test_profile_data_refusals(text: str, message: str) -> None:
    with pytest.raises(ProfileError) as info:
        load_profiles(text)
    assert str(info.value).startswith(message), str(info.value)


def test_a_ca_below_path_length_zero_is_refused_at_load() -> None:
    text = (
        SHIPPED
        + '\n[sub_ca]\nkind = "ca"\nbasic_constraints_ca = true\n'
        + ('key_usage = ["key_cert_sign"]\nissuer = "issuing_ca"\nvalidity_days = 10\n')
    )
    with pytest.raises(
        ProfileError, match="profile sub_ca: a CA cannot be issued under 'issuing_ca'"
    ):
        load_profiles(text)


def test_validity_settings_are_validated_at_load() -> None:
    with pytest.raises(ProfileError, match="profile client: validity 4000 days is above"):
        configured_profiles(CAConfig(urls=URLS, client_validity=dt.timedelta(days=4000)))
    with pytest.raises(ProfileError, match="profile mtls_server: validity must be positive"):
        load_profiles(validity={"mtls_server": dt.timedelta(0)})
    with pytest.raises(ProfileError, match=r"validity given for unknown profiles \['nope'\]"):
        load_profiles(validity={"nope": dt.timedelta(days=1)})


def test_issuance_context_refuses_a_bad_validity_setting() -> None:
    from issuance.service import IssuanceContext

    with pytest.raises(ProfileError, match="above the issuer profile 'issuing_ca'"):
        IssuanceContext(
            FileKeyStore(Path("/nonexistent"), b"x"),
            CAConfig(urls=URLS, client_validity=dt.timedelta(days=3651)),
        )


# --------------------------------------------------------------------------- test CA


@dataclasses.dataclass(frozen=True)
class PipelineCA:
    root: Issuer
    root_key: ec.EllipticCurvePrivateKey
    issuer: Issuer
    issuer_key: ec.EllipticCurvePrivateKey


def _make_ca(start: dt.datetime, root_days: int, issuing_days: int) -> PipelineCA:
    root_key = ec.generate_private_key(ec.SECP384R1())
    root_cert = sign_certificate(
        build_certificate(
            root_profile(dt.timedelta(days=root_days)),
            subject=ca_subject("eHR Secure Connection", "Pipeline Root"),
            public_key=root_key.public_key(),
            serial_number=1,
            not_valid_before=start,
            issuer=None,
            urls=URLS,
        ),
        root_key,
    )
    root = Issuer(root_cert, "root")
    issuer_key = ec.generate_private_key(ec.SECP256R1())
    issuing_cert = sign_certificate(
        build_certificate(
            issuing_ca_profile(dt.timedelta(days=issuing_days)),
            subject=ca_subject("eHR Secure Connection", "Pipeline Issuing"),
            public_key=issuer_key.public_key(),
            serial_number=2,
            not_valid_before=start,
            issuer=root,
            urls=URLS,
        ),
        root_key,
    )
    return PipelineCA(root, root_key, Issuer(issuing_cert, "issuing"), issuer_key)


@functools.cache
def pipeline_ca() -> PipelineCA:
    return _make_ca(START - dt.timedelta(days=1), 7300, 3650)


@functools.cache
def leaf_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


SUBJECT = client_subject(
    provider_name_en="Harbour Family Medicine Group Limited",
    provider_name_zh="海港家庭醫學集團有限公司",
    location_name_en="Tuen Mun Clinic",
    location_name_zh="屯門𨋢口診所",
    location_identifier="HCP-7K3Q9M2T-L3",
)


def _request(**changes: object) -> CertificateRequest:
    request = CertificateRequest(
        profile=client_profile(dt.timedelta(days=730), policy_oid=POLICY, ocsp=True),
        issuer=pipeline_ca().issuer,
        subject=SUBJECT,
        public_key=leaf_key().public_key(),
        serial_number=0x7A3F00112233445566778899AABBCCDDEEFF0011,
        not_valid_before=START,
        subject_alt_names=("https://id.ehrca.example/hcp/HCP-7K3Q9M2T/sl/3",),
    )
    return dataclasses.replace(request, **changes)  # type: ignore[arg-type]


def _built(request: CertificateRequest) -> x509.Certificate:
    return sign_certificate(
        build_certificate(
            request.profile,
            subject=request.subject,
            public_key=request.public_key,
            serial_number=request.serial_number,
            not_valid_before=request.not_valid_before,
            issuer=request.issuer,
            urls=URLS,
            subject_alt_names=request.subject_alt_names,
        ),
        pipeline_ca().issuer_key,
    )


def _tampered(
    certificate: x509.Certificate, edit: Callable[[asn1crypto.x509.Certificate], None]
) -> x509.Certificate:
    """``certificate`` re-encoded after ``edit`` changed its asn1crypto tree (the
    signature no longer verifies; the checks do not look at it)."""
    parsed = asn1crypto.x509.Certificate.load(certificate.public_bytes(serialization.Encoding.DER))
    edit(parsed)
    return x509.load_der_x509_certificate(parsed.dump(force=True))


# --------------------------------------------------------------------------- request checks


def test_request_checks_pass_for_a_good_request() -> None:
    run_request_checks(_request())


@pytest.mark.parametrize(
    ("changes", "check", "message"),
    [
        (
            {"not_valid_before": START - dt.timedelta(days=400)},
            "check_issuer_valid_at_start",
            "not valid before",
        ),
        (
            {"not_valid_before": START + dt.timedelta(days=3700)},
            "check_issuer_valid_at_start",
            "expired",
        ),
        (
            {"public_key": rsa.generate_private_key(65537, 1024).public_key()},  # noqa: S505
            "check_public_key_allowed",
            "RSA keys must have 2048 to 8192 bits (got 1024)",
        ),
        (
            {"public_key": ec.generate_private_key(ec.SECP521R1()).public_key()},
            "check_public_key_allowed",
            "EC keys must be on P-256 or P-384 (got secp521r1)",
        ),
        (
            {"public_key": ed25519.Ed25519PrivateKey.generate().public_key()},
            "check_public_key_allowed",
            "unsupported public key type",
        ),
        (
            {"subject": x509.Name([]), "subject_alt_names": ()},
            "check_subject_present",
            "the subject is empty",
        ),
        ({"serial_number": 0}, "check_serial_number_range", "serial number must be positive"),
        ({"serial_number": 2**159}, "check_serial_number_range", "at most 159 bits"),
    ],
)
def test_each_request_check_refuses_by_name(
    changes: dict[str, object], check: str, message: str | None
) -> None:
    request = _request(**changes)
    with pytest.raises(CheckRefused) as info:
        run_request_checks(request)
    assert info.value.check == check
    assert info.value.code == "certificate_request_refused"
    assert info.value.message.startswith(f"request check {check} failed: ")
    assert info.value.detail == {"stage": "request", "check": check}
    if message:
        assert message in info.value.message


def test_a_ca_below_path_length_zero_is_refused() -> None:
    request = _request(profile=issuing_ca_profile(dt.timedelta(days=1)))
    with pytest.raises(CheckRefused) as info:
        run_request_checks(request)
    assert info.value.check == "check_issuer_allows_profile"
    assert "pathLenConstraint 0" in info.value.message


def test_issuer_that_is_not_a_ca_is_refused() -> None:
    leaf = _built(_request())
    with pytest.raises(CheckFailed, match="not a CA"):
        checks.check_issuer_is_ca(_request(issuer=Issuer(leaf, "leaf")))


# --------------------------------------------------------------------------- certificate checks


def test_certificate_checks_pass_for_the_built_certificate() -> None:
    request = _request()
    run_certificate_checks(request, _built(request))


def _set_issuer_cn_printable(cert: asn1crypto.x509.Certificate) -> None:
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "HK"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "eHR Secure Connection"),
            x509.NameAttribute(
                NameOID.COMMON_NAME, "Pipeline Issuing", _type=_ASN1Type.PrintableString
            ),
        ]
    )
    cert["tbs_certificate"]["issuer"] = asn1crypto.x509.Name.load(name.public_bytes())


def _set_subject_o_printable(cert: asn1crypto.x509.Certificate) -> None:
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "HK"),
            x509.NameAttribute(
                NameOID.ORGANIZATION_NAME, "Clinic", _type=_ASN1Type.PrintableString
            ),
        ]
    )
    cert["tbs_certificate"]["subject"] = asn1crypto.x509.Name.load(name.public_bytes())


def _set_country_utf8(cert: asn1crypto.x509.Certificate) -> None:
    name = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "HK", _type=_ASN1Type.UTF8String)])
    cert["tbs_certificate"]["subject"] = asn1crypto.x509.Name.load(name.public_bytes())


def _set_general_time_2049(cert: asn1crypto.x509.Certificate) -> None:
    cert["tbs_certificate"]["validity"]["not_after"] = asn1crypto.x509.Time(
        name="general_time", value=dt.datetime(2028, 11, 28, 8, 59, 59, tzinfo=dt.UTC)
    )


def _set_extension(oid: str, value: object) -> Callable[[asn1crypto.x509.Certificate], None]:
    def edit(cert: asn1crypto.x509.Certificate) -> None:
        for extension in cert["tbs_certificate"]["extensions"]:
            if extension["extn_id"].dotted == oid:
                extension["extn_value"] = value
                return
        raise AssertionError(oid)

    return edit


def _add_extension(cert: asn1crypto.x509.Certificate) -> None:
    cert["tbs_certificate"]["extensions"].append(
        {"extn_id": "1.3.6.1.4.1.32473.99", "critical": False, "extn_value": b"\x05\x00"}
    )


@pytest.mark.parametrize(
    ("edit", "check", "message"),
    [
        (_set_issuer_cn_printable, "check_issuer_name_copied", "issuer name differs"),
        (
            _set_extension("2.5.29.35", {"key_identifier": b"\x01" * 20}),
            "check_authority_key_identifier",
            "differs from the issuer's subjectKeyIdentifier",
        ),
        (
            _set_extension("2.5.29.14", b"\x02" * 20),
            "check_subject_key_identifier",
            "not the SHA-1",
        ),
        (_set_general_time_2049, "check_time_encoding", "not_after in 2028 must be utc_time"),
        (_set_subject_o_printable, "check_subject_string_types", "2.5.4.10 must be a UTF8String"),
        (_set_country_utf8, "check_subject_string_types", "2.5.4.6 must be a PrintableString"),
        (_set_extension("2.5.29.19", {"ca": True}), "check_basic_constraints", "cA must be False"),
        (
            _set_extension("2.5.29.15", {"digital_signature", "key_cert_sign"}),
            "check_key_usage",
            "differs",
        ),
        (_set_extension("2.5.29.37", ["server_auth"]), "check_extended_key_usage", "differs"),
        (_add_extension, "check_extension_set", "extra ['1.3.6.1.4.1.32473.99']"),
    ],
)
def test_each_certificate_check_refuses_by_name(
    edit: Callable[[asn1crypto.x509.Certificate], None], check: str, message: str
) -> None:
    request = _request()
    tampered = _tampered(_built(request), edit)
    with pytest.raises(CheckRefused) as info:
        run_certificate_checks(request, tampered)
    assert (info.value.check, info.value.code) == (check, "certificate_check_failed")
    assert info.value.message.startswith(f"certificate check {check} failed: ")
    assert message in info.value.message


def test_certificate_checks_see_key_serial_and_validity() -> None:
    request = _request()
    built = _built(request)
    other_key = ec.generate_private_key(ec.SECP256R1()).public_key()
    with pytest.raises(CheckRefused, match="check_public_key_matches"):
        run_certificate_checks(dataclasses.replace(request, public_key=other_key), built)
    with pytest.raises(CheckRefused, match="check_serial_number_encoding"):
        run_certificate_checks(dataclasses.replace(request, serial_number=5), built)
    short = _make_ca(START - dt.timedelta(days=1), 7300, 100)
    with pytest.raises(CheckFailed, match="notAfter is after the issuer's notAfter"):
        checks.check_validity_inside_issuer(
            dataclasses.replace(request, issuer=short.issuer),
            BuiltCertificate.from_certificate(built),
        )


# --------------------------------------------------------------------------- past 2049


def test_validity_crossing_2050_uses_generalized_time() -> None:
    ca = _make_ca(dt.datetime(2040, 1, 1, tzinfo=dt.UTC), 40 * 365, 30 * 365)
    request = _request(
        issuer=ca.issuer,
        not_valid_before=dt.datetime(2049, 6, 1, 12, 0, 0, tzinfo=dt.UTC),
    )
    certificate = sign_certificate(
        build_certificate(
            request.profile,
            subject=request.subject,
            public_key=request.public_key,
            serial_number=request.serial_number,
            not_valid_before=request.not_valid_before,
            issuer=ca.issuer,
            urls=URLS,
            subject_alt_names=request.subject_alt_names,
        ),
        ca.issuer_key,
    )
    run_certificate_checks(request, certificate)
    der = certificate.public_bytes(serialization.Encoding.DER)
    validity = asn1crypto.x509.Certificate.load(der)["tbs_certificate"]["validity"]
    assert (validity["not_before"].name, validity["not_before"].chosen.tag) == (
        "utc_time",
        UTC_TIME_TAG & 0x1F,
    )
    assert (validity["not_after"].name, validity["not_after"].chosen.tag) == (
        "general_time",
        GENERALIZED_TIME_TAG & 0x1F,
    )
    assert validity["not_before"].chosen.dump()[0] == UTC_TIME_TAG
    assert validity["not_after"].chosen.dump()[0] == GENERALIZED_TIME_TAG
    assert validity["not_after"].chosen.contents == b"20510601115959Z"
    assert certificate.not_valid_after_utc == dt.datetime(2051, 6, 1, 11, 59, 59, tzinfo=dt.UTC)
    findings = [
        f for f in lint.blocking(lint.lint_certificate(der)) if not lint.is_known_false_positive(f)
    ]
    assert findings == []


# --------------------------------------------------------------------------- issue_certificate


@pytest.fixture
def db_signer(tmp_path: Path, database_url: str) -> Iterator[DbSigner]:
    engine = create_db_engine(database_url)
    sessions = create_session_factory(engine)
    keystore = FileKeyStore(tmp_path / "keys", b"pipeline-test")
    config = CAConfig(urls=URLS)
    with sessions() as session:
        initialise_hierarchy(session, keystore, config, now=START)
        signer = load_signer(session, keystore)
    yield sessions, keystore, config, signer
    engine.dispose()


def _issue(
    session: Session, signer: Signer, config: CAConfig, **kwargs: object
) -> tuple[CertificateRecord, x509.Certificate]:
    return issue_certificate(
        session,
        signer,
        configured_profiles(config)["client"],
        subject=SUBJECT,
        public_key=leaf_key().public_key(),
        now=START,
        config=config,
        subject_alt_names=("https://id.ehrca.example/hcp/HCP-7K3Q9M2T/sl/3",),
        **kwargs,  # type: ignore[arg-type]
    )


def test_issue_certificate_records_then_signs(
    db_signer: DbSigner,
) -> None:
    sessions, _keystore, config, signer = db_signer
    with sessions() as session:
        record, certificate = _issue(session, signer, config, linter=lint.check_certificate)
        assert record.status is CertificateStatus.ISSUED
        assert record.tbs_certificate_der == certificate.tbs_certificate_bytes
        assert record.profile == "client"
        # 159 random bits (ca.serials): positive, at most 20 octets, at least 64 bits.
        assert 2**64 <= certificate.serial_number <= 2**159 - 1
        assert record.serial_number == format(certificate.serial_number, "040x")
        assert certificate.issuer.public_bytes() == signer.certificate.subject.public_bytes()
        assert stale_reservations(session, before=START + dt.timedelta(days=1)) == []


def test_lint_error_blocks_issuance_with_an_audit_entry(
    db_signer: DbSigner,
) -> None:
    """A real pkilint ERROR: a ``urn:`` URI in subjectAltName is refused by pkilint's
    URI check (``pkix.invalid_uri_syntax``, see ca.lint); nothing is reserved."""
    sessions, _keystore, config, signer = db_signer
    with sessions() as session:
        before = session.scalars(select(CertificateRecord.id)).all()
        with pytest.raises(LintRefused) as info:
            issue_certificate(
                session,
                signer,
                configured_profiles(config)["client"],
                subject=SUBJECT,
                public_key=leaf_key().public_key(),
                now=START,
                config=config,
                subject_alt_names=("urn:ehrca:hcp:HCP-7K3Q9M2T:3",),
                linter=lint.check_certificate,
                actor="HCP-7K3Q9M2T",
            )
        assert info.value.code == "certificate_lint_failed"
        assert any("pkix.invalid_uri_syntax (ERROR)" in f for f in info.value.findings)
        assert session.scalars(select(CertificateRecord.id)).all() == before
    with sessions() as session:
        event = session.scalars(
            select(AuditEvent).where(AuditEvent.event_type == "certificate.refused")
        ).one()
        assert event.actor == "HCP-7K3Q9M2T"
        assert '"stage":"lint"' in event.details and "pkix.invalid_uri_syntax" in event.details
        assert '"code":"certificate_lint_failed"' in event.details
        assert verify_chain(session).ok


def test_crash_between_signing_and_storing_leaves_a_revocable_reservation(
    db_signer: DbSigner, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ca import service
    from revocation.service import crl_entries, revoke_certificate

    sessions, _keystore, config, signer = db_signer

    def crash(builder: x509.CertificateBuilder, key: object) -> x509.Certificate:
        raise RuntimeError("power cut")

    monkeypatch.setattr(service, "sign_reserved_certificate", crash)
    with sessions() as session, pytest.raises(RuntimeError, match="power cut"):
        _issue(session, signer, config)
    with sessions() as session:
        (stale,) = stale_reservations(session, before=START + dt.timedelta(minutes=5))
        assert stale.status is CertificateStatus.RESERVED and stale.certificate_der is None
        tbs = asn1crypto.x509.TbsCertificate.load(stale.tbs_certificate_der)
        assert format(tbs["serial_number"].native, "040x") == stale.serial_number
        result = revoke_certificate(
            session,
            serial_hex=stale.serial_number,
            reason=x509.ReasonFlags.superseded,
            actor="sam",
            actor_role="security_officer",
            now=START + dt.timedelta(minutes=10),
        )
        assert result.certificate.status is CertificateStatus.REVOKED
        entries = crl_entries(session, signer.authority.id)
        assert [e.serial_number for e in entries] == [int(stale.serial_number, 16)]


def test_a_revocation_between_reserve_and_sign_is_not_undone_by_the_store(
    db_signer: DbSigner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bulk revocation (the provider withdraws) marks the reserved row ``revoked``
    after the reservation committed and before the signature: the store step keeps
    ``revoked`` and still stores the signed DER."""
    from ca import service
    from revocation.service import crl_entries, revoke_provider_certificates

    sessions, _keystore, config, signer = db_signer
    sign = service.sign_reserved_certificate
    revoked_at = START + dt.timedelta(seconds=1)

    def revoke_then_sign(builder: x509.CertificateBuilder, key: object) -> x509.Certificate:
        with sessions() as other:
            (reserved,) = other.scalars(
                select(CertificateRecord).where(
                    CertificateRecord.provider_reference == "HCP-7K3Q9M2T"
                )
            ).all()
            assert reserved.status is CertificateStatus.RESERVED
            result = revoke_provider_certificates(
                other,
                "HCP-7K3Q9M2T",
                x509.ReasonFlags.cessation_of_operation,
                actor="system",
                now=revoked_at,
            )
            assert [r.serial_number for r in result.revocations] == [reserved.serial_number]
        return sign(builder, key)  # type: ignore[arg-type]

    monkeypatch.setattr(service, "sign_reserved_certificate", revoke_then_sign)
    with sessions() as session:
        record, certificate = _issue(
            session, signer, config, provider_reference="HCP-7K3Q9M2T", service_location_id=3
        )
        der = certificate.public_bytes(serialization.Encoding.DER)
        assert (record.status, record.certificate_der, record.issued_at) == (
            CertificateStatus.REVOKED,
            der,
            START,
        )
    with sessions() as session:
        stored = session.scalars(
            select(CertificateRecord).where(CertificateRecord.id == record.id)
        ).one()
        assert stored.status is CertificateStatus.REVOKED
        assert stored.certificate_der == der
        assert stored.serial_number == format(certificate.serial_number, "040x")
        assert [e.serial_number for e in crl_entries(session, signer.authority.id)] == [
            certificate.serial_number
        ]
        assert stale_reservations(session, before=START + dt.timedelta(days=1)) == []


def test_issuance_before_the_issuer_starts_is_refused(db_signer: DbSigner) -> None:
    """``now`` one second before the issuing CA's notBefore: the named request check
    refuses, nothing is reserved or signed, and the refusal is audited."""
    sessions, _keystore, config, signer = db_signer
    issuer_start = signer.certificate.not_valid_before_utc
    assert issuer_start == START
    with sessions() as session:
        with pytest.raises(CheckRefused) as info:
            issue_certificate(
                session,
                signer,
                configured_profiles(config)["client"],
                subject=SUBJECT,
                public_key=leaf_key().public_key(),
                now=issuer_start - dt.timedelta(seconds=1),
                config=config,
                actor="HCP-7K3Q9M2T",
            )
        assert info.value.code == "certificate_request_refused"
        assert info.value.check == "check_issuer_valid_at_start"
        assert info.value.message == (
            "request check check_issuer_valid_at_start failed: the issuer certificate is "
            "not valid before 2026-11-29 09:00:00+00:00"
        )
        assert (
            session.scalars(
                select(CertificateRecord.id).where(CertificateRecord.profile == "client")
            ).all()
            == []
        )
    with sessions() as session:
        event = session.scalars(
            select(AuditEvent).where(AuditEvent.event_type == "certificate.refused")
        ).one()
        assert event.actor == "HCP-7K3Q9M2T"
        assert '"check":"check_issuer_valid_at_start"' in event.details


# --------------------------------------------------------------------------- round trips


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    offset=st.integers(min_value=0, max_value=3640 * 86400),
    days=st.integers(min_value=1, max_value=3650),
    key_type=st.sampled_from([KeyType.EC_P256, KeyType.EC_P384, KeyType.RSA_2048]),
)
def test_pipeline_round_trip(offset: int, days: int, key_type: KeyType) -> None:
    """request checks → build → certificate checks → DER → load gives the same fields,
    validity inside the issuer's, whatever the start and lifetime."""
    ca = pipeline_ca()
    start = START + dt.timedelta(seconds=offset)
    request = _request(
        profile=client_profile(dt.timedelta(days=days), policy_oid=POLICY, ocsp=True),
        public_key=_keys()[key_type],
        not_valid_before=start,
        serial_number=2**64 + offset,
    )
    run_request_checks(request)
    certificate = _built(request)
    run_certificate_checks(request, certificate)
    loaded = x509.load_der_x509_certificate(certificate.public_bytes(serialization.Encoding.DER))
    assert loaded.subject == SUBJECT and loaded.serial_number == 2**64 + offset
    assert loaded.public_key() == request.public_key
    assert loaded.issuer.public_bytes() == ca.issuer.certificate.subject.public_bytes()
    issuer_end = ca.issuer.certificate.not_valid_after_utc
    assert ca.issuer.certificate.not_valid_before_utc <= loaded.not_valid_before_utc
    assert loaded.not_valid_after_utc == min(
        start.replace(microsecond=0) + dt.timedelta(days=days, seconds=-1), issuer_end
    )
    built = BuiltCertificate.from_certificate(loaded)
    assert built.tbs["validity"]["not_after"].name == "utc_time"


@functools.cache
def _keys() -> dict[KeyType, object]:
    return {
        KeyType.EC_P256: ec.generate_private_key(ec.SECP256R1()).public_key(),
        KeyType.EC_P384: ec.generate_private_key(ec.SECP384R1()).public_key(),
        KeyType.RSA_2048: rsa.generate_private_key(65537, 2048).public_key(),
    }


# --------------------------------------------------------------------------- the DER walk


def test_tbs_fields_match_asn1crypto() -> None:
    """``TBSFields`` (the strict DER walk the encoding checks read) finds the same
    encoded fields as asn1crypto's full parse of the same certificate."""
    request = _request()
    certificate = _built(request)
    fields = checks.TBSFields.parse(certificate.tbs_certificate_bytes)
    tbs = asn1crypto.x509.Certificate.load(certificate.public_bytes(serialization.Encoding.DER))[
        "tbs_certificate"
    ]
    assert fields.issuer == tbs["issuer"].dump()
    assert fields.serial_contents == tbs["serial_number"].contents
    assert fields.spki == tbs["subject_public_key_info"].dump()
    assert fields.public_key_bits == tbs["subject_public_key_info"]["public_key"].contents
    assert fields.times == (
        (0x17, tbs["validity"]["not_before"].contents),
        (0x17, tbs["validity"]["not_after"].contents),
    )
    assert fields.subject_values == tuple(
        (atv["type"].dotted, atv["value"].dump()[0]) for rdn in tbs["subject"].chosen for atv in rdn
    )


def test_tbs_walk_refuses_what_is_not_der() -> None:
    certificate = _built(_request())
    tbs = certificate.tbs_certificate_bytes
    assert tbs[1] == 0x82  # a long-form length of two octets
    # The same length in three octets (leading zero): BER, not DER (X.690 10.1).
    padded = tbs[:1] + b"\x83\x00" + tbs[2:]
    with pytest.raises(CheckFailed, match="non-DER length"):
        checks.TBSFields.parse(padded)
    with pytest.raises(CheckFailed, match="truncated"):
        checks.TBSFields.parse(tbs[:-1])
    with pytest.raises(CheckFailed, match="one DER SEQUENCE"):
        checks.TBSFields.parse(tbs + b"\x05\x00")


def test_time_year_and_oid_text() -> None:
    assert checks._time_year(0x17, b"491231235959Z") == 2049
    assert checks._time_year(0x17, b"500101000000Z") == 1950
    assert checks._time_year(0x18, b"20500101000000Z") == 2050
    with pytest.raises(CheckFailed, match="Zulu"):
        checks._time_year(0x17, b"4912312359Z")
    with pytest.raises(CheckFailed, match="Zulu"):
        checks._time_year(0x18, b"20500101000000+0000")
    assert checks._dotted(bytes.fromhex("550406")) == "2.5.4.6"
    assert checks._dotted(bytes.fromhex("2a864886f70d010901")) == "1.2.840.113549.1.9.1"
    assert checks._dotted(bytes.fromhex("2b0601040181fd5963")) == "1.3.6.1.4.1.32473.99"
