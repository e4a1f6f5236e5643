"""Templated mail through an outbox table, delivered to a Maildir or over SMTP.

- :func:`enqueue_mail` renders a Jinja2 template (``issuance/templates/NAME.LANG.txt``,
  first line ``Subject: ...``) and adds an :class:`OutboxMail` row in the caller's
  transaction: the decision and its mail commit together.
- :func:`deliver_pending` sends unsent rows with a :class:`Mailer` and records each
  attempt; failures stay in the outbox and are retried on the next run.
- :class:`MaildirMailer` (embedded default, ``var/outbox/``) uses the standard
  library's :mod:`mailbox`; :class:`SmtpMailer` uses :mod:`smtplib` with STARTTLS
  (``smtp://``, upgraded when the server offers it) or implicit TLS (``smtps://``)
  and optional ``user:password@`` auth.
"""

from __future__ import annotations

import datetime as dt
import mailbox
import smtplib
import ssl
from collections.abc import Mapping
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

from jinja2 import Environment, PackageLoader, StrictUndefined
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from issuance.models import OutboxMail

LANGUAGES = ("en", "zh-Hant", "zh-Hans")
MAX_ATTEMPTS = 20

_environment = Environment(
    loader=PackageLoader("issuance", "templates"),
    undefined=StrictUndefined,
    autoescape=False,  # plain-text mail, never HTML  # noqa: S701
    keep_trailing_newline=True,
)


def render_mail(template: str, language: str, context: Mapping[str, Any]) -> tuple[str, str]:
    """Render ``template`` in ``language``; return ``(subject, body)``.

    Raises:
        ValueError: unknown language; ``jinja2.TemplateNotFound`` for an unknown template;
            ``jinja2.UndefinedError`` when ``context`` lacks a variable.
    """
    if language not in LANGUAGES:
        raise ValueError(f"language must be one of {LANGUAGES}")
    text = _environment.get_template(f"{template}.{language}.txt").render(**context)
    first, _, body = text.partition("\n")
    if not first.startswith("Subject: "):
        raise ValueError(f"template {template}.{language} lacks a Subject line")
    return first.removeprefix("Subject: ").strip(), body.lstrip("\n")


def enqueue_mail(
    session: Session,
    *,
    recipient: str,
    template: str,
    language: str,
    context: Mapping[str, Any],
    now: dt.datetime,
) -> OutboxMail:
    """Render and stage one mail in the outbox (the caller commits)."""
    subject, body = render_mail(template, language, context)
    row = OutboxMail(
        recipient=recipient, subject=subject, body=body, template=template, created_at=now
    )
    session.add(row)
    return row


class Mailer(Protocol):
    """Delivers one message or raises ``OSError``/``smtplib.SMTPException``."""

    def send(self, message: EmailMessage) -> None: ...


def build_message(row: OutboxMail, sender: str) -> EmailMessage:
    """The RFC 5322 message for an outbox row (UTF-8, quoted-printable body)."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = row.recipient
    message["Subject"] = row.subject
    message["Date"] = format_datetime(row.created_at)
    message["Message-ID"] = make_msgid(idstring=f"outbox-{row.id}", domain="ehrca.invalid")
    message.set_content(row.body, charset="utf-8", cte="quoted-printable")
    if row.subject.isascii():
        # Keep an ASCII subject on one line (RFC 5322 2.1.1 allows 998): the default
        # folder would fold a 70-77 character one right after "Subject:", which Python's
        # parser reads back with a leading space. Non-ASCII subjects are RFC 2047 encoded
        # words (at most 75 characters each) folded between words, which round-trip.
        message.policy = message.policy.clone(max_line_length=998)
    return message


class MaildirMailer:
    """Writes each message into the Maildir ``directory`` (created if missing)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def send(self, message: EmailMessage) -> None:
        """Add ``message`` to ``directory/new``."""
        box = mailbox.Maildir(self.directory, create=True)
        box.add(message)


class SmtpMailer:
    """Sends through the SMTP server of ``url`` (``smtp://[user:pass@]host[:port]`` with
    STARTTLS when offered, or ``smtps://`` for implicit TLS). With credentials in the URL,
    ``smtp://`` requires STARTTLS: the password is never sent in clear.

    Args:
        url: the SMTP URL; the password may be percent-encoded.
        timeout: socket timeout in seconds.
        tls_context: context for STARTTLS/SMTPS (default: system trust store).
    """

    def __init__(
        self, url: str, *, timeout: float = 10.0, tls_context: ssl.SSLContext | None = None
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ValueError("SMTP URL must be smtp://host[:port] or smtps://host[:port]")
        self.implicit_tls = parts.scheme == "smtps"
        self.host = parts.hostname
        self.port = parts.port or (465 if self.implicit_tls else 25)
        self.username = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else None
        self.timeout = timeout
        self.tls_context = tls_context or ssl.create_default_context()

    def send(self, message: EmailMessage) -> None:
        """Deliver ``message``; raises ``smtplib.SMTPException`` or ``OSError`` on failure."""
        client: smtplib.SMTP
        if self.implicit_tls:
            client = smtplib.SMTP_SSL(
                self.host, self.port, timeout=self.timeout, context=self.tls_context
            )
        else:
            client = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        with client:
            client.ehlo()
            if not self.implicit_tls and client.has_extn("starttls"):
                client.starttls(context=self.tls_context)
                client.ehlo()
            elif not self.implicit_tls and self.username is not None:
                # Never send credentials in clear (a stripped STARTTLS is a downgrade).
                raise smtplib.SMTPNotSupportedError(
                    "the SMTP server does not offer STARTTLS; refusing to log in without TLS"
                )
            if self.username is not None:
                client.login(self.username, self.password or "")
            client.send_message(message)


def deliver_pending(
    factory: sessionmaker[Session],
    mailer: Mailer,
    *,
    sender: str,
    now: dt.datetime,
    limit: int = 100,
) -> tuple[int, int]:
    """Try to send up to ``limit`` unsent outbox rows; return ``(sent, failed)``.

    Each row is committed on its own, so one failure never blocks the others; a row is
    given up after :data:`MAX_ATTEMPTS` attempts (it stays in the table with its error).
    """
    sent = failed = 0
    with factory() as session:
        rows = session.scalars(
            select(OutboxMail)
            .where(OutboxMail.sent_at.is_(None), OutboxMail.attempts < MAX_ATTEMPTS)
            .order_by(OutboxMail.id)
            .limit(limit)
        ).all()
        for row in rows:
            row.attempts += 1
            try:
                mailer.send(build_message(row, sender))
            except (OSError, smtplib.SMTPException) as exc:
                row.last_error = f"{type(exc).__name__}: {exc}"[:1000]
                failed += 1
            else:
                row.sent_at = now
                row.last_error = None
                sent += 1
            session.commit()
    return sent, failed
