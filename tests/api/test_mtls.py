"""The mTLS listener end to end: the real app behind the real TLS layer.

The listener is built as ``api/server.py`` builds it: ``create_mtls_app(services)``
behind :func:`api.tls.build_uvicorn_server`, an :class:`api.tls.SSLContextHolder`
over :func:`api.server.build_mtls_context`, and a CRL listener that swaps a fresh
context into the holder. It runs in a thread with its own asyncio loop on an
ephemeral 127.0.0.1 port. Certificates are collected through the HTTP API (one
from a CSR, one as PKCS#12), and the clients are plain Python ``ssl`` sockets and
:mod:`http.client`.

Two layers refuse a client, and the tests tell them apart:

* the TLS layer (a handshake alert): no certificate, a foreign CA, TLS 1.2, and a
  certificate on the CRL of the context current at the handshake;
* the app (HTTP 403 problem+json): a certificate the database does not know, one
  revoked after its connection was opened (keep-alive), one expired per the app
  clock, one marked revoked in the in-memory revocation status.

In TLS 1.3 the client completes its side of the handshake before the server has
checked the client certificate (RFC 8446 §4.4.2.4), so a refusal reaches the
client as an alert on its first read; :func:`_refusal` therefore reads.

The ``clock`` fixture is overridden here to start at the real time (a minute
back): OpenSSL checks certificate and CRL validity against the real time, so
the app clock and the real clock must agree for the TLS layer to accept.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import http.client
import json
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from fastapi.testclient import TestClient
from sqlalchemy import select

from api.app import create_mtls_app
from api.server import build_mtls_context
from api.services import Services
from api.tls import SSLContextHolder, build_uvicorn_server
from ca.models import CARole, CertificateRecord, CertificateStatus
from ca.service import get_authority
from tests.conftest import FrozenClock
from tests.helpers import (
    APPLICANT_PASSWORD,
    approved_application,
    bearer,
    collect_with_csr,
    make_csr,
    officer_token,
)

TIMEOUT = 5.0  # seconds, for every socket operation and wait
HOST = "127.0.0.1"
HTTP_VARIANTS = [pytest.param("h11", id="h11"), pytest.param("httptools", id="httptools")]
WHOAMI_KEYS = {
    "provider_reference",
    "service_location",
    "service_location_name",
    "serial_number",
    "subject",
    "not_valid_after",
}


@pytest.fixture
def clock() -> FrozenClock:
    """The app clock, starting a minute before the real time (see the module docstring)."""
    return FrozenClock(dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(minutes=1))


# ----------------------------------------------------------------------------- listener


def _context(services: Services) -> ssl.SSLContext:
    """``build_mtls_context`` with its real type (it is annotated as ``object``)."""
    context = build_mtls_context(services)
    assert isinstance(context, ssl.SSLContext)
    return context


@dataclasses.dataclass(frozen=True)
class Listener:
    """A running mTLS listener: its port and the holder whose context it uses."""

    port: int
    holder: SSLContextHolder


@contextlib.contextmanager
def running_listener(
    services: Services, http: Literal["h11", "httptools"] = "h11"
) -> Iterator[Listener]:
    """Run the mTLS listener as ``api.server.serve`` wires it, in a thread; stop it after."""
    holder = SSLContextHolder(_context(services))

    def swap_context() -> None:
        holder.swap(_context(services))

    services.crl_listeners.append(swap_context)
    server = build_uvicorn_server(
        create_mtls_app(services),
        host=HOST,
        port=0,
        holder=holder,
        http=http,
        lifespan="off",
        log_config=None,
        timeout_keep_alive=60,  # the keep-alive test must not race the idle timeout
    )

    def run() -> None:
        with asyncio.Runner() as runner:
            runner.run(server.serve())

    thread = threading.Thread(target=run, name=f"mtls-{http}", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + TIMEOUT
        while not server.started and thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert server.started, "the mTLS listener did not start"
        address, port = server.servers[0].sockets[0].getsockname()[:2]
        assert address == HOST
        yield Listener(port=port, holder=holder)
    finally:
        server.should_exit = True
        thread.join(TIMEOUT)
        services.crl_listeners.remove(swap_context)
        assert not thread.is_alive(), "the mTLS listener did not stop"


@pytest.fixture
def listener(request: pytest.FixtureRequest, services: Services) -> Iterator[Listener]:
    """The mTLS listener over the test's services; ``h11`` unless parametrized."""
    http: Literal["h11", "httptools"] = getattr(request, "param", "h11")
    with running_listener(services, http) as running:
        yield running


# ----------------------------------------------------------------------------- clients


@dataclasses.dataclass(frozen=True)
class ClientCertificate:
    """A certificate with the files a client context loads and the whoami it should get."""

    certificate: x509.Certificate
    chain_path: Path
    key_path: Path
    root_pem: str
    expected: dict[str, Any]

    @property
    def serial_hex(self) -> str:
        return format(self.certificate.serial_number, "040x")

    def context(self, *, maximum_version: ssl.TLSVersion | None = None) -> ssl.SSLContext:
        """A client context presenting this certificate and trusting only the root CA."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        if maximum_version is not None:
            context.maximum_version = maximum_version
        context.load_verify_locations(cadata=self.root_pem)
        context.load_cert_chain(self.chain_path, self.key_path)
        return context


def _pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: Any) -> bytes:
    pem: bytes = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return pem


def _client_files(
    directory: Path,
    name: str,
    certificate: x509.Certificate,
    chain: list[x509.Certificate],
    key: Any,
) -> tuple[Path, Path]:
    """Write ``certificate`` + ``chain`` and the key as PEM files for ``load_cert_chain``."""
    chain_path = directory / f"{name}.chain.pem"
    key_path = directory / f"{name}.key.pem"
    chain_path.write_bytes(b"".join(_pem(c) for c in (certificate, *chain)))
    key_path.write_bytes(_key_pem(key))
    key_path.chmod(0o600)
    return chain_path, key_path


def _expected(
    certificate: x509.Certificate, reference: str, number: int, name: str
) -> dict[str, Any]:
    return {
        "provider_reference": reference,
        "service_location": number,
        "service_location_name": name,
        "serial_number": format(certificate.serial_number, "040x"),
        "subject": certificate.subject.rfc4514_string(),
        "not_valid_after": certificate.not_valid_after_utc.isoformat(),
    }


@dataclasses.dataclass(frozen=True)
class Collected:
    """Two certificates of one provider, collected through the API."""

    reference: str
    by_csr: ClientCertificate  # location 1
    by_pkcs12: ClientCertificate  # location 2


@pytest.fixture
def collected(
    client: TestClient, services: Services, samples: list[dict[str, Any]], tmp_path: Path
) -> Collected:
    """Apply, approve and collect: location 1 from a CSR, location 2 as PKCS#12."""
    sample = samples[1]  # Harbour Family Medicine Group: three service locations
    names = [location["name_en"] for location in sample["service_locations"]]
    reference, token, codes = approved_application(client, services, sample)

    key, csr = make_csr()
    body = collect_with_csr(client, reference, token, 1, codes[1], csr)
    certificate = x509.load_pem_x509_certificate(body["certificate_pem"].encode())
    issuing, root = x509.load_pem_x509_certificates(body["chain_pem"].encode())
    chain_path, key_path = _client_files(tmp_path, "csr", certificate, [issuing], key)
    by_csr = ClientCertificate(
        certificate,
        chain_path,
        key_path,
        _pem(root).decode(),
        _expected(certificate, reference, 1, names[0]),
    )

    response = client.post(
        f"/api/v1/applications/{reference}/service-locations/2/certificate",
        json={"download_code": codes[2], "pkcs12_password": APPLICANT_PASSWORD},
        headers=bearer(token),
    )
    assert response.status_code == 201, response.text
    parsed = pkcs12.load_pkcs12(response.content, APPLICANT_PASSWORD.encode())
    assert parsed.cert is not None and parsed.key is not None
    p12_issuing, p12_root = (c.certificate for c in parsed.additional_certs)
    assert (p12_issuing, p12_root) == (issuing, root)
    certificate = parsed.cert.certificate
    chain_path, key_path = _client_files(tmp_path, "p12", certificate, [issuing], parsed.key)
    by_pkcs12 = ClientCertificate(
        certificate,
        chain_path,
        key_path,
        _pem(root).decode(),
        _expected(certificate, reference, 2, names[1]),
    )
    assert by_csr.serial_hex != by_pkcs12.serial_hex
    return Collected(reference, by_csr, by_pkcs12)


@dataclasses.dataclass(frozen=True)
class Reply:
    status: int
    content_type: str
    body: dict[str, Any]


def _read(connection: http.client.HTTPSConnection, path: str = "/mtls/whoami") -> Reply:
    """One GET on ``connection`` (which may already be open)."""
    connection.request("GET", path)
    response = connection.getresponse()
    body = json.loads(response.read())
    assert isinstance(body, dict)
    return Reply(response.status, response.getheader("content-type", ""), body)


def _get(port: int, context: ssl.SSLContext, path: str = "/mtls/whoami") -> Reply:
    """One GET on a new TLS connection."""
    connection = http.client.HTTPSConnection(HOST, port, timeout=TIMEOUT, context=context)
    try:
        return _read(connection, path)
    finally:
        connection.close()


def _refusal(port: int, context: ssl.SSLContext) -> ssl.SSLError:
    """Connect and read; return the TLS error the client gets (the test fails if none)."""
    with (
        socket.create_connection((HOST, port), timeout=TIMEOUT) as raw,
        pytest.raises(ssl.SSLError) as refused,
        context.wrap_socket(raw, server_hostname=HOST, suppress_ragged_eofs=False) as tls,
    ):
        tls.recv(1)
    return refused.value


def _assert_refused(reply: Reply, code: str) -> None:
    assert reply.status == 403, reply
    assert reply.content_type == "application/problem+json"
    assert reply.body["code"] == code, reply.body
    assert reply.body["status"] == 403


def _bare_context(root_pem: str) -> ssl.SSLContext:
    """A client context that trusts the root CA and presents no certificate."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(cadata=root_pem)
    return context


# ----------------------------------------------------------------------------- (a), (b), (c)


@pytest.mark.parametrize("listener", HTTP_VARIANTS, indirect=True)
def test_whoami_then_revocation_refuses_new_handshakes_and_open_connections(
    listener: Listener, collected: Collected, client: TestClient, services: Services
) -> None:
    """One story per HTTP protocol: (a) whoami names each certificate; a revocation
    through the API then (b) refuses new handshakes with it, without a restart, and
    (c) makes the app refuse the next request on a connection opened before."""
    # (a) exactly the six fields, for the CSR and the PKCS#12 certificate.
    for certificate in (collected.by_csr, collected.by_pkcs12):
        reply = _get(listener.port, certificate.context())
        assert reply.status == 200, reply
        assert reply.content_type == "application/json"
        assert set(reply.body) == WHOAMI_KEYS
        assert reply.body == certificate.expected
    assert collected.by_csr.expected["service_location_name"] == "Central Clinic"
    assert collected.by_pkcs12.expected["service_location_name"] == "Sham Shui Po Clinic"

    revoked, other = collected.by_csr, collected.by_pkcs12
    context_before = listener.holder.current

    # (c) a keep-alive connection, opened and used before the revocation.
    keep_alive = http.client.HTTPSConnection(
        HOST, listener.port, timeout=TIMEOUT, context=revoked.context()
    )
    try:
        keep_alive.connect()
        keep_alive.auto_open = 0  # never reconnect silently: a closed socket would raise
        first = _read(keep_alive)
        assert first.status == 200 and first.body == revoked.expected
        socket_before = keep_alive.sock
        assert socket_before is not None
        local_address = socket_before.getsockname()

        security = officer_token(client, services, "sec-mtls", "security_officer")
        response = client.post(
            f"/api/v1/officer/certificates/{revoked.serial_hex}/revoke",
            json={"reason": "keyCompromise"},
            headers=bearer(security),
        )
        assert response.status_code == 200, response.text
        assert response.json()["crl_number"] is not None

        # The CRL listener swapped a fresh context into the running listener.
        assert listener.holder.current is not context_before

        # (b) a new connection with the revoked certificate fails at the handshake ...
        error = _refusal(listener.port, revoked.context())
        assert error.reason == "SSLV3_ALERT_CERTIFICATE_REVOKED", error
        # ... while the other certificate keeps working, without a restart.
        assert _get(listener.port, other.context()).body == other.expected

        # (c) the open connection is refused by the app, on the same socket.
        second = _read(keep_alive)
        assert keep_alive.sock is socket_before
        assert socket_before.getsockname() == local_address
        _assert_refused(second, "client_certificate_revoked")
    finally:
        keep_alive.close()


# ----------------------------------------------------------------------------- (d)


def _forge(
    services: Services,
    template: x509.Certificate,
    *,
    serial_number: int,
    now: dt.datetime,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A client certificate signed with the issuing CA's real key, never recorded."""
    with services.sessions() as session:
        authority = get_authority(session, CARole.ISSUING)
        key_ref = authority.key_ref
        issuing = x509.load_der_x509_certificate(authority.certificate_der)
    issuing_key = services.keystore.load_key(key_ref)
    assert isinstance(issuing_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(template.subject)
        .issuer_name(issuing.subject)
        .public_key(key.public_key())
        .serial_number(serial_number)
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
    )
    for extension in template.extensions:
        if isinstance(extension.value, x509.SubjectKeyIdentifier):
            builder = builder.add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
        else:
            builder = builder.add_extension(extension.value, critical=extension.critical)
    certificate = builder.sign(issuing_key, hashes.SHA256())
    assert (
        certificate.extensions.get_extension_for_class(
            x509.AuthorityKeyIdentifier
        ).value.key_identifier
        == issuing.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    )
    certificate.verify_directly_issued_by(issuing)
    return certificate, key


def test_certificate_signed_by_the_ca_but_not_recorded_is_unknown(
    listener: Listener, collected: Collected, services: Services, tmp_path: Path
) -> None:
    genuine = collected.by_csr
    now = dt.datetime.now(dt.UTC)
    issuing = x509.load_pem_x509_certificates(genuine.chain_path.read_bytes())[1]
    cases = {
        # A fresh serial: no row at all.
        "fresh-serial": x509.random_serial_number(),
        # The serial of a recorded certificate, but other bytes (another key).
        "copied-serial": genuine.certificate.serial_number,
    }
    for name, serial_number in cases.items():
        forged, key = _forge(services, genuine.certificate, serial_number=serial_number, now=now)
        chain_path, key_path = _client_files(tmp_path, name, forged, [issuing], key)
        impostor = dataclasses.replace(
            genuine, certificate=forged, chain_path=chain_path, key_path=key_path
        )
        # The TLS layer accepts it (right CA, not on the CRL); the app does not.
        _assert_refused(_get(listener.port, impostor.context()), "client_certificate_unknown")
    # The genuine certificate is unaffected.
    assert _get(listener.port, genuine.context()).body == genuine.expected


# ----------------------------------------------------------------------------- (e)


def _foreign_client(directory: Path, now: dt.datetime, subject: x509.Name) -> tuple[Path, Path]:
    """A self-made CA and a client certificate for ``subject`` under it (PEM chain, key)."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Foreign CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return _client_files(directory, "foreign", leaf, [ca], key)


def test_handshake_refuses_foreign_ca_no_certificate_and_tls12(
    listener: Listener, collected: Collected, tmp_path: Path
) -> None:
    genuine = collected.by_csr
    now = dt.datetime.now(dt.UTC)

    # The subject of a genuine certificate, from a CA the listener does not trust.
    chain_path, key_path = _foreign_client(tmp_path, now, genuine.certificate.subject)
    foreign = _bare_context(genuine.root_pem)
    foreign.load_cert_chain(chain_path, key_path)
    assert _refusal(listener.port, foreign).reason == "TLSV1_ALERT_UNKNOWN_CA"

    no_certificate = _bare_context(genuine.root_pem)
    assert _refusal(listener.port, no_certificate).reason == "TLSV13_ALERT_CERTIFICATE_REQUIRED"

    # A valid certificate over TLS 1.2 (the listener is TLS 1.3 only).
    tls12 = genuine.context(maximum_version=ssl.TLSVersion.TLSv1_2)
    assert _refusal(listener.port, tls12).reason == "TLSV1_ALERT_PROTOCOL_VERSION"
    assert _get(listener.port, genuine.context()).body == genuine.expected


# ----------------------------------------------------------------------------- (f)


def test_certificate_expired_per_app_clock_is_refused(
    listener: Listener, collected: Collected, clock: FrozenClock
) -> None:
    certificate = collected.by_csr
    assert _get(listener.port, certificate.context()).status == 200
    clock.now = certificate.certificate.not_valid_after_utc  # the last valid second
    assert _get(listener.port, certificate.context()).status == 200
    clock.advance(seconds=1)
    # The TLS layer (real time) accepts the handshake; the app clock says expired.
    _assert_refused(_get(listener.port, certificate.context()), "client_certificate_expired")


# ----------------------------------------------------------------------------- (g)


def test_revocation_status_cache_alone_refuses(
    listener: Listener, collected: Collected, services: Services
) -> None:
    revoked, other = collected.by_csr, collected.by_pkcs12
    assert _get(listener.port, revoked.context()).status == 200
    with services.sessions() as session:
        issuer_id = get_authority(session, CARole.ISSUING).id
    services.revocation_status.mark_revoked(issuer_id, revoked.serial_hex)

    _assert_refused(_get(listener.port, revoked.context()), "client_certificate_revoked")
    assert _get(listener.port, other.context()).body == other.expected
    # Only the cache knows: the database still has the certificate as issued.
    with services.sessions() as session:
        status = session.scalars(
            select(CertificateRecord.status).where(
                CertificateRecord.serial_number == revoked.serial_hex
            )
        ).one()
    assert status is CertificateStatus.ISSUED


# ----------------------------------------------------------------------------- (h) caches


def _revoke_row_only(services: Services, serial_hex: str) -> None:
    """Mark the row revoked behind every cache's back (no ``revocations`` row, no
    ``mark_revoked``): what only a per-request read of the row can see."""
    with services.sessions() as session:
        record = session.scalars(
            select(CertificateRecord).where(CertificateRecord.serial_number == serial_hex)
        ).one()
        record.status = CertificateStatus.REVOKED
        session.commit()


def test_identity_is_cached_and_the_row_is_reread_while_the_status_is_not_current(
    listener: Listener, collected: Collected, services: Services
) -> None:
    """Without a running status sync (``revocation_status_current`` false, the
    default) the row is re-read per request: a revocation the status cache never heard
    of still refuses the next request on an open keep-alive connection."""
    certificate = collected.by_csr
    assert services.revocation_status_current() is False
    keep_alive = http.client.HTTPSConnection(
        HOST, listener.port, timeout=TIMEOUT, context=certificate.context()
    )
    try:
        keep_alive.connect()
        keep_alive.auto_open = 0
        assert _read(keep_alive).body == certificate.expected
        assert _read(keep_alive).body == certificate.expected  # from the identity cache
        _revoke_row_only(services, certificate.serial_hex)
        _assert_refused(_read(keep_alive), "client_certificate_revoked")
    finally:
        keep_alive.close()
    # A new connection: the handshake passes (no CRL entry), the app refuses.
    _assert_refused(_get(listener.port, certificate.context()), "client_certificate_revoked")


def test_identity_cache_with_a_current_status_refuses_on_the_status_cache(
    listener: Listener, collected: Collected, services: Services
) -> None:
    """With the status cache current, the cached identity is checked against it only:
    a revocation it learns of (``mark_revoked``, as after the commit of a revocation, or
    a refresh) refuses the next request on an open connection; a row changed behind its
    back is not read (that is what ``revocation_status_current`` vouches against)."""
    certificate, other = collected.by_csr, collected.by_pkcs12
    services.revocation_status_current = lambda: True
    keep_alive = http.client.HTTPSConnection(
        HOST, listener.port, timeout=TIMEOUT, context=certificate.context()
    )
    try:
        keep_alive.connect()
        keep_alive.auto_open = 0
        assert _read(keep_alive).body == certificate.expected
        _revoke_row_only(services, certificate.serial_hex)
        assert _read(keep_alive).body == certificate.expected  # cached, status trusted
        with services.sessions() as session:
            issuer_id = get_authority(session, CARole.ISSUING).id
        services.revocation_status.mark_revoked(issuer_id, certificate.serial_hex)
        _assert_refused(_read(keep_alive), "client_certificate_revoked")
    finally:
        keep_alive.close()
    assert _get(listener.port, other.context()).body == other.expected


def test_a_certificate_revoked_before_its_first_request_is_not_cached(
    listener: Listener, collected: Collected, services: Services
) -> None:
    certificate = collected.by_csr
    services.revocation_status_current = lambda: True
    _revoke_row_only(services, certificate.serial_hex)
    for _ in range(2):  # refused from the row on each miss, never cached
        _assert_refused(_get(listener.port, certificate.context()), "client_certificate_revoked")


def test_client_identity_cache_is_a_bounded_lru(collected: Collected) -> None:
    from api.routes.mtls import ClientIdentity, ClientIdentityCache, WhoAmI

    def identity(n: int) -> ClientIdentity:
        when = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
        return ClientIdentity(
            n,
            1,
            f"{n:040x}",
            when,
            when,
            WhoAmI(
                provider_reference=None,
                service_location=None,
                service_location_name=None,
                serial_number=f"{n:040x}",
                subject="CN=x",
                not_valid_after=when.isoformat(),
            ),
        )

    a, b = collected.by_csr.certificate, collected.by_pkcs12.certificate
    cache = ClientIdentityCache(maxsize=1)
    assert cache.get(a) is None
    cache.put(a, identity(1))
    assert cache.get(a) == identity(1)
    cache.put(b, identity(2))
    assert len(cache) == 1
    assert cache.get(a) is None
    assert cache.get(b) == identity(2)
    with pytest.raises(ValueError, match="maxsize must be at least 1, got 0"):
        ClientIdentityCache(maxsize=0)


def test_client_certificate_from_scope_parses_a_pem_once(collected: Collected) -> None:
    from api.tls import client_certificate_from_scope

    pem = collected.by_csr.certificate.public_bytes(serialization.Encoding.PEM).decode()
    pem_copy = "".join(list(pem))  # an equal string, not the same object

    def scope(leaf: object) -> dict[str, Any]:
        return {"extensions": {"tls": {"client_cert_chain": [leaf], "client_cert_error": None}}}

    first = client_certificate_from_scope(scope(pem))
    assert first == collected.by_csr.certificate
    assert client_certificate_from_scope(scope(pem_copy)) is first
    with pytest.raises(ValueError, match="must be a PEM string"):
        client_certificate_from_scope(scope(b"bytes"))
    with pytest.raises(ValueError, match="must be ASCII PEM"):
        client_certificate_from_scope(scope("é"))


def test_peer_description_is_cached_by_der(collected: Collected) -> None:
    from api.tls import _peer_description

    certificate = collected.by_csr.certificate
    der = certificate.public_bytes(serialization.Encoding.DER)
    pem, name = _peer_description(der)
    assert pem == certificate.public_bytes(serialization.Encoding.PEM).decode()
    assert name == certificate.subject.rfc4514_string()
    assert _peer_description(bytes(bytearray(der)))[0] is pem
