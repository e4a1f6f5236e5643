"""Helpers for the revocation tests: issue client certificates straight through the CA
pipeline (fast, no application flow), build OCSP requests, run the HTTP API on a real
uvicorn server on a free 127.0.0.1 port."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp

from api.app import create_app
from api.services import Services
from ca.models import CARole, CertificateRecord
from ca.profiles import client_profile, client_subject
from ca.service import get_authority, issue_certificate, load_signer
from revocation.ocsp import issuer_key_bits, issuer_name_der

HOST = "127.0.0.1"
TIMEOUT = 5.0  # seconds, for every wait on a server or a subprocess


@dataclass(frozen=True)
class Issued:
    """A client certificate issued for a test, with its key."""

    record: CertificateRecord
    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def serial_hex(self) -> str:
        return self.record.serial_number

    @property
    def pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)


def issue_client(
    services: Services,
    *,
    reference: str = "HCP-TEST0001",
    location_id: int | None = 1,
    number: int = 1,
) -> Issued:
    """Issue a secure connection certificate for ``reference``/location through
    ``ca.service.issue_certificate`` (the profile and OCSP pointer issuance uses)."""
    config = services.ca_config
    key = ec.generate_private_key(ec.SECP256R1())
    with services.sessions() as session:
        signer = load_signer(session, services.keystore)
        record, certificate = issue_certificate(
            session,
            signer,
            client_profile(
                config.client_validity, policy_oid=config.certificate_policy_oid, ocsp=True
            ),
            subject=client_subject(
                provider_name_en="Test Clinic",
                provider_name_zh=None,
                location_name_en=f"Location {number}",
                location_name_zh=None,
                location_identifier=f"{reference}-L{number}",
            ),
            public_key=key.public_key(),
            now=services.clock(),
            config=config,
            subject_alt_names=(f"{config.identity_base_uri}/hcp/{reference}/sl/{number}",),
            provider_reference=reference,
            service_location_id=location_id,
        )
    return Issued(record, certificate, key)


def issuing_certificate(services: Services) -> x509.Certificate:
    with services.sessions() as session:
        return x509.load_der_x509_certificate(
            get_authority(session, CARole.ISSUING).certificate_der
        )


def root_certificate(services: Services) -> x509.Certificate:
    with services.sessions() as session:
        return x509.load_der_x509_certificate(get_authority(session, CARole.ROOT).certificate_der)


def ocsp_request(
    certificate: x509.Certificate,
    issuer: x509.Certificate,
    *,
    nonce: bytes | None = None,
    algorithm: hashes.HashAlgorithm | None = None,
) -> bytes:
    """A DER OCSP request for ``certificate`` (SHA-1 CertID unless ``algorithm``)."""
    builder = ocsp.OCSPRequestBuilder().add_certificate(
        certificate,
        issuer,
        algorithm or hashes.SHA1(),  # noqa: S303 - CertID hash, as OpenSSL sends
    )
    if nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    return builder.build().public_bytes(serialization.Encoding.DER)


def ocsp_request_for_serial(
    serial_number: int, issuer: x509.Certificate, *, nonce: bytes | None = None
) -> bytes:
    """A DER OCSP request for ``serial_number`` under ``issuer`` (SHA-1 CertID)."""
    builder = ocsp.OCSPRequestBuilder().add_certificate_by_hash(
        _sha1(issuer_name_der(issuer)),
        _sha1(issuer_key_bits(issuer)),
        serial_number,
        hashes.SHA1(),  # noqa: S303
    )
    if nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    return builder.build().public_bytes(serialization.Encoding.DER)


def _sha1(data: bytes) -> bytes:
    digest = hashes.Hash(hashes.SHA1())  # noqa: S303
    digest.update(data)
    return digest.finalize()


def write_pems(tmp: Path, **certificates: x509.Certificate) -> dict[str, Path]:
    """Write each certificate to ``tmp/<name>.pem``; returns the paths by name."""
    paths = {}
    for name, certificate in certificates.items():
        path = tmp / f"{name}.pem"
        path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        paths[name] = path
    return paths


@contextlib.contextmanager
def running_http(services: Services) -> Iterator[int]:
    """Run the HTTP API on a real uvicorn server in a thread on a free 127.0.0.1 port;
    yields the port and stops the server after (bounded by :data:`TIMEOUT`)."""
    server = uvicorn.Server(
        uvicorn.Config(create_app(services), host=HOST, port=0, log_config=None, lifespan="off")
    )

    def run() -> None:
        with asyncio.Runner() as runner:
            runner.run(server.serve())

    thread = threading.Thread(target=run, name="http-api", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + TIMEOUT
        while not server.started and thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert server.started, "the HTTP API did not start"
        port: int = server.servers[0].sockets[0].getsockname()[1]
        yield port
    finally:
        server.should_exit = True
        thread.join(TIMEOUT)
        assert not thread.is_alive(), "the HTTP API did not stop"
