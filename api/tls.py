"""The TLS layer of the mTLS listener: server contexts, CRL hot swap, uvicorn plumbing.

Generic over any ASGI application. The pieces:

* :func:`build_server_ssl_context` makes an *inner* server context: TLS 1.3
  only, client certificate required, trusting only the given CA certificates,
  checking the given CRLs for every certificate in the client's chain.
* :class:`SSLContextHolder` owns the *outer* context handed to the asyncio
  server once, and moves every new handshake onto the current inner context
  from its ``sni_callback``; :meth:`SSLContextHolder.swap` publishes a new
  inner context (a new CRL) for new connections without a restart.
* :class:`TLSH11Protocol` and :class:`TLSHttpToolsProtocol` put the verified
  client certificate into every request scope as the ASGI TLS extension
  (``scope["extensions"]["tls"]``), which stock uvicorn does not fill.
* :func:`build_uvicorn_server` wires the three into a :class:`uvicorn.Server`.
* :func:`client_certificate_from_scope` reads the client certificate back.

What OpenSSL does when the context changes mid-handshake (verified by
``tests/api/test_tls.py``; OpenSSL 3.0, CPython 3.11):

``SSLObject.context = inner`` calls ``SSL_set_SSL_CTX``. That replaces the
certificate and key the server presents and the ``SSL_CTX`` whose
``X509_STORE`` verifies the peer, so the trust anchors and the CRLs come from
the *inner* context. It does not replace what ``SSL_new`` copied from the
outer context into the connection: the verify mode, the verify parameters
(``verify_flags``: the CRL check), the protocol version bounds and the number
of session tickets. An outer context without ``CERT_REQUIRED`` accepted a
client without a certificate even though the inner context required one, and
an outer context without ``VERIFY_CRL_CHECK_CHAIN`` accepted a revoked client
although the inner context had the CRL and the flag. The outer context
therefore carries the same policy as every inner one (:func:`_apply_policy`),
and it has neither a certificate nor trust anchors, so a handshake that did not
pass through the callback fails. OpenSSL calls the callback for every
ClientHello, also without a server_name extension (a client connecting to
``127.0.0.1`` sends none; Python then passes ``None`` as the name).

Sources: RFC 8446 (TLS 1.3), RFC 5280 §6.3 (CRL validation), the Python
:mod:`ssl` documentation (``SSLContext.sni_callback``, ``num_tickets``,
``load_cert_chain``, ``load_verify_locations``, ``verify_flags``), OpenSSL's
``SSL_set_SSL_CTX(3)`` and ``SSL_CTX_set_num_tickets(3)``, and the ASGI TLS
extension 0.2 (https://asgi.readthedocs.io/en/latest/specs/tls.html).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import secrets
import ssl
import tempfile
import threading
from collections.abc import Awaitable, Callable, Iterator, Mapping, MutableMapping, Sequence
from typing import Any, Literal, TypeAlias, TypedDict

import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = [
    "ASGIApp",
    "SSLContextHolder",
    "TLSExtension",
    "TLSH11Protocol",
    "TLSHttpToolsProtocol",
    "TLSPrivateKey",
    "build_server_ssl_context",
    "build_uvicorn_server",
    "client_certificate_from_scope",
]

TLSPrivateKey: TypeAlias = (
    ec.EllipticCurvePrivateKey
    | rsa.RSAPrivateKey
    | ed25519.Ed25519PrivateKey
    | ed448.Ed448PrivateKey
)
"""Private key types OpenSSL can use for a TLS 1.3 server certificate."""

Scope: TypeAlias = MutableMapping[str, Any]
Message: TypeAlias = MutableMapping[str, Any]
Receive: TypeAlias = Callable[[], Awaitable[Message]]
Send: TypeAlias = Callable[[Message], Awaitable[None]]
ASGIApp: TypeAlias = Callable[[Scope, Receive, Send], Awaitable[None]]
"""An ASGI 3 application (same shape as ``starlette.types.ASGIApp``)."""

_TLS_SERVER_KEY_TYPES = (
    ec.EllipticCurvePrivateKey,
    rsa.RSAPrivateKey,
    ed25519.Ed25519PrivateKey,
    ed448.Ed448PrivateKey,
)

# The CRL check: every certificate of the client's chain up to the root must be
# covered by a current CRL of its issuer (X509_V_FLAG_CRL_CHECK |
# X509_V_FLAG_CRL_CHECK_ALL), and RFC 5280 profile checks are strict.
_VERIFY_FLAGS = ssl.VERIFY_CRL_CHECK_CHAIN | ssl.VERIFY_X509_STRICT

# uvicorn.Config arguments that would bypass this module's TLS or listener
# policy: other ssl sources, protocols that do not carry the TLS extension
# (WebSocket, HTTP/2) and listeners other than ``host``.
_RESERVED_CONFIG_KEYS = frozenset(
    {
        "ssl_keyfile",
        "ssl_certfile",
        "ssl_keyfile_password",
        "ssl_version",
        "ssl_cert_reqs",
        "ssl_ca_certs",
        "ssl_ciphers",
        "ssl_context_factory",
        "ws",
        "http2",
        "uds",
        "fd",
    }
)


class TLSExtension(TypedDict):
    """``scope["extensions"]["tls"]`` as the ASGI TLS extension 0.2 defines it.

    ``server_cert`` is always ``None`` (Python's :class:`ssl.SSLObject` does not
    expose the local certificate; the spec allows ``None``). ``client_cert_chain``
    holds the client's own certificate only (PEM, a one-element list): CPython
    before 3.13 has no public API for the rest of the chain, and the issuing CA
    is known to the application anyway. ``client_cert_error`` is always ``None``
    because the listener refuses every client whose certificate fails
    verification at the handshake. ``tls_version`` is the protocol number
    (``0x0304`` for TLS 1.3, RFC 8446 §4.2.1) and ``cipher_suite`` the 16-bit
    IANA code (``0x1301`` for TLS_AES_128_GCM_SHA256, RFC 8446 §B.4).
    """

    server_cert: str | None
    client_cert_chain: list[str]
    client_cert_name: str | None
    client_cert_error: str | None
    tls_version: int | None
    cipher_suite: int | None


# --------------------------------------------------------------------------- contexts


def _apply_policy(context: ssl.SSLContext) -> None:
    """Set the connection policy that the outer and every inner context share.

    TLS 1.3 only (``minimum_version``; RFC 8446 removes renegotiation and
    session-ID resumption); a client certificate is required
    (``CERT_REQUIRED``: a client without one gets the ``certificate_required``
    alert, RFC 8446 §4.4.2.4); CRLs are checked for the whole chain and RFC 5280
    is enforced strictly (``verify_flags``); no session tickets are sent
    (``num_tickets = 0``, OpenSSL ``SSL_CTX_set_num_tickets``), so no TLS 1.3
    resumption (RFC 8446 §2.2, §4.6.1) can skip the client certificate and CRL
    check of a later connection.

    Python has no API for ``SSL_CTX_set_session_cache_mode``, so the server
    session cache cannot be switched off; with TLS 1.3 only and no tickets,
    nothing is ever put into it (``session_stats()["number"]`` stays 0).
    """
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.verify_mode = ssl.CERT_REQUIRED
    context.verify_flags |= _VERIFY_FLAGS
    context.num_tickets = 0


def _check_inner_context(context: object) -> ssl.SSLContext:
    """Return ``context`` if it is a server context with the policy of :func:`_apply_policy`.

    Raises:
        TypeError: ``context`` is not an :class:`ssl.SSLContext`.
        ValueError: it is not a TLS server context, or its verify mode, verify
            flags, minimum version or ticket count differ from the policy.
    """
    if not isinstance(context, ssl.SSLContext):
        raise TypeError(f"expected an ssl.SSLContext, got {type(context).__name__}")
    if context.protocol != ssl.PROTOCOL_TLS_SERVER:
        raise ValueError("the context must be a server context (ssl.PROTOCOL_TLS_SERVER)")
    if context.verify_mode != ssl.CERT_REQUIRED:
        raise ValueError("the context must require a client certificate (ssl.CERT_REQUIRED)")
    if context.verify_flags & _VERIFY_FLAGS != _VERIFY_FLAGS:
        raise ValueError("the context must check CRLs for the whole chain, strictly (RFC 5280)")
    if context.minimum_version < ssl.TLSVersion.TLSv1_3:
        raise ValueError("the context must accept TLS 1.3 only (RFC 8446)")
    if context.num_tickets != 0:
        raise ValueError("the context must not issue session tickets (num_tickets = 0)")
    return context


def _write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` to the file descriptor ``fd`` (``os.write`` may write less)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _memory_file(data: bytes) -> int:
    """Return a descriptor of an anonymous in-memory file that holds ``data``.

    Linux ``memfd_create(2)``: the file never has a name in any file system and
    is gone when the descriptor is closed; ``/proc/self/fd/N`` opens it.

    Raises:
        OSError: no ``memfd_create`` or no ``/proc`` here (the caller falls back).
    """
    memfd_create: Callable[[str, int], int] | None = getattr(os, "memfd_create", None)
    if memfd_create is None or not os.path.isdir("/proc/self/fd"):
        raise OSError("memfd_create(2) is not available")
    fd = memfd_create("ehrca-tls", os.MFD_CLOEXEC)
    try:
        _write_all(fd, data)
    except BaseException:
        os.close(fd)
        raise
    return fd


@contextlib.contextmanager
def _temporary_file(data: bytes) -> Iterator[str]:
    """Yield the path of a new temporary file that holds ``data``; delete it afterwards.

    ``tempfile.mkstemp`` creates the file with ``O_EXCL`` and mode 0600 (readable
    by the owner only); it is unlinked as soon as the caller is done.
    """
    fd, path = tempfile.mkstemp(prefix="ehrca-tls-", suffix=".pem")
    try:
        try:
            _write_all(fd, data)
        finally:
            os.close(fd)
        yield path
    finally:
        os.unlink(path)


@contextlib.contextmanager
def _private_file(data: bytes) -> Iterator[str]:
    """Yield a path to a file holding ``data`` that exists only inside the ``with`` block.

    An anonymous in-memory file where the platform has one (:func:`_memory_file`),
    else a 0600 temporary file deleted at once (:func:`_temporary_file`).
    """
    try:
        fd = _memory_file(data)
    except OSError:
        with _temporary_file(data) as path:
            yield path
        return
    try:
        yield f"/proc/self/fd/{fd}"
    finally:
        os.close(fd)


def _load_cert_chain(
    context: ssl.SSLContext, certificate_chain_pem: bytes, private_key: TLSPrivateKey
) -> None:
    """Load the server certificate chain and key into ``context`` without a clear key on disk.

    :meth:`ssl.SSLContext.load_cert_chain` reads only files (CPython has no
    in-memory variant, python/cpython#60691). The key is therefore handed over as
    encrypted PKCS#8 (RFC 5958, PBES2, ``BestAvailableEncryption``) under a random
    one-time password (256 bits from :mod:`secrets`), in a file that exists only
    for the duration of the call (:func:`_private_file`). Neither the password nor
    the file outlives this function.
    """
    password = secrets.token_urlsafe(32).encode("ascii")
    encrypted_key = private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(password),
    )
    with (
        _private_file(certificate_chain_pem) as chain_path,
        _private_file(encrypted_key) as key_path,
    ):
        context.load_cert_chain(chain_path, key_path, password=password)


def _parse_certificates(pem: bytes, what: str) -> list[x509.Certificate]:
    """Parse one or more PEM certificates.

    Raises:
        TypeError: ``pem`` is not ``bytes``.
        ValueError: ``pem`` holds no certificate or a malformed one.
    """
    if not isinstance(pem, bytes):
        raise TypeError(f"{what} must be PEM bytes, got {type(pem).__name__}")
    try:
        certificates = x509.load_pem_x509_certificates(pem)
    except ValueError as exc:
        raise ValueError(f"{what} must hold PEM certificates: {exc}") from exc
    return certificates


def _crls_to_pem(crl_ders: Sequence[bytes]) -> bytes:
    """Parse DER CRLs (RFC 5280 §5) and return them as one PEM bundle.

    Raises:
        TypeError: ``crl_ders`` is a single ``bytes`` value or holds a non-``bytes`` item.
        ValueError: no CRL is given, or one is not a DER CRL.
    """
    if isinstance(crl_ders, bytes | bytearray | str):
        raise TypeError("crl_ders must be a sequence of DER CRLs, not a single value")
    pems: list[bytes] = []
    for index, der in enumerate(crl_ders):
        if not isinstance(der, bytes):
            raise TypeError(f"crl_ders[{index}] must be DER bytes, got {type(der).__name__}")
        try:
            crl = x509.load_der_x509_crl(der)
        except ValueError as exc:
            raise ValueError(f"crl_ders[{index}] is not a DER CRL: {exc}") from exc
        pems.append(crl.public_bytes(serialization.Encoding.PEM))
    if not pems:
        raise ValueError(
            "at least one CRL is required: the CRL check covers every CA of the chain, "
            "so without CRLs every client would be refused"
        )
    return b"".join(pems)


def build_server_ssl_context(
    *,
    certificate_chain_pem: bytes,
    private_key: TLSPrivateKey,
    client_ca_pem: bytes,
    crl_ders: Sequence[bytes],
) -> ssl.SSLContext:
    """Build the server context of the mTLS listener.

    The context accepts TLS 1.3 only, requires a client certificate that chains
    to a certificate of ``client_ca_pem`` (and to nothing else: the system trust
    store is not loaded) and checks the CRLs of every CA in that chain
    (``VERIFY_CRL_CHECK_CHAIN``, RFC 5280 §6.3). A client is refused at the
    handshake if its certificate or a CA certificate above it is revoked, if a
    CA of the chain has no CRL here, or if that CRL has expired (its nextUpdate,
    RFC 5280 §5.1.2.5, is in the past: OpenSSL reports
    ``X509_V_ERR_CRL_HAS_EXPIRED`` and sends the ``certificate_expired`` alert,
    so an expired CRL fails closed). No session tickets are issued (see
    :func:`_apply_policy`).

    The private key is never written to disk in clear: see :func:`_load_cert_chain`.
    CRLs are public and are loaded through a short-lived file as well, because
    ``load_verify_locations(cadata=...)`` accepts certificates only.

    Args:
        certificate_chain_pem: the server certificate, then the CAs above it
            that clients need (the issuing CA), PEM.
        private_key: the server certificate's private key.
        client_ca_pem: the CA certificates clients chain to: the root and the
            issuing CA, PEM. OpenSSL needs the self-signed root as trust anchor.
        crl_ders: the current CRL of every CA in the client chain (root and
            issuing CA), DER.

    Returns:
        A new :class:`ssl.SSLContext` (``PROTOCOL_TLS_SERVER``); use it directly
        or publish it through :meth:`SSLContextHolder.swap`.

    Raises:
        TypeError: an argument has the wrong type.
        ValueError: no certificate in ``certificate_chain_pem`` or
            ``client_ca_pem``, the key does not belong to the server
            certificate, or ``crl_ders`` is empty or holds a non-CRL.
        ssl.SSLError: OpenSSL refuses the certificates, key or CRLs.
    """
    if not isinstance(private_key, _TLS_SERVER_KEY_TYPES):
        raise TypeError(
            "private_key must be an EC, RSA, Ed25519 or Ed448 private key, "
            f"got {type(private_key).__name__}"
        )
    chain = _parse_certificates(certificate_chain_pem, "certificate_chain_pem")
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    if chain[0].public_key().public_bytes(
        serialization.Encoding.DER, spki
    ) != private_key.public_key().public_bytes(serialization.Encoding.DER, spki):
        raise ValueError("private_key does not belong to the first certificate of the chain")
    client_cas = _parse_certificates(client_ca_pem, "client_ca_pem")
    crl_pem = _crls_to_pem(crl_ders)

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _apply_policy(context)
    _load_cert_chain(
        context,
        b"".join(cert.public_bytes(serialization.Encoding.PEM) for cert in chain),
        private_key,
    )
    context.load_verify_locations(
        cadata="".join(
            cert.public_bytes(serialization.Encoding.PEM).decode("ascii") for cert in client_cas
        )
    )
    with _private_file(crl_pem) as crl_path:
        context.load_verify_locations(cafile=crl_path)
    return context


class SSLContextHolder:
    """Holds the current inner server context and the outer context that uses it.

    Give :attr:`outer` to the asyncio server once (``build_uvicorn_server`` does).
    Its ``sni_callback`` runs early in every handshake, with or without a
    server_name in the ClientHello, and switches the connection to
    :attr:`current`; :meth:`swap` replaces :attr:`current`, so a new CRL applies
    to every connection that starts its handshake afterwards, without a restart.

    Connections already established keep the context they were verified with,
    and a CRL in the TLS layer never reaches an open keep-alive connection:
    the application must still check revocation per request.

    The outer context has the connection policy of :func:`_apply_policy`
    (OpenSSL takes the verify mode, CRL flags, protocol versions and ticket count
    from it, not from the inner context) and no certificate or trust anchor of
    its own, so a handshake the callback did not switch fails.
    """

    def __init__(self, initial: ssl.SSLContext) -> None:
        """Start with ``initial`` as the current inner context.

        Args:
            initial: a context from :func:`build_server_ssl_context`.

        Raises:
            TypeError: ``initial`` is not an :class:`ssl.SSLContext`.
            ValueError: ``initial`` does not have the listener's policy.
        """
        self._lock = threading.Lock()
        self._current = _check_inner_context(initial)
        outer = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        _apply_policy(outer)
        outer.sni_callback = self._select_context
        self._outer = outer

    @property
    def current(self) -> ssl.SSLContext:
        """The inner context new handshakes switch to."""
        return self._current

    @property
    def outer(self) -> ssl.SSLContext:
        """The context to hand to the listening server; it never changes."""
        return self._outer

    def swap(self, new_context: ssl.SSLContext) -> ssl.SSLContext:
        """Make ``new_context`` the current inner context and return the previous one.

        Thread-safe; the change is one reference assignment, so a handshake sees
        either the old or the new context, never a mix. Handshakes that have
        already passed the callback finish with the old context.

        Raises:
            TypeError: ``new_context`` is not an :class:`ssl.SSLContext`.
            ValueError: ``new_context`` does not have the listener's policy.
        """
        checked = _check_inner_context(new_context)
        with self._lock:
            previous, self._current = self._current, checked
        return previous

    def _select_context(
        self,
        ssl_object: ssl.SSLObject | ssl.SSLSocket,
        server_name: str | None,
        outer: ssl.SSLContext,
    ) -> None:
        """``sni_callback`` of :attr:`outer`: switch the handshake to :attr:`current`.

        ``server_name`` is ``None`` when the client sent no server_name
        extension (connecting to an IP address). Setting ``context`` calls
        OpenSSL's ``SSL_set_SSL_CTX``. An exception here makes the handshake
        fail with a ``handshake_failure`` alert (Python ``ssl`` documentation).
        """
        ssl_object.context = self._current


# --------------------------------------------------------------------------- handshake alerts


def _send_handshake_alerts() -> None:
    """Make asyncio send the fatal TLS alert of a failed server handshake.

    When OpenSSL refuses a handshake (no client certificate, unknown CA, a
    revoked certificate, an expired CRL, TLS 1.2), it leaves the alert for the
    peer in the connection's outgoing memory BIO. CPython's
    ``asyncio.sslproto.SSLProtocol`` (3.11) then force-closes the transport
    without writing that BIO out, so the client sees a bare EOF instead of
    ``certificate_required``, ``unknown_ca`` or ``certificate_revoked``
    (CPython gh-98078, fixed upstream by flushing first; the fix is not in
    3.11). This wraps ``SSLProtocol._on_handshake_complete`` to flush the
    outgoing data (``_process_outgoing``) before the original method closes the
    transport; on a Python that already flushes, the second flush finds nothing.
    Idempotent; a no-op where the private methods do not exist (then the
    refusal stays a bare close, which still fails closed). uvloop has its own
    SSL implementation and is not covered.
    """
    from asyncio import sslproto

    protocol: Any = sslproto.SSLProtocol
    original = getattr(protocol, "_on_handshake_complete", None)
    if original is None or not hasattr(protocol, "_process_outgoing"):
        return
    if getattr(original, "_ehrca_sends_alert", False):
        return

    def _on_handshake_complete(self: Any, handshake_exc: BaseException | None) -> None:
        if handshake_exc is not None:
            with contextlib.suppress(Exception):  # best effort: the close must still happen
                self._process_outgoing()
        original(self, handshake_exc)

    _on_handshake_complete._ehrca_sends_alert = True  # type: ignore[attr-defined]
    protocol._on_handshake_complete = _on_handshake_complete


# --------------------------------------------------------------------------- ASGI TLS extension


def _tls_version_number(version: str | None) -> int | None:
    """Map Python's protocol name (``"TLSv1.3"``) to its number (``0x0304``, RFC 8446 §4.2.1)."""
    if version is None:
        return None
    try:
        return ssl.TLSVersion[version.replace(".", "_")].value
    except KeyError:
        return None


# OpenSSL cipher name -> IANA code, filled on first sight (a name always maps to the
# same code; TLS 1.3 has five suites, RFC 8446 §B.4).
_CIPHER_SUITES: dict[str, int] = {}


def _cipher_suite_number(ssl_object: ssl.SSLObject) -> int | None:
    """Return the negotiated cipher suite's 16-bit IANA code (``0x1301``, RFC 8446 §B.4).

    Python reports only the OpenSSL name; the code comes from
    :meth:`ssl.SSLContext.get_ciphers`, whose ``id`` carries it in its low 16 bits.
    That list is built once per name, not per connection (:data:`_CIPHER_SUITES`).
    """
    cipher = ssl_object.cipher()
    if cipher is None:
        return None
    name = cipher[0]
    suite = _CIPHER_SUITES.get(name)
    if suite is not None:
        return suite
    for entry in ssl_object.context.get_ciphers():
        if entry["name"] == name:
            suite = entry["id"] & 0xFFFF
            _CIPHER_SUITES[name] = suite
            return suite
    return None


#: Client certificates whose PEM and subject :func:`_peer_description` keeps, and
#: PEM strings whose parsed certificate :func:`_load_pem_certificate` keeps (each
#: bounded, least recently used out first; an entry is about 2 KiB).
PEER_CACHE_SIZE = 4096


@functools.lru_cache(maxsize=PEER_CACHE_SIZE)
def _peer_description(peer_der: bytes) -> tuple[str, str]:
    """The PEM (RFC 7468) and RFC 4514 subject of a DER certificate, computed once per
    certificate: a client reconnecting with the same certificate costs a dictionary
    lookup keyed by its DER (which OpenSSL has already verified), not a parse.

    Raises:
        ValueError: ``peer_der`` is not a DER certificate (not cached).
    """
    certificate = x509.load_der_x509_certificate(peer_der)
    pem = certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")
    return pem, certificate.subject.rfc4514_string()


@functools.lru_cache(maxsize=PEER_CACHE_SIZE)
def _load_pem_certificate(pem: str) -> x509.Certificate:
    """Parse a PEM certificate once per distinct PEM string (certificates are
    immutable, so one object serves every request that presents it).

    Raises:
        ValueError: not a PEM certificate (not cached: raised again each time).
    """
    return x509.load_pem_x509_certificate(pem.encode("ascii"))


def _tls_extension(ssl_object: ssl.SSLObject) -> TLSExtension:
    """Describe an established TLS connection as the ASGI TLS extension.

    Called once per connection, after the handshake (asyncio calls
    ``connection_made`` when the handshake is complete). The peer certificate is
    the one OpenSSL verified (``getpeercert(binary_form=True)``, DER).
    """
    peer_der = ssl_object.getpeercert(binary_form=True)
    chain: list[str] = []
    name: str | None = None
    if peer_der:
        pem, name = _peer_description(peer_der)
        chain.append(pem)
    return TLSExtension(
        server_cert=None,
        client_cert_chain=chain,
        client_cert_name=name,
        client_cert_error=None,
        tls_version=_tls_version_number(ssl_object.version()),
        cipher_suite=_cipher_suite_number(ssl_object),
    )


class _TLSExtensionApp:
    """Per-connection ASGI wrapper that adds ``scope["extensions"]["tls"]`` to each request."""

    __slots__ = ("_app", "_tls")

    def __init__(self, app: ASGIApp, tls: TLSExtension) -> None:
        self._app = app
        self._tls = tls

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            tls = self._tls.copy()  # a fresh copy per request: the app may change it
            tls["client_cert_chain"] = list(self._tls["client_cert_chain"])
            scope["extensions"] = {**(scope.get("extensions") or {}), "tls": tls}
        await self._app(scope, receive, send)


def _with_tls_extension(app: ASGIApp, transport: asyncio.BaseTransport) -> ASGIApp:
    """Wrap ``app`` for one connection if ``transport`` is TLS; else return it unchanged.

    The ASGI TLS extension forbids the extension on non-TLS connections, so a
    plain connection gets none (and an application that needs a client
    certificate refuses it).
    """
    ssl_object = transport.get_extra_info("ssl_object")
    if not isinstance(ssl_object, ssl.SSLObject):
        return app
    return _TLSExtensionApp(app, _tls_extension(ssl_object))


class TLSH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, adding the ASGI TLS extension to every request scope.

    uvicorn reads ``self.app`` for each request it starts on the connection, so
    replacing it in ``connection_made`` covers every request of the connection,
    pipelined ones included.
    """

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Set up the connection as uvicorn does, then wrap the app with its TLS data."""
        super().connection_made(transport)
        self.app = _with_tls_extension(self.app, transport)


class TLSHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, adding the ASGI TLS extension to every request scope.

    See :class:`TLSH11Protocol`.
    """

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Set up the connection as uvicorn does, then wrap the app with its TLS data."""
        super().connection_made(transport)
        self.app = _with_tls_extension(self.app, transport)


_PROTOCOLS: dict[str, type[H11Protocol] | type[HttpToolsProtocol]] = {
    "h11": TLSH11Protocol,
    "httptools": TLSHttpToolsProtocol,
}


def build_uvicorn_server(
    app: ASGIApp,
    *,
    host: str,
    port: int,
    holder: SSLContextHolder,
    http: Literal["h11", "httptools"] = "h11",
    log_level: str = "warning",
    **config_kwargs: Any,
) -> uvicorn.Server:
    """Build the mTLS listener as a :class:`uvicorn.Server` (not started).

    The server listens on ``host``:``port`` only, with ``holder.outer`` as its
    TLS context (through ``uvicorn.Config(ssl_context_factory=...)``, uvicorn
    0.47 or later), the TLS protocol subclass for ``http``, and no WebSocket
    support (uvicorn's WebSocket protocols take the application from the config,
    so their scopes would lack the TLS extension). ``proxy_headers`` defaults to
    ``False``: ``X-Forwarded-*`` headers must not change the client address of a
    connection authenticated by its own certificate. It also makes asyncio send
    the TLS alert of a refused handshake (:func:`_send_handshake_alerts`).

    Start it with ``await server.serve()`` in a running loop, or with
    ``await server.serve(sockets=[sock])`` on an already bound socket (then the
    socket decides the address). Port 0 picks a free port; read it from
    ``server.servers[0].sockets[0].getsockname()`` once ``server.started``.

    Two servers in one loop (e.g. ``asyncio.gather(http_api.serve(),
    mtls.serve())``) work: each ``serve()`` installs SIGINT/SIGTERM handlers
    with ``signal.signal`` (only in the main thread) and restores the previous
    ones when it returns, then re-raises the signal it caught. A signal reaches
    the server started last; it shuts down, restores the first server's handler
    and re-raises, so the first server shuts down too; finally the original
    handler runs (``KeyboardInterrupt`` for SIGINT, which the caller of
    ``asyncio.run`` should catch; SIGTERM's default action ends the process
    after both have shut down). Shut them down programmatically by setting
    ``server.should_exit = True`` on each.

    Args:
        app: the ASGI 3 application.
        host: the address to listen on, e.g. ``"127.0.0.1"``; must not be empty
            (asyncio listens on every interface for an empty host).
        port: the TCP port, 0 to 65535.
        holder: supplies the outer context and the current inner context.
        http: ``"h11"`` or ``"httptools"``.
        log_level: uvicorn's log level name.
        **config_kwargs: further :class:`uvicorn.Config` arguments (e.g.
            ``lifespan``, ``timeout_keep_alive``, ``log_config``, ``access_log``).

    Returns:
        A :class:`uvicorn.Server` with a not yet loaded :class:`uvicorn.Config`.

    Raises:
        TypeError: ``holder`` is not an :class:`SSLContextHolder`, or
            ``config_kwargs`` holds a TLS, WebSocket, HTTP/2 or listener option
            (``ssl_*``, ``ws``, ``http2``, ``uds``, ``fd``).
        ValueError: ``host`` is empty, ``port`` is out of range, or ``http`` is
            neither ``"h11"`` nor ``"httptools"``.
    """
    if not isinstance(holder, SSLContextHolder):
        raise TypeError(f"holder must be an SSLContextHolder, got {type(holder).__name__}")
    if not isinstance(host, str) or not host.strip():
        raise ValueError("host must name the address to listen on; an empty host means all")
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(f"port must be an integer from 0 to 65535, got {port!r}")
    protocol_class = _PROTOCOLS.get(http)
    if protocol_class is None:
        raise ValueError(f"http must be 'h11' or 'httptools', got {http!r}")
    reserved = sorted(_RESERVED_CONFIG_KEYS.intersection(config_kwargs))
    if reserved:
        raise TypeError(f"build_uvicorn_server sets these itself: {', '.join(reserved)}")
    config_kwargs.setdefault("proxy_headers", False)
    _send_handshake_alerts()
    outer = holder.outer

    def ssl_context_factory(
        _config: uvicorn.Config, _default_factory: Callable[[], ssl.SSLContext]
    ) -> ssl.SSLContext:
        return outer

    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        http=protocol_class,
        ws="none",
        log_level=log_level,
        ssl_context_factory=ssl_context_factory,
        **config_kwargs,
    )
    return uvicorn.Server(config)


def client_certificate_from_scope(scope: Mapping[str, Any]) -> x509.Certificate | None:
    """Return the verified client certificate of a request, from the ASGI TLS extension.

    Args:
        scope: an ASGI ``http`` or ``websocket`` scope.

    Returns:
        The client's own certificate (``client_cert_chain[0]``), or ``None`` if
        the scope has no TLS extension (plain connection, or a server that does
        not fill it), no client certificate, or a ``client_cert_error`` (a
        certificate that failed verification is never returned).

    Parsing is cached per PEM string (:func:`_load_pem_certificate`), so the
    requests of a keep-alive connection share one certificate object.

    Raises:
        ValueError: the extension's first chain entry is not a PEM certificate.
    """
    extensions = scope.get("extensions") or {}
    tls = extensions.get("tls")
    if not tls or tls.get("client_cert_error") is not None:
        return None
    leaf = next(iter(tls.get("client_cert_chain") or ()), None)
    if leaf is None:
        return None
    if not isinstance(leaf, str):
        raise ValueError("the client certificate must be a PEM string")
    try:
        return _load_pem_certificate(leaf)
    except UnicodeEncodeError as exc:
        raise ValueError("the client certificate must be ASCII PEM") from exc
