"""Decision and deadline mails through a REAL local SMTP server (aiosmtpd) with
STARTTLS and AUTH (PLAIN and LOGIN, over TLS only), in English, Traditional and
Simplified Chinese, decoded exactly on the receiving side; a failing server never
loses a decision (the mail waits in the outbox with its error and is retried)."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import ipaddress
import smtplib
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from fastapi.testclient import TestClient

from api.services import Services
from api.settings import Settings
from issuance.mail import SmtpMailer, build_message, deliver_pending, enqueue_mail
from tests.conftest import TEST_PASSPHRASE
from tests.helpers import officer_token, submitted_application
from tests.registration.flow import (
    decide,
    outbox,
    run_jobs,
)

SMTP_USER = "ehrca-relay"
SMTP_PASSWORD = "s3cret:p@ss/word%"


@dataclass
class Inbox:
    """What the test SMTP server received, and how clients logged in."""

    messages: list[bytes] = field(default_factory=list)
    logins: list[tuple[str, bool, bool]] = field(default_factory=list)
    fail: bool = False

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.fail:
            return "451 4.3.0 mail system temporarily unavailable"
        assert isinstance(envelope.content, bytes)
        self.messages.append(envelope.content)
        return "250 2.0.0 OK"

    def authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        ok = (
            isinstance(data, LoginPassword)
            and data.login == SMTP_USER.encode()
            and data.password == SMTP_PASSWORD.encode()
        )
        transport = server.transport
        implicit = transport is not None and transport.get_extra_info("ssl_object") is not None
        self.logins.append((mechanism, ok, session.ssl is not None or implicit))
        return AuthResult(success=ok)

    def received(self) -> list[EmailMessage]:
        parsed = []
        for raw in self.messages:
            message = email.message_from_bytes(raw, policy=email.policy.default)
            assert isinstance(message, EmailMessage)
            parsed.append(message)
        return parsed


@dataclass(frozen=True)
class ServerTLS:
    """A test CA and a server certificate for 127.0.0.1 (PEM files)."""

    ca_file: Path
    cert_file: Path
    key_file: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert_file, self.key_file)
        return context

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.ca_file)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> ServerTLS:
    """A throwaway CA (EC P-256) and a server certificate with SAN IP 127.0.0.1."""
    directory = tmp_path_factory.mktemp("smtp-tls")
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ehrca test SMTP CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    server = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    files = ServerTLS(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    files.ca_file.write_bytes(ca.public_bytes(pem))
    files.cert_file.write_bytes(server.public_bytes(pem))
    files.key_file.write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return files


def _start(inbox: Inbox, **kwargs: Any) -> tuple[Controller, int]:
    port = _free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port, **kwargs)
    controller.start()
    return controller, port


@pytest.fixture
def inbox(tls: ServerTLS) -> Iterator[tuple[Inbox, int]]:
    """A running SMTP server: STARTTLS required, AUTH required (over TLS only)."""
    box = Inbox()
    controller, port = _start(
        box,
        tls_context=tls.server_context(),
        require_starttls=True,
        auth_required=True,
        auth_require_tls=True,
        authenticator=box.authenticate,
    )
    try:
        yield box, port
    finally:
        controller.stop()


@pytest.fixture
def settings(
    tmp_path: Path, database_url: str, inbox: tuple[Inbox, int], tls: ServerTLS
) -> Settings:
    """The test settings with ``EHRCA_SMTP_URL`` (credentials percent-encoded) and
    ``EHRCA_SMTP_CA_FILE`` pointing at the test server."""
    _box, port = inbox
    return Settings(
        var_dir=tmp_path / "var",
        keys_dir=tmp_path / "keys",
        database_url=database_url,
        key_passphrase=TEST_PASSPHRASE,
        smtp_url=f"smtp://{quote(SMTP_USER)}:{quote(SMTP_PASSWORD, safe='')}@127.0.0.1:{port}",
        smtp_ca_file=tls.ca_file,
        _env_file=None,
    )


def _assert_delivered_exactly(services: Services, box: Inbox) -> None:
    """Every outbox row was sent, and arrived with the same recipient, subject and body."""
    rows = outbox(services)
    received = box.received()
    assert len(received) == len(rows)
    for row, message in zip(rows, received, strict=True):
        assert row.sent_at is not None and row.last_error is None
        assert message["To"] == row.recipient
        assert message["Subject"] == row.subject
        body = message.get_body(("plain",))
        assert body is not None
        assert body.get_content_charset() == "utf-8"
        # SMTP carries lines ending in CRLF (RFC 5321 2.3.8); otherwise byte-exact.
        assert body.get_content().replace("\r\n", "\n") == row.body


def test_decisions_mailed_in_three_languages_through_smtp(
    client: TestClient,
    services: Services,
    inbox: tuple[Inbox, int],
    samples: list[dict[str, Any]],
) -> None:
    box, _port = inbox
    assert isinstance(services.mailer, SmtpMailer)
    rita = officer_token(client, services, "rita", "reviewer")
    group, _ = submitted_application(client, samples[1])  # en
    solo, _ = submitted_application(client, samples[0])  # zh-Hant
    lab, _ = submitted_application(client, samples[2])  # zh-Hans
    decide(client, rita, group, "approve", "documents verified")
    decide(client, rita, solo, "request_documents", "請上載執業醫生註冊證明書")
    decide(client, rita, lab, "reject", "实验所认可证书已过期")

    _assert_delivered_exactly(services, box)
    decisions = {"acceptance", "login_instructions", "documents_requested", "rejected"}
    mine = [i for i, row in enumerate(outbox(services)) if row.template in decisions]
    received = [box.received()[i] for i in mine]
    subjects = [m["Subject"] for m in received]
    assert subjects == [
        f"eHR registration {group} accepted",
        f"eHR registration {group}: how to collect your certificates",
        f"電子健康紀錄登記 {solo}：須補交文件",
        f"电子健康记录登记 {lab} 未获接纳",
    ]
    bodies = [m.get_body(("plain",)).get_content() for m in received]  # type: ignore[union-attr]
    assert "請上載執業醫生註冊證明書" in bodies[2]
    assert "实验所认可证书已过期" in bodies[3]
    assert "海港家庭醫學集團" not in bodies[0]  # English mail, English name
    assert bodies[0].startswith("Dear Harbour Family Medicine Group Limited,")
    # On the wire: 7-bit (RFC 2047 subject, quoted-printable body), UTF-8 declared.
    for raw in box.messages:
        assert raw.isascii()
    assert b"Subject: =?utf-8?" in box.messages[mine[2]]
    # Every login: AUTH after STARTTLS, accepted.
    assert box.logins and all(login == ("PLAIN", True, True) for login in box.logins)


def test_a_decision_is_never_lost_when_smtp_fails(
    client: TestClient,
    services: Services,
    inbox: tuple[Inbox, int],
    samples: list[dict[str, Any]],
) -> None:
    box, _port = inbox
    box.fail = True
    rita = officer_token(client, services, "rita", "reviewer")
    reference, _ = submitted_application(client, samples[0])
    decided = decide(client, rita, reference, "reject", "執業醫生註冊已過期")
    assert decided["status"] == "rejected"
    (row,) = outbox(services)
    assert row.sent_at is None and row.attempts == 1
    assert row.last_error is not None and "451" in row.last_error
    assert box.messages == []

    assert run_jobs(services)["mail.deliver"] == "sent 0, failed 1"  # still down
    box.fail = False
    assert run_jobs(services)["mail.deliver"] == "sent 1, failed 0"
    (row,) = outbox(services)
    assert row.attempts == 3 and row.sent_at is not None
    _assert_delivered_exactly(services, box)
    assert box.received()[0]["Subject"] == f"電子健康紀錄登記 {reference} 未獲接納"
    assert run_jobs(services)["mail.deliver"] == "sent 0, failed 0"  # sent once only


def _one_mail(services: Services, language: str) -> None:
    with services.sessions() as session:
        enqueue_mail(
            session,
            recipient="lab@klb-lab.example",
            template="registration_withdrawn",
            language=language,
            context={
                "reference": "HCP-7K3Q9M2T",
                "provider_name": "九龍灣醫學化驗所",
                "reason": "化验所结业",
            },
            now=services.clock(),
        )
        session.commit()


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")
def test_auth_login_mechanism_and_implicit_tls(services: Services, tls: ServerTLS) -> None:
    """AUTH LOGIN when the server offers no PLAIN, and ``smtps://`` (implicit TLS)."""
    for kwargs, scheme in (
        (
            {
                "tls_context": tls.server_context(),
                "require_starttls": True,
                "auth_exclude_mechanism": ["PLAIN"],
            },
            "smtp",
        ),
        # Implicit TLS: aiosmtpd's auth_require_tls only knows STARTTLS, so it is off
        # here; the whole connection is TLS (checked through session.ssl below).
        ({"ssl_context": tls.server_context(), "auth_require_tls": False}, "smtps"),
    ):
        box = Inbox()
        controller, port = _start(box, auth_required=True, authenticator=box.authenticate, **kwargs)
        try:
            url = f"{scheme}://{SMTP_USER}:{quote(SMTP_PASSWORD, safe='')}@127.0.0.1:{port}"
            mailer = SmtpMailer(url, tls_context=tls.client_context(), timeout=5)
            _one_mail(services, "zh-Hans")
            sent, failed = deliver_pending(
                services.sessions,
                mailer,
                sender="ehrca <no-reply@ehrca.invalid>",
                now=services.clock(),
            )
            (row,) = outbox(services)[-1:]
            assert (sent, failed) == (1, 0), row.last_error
            (message,) = box.received()
            assert message["Subject"] == "电子健康记录登记 HCP-7K3Q9M2T 已撤回"
            assert "化验所结业" in message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
            expected = "LOGIN" if scheme == "smtp" else "PLAIN"
            assert box.logins == [(expected, True, True)]
        finally:
            controller.stop()


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")
def test_credentials_are_never_sent_without_tls(services: Services, tls: ServerTLS) -> None:
    """A server that does not offer STARTTLS (or has it stripped) gets no password."""
    box = Inbox()
    controller, port = _start(
        box, auth_required=True, auth_require_tls=False, authenticator=box.authenticate
    )
    try:
        url = f"smtp://{SMTP_USER}:{quote(SMTP_PASSWORD, safe='')}@127.0.0.1:{port}"
        mailer = SmtpMailer(url, tls_context=tls.client_context(), timeout=5)
        _one_mail(services, "en")
        sent, failed = deliver_pending(
            services.sessions,
            mailer,
            sender="ehrca <no-reply@ehrca.invalid>",
            now=services.clock(),
        )
        assert (sent, failed) == (0, 1)
        (row,) = outbox(services)
        assert row.last_error is not None and "STARTTLS" in row.last_error
        assert box.logins == [] and box.messages == []
        with pytest.raises(smtplib.SMTPNotSupportedError):
            mailer.send(build_message(row, "ehrca <no-reply@ehrca.invalid>"))
    finally:
        controller.stop()
