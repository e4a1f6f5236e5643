"""Both PKCS#12 profiles opened by four independent consumers, with the algorithms each
one reports, and the other download formats (PEM chain, PKCS#7 ``.p7c``).

Consumers and what each is asked (RFC 7292; modern = PBES2/PBKDF2-HMAC-SHA256/
AES-256-CBC with an HMAC-SHA256 MAC, legacy = pbeWithSHAAnd3-KeyTripleDES-CBC with a
SHA-1 MAC):

- OpenSSL 3 ``openssl pkcs12 -info`` (``-legacy`` for the legacy profile): MAC, the
  certificate bag's and the key bag's encryption; ``-nocerts -nodes`` decrypts the key;
- Java ``keytool`` with ``-J-Djava.security.debug=pkcs12``: ``-list`` (bag encryption
  and integrity algorithm) and ``-importkeystore`` (decrypts the key into a new store);
- NSS ``pk12util -l`` (key bag encryption) and ``pk12util -i`` into a fresh database;
- GnuTLS ``certtool --p12-info`` (MAC, both bags).

A tool that is missing skips its test outside CI and fails it in CI (``.ci/run``
installs openssl, openjdk-17-jre-headless, libnss3-tools and gnutls-bin).
"""

from __future__ import annotations

import datetime as dt
import functools
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient

from api.services import Services
from ca.config import PkiUrls
from ca.profiles import (
    Issuer,
    build_certificate,
    ca_subject,
    client_profile,
    client_subject,
    issuing_ca_profile,
    root_profile,
    sign_certificate,
)
from issuance.pkcs12 import PKCS12Profile, serialize_pkcs12
from tests.helpers import approved_application, collect_with_csr, make_csr

pytestmark = pytest.mark.interop

PASSWORD = "clinic-password-2026"
FRIENDLY_NAME = "Tsim Sha Tsui Clinic"
URLS = PkiUrls("http://127.0.0.1:8000")
START = dt.datetime(2026, 11, 29, 9, 0, 0, tzinfo=dt.UTC)


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (.ci/run installs it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def _run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(args), capture_output=True, text=True, check=False, cwd=cwd, timeout=60
    )


@functools.cache
def bundle() -> tuple[
    ec.EllipticCurvePrivateKey, x509.Certificate, x509.Certificate, x509.Certificate
]:
    """``(key, leaf, issuing, root)`` of a small test hierarchy."""
    root_key = ec.generate_private_key(ec.SECP384R1())
    root = sign_certificate(
        build_certificate(
            root_profile(dt.timedelta(days=7300)),
            subject=ca_subject("eHR Secure Connection", "PKCS12 Test Root"),
            public_key=root_key.public_key(),
            serial_number=11,
            not_valid_before=START,
            issuer=None,
            urls=URLS,
        ),
        root_key,
    )
    issuing_key = ec.generate_private_key(ec.SECP256R1())
    issuing = sign_certificate(
        build_certificate(
            issuing_ca_profile(dt.timedelta(days=3650)),
            subject=ca_subject("eHR Secure Connection", "PKCS12 Test Issuing"),
            public_key=issuing_key.public_key(),
            serial_number=12,
            not_valid_before=START,
            issuer=Issuer(root, "root"),
            urls=URLS,
        ),
        root_key,
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = sign_certificate(
        build_certificate(
            client_profile(dt.timedelta(days=730), policy_oid="1.3.6.1.4.1.32473.1.1"),
            subject=client_subject(
                provider_name_en="Dr Chan Tai Man Clinic",
                provider_name_zh="陳大文醫生醫務所",
                location_name_en=FRIENDLY_NAME,
                location_name_zh="尖沙咀診所",
                location_identifier="HCP-7K3Q9M2T-L1",
            ),
            public_key=key.public_key(),
            serial_number=13,
            not_valid_before=START,
            issuer=Issuer(issuing, "issuing"),
            urls=URLS,
            subject_alt_names=("https://id.ehrca.example/hcp/HCP-7K3Q9M2T/sl/1",),
        ),
        issuing_key,
    )
    return key, leaf, issuing, root


@pytest.fixture(params=[p.value for p in PKCS12Profile])
def p12(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, Path]:
    key, leaf, issuing, root = bundle()
    path = tmp_path / f"{request.param}.p12"
    path.write_bytes(
        serialize_pkcs12(
            friendly_name=FRIENDLY_NAME,
            private_key=key,
            certificate=leaf,
            ca_certificates=[issuing, root],
            password=PASSWORD,
            profile=PKCS12Profile(request.param),
        )
    )
    return request.param, path


#: What each consumer reports, per profile (the closing note of issue 5 quotes these).
OPENSSL = {
    "modern": [
        "MAC: sha256, Iteration 2048",
        "PKCS7 Encrypted data: PBES2, PBKDF2, AES-256-CBC, Iteration 100000, PRF hmacWithSHA256",
        "Shrouded Keybag: PBES2, PBKDF2, AES-256-CBC, Iteration 100000, PRF hmacWithSHA256",
    ],
    "legacy": [
        "MAC: sha1, Iteration 2048",
        "PKCS7 Encrypted data: pbeWithSHA1And3-KeyTripleDES-CBC, Iteration 2048",
        "Shrouded Keybag: pbeWithSHA1And3-KeyTripleDES-CBC, Iteration 2048",
    ],
}
KEYTOOL = {
    "modern": [
        "Loading PKCS#7 encryptedData (PBEWithHmacSHA256AndAES_256 iterations: 100000)",
        "Checking keystore integrity (HmacPBESHA256 iterations: 2048)",
        "Retrieved a protected private key at alias 'tsim sha tsui clinic' "
        "(PBEWithHmacSHA256AndAES_256 iterations: 100000)",
    ],
    "legacy": [
        "Loading PKCS#7 encryptedData (PBEWithSHA1AndDESede iterations: 2048)",
        "Checking keystore integrity (HmacPBESHA1 iterations: 2048)",
        "Retrieved a protected private key at alias 'tsim sha tsui clinic' "
        "(PBEWithSHA1AndDESede iterations: 2048)",
    ],
}
PK12UTIL = {
    "modern": [
        "Encryption algorithm: PKCS #5 Password Based Encryption v2",
        "KDF: PKCS #5 Password Based Key Dervive Function v2",  # sic, NSS's spelling
        "Cipher: AES-256-CBC",
    ],
    "legacy": ["Encryption algorithm: PKCS #12 V2 PBE With SHA-1 And 3KEY Triple DES-CBC"],
}
CERTTOOL = {
    "modern": [
        "MAC: SHA256 (2.16.840.1.101.3.4.2.1)",
        "Schema: PBES2-AES256-CBC (2.16.840.1.101.3.4.1.42)",
        "Iteration count: 100000",
    ],
    "legacy": [
        "MAC: SHA1 (1.3.14.3.2.26)",
        "Schema: PKCS12-3DES-SHA1 (1.2.840.113549.1.12.1.3)",
        "Iteration count: 2048",
    ],
}


def test_openssl(p12: tuple[str, Path]) -> None:
    profile, path = p12
    openssl = _tool("openssl")
    legacy = ["-legacy"] if profile == "legacy" else []
    info = _run(
        openssl,
        "pkcs12",
        "-in",
        str(path),
        "-passin",
        f"pass:{PASSWORD}",
        "-info",
        "-noout",
        *legacy,
    )
    assert info.returncode == 0, info.stderr
    report = info.stdout + info.stderr
    for line in OPENSSL[profile]:
        assert line in report, report
    assert report.count("Certificate bag") == 3
    key = _run(
        openssl,
        "pkcs12",
        "-in",
        str(path),
        "-passin",
        f"pass:{PASSWORD}",
        "-nocerts",
        "-nodes",
        *legacy,
    )
    assert key.returncode == 0, key.stderr
    loaded = serialization.load_pem_private_key(key.stdout.encode(), password=None)
    assert loaded.public_key() == bundle()[0].public_key()
    assert f"friendlyName: {FRIENDLY_NAME}" in key.stdout
    wrong = _run(
        openssl, "pkcs12", "-in", str(path), "-passin", "pass:wrong-password-1", "-noout", *legacy
    )
    assert wrong.returncode != 0 and "Mac verify error: invalid password?" in wrong.stderr


def test_keytool(p12: tuple[str, Path], tmp_path: Path) -> None:
    """``-importkeystore`` loads the file (bag encryption, MAC) and decrypts the key into
    a new store: one JVM start does both (``-list`` is in tests/api/test_story.py)."""
    profile, path = p12
    keytool = _tool("keytool")
    copy = _run(
        keytool, "-J-Djava.security.debug=pkcs12", "-importkeystore", "-noprompt",
        "-srcstoretype", "PKCS12", "-srckeystore", str(path), "-srcstorepass", PASSWORD,
        "-deststoretype", "PKCS12", "-destkeystore", str(tmp_path / "copy.p12"),
        "-deststorepass", "another-password-2026",
    )  # fmt: skip
    report = copy.stdout + copy.stderr
    assert copy.returncode == 0, report
    assert "1 entries successfully imported, 0 entries failed or cancelled" in report
    assert "Retrieved a 3-certificate chain at alias 'tsim sha tsui clinic'" in report
    assert "private key count: 1. secret key count: 0. certificate count: 3" in report
    for line in KEYTOOL[profile]:
        assert line in report, report


def test_pk12util(p12: tuple[str, Path], tmp_path: Path) -> None:
    profile, path = p12
    pk12util = _tool("pk12util")
    certutil = _tool("certutil")
    listing = _run(pk12util, "-l", str(path), "-W", PASSWORD)
    assert listing.returncode == 0, listing.stdout + listing.stderr
    assert listing.stdout.count("Certificate") >= 3 and "Key(shrouded):" in listing.stdout
    assert f"Friendly Name: {FRIENDLY_NAME}" in listing.stdout
    for line in PK12UTIL[profile]:
        assert line in listing.stdout, listing.stdout
    database = tmp_path / "nssdb"
    database.mkdir()
    assert _run(certutil, "-N", "-d", f"sql:{database}", "--empty-password").returncode == 0
    imported = _run(pk12util, "-i", str(path), "-d", f"sql:{database}", "-W", PASSWORD, "-K", "")
    assert imported.returncode == 0, imported.stdout + imported.stderr
    assert "PKCS12 IMPORT SUCCESSFUL" in imported.stdout + imported.stderr
    keys = _run(certutil, "-K", "-d", f"sql:{database}")
    assert "ec       " in keys.stdout and FRIENDLY_NAME in keys.stdout, keys.stdout + keys.stderr
    certs = _run(certutil, "-L", "-d", f"sql:{database}")
    assert f"{FRIENDLY_NAME}" in certs.stdout and "u,u,u" in certs.stdout
    wrong = _run(pk12util, "-l", str(path), "-W", "wrong-password-1")
    assert wrong.returncode != 0 and "SEC_ERROR_BAD_PASSWORD" in wrong.stderr


def test_certtool(p12: tuple[str, Path]) -> None:
    profile, path = p12
    certtool = _tool("certtool")
    info = _run(certtool, "--p12-info", "--inder", "--infile", str(path), "--password", PASSWORD)
    assert info.returncode == 0, info.stdout + info.stderr
    for line in CERTTOOL[profile]:
        assert line in info.stdout, info.stdout
    assert info.stdout.count("Type: Certificate") == 3
    assert info.stdout.count(f"Friendly name: {FRIENDLY_NAME}") == 2  # certificate and key bags
    assert "Type: PKCS #8 Encrypted key" in info.stdout
    wrong = _run(
        certtool, "--p12-info", "--inder", "--infile", str(path), "--password", "wrong-password-1"
    )
    assert wrong.returncode != 0
    assert "The Message Authentication Code verification failed" in wrong.stderr


# --------------------------------------------------------------------------- other formats


def _der(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.DER)


def test_pem_der_chain_and_p7c_downloads(
    client: TestClient, services: Services, samples: list[dict[str, Any]], tmp_path: Path
) -> None:
    reference, token, codes = approved_application(client, services, samples[0])
    body = collect_with_csr(client, reference, token, 1, codes[1], make_csr()[1])
    serial = body["serial_number"]
    leaf = x509.load_pem_x509_certificate(body["certificate_pem"].encode())
    issuing, root = x509.load_pem_x509_certificates(body["chain_pem"].encode())
    url = f"/api/v1/certificates/{serial}"

    pem = client.get(url)
    assert (pem.status_code, pem.headers["content-type"]) == (200, "application/x-pem-file")
    assert pem.text == body["certificate_pem"]
    der = client.get(f"{url}?format=der")
    assert der.headers["content-type"] == "application/pkix-cert"
    assert der.content == leaf.public_bytes(serialization.Encoding.DER)
    chain = client.get(f"{url}?format=chain")
    assert chain.headers["content-type"] == "application/x-pem-file"
    assert x509.load_pem_x509_certificates(chain.content) == [leaf, issuing, root]
    assert chain.text == body["certificate_pem"] + body["chain_pem"]
    p7c = client.get(f"{url}?format=p7c")
    assert p7c.status_code == 200
    assert p7c.headers["content-type"] == "application/pkcs7-mime; smime-type=certs-only"
    from cryptography.hazmat.primitives.serialization import pkcs7

    # A SET OF in DER is sorted by encoding, so the order is not the chain order.
    assert sorted(pkcs7.load_der_pkcs7_certificates(p7c.content), key=_der) == sorted(
        [leaf, issuing, root], key=_der
    )
    path = tmp_path / "bundle.p7c"
    path.write_bytes(p7c.content)
    printed = _run(
        _tool("openssl"), "pkcs7", "-inform", "DER", "-in", str(path), "-print_certs", "-noout"
    )
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout.count("subject=") == 3
    assert "subject=C = HK, O = Dr Chan Tai Man Clinic" in printed.stdout
    assert (
        "subject=C = HK, O = eHR Secure Connection, CN = eHR Secure Connection Root CA 1"
        in printed.stdout
    )
    bad = client.get(f"{url}?format=pfx")
    assert (bad.status_code, bad.json()["code"]) == (422, "invalid_request")
    missing = client.get(f"/api/v1/certificates/{'0' * 39}1?format=p7c")
    assert missing.status_code == 404
