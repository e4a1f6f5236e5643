"""The limit: what cryptography alone does in one thread on this machine.

- ``limit.ecdsa_p256_sign_per_s`` and ``limit.rsa2048_sign_per_s``: signatures/s;
- ``limit.csr_to_cert_per_s``: in-process CSR parse + signature check + certificate
  build (the client profile) + ECDSA P-256 sign, per second — what every lint-off
  issuance figure is a ratio against;
- ``limit.lint_client_cert_per_s``: pkilint over the client certificate alone, and
  ``limit.csr_to_cert_lint_per_s``: the two together, the lint-on baseline.

Run: ``.venv/bin/python bench/limits.py`` (about 30 s).
"""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from bench.common import Figure, print_figures, rate, repeat, summarise, this_command, write_results
from ca import lint
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
from ca.serials import generate_serial_number

RUNS = 5
SECONDS = 1.0


def measure() -> list[Figure]:
    """Run every limit measurement; return the figures."""
    now = dt.datetime.now(dt.UTC)
    urls = PkiUrls("http://127.0.0.1:8000")
    root_key = ec.generate_private_key(ec.SECP384R1())
    root = sign_certificate(
        build_certificate(
            root_profile(dt.timedelta(days=3650)),
            subject=ca_subject("B", "Root"),
            public_key=root_key.public_key(),
            serial_number=generate_serial_number(),
            not_valid_before=now,
            issuer=None,
            urls=urls,
        ),
        root_key,
    )
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = sign_certificate(
        build_certificate(
            issuing_ca_profile(dt.timedelta(days=3000)),
            subject=ca_subject("B", "Issuing"),
            public_key=ca_key.public_key(),
            serial_number=generate_serial_number(),
            not_valid_before=now,
            issuer=Issuer(root, "root"),
            urls=urls,
        ),
        root_key,
    )
    issuer = Issuer(ca_cert, "issuing")
    rsa_key = rsa.generate_private_key(65537, 2048)
    data = b"x" * 512
    client_key = ec.generate_private_key(ec.SECP256R1())
    csr_pem = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "bench")]))
        .sign(client_key, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
    )
    subject = client_subject(
        provider_name_en="Harbour Family Medicine Group Limited",
        provider_name_zh="海港家庭醫學集團有限公司",
        location_name_en="Tuen Mun Clinic",
        location_name_zh="屯門𨋢口診所",
        location_identifier="HCP-7K3Q9M2T-L3",
    )
    profile = client_profile(dt.timedelta(days=730), policy_oid="1.3.6.1.4.1.32473.1.1")

    def csr_to_cert() -> None:
        csr = x509.load_pem_x509_csr(csr_pem)
        assert csr.is_signature_valid
        sign_certificate(
            build_certificate(
                profile,
                subject=subject,
                public_key=csr.public_key(),  # type: ignore[arg-type]
                serial_number=generate_serial_number(),
                not_valid_before=now,
                issuer=issuer,
                urls=urls,
                subject_alt_names=("https://id.ehrca.example/hcp/HCP-7K3Q9M2T/sl/3",),
            ),
            ca_key,
        )

    draft_der = sign_certificate(
        build_certificate(
            profile,
            subject=subject,
            public_key=client_key.public_key(),
            serial_number=generate_serial_number(),
            not_valid_before=now,
            issuer=issuer,
            urls=urls,
            subject_alt_names=("https://id.ehrca.example/hcp/HCP-7K3Q9M2T/sl/3",),
        ),
        ca_key,
    ).public_bytes(serialization.Encoding.DER)
    lint.check_certificate(draft_der)  # pkilint warms its caches on the first document

    def csr_to_cert_lint() -> None:
        csr_to_cert()
        lint.check_certificate(draft_der)

    command = this_command()
    return [
        summarise(
            "limit.ecdsa_p256_sign_per_s",
            repeat(
                lambda: rate(lambda: ca_key.sign(data, ec.ECDSA(hashes.SHA256())), seconds=SECONDS),
                RUNS,
            ),
            "signatures/s",
            command,
        ),
        summarise(
            "limit.rsa2048_sign_per_s",
            repeat(
                lambda: rate(
                    lambda: rsa_key.sign(data, padding.PKCS1v15(), hashes.SHA256()), seconds=SECONDS
                ),
                RUNS,
            ),
            "signatures/s",
            command,
        ),
        summarise(
            "limit.csr_to_cert_per_s",
            repeat(lambda: rate(csr_to_cert, seconds=SECONDS), RUNS),
            "certificates/s",
            command,
        ),
        summarise(
            "limit.lint_client_cert_per_s",
            repeat(lambda: rate(lambda: lint.check_certificate(draft_der), seconds=SECONDS), RUNS),
            "certificates/s",
            command,
            "pkilint (ca.lint.check_certificate) alone",
        ),
        summarise(
            "limit.csr_to_cert_lint_per_s",
            repeat(lambda: rate(csr_to_cert_lint, seconds=SECONDS), RUNS),
            "certificates/s",
            command,
            "limit.csr_to_cert_per_s plus pkilint of the certificate: the lint-on baseline",
        ),
    ]


if __name__ == "__main__":
    figures = measure()
    print_figures(figures)
    write_results(figures)
