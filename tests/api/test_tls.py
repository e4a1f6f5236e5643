"""Tests for api.tls: the mTLS listener's TLS layer against a real uvicorn listener.

A small EC hierarchy is built here (P-384 root, P-256 issuing CA with pathlen
0, a server certificate for 127.0.0.1 and localhost, two clients, and a foreign
CA with a client that copies client 1's subject). The listener runs in a
thread on an ephemeral 127.0.0.1 port, once per HTTP protocol (h11, httptools)
and once on uvloop, and clients are plain Python ``ssl`` sockets or httpx.

In TLS 1.3 the client finishes its side of the handshake before the server has
checked the client certificate (RFC 8446 §4.4.2.4): a refusal reaches the
client as an alert on its first read, so the refusal helper reads instead of
sending a request. Contexts are also exercised without sockets through memory
BIOs, for properties the listener cannot show (e.g. that a session ticket
would be detected).
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import ipaddress
import json
import logging
import os
import signal
import socket
import ssl
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, MutableMapping
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from api.tls import (
    SSLContextHolder,
    TLSH11Protocol,
    TLSHttpToolsProtocol,
    build_server_ssl_context,
    build_uvicorn_server,
    client_certificate_from_scope,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
NOW = dt.datetime.now(dt.UTC)
TIMEOUT = 5.0  # seconds, for every socket and wait

# ----------------------------------------------------------------------------- PKI


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "DE"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ehrca test"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _certificate(
    subject: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Certificate | None,
    issuer_key: ec.EllipticCurvePrivateKey | None,
    *,
    path_length: int | None = None,
    ca: bool,
    extra: tuple[x509.ExtensionType, ...] = (),
) -> x509.Certificate:
    signer = issuer_key or key
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(hours=1))
        .not_valid_after(NOW + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=path_length), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=not ca,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=ca,
                crl_sign=ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()), critical=False
        )
    )
    for extension in extra:
        builder = builder.add_extension(extension, critical=False)
    algorithm = hashes.SHA384() if signer.curve.key_size == 384 else hashes.SHA256()
    return builder.sign(signer, algorithm)


@dataclasses.dataclass(frozen=True)
class Party:
    """A certificate with its key and the PEM files a client context loads."""

    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey
    chain_path: Path
    key_path: Path

    def client_context(self, trust: PKI, **versions: ssl.TLSVersion) -> ssl.SSLContext:
        """A client context presenting this party's certificate, trusting the test root."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        for attribute, version in versions.items():
            setattr(context, attribute, version)
        context.load_verify_locations(cadata=_pem(trust.root).decode("ascii"))
        context.load_cert_chain(self.chain_path, self.key_path)
        return context


@dataclasses.dataclass(frozen=True)
class PKI:
    root: x509.Certificate
    root_key: ec.EllipticCurvePrivateKey
    issuing: x509.Certificate
    issuing_key: ec.EllipticCurvePrivateKey
    server: x509.Certificate
    server_key: ec.EllipticCurvePrivateKey
    client1: Party
    client2: Party
    foreign_client: Party

    @property
    def server_chain_pem(self) -> bytes:
        return _pem(self.server) + _pem(self.issuing)

    @property
    def client_ca_pem(self) -> bytes:
        return _pem(self.root) + _pem(self.issuing)

    def crl(
        self,
        *,
        issuing: bool = True,
        revoked: tuple[x509.Certificate, ...] = (),
        expired: bool = False,
    ) -> bytes:
        """A DER CRL of the issuing CA (or the root), optionally revoking or expired."""
        issuer, key = (self.issuing, self.issuing_key) if issuing else (self.root, self.root_key)
        this_update = NOW - (dt.timedelta(hours=2) if expired else dt.timedelta(minutes=5))
        next_update = NOW - dt.timedelta(minutes=1) if expired else NOW + dt.timedelta(hours=1)
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(issuer.subject)
            .last_update(this_update)
            .next_update(next_update)
            .add_extension(x509.CRLNumber(1), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()),
                critical=False,
            )
        )
        for certificate in revoked:
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder()
                .serial_number(certificate.serial_number)
                .revocation_date(NOW - dt.timedelta(minutes=1))
                .build()
            )
        return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)

    def context(self, *crl_ders: bytes) -> ssl.SSLContext:
        """A listener context; by default with current, empty root and issuing CRLs."""
        return build_server_ssl_context(
            certificate_chain_pem=self.server_chain_pem,
            private_key=self.server_key,
            client_ca_pem=self.client_ca_pem,
            crl_ders=crl_ders or (self.crl(issuing=False), self.crl()),
        )


def _pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def _party(
    directory: Path,
    label: str,
    subject: x509.Name,
    issuer: x509.Certificate,
    issuer_key: ec.EllipticCurvePrivateKey,
    extra: tuple[x509.ExtensionType, ...],
) -> Party:
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = _certificate(subject, key, issuer, issuer_key, ca=False, extra=extra)
    chain_path = directory / f"{label}.pem"
    key_path = directory / f"{label}.key"
    chain_path.write_bytes(_pem(certificate) + _pem(issuer))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return Party(certificate, key, chain_path, key_path)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    directory = tmp_path_factory.mktemp("pki")
    client_auth = (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]),)
    root_key = ec.generate_private_key(ec.SECP384R1())
    root = _certificate(_name("Test Root CA"), root_key, None, None, ca=True)
    issuing_key = ec.generate_private_key(ec.SECP256R1())
    issuing = _certificate(
        _name("Test Issuing CA"), issuing_key, root, root_key, ca=True, path_length=0
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = _certificate(
        _name("mtls.test"),
        server_key,
        issuing,
        issuing_key,
        ca=False,
        extra=(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
        ),
    )
    foreign_key = ec.generate_private_key(ec.SECP256R1())
    foreign_root = _certificate(_name("Test Root CA"), foreign_key, None, None, ca=True)
    client1_subject = _name("Praxis Beispiel, Standort 1")
    return PKI(
        root=root,
        root_key=root_key,
        issuing=issuing,
        issuing_key=issuing_key,
        server=server,
        server_key=server_key,
        client1=_party(directory, "client1", client1_subject, issuing, issuing_key, client_auth),
        client2=_party(
            directory,
            "client2",
            _name("Praxis Beispiel, Standort 2"),
            issuing,
            issuing_key,
            client_auth,
        ),
        foreign_client=_party(
            directory, "foreign", client1_subject, foreign_root, foreign_key, client_auth
        ),
    )


# ----------------------------------------------------------------------------- listener


async def whoami_app(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
    """Answers with what the TLS extension says about the client."""
    assert scope["type"] == "http"
    certificate = client_certificate_from_scope(scope)
    body = json.dumps(
        {
            "subject": certificate.subject.rfc4514_string() if certificate else None,
            "tls": scope.get("extensions", {}).get("tls"),
            "client_port": scope["client"][1],
        }
    ).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class HandshakeErrors(logging.Handler):
    """Collects the server-side TLS errors that the loop logs in debug mode.

    The server's reason for a refusal (e.g. ``certificate revoked``) is exact on
    this side, whatever reaches the client. asyncio logs one failure up to twice
    (the SSL protocol, then the accept path), possibly after the client has
    already seen the alert, with the same exception object; :meth:`next_error`
    therefore skips errors it has handed out before.
    """

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self._errors: list[ssl.SSLError] = []
        self._returned: list[ssl.SSLError] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info and isinstance(record.exc_info[1], ssl.SSLError):
            self._errors.append(record.exc_info[1])

    def next_error(self) -> ssl.SSLError:
        """Wait (bounded) for a handshake error not returned before, and return it."""
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            for error in list(self._errors):
                if not any(error is returned for returned in self._returned):
                    self._returned.append(error)
                    return error
            time.sleep(0.005)
        raise AssertionError("the server logged no handshake error")


@dataclasses.dataclass
class Listener:
    holder: SSLContextHolder
    initial: ssl.SSLContext
    port: int
    address: str
    handshake_errors: HandshakeErrors
    sends_alerts: bool


LISTENER_VARIANTS = [
    pytest.param(("h11", "asyncio"), id="h11"),
    pytest.param(("httptools", "asyncio"), id="httptools"),
    pytest.param(("h11", "uvloop"), id="h11-uvloop"),
]


@pytest.fixture(scope="module", params=LISTENER_VARIANTS)
def listener(request: pytest.FixtureRequest, pki: PKI) -> Iterator[Listener]:
    http, loop = request.param
    loop_factory: Callable[[], asyncio.AbstractEventLoop] = asyncio.new_event_loop
    if loop == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        loop_factory = uvloop.new_event_loop
    initial = pki.context()
    holder = SSLContextHolder(initial)
    server = build_uvicorn_server(
        whoami_app,
        host="127.0.0.1",
        port=0,
        holder=holder,
        http=http,
        lifespan="off",
        log_config=None,
    )

    def run() -> None:
        with asyncio.Runner(loop_factory=loop_factory, debug=True) as runner:
            runner.run(server.serve())

    handshake_errors = HandshakeErrors()
    asyncio_logger = logging.getLogger("asyncio")
    asyncio_logger.addHandler(handshake_errors)
    level = asyncio_logger.level
    asyncio_logger.setLevel(logging.DEBUG)

    thread = threading.Thread(target=run, name=f"mtls-{http}-{loop}", daemon=True)
    thread.start()
    deadline = time.monotonic() + TIMEOUT
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.started, "the listener did not start"
    address, port = server.servers[0].sockets[0].getsockname()[:2]
    try:
        yield Listener(holder, initial, port, address, handshake_errors, loop == "asyncio")
    finally:
        server.should_exit = True
        thread.join(TIMEOUT)
        asyncio_logger.removeHandler(handshake_errors)
        asyncio_logger.setLevel(level)
        assert not thread.is_alive(), "the listener did not stop"


@pytest.fixture
def fresh_listener(listener: Listener) -> Iterator[Listener]:
    """The listener, with its initial context restored after the test."""
    try:
        yield listener
    finally:
        listener.holder.swap(listener.initial)


@dataclasses.dataclass(frozen=True)
class Response:
    body: dict[str, Any]
    session: ssl.SSLSession | None
    session_reused: bool | None


def _get(port: int, context: ssl.SSLContext, session: ssl.SSLSession | None = None) -> Response:
    """One GET / on a new connection to 127.0.0.1 (no SNI: Python sends none for an IP)."""
    with (
        socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1", session=session) as tls,
    ):
        tls.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        data = b""
        for _ in range(1000):
            chunk = tls.recv(65536)
            if not chunk:
                break
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 "), head
        return Response(json.loads(body), tls.session, tls.session_reused)


def _refusal(listener: Listener, context: ssl.SSLContext, alert: str) -> ssl.SSLError:
    """Connect and read; check what the client gets; return the server's handshake error.

    On asyncio the client must get the TLS ``alert`` (``ssl.SSLError.reason``,
    e.g. ``SSLV3_ALERT_CERTIFICATE_REVOKED``), which api.tls makes asyncio send
    (CPython gh-98078). uvloop closes without the alert: the client sees an
    unexpected EOF (``ssl.SSLEOFError``).
    """
    with (
        socket.create_connection(("127.0.0.1", listener.port), timeout=TIMEOUT) as raw,
        pytest.raises(ssl.SSLError) as refused,
        context.wrap_socket(raw, server_hostname="127.0.0.1", suppress_ragged_eofs=False) as tls,
    ):
        tls.recv(1)
    if listener.sends_alerts:
        assert refused.value.reason == alert, refused.value
    else:
        assert isinstance(refused.value, ssl.SSLEOFError), refused.value
    return listener.handshake_errors.next_error()


# ----------------------------------------------------------------------------- listener tests


def test_listener_binds_the_given_host_only(listener: Listener) -> None:
    assert listener.address == "127.0.0.1"


def test_client_subject_reaches_the_app(listener: Listener, pki: PKI) -> None:
    """(a), (g): the exact subject, on every request of a keep-alive connection."""
    context = pki.client1.client_context(pki)
    with httpx.Client(verify=context, timeout=TIMEOUT) as client:
        first = client.get(f"https://127.0.0.1:{listener.port}/").json()
        second = client.get(f"https://127.0.0.1:{listener.port}/").json()
    assert first["client_port"] == second["client_port"]  # one connection
    expected = pki.client1.certificate.subject.rfc4514_string()
    for body in (first, second):
        assert body["subject"] == expected
        tls = body["tls"]
        assert tls["client_cert_name"] == expected
        assert tls["client_cert_chain"] == [_pem(pki.client1.certificate).decode("ascii")]
        assert tls["client_cert_error"] is None
        assert tls["server_cert"] is None
        assert tls["tls_version"] == 0x0304
        assert tls["cipher_suite"] in {0x1301, 0x1302, 0x1303}


def test_second_client_is_told_apart(listener: Listener, pki: PKI) -> None:
    body = _get(listener.port, pki.client2.client_context(pki)).body
    assert body["subject"] == pki.client2.certificate.subject.rfc4514_string()


def test_client_without_certificate_is_refused(listener: Listener, pki: PKI) -> None:
    """(b)"""
    context = ssl.create_default_context(cadata=_pem(pki.root).decode("ascii"))
    error = _refusal(listener, context, "TLSV13_ALERT_CERTIFICATE_REQUIRED")
    assert error.reason == "PEER_DID_NOT_RETURN_A_CERTIFICATE"


def test_tls12_client_is_refused(listener: Listener, pki: PKI) -> None:
    """(c): the server answers a TLS 1.2 ClientHello with protocol_version."""
    context = pki.client1.client_context(pki, maximum_version=ssl.TLSVersion.TLSv1_2)
    error = _refusal(listener, context, "TLSV1_ALERT_PROTOCOL_VERSION")
    assert error.reason == "UNSUPPORTED_PROTOCOL"


def test_client_from_foreign_ca_is_refused(listener: Listener, pki: PKI) -> None:
    """(d): same subject as client 1, but issued by a CA the listener does not trust."""
    error = _refusal(listener, pki.foreign_client.client_context(pki), "TLSV1_ALERT_UNKNOWN_CA")
    assert isinstance(error, ssl.SSLCertVerificationError)
    assert error.verify_message == "self-signed certificate in certificate chain"


def test_swapped_crl_refuses_revoked_client(fresh_listener: Listener, pki: PKI) -> None:
    """(e): new CRL, no restart: client 1 refused on a new connection, client 2 served.

    A keep-alive connection of client 1 opened before the swap is still served:
    the TLS layer checks only at the handshake, so the app must check per request.
    """
    port = fresh_listener.port
    with httpx.Client(verify=pki.client1.client_context(pki), timeout=TIMEOUT) as kept_alive:
        before = kept_alive.get(f"https://127.0.0.1:{port}/").json()
        fresh_listener.holder.swap(
            pki.context(pki.crl(issuing=False), pki.crl(revoked=(pki.client1.certificate,)))
        )
        error = _refusal(
            fresh_listener, pki.client1.client_context(pki), "SSLV3_ALERT_CERTIFICATE_REVOKED"
        )
        assert isinstance(error, ssl.SSLCertVerificationError)
        assert error.verify_message == "certificate revoked"
        body = _get(port, pki.client2.client_context(pki)).body
        assert body["subject"] == pki.client2.certificate.subject.rfc4514_string()
        after = kept_alive.get(f"https://127.0.0.1:{port}/").json()
    assert after["client_port"] == before["client_port"]
    assert after["subject"] == pki.client1.certificate.subject.rfc4514_string()


def test_expired_crl_refuses_every_client(fresh_listener: Listener, pki: PKI) -> None:
    """(f): an issuing-CA CRL past its nextUpdate fails closed."""
    fresh_listener.holder.swap(pki.context(pki.crl(issuing=False), pki.crl(expired=True)))
    for party in (pki.client1, pki.client2):
        error = _refusal(
            fresh_listener, party.client_context(pki), "SSLV3_ALERT_CERTIFICATE_EXPIRED"
        )
        assert isinstance(error, ssl.SSLCertVerificationError)
        assert error.verify_message == "CRL has expired"


def test_no_session_ticket_no_resumption(listener: Listener, pki: PKI) -> None:
    """(h): no NewSessionTicket arrives, so a second connection cannot resume."""
    context = pki.client1.client_context(pki)
    first = _get(listener.port, context)
    assert first.session is not None
    assert not first.session.has_ticket
    second = _get(listener.port, context, session=first.session)
    assert second.session_reused is False
    stats = listener.holder.outer.session_stats()
    assert stats["number"] == 0
    assert stats["hits"] == 0


# ----------------------------------------------------------------------------- memory-BIO tests


def _handshake(
    server_context: ssl.SSLContext,
    client_context: ssl.SSLContext,
    *,
    server_hostname: str = "127.0.0.1",
    session: ssl.SSLSession | None = None,
) -> ssl.SSLObject:
    """Run a handshake through memory BIOs; raise the client's ssl.SSLError on refusal.

    The server then sends one byte, so the client also reads any session ticket.
    """
    client_in, client_out = ssl.MemoryBIO(), ssl.MemoryBIO()
    server_in, server_out = ssl.MemoryBIO(), ssl.MemoryBIO()
    server = server_context.wrap_bio(server_in, server_out, server_side=True)
    client = client_context.wrap_bio(
        client_in, client_out, server_hostname=server_hostname, session=session
    )
    client_done = server_done = False
    for _ in range(10):
        if not client_done:
            try:
                client.do_handshake()
                client_done = True
            except ssl.SSLWantReadError:
                pass
        server_in.write(client_out.read())
        if not server_done:
            try:
                server.do_handshake()
                server_done = True
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLError:
                client_in.write(server_out.read())
                client.read(1)  # raises the alert the server sent
                raise AssertionError("the server failed, but the client got no alert") from None
        client_in.write(server_out.read())
        if client_done and server_done:
            break
    else:
        raise AssertionError("the handshake did not finish")
    server.write(b"x")
    client_in.write(server_out.read())
    assert client.read(1) == b"x"
    return client


def test_context_policy(pki: PKI) -> None:
    context = pki.context()
    assert context.protocol == ssl.PROTOCOL_TLS_SERVER
    assert context.minimum_version == ssl.TLSVersion.TLSv1_3
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.verify_flags & ssl.VERIFY_CRL_CHECK_CHAIN == ssl.VERIFY_CRL_CHECK_CHAIN
    assert context.verify_flags & ssl.VERIFY_X509_STRICT
    assert context.num_tickets == 0
    assert context.cert_store_stats() == {"x509": 2, "crl": 2, "x509_ca": 2}


def test_context_alone_accepts_and_refuses(pki: PKI) -> None:
    """The inner context is safe without the holder too."""
    _handshake(pki.context(), pki.client1.client_context(pki))
    for crls, reason in [
        ((pki.crl(issuing=False), pki.crl(expired=True)), "SSLV3_ALERT_CERTIFICATE_EXPIRED"),
        ((pki.crl(issuing=False, expired=True), pki.crl()), "SSLV3_ALERT_CERTIFICATE_EXPIRED"),
        ((pki.crl(),), "TLSV1_ALERT_UNKNOWN_CA"),  # no root CRL: the issuing CA is unchecked
        (
            (pki.crl(issuing=False, revoked=(pki.issuing,)), pki.crl()),
            "SSLV3_ALERT_CERTIFICATE_REVOKED",
        ),
    ]:
        with pytest.raises(ssl.SSLError) as refused:
            _handshake(pki.context(*crls), pki.client1.client_context(pki))
        assert refused.value.reason == reason


def test_ticket_would_be_detected(pki: PKI) -> None:
    """Control for (h): with tickets enabled, the same checks see a resumption."""
    context = pki.context()
    context.num_tickets = 2
    client_context = pki.client1.client_context(pki)
    session = _handshake(context, client_context).session
    assert session is not None and session.has_ticket
    assert _handshake(context, client_context, session=session).session_reused


def test_sni_callback_runs_with_and_without_server_name(pki: PKI) -> None:
    holder = SSLContextHolder(pki.context())
    names: list[str | None] = []
    select = holder.outer.sni_callback
    assert select is not None

    def record(ssl_object: Any, server_name: str | None, context: ssl.SSLContext) -> Any:
        names.append(server_name)
        return select(ssl_object, server_name, context)  # type: ignore[arg-type]

    holder.outer.sni_callback = record
    client_context = pki.client1.client_context(pki)
    _handshake(holder.outer, client_context, server_hostname="127.0.0.1")
    _handshake(holder.outer, client_context, server_hostname="localhost")
    assert names == [None, "localhost"]


def test_outer_context_alone_fails_closed(pki: PKI) -> None:
    """No certificate and no trust anchors: a handshake the callback skipped fails."""
    holder = SSLContextHolder(pki.context())
    assert holder.outer.cert_store_stats() == {"x509": 0, "crl": 0, "x509_ca": 0}
    holder.outer.sni_callback = None
    with pytest.raises(ssl.SSLError):
        _handshake(holder.outer, pki.client1.client_context(pki))


def test_openssl_keeps_the_outer_policy(pki: PKI) -> None:
    """Why the outer context carries the policy: SSL_set_SSL_CTX does not change it.

    Behind an outer context with Python's defaults, the inner context's policy
    is not applied: a client without a certificate, a revoked client and a TLS
    1.2 client get through, and a session ticket is issued. If this starts
    failing, OpenSSL changed and the notes in api.tls need a look.
    """
    inner = pki.context(pki.crl(issuing=False), pki.crl(revoked=(pki.client1.certificate,)))
    lax_outer = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    lax_outer.sni_callback = lambda ssl_object, name, context: setattr(ssl_object, "context", inner)
    no_cert = ssl.create_default_context(cadata=_pem(pki.root).decode("ascii"))
    _handshake(lax_outer, no_cert)
    lax_outer.verify_mode = ssl.CERT_REQUIRED
    _handshake(lax_outer, pki.client1.client_context(pki))  # revoked, yet accepted
    tls12 = pki.client2.client_context(pki, maximum_version=ssl.TLSVersion.TLSv1_2)
    assert _handshake(lax_outer, tls12).version() == "TLSv1.2"
    session = _handshake(lax_outer, pki.client2.client_context(pki)).session
    assert session is not None and session.has_ticket


def test_swap_takes_effect_for_the_next_handshake(pki: PKI) -> None:
    holder = SSLContextHolder(pki.context())
    client_context = pki.client1.client_context(pki)
    _handshake(holder.outer, client_context)
    revoking = pki.context(pki.crl(issuing=False), pki.crl(revoked=(pki.client1.certificate,)))
    initial = holder.swap(revoking)
    assert holder.current is revoking
    with pytest.raises(ssl.SSLError) as refused:
        _handshake(holder.outer, client_context)
    assert refused.value.reason == "SSLV3_ALERT_CERTIFICATE_REVOKED"
    assert holder.swap(initial) is revoking
    _handshake(holder.outer, client_context)


@pytest.mark.parametrize(
    "weaken",
    [
        pytest.param(lambda c: setattr(c, "verify_mode", ssl.CERT_OPTIONAL), id="cert-optional"),
        pytest.param(lambda c: setattr(c, "verify_flags", ssl.VERIFY_DEFAULT), id="no-crl-check"),
        pytest.param(lambda c: setattr(c, "num_tickets", 1), id="tickets"),
        pytest.param(lambda c: setattr(c, "minimum_version", ssl.TLSVersion.TLSv1_2), id="tls12"),
    ],
)
def test_holder_refuses_a_weaker_context(
    pki: PKI, weaken: Callable[[ssl.SSLContext], None]
) -> None:
    holder = SSLContextHolder(pki.context())
    context = pki.context()
    weaken(context)
    with pytest.raises(ValueError):
        holder.swap(context)
    with pytest.raises(ValueError):
        SSLContextHolder(context)


def test_holder_refuses_non_server_contexts(pki: PKI) -> None:
    holder = SSLContextHolder(pki.context())
    with pytest.raises(TypeError):
        holder.swap("context")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        holder.swap(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT))


# ----------------------------------------------------------------------------- key handling


@pytest.mark.skipif(not hasattr(os, "memfd_create"), reason="Linux memfd_create(2) only")
def test_no_file_is_written_with_memfd(
    pki: PKI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    _handshake(pki.context(), pki.client1.client_context(pki))
    assert list(tmp_path.iterdir()) == []


def test_fallback_file_is_encrypted_private_and_deleted(
    pki: PKI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delattr(os, "memfd_create", raising=False)
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    seen: list[tuple[int, bytes]] = []
    unlink = os.unlink

    def recording_unlink(path: str) -> None:
        seen.append((stat.S_IMODE(os.stat(path).st_mode), Path(path).read_bytes()))
        unlink(path)

    monkeypatch.setattr(os, "unlink", recording_unlink)
    context = pki.context()
    monkeypatch.undo()
    _handshake(context, pki.client1.client_context(pki))
    assert list(tmp_path.iterdir()) == []
    assert [mode for mode, _ in seen] == [0o600, 0o600, 0o600]  # chain, key, CRLs
    keys = [data for _, data in seen if b"PRIVATE KEY" in data]
    assert len(keys) == 1
    assert keys[0].startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")


def test_build_context_rejects_bad_input(pki: PKI) -> None:
    good: dict[str, Any] = {
        "certificate_chain_pem": pki.server_chain_pem,
        "private_key": pki.server_key,
        "client_ca_pem": pki.client_ca_pem,
        "crl_ders": [pki.crl(issuing=False), pki.crl()],
    }
    changes: list[tuple[dict[str, Any], type[Exception]]] = [
        ({"private_key": b"key"}, TypeError),
        ({"private_key": pki.client1.key}, ValueError),
        ({"certificate_chain_pem": b""}, ValueError),
        ({"client_ca_pem": b"-----BEGIN NOTHING-----\n"}, ValueError),
        ({"client_ca_pem": pki.client_ca_pem.decode()}, TypeError),
        ({"crl_ders": []}, ValueError),
        ({"crl_ders": pki.crl()}, TypeError),
        ({"crl_ders": [b"\x30\x00"]}, ValueError),
    ]
    for change, error in changes:
        with pytest.raises(error):
            build_server_ssl_context(**(good | change))


# ----------------------------------------------------------------------------- server wiring


def test_build_uvicorn_server_config(pki: PKI) -> None:
    holder = SSLContextHolder(pki.context())
    server = build_uvicorn_server(
        whoami_app, host="127.0.0.1", port=8443, holder=holder, http="httptools", log_config=None
    )
    config = server.config
    config.load()
    assert config.ssl is holder.outer
    assert config.http_protocol_class is TLSHttpToolsProtocol
    assert config.ws_protocol_class is None
    assert config.proxy_headers is False
    assert (config.host, config.port) == ("127.0.0.1", 8443)
    default = build_uvicorn_server(whoami_app, host="::1", port=0, holder=holder, log_config=None)
    assert default.config.http is TLSH11Protocol


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"host": ""}, ValueError),
        ({"port": 70000}, ValueError),
        ({"http": "zttp"}, ValueError),
        ({"holder": None}, TypeError),
        ({"ssl_certfile": "server.pem"}, TypeError),
        ({"ws": "websockets"}, TypeError),
        ({"uds": "/tmp/mtls.sock"}, TypeError),
    ],
)
def test_build_uvicorn_server_rejects(
    pki: PKI, kwargs: dict[str, Any], error: type[Exception]
) -> None:
    arguments: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": 0,
        "holder": SSLContextHolder(pki.context()),
        "log_config": None,
    }
    with pytest.raises(error):
        build_uvicorn_server(whoami_app, **(arguments | kwargs))


def test_client_certificate_from_scope(pki: PKI) -> None:
    leaf = _pem(pki.client1.certificate).decode("ascii")
    tls = {"client_cert_chain": [leaf], "client_cert_error": None}
    assert client_certificate_from_scope({"extensions": {"tls": tls}}) == pki.client1.certificate
    assert client_certificate_from_scope({}) is None
    assert client_certificate_from_scope({"extensions": None}) is None
    assert client_certificate_from_scope({"extensions": {"tls": {"client_cert_chain": []}}}) is None
    failed = {"client_cert_chain": [leaf], "client_cert_error": "certificate revoked"}
    assert client_certificate_from_scope({"extensions": {"tls": failed}}) is None


# ----------------------------------------------------------------------------- two servers


TWO_SERVERS = r"""
import asyncio, json, os, signal, socket, ssl, sys, threading, time
import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from api.tls import SSLContextHolder, build_server_ssl_context, build_uvicorn_server

material = json.loads(open(sys.argv[1]).read())
shutdowns = []

def app_for(tag):
    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    print(tag, "shut down", flush=True)
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        headers = [(b"content-length", str(len(tag)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": tag.encode()})
    return app

holder = SSLContextHolder(build_server_ssl_context(
    certificate_chain_pem=material["chain"].encode(),
    private_key=load_pem_private_key(material["key"].encode(), None),
    client_ca_pem=material["cas"].encode(),
    crl_ders=[bytes.fromhex(crl) for crl in material["crls"]],
))
plain = uvicorn.Server(uvicorn.Config(app_for("plain"), host="127.0.0.1", port=0, log_config=None))
mtls = build_uvicorn_server(
    app_for("mtls"), host="127.0.0.1", port=0, holder=holder, log_config=None
)

def get(server, context):
    port = server.servers[0].sockets[0].getsockname()[1]
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        if context:
            sock = context.wrap_socket(sock, server_hostname="127.0.0.1")
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        for _ in range(100):
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
        return data.rpartition(b"\r\n\r\n")[2].decode()

def client():
    for _ in range(500):
        if plain.started and mtls.started:
            break
        time.sleep(0.01)
    context = ssl.create_default_context(cafile=material["client_trust"])
    context.load_cert_chain(material["client_chain"], material["client_key"])
    print("served", get(plain, None), get(mtls, context), flush=True)
    os.kill(os.getpid(), int(sys.argv[2]))

async def main():
    await asyncio.gather(plain.serve(), mtls.serve())

threading.Thread(target=client, daemon=True).start()
try:
    asyncio.run(main())
except KeyboardInterrupt:
    print("KeyboardInterrupt", flush=True)
"""


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_two_servers_in_one_loop_stop_on_one_signal(
    pki: PKI, tmp_path: Path, signum: signal.Signals
) -> None:
    """The HTTP API and the mTLS listener share a loop; one signal stops both gracefully."""
    material = tmp_path / "material.json"
    trust = tmp_path / "root.pem"
    trust.write_bytes(_pem(pki.root))
    material.write_text(
        json.dumps(
            {
                "chain": pki.server_chain_pem.decode(),
                "key": pki.server_key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                ).decode(),
                "cas": pki.client_ca_pem.decode(),
                "crls": [pki.crl(issuing=False).hex(), pki.crl().hex()],
                "client_trust": str(trust),
                "client_chain": str(pki.client1.chain_path),
                "client_key": str(pki.client1.key_path),
            }
        )
    )
    result = subprocess.run(
        [sys.executable, "-c", TWO_SERVERS, str(material), str(int(signum))],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    lines = result.stdout.splitlines()
    assert lines[:3] == ["served plain mtls", "mtls shut down", "plain shut down"], result.stderr
    if signum == signal.SIGINT:  # the original SIGINT handler runs last
        assert lines[3:] == ["KeyboardInterrupt"]
        assert result.returncode == 0
    else:  # SIGTERM's default action ends the process after both shut down
        assert lines[3:] == []
        assert result.returncode == -signal.SIGTERM
