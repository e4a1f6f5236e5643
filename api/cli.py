"""The ``ehrca`` command line: init, serve, officer add, crl publish, tasks run,
audit verify, db upgrade, mail deliver. Settings come from ``EHRCA_*`` environment
variables (see the README). Exit codes: 0 success, 1 refused (with one ``ehrca: ...``
line on stderr, never a traceback, also for a bad or out-of-range setting), 2 usage."""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import logging
import sys
from collections.abc import Sequence

from pydantic import ValidationError

from api.notify import Notification, notify_siblings
from api.services import build_services
from api.settings import Settings, SettingsError
from ca import lint
from ca.audit import verify_chain
from ca.config import CAConfig
from ca.errors import DomainError
from ca.keys import FileKeyStore, KeyStoreError
from ca.profiles import configured_profiles
from ca.service import (
    CAAlreadyInitialised,
    ca_exists,
    initialise_hierarchy,
    remove_hierarchy,
    utc_now,
)
from db.migrate import upgrade
from db.session import create_db_engine, create_session_factory
from registration.accounts import create_officer
from registration.models import OfficerRole
from revocation.responder import OCSPPolicy, ensure_all_responders, remove_responders
from revocation.service import CRLPolicy, publish_crls_with_policy, record_manual_publication


def _settings(args: argparse.Namespace) -> Settings:
    overrides = {}
    if getattr(args, "root_key_type", None):
        overrides["root_key_type"] = args.root_key_type
    if getattr(args, "issuing_key_type", None):
        overrides["issuing_key_type"] = args.issuing_key_type
    return Settings(**overrides)


def cmd_init(args: argparse.Namespace) -> int:
    """Create the database schema, the CA hierarchy, the mTLS server key and the first CRLs.

    All or nothing: if any step fails (a lint error, a key file that exists already),
    the key files this run wrote and the CA rows it committed are removed again, so
    the next ``ehrca init`` starts clean.
    """
    settings = _settings(args)
    settings.check_production()
    configured_profiles(settings.ca_config())  # validity settings, before any file
    settings.var_dir.mkdir(parents=True, exist_ok=True)
    url = settings.resolved_database_url
    upgrade(url)
    engine = create_db_engine(url)
    factory = create_session_factory(engine)
    try:
        with factory() as session:
            if ca_exists(session):
                if args.exist_ok:
                    print("ehrca: CA already initialised; nothing to do")
                    return 0
                raise CAAlreadyInitialised(
                    "a CA exists already in this database; refusing to overwrite"
                )
            passphrase = settings.key_passphrase_bytes(create=True)
            settings.keys_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            keystore = FileKeyStore(settings.keys_dir, passphrase)
            config = settings.ca_config()
            before = set(settings.keys_dir.iterdir())
            try:
                root, issuing = initialise_hierarchy(
                    session, keystore, config, now=utc_now(), linter=lint.check_certificate
                )
                publish_crls_with_policy(
                    session, keystore, _crl_policy(settings, config), now=utc_now()
                )
                ensure_all_responders(
                    session, keystore, _ocsp_policy(settings, config), now=utc_now()
                )
            except BaseException:
                session.rollback()
                remove_responders(session)
                remove_hierarchy(session)
                for path in set(settings.keys_dir.iterdir()) - before:
                    path.unlink()
                raise
            print(
                f"root CA:    {root.certificate.subject.rfc4514_string()} ({config.root_key_type})"
            )
            print(
                f"issuing CA: {issuing.certificate.subject.rfc4514_string()} "
                f"({config.issuing_key_type})"
            )
            print(f"keys in {settings.keys_dir}/, database {url}")
    finally:
        engine.dispose()
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """Run the HTTP API and the mTLS listener (Ctrl-C to stop), in ``--workers``
    processes sharing the ports."""
    from api.server import run_single, serve_workers

    settings = Settings()
    configured_profiles(settings.ca_config())  # validity settings, before the workers
    upgrade(settings.resolved_database_url)
    if args.workers > 1:
        return serve_workers(args.workers)
    run_single(build_services(settings))
    return 0


def _read_password(prompt: str) -> str:
    if sys.stdin.isatty():
        return getpass.getpass(prompt)
    return sys.stdin.readline().rstrip("\r\n")


def cmd_officer_add(args: argparse.Namespace) -> int:
    """Add an officer; the password is read from stdin (one line) or prompted."""
    settings = Settings()
    engine = create_db_engine(settings.resolved_database_url)
    try:
        with create_session_factory(engine)() as session:
            password = _read_password(f"password for {args.name}: ")
            create_officer(session, args.name, OfficerRole(args.role), password, now=utc_now())
    finally:
        engine.dispose()
    print(f"officer {args.name} ({args.role}) added")
    return 0


def _notify_workers(settings: Settings, *kinds: Notification) -> None:
    """After this command's commits: wake the ``ehrca serve`` workers of this instance
    (``api.notify``), so they see its revocations/CRLs in milliseconds, not at the
    next poll. Best effort; off with ``EHRCA_WORKER_NOTIFY=false``."""
    if settings.worker_notify:
        from api.server import notify_directory

        notify_siblings(notify_directory(settings), *kinds)


def cmd_crl_publish(_args: argparse.Namespace) -> int:
    """Re-sign every CA's CRL (and partitions) now; one ``crl.published`` audit event each."""
    services = build_services(Settings())
    try:
        with services.sessions() as session:
            now = utc_now()
            rows = publish_crls_with_policy(
                session, services.keystore, services.crl_policy, now=now
            )
            record_manual_publication(session, rows, actor="cli", now=now)
            for row in rows:
                scope = "" if row.shard is None else f" shard {row.shard}"
                next_update = row.next_update.isoformat()
                print(
                    f"{row.issuer.name}{scope}: CRL number {row.crl_number}, "
                    f"nextUpdate {next_update}"
                )
        _notify_workers(services.settings, Notification.CRL)
    finally:
        services.dispose()
    return 0


def cmd_audit_verify(_args: argparse.Namespace) -> int:
    """Recompute the audit chain: exit 0 with ``OK, N events``, or 1 naming the first
    modified, deleted or reordered row (``ca.audit.verify_chain``)."""
    settings = Settings()
    engine = create_db_engine(settings.resolved_database_url)
    try:
        with create_session_factory(engine)() as session:
            report = verify_chain(session)
    finally:
        engine.dispose()
    if report.ok:
        print(f"OK, {report.checked} events")
        return 0
    print(
        f"audit chain broken at seq {report.first_bad_seq}: {report.problem} "
        f"({report.checked} rows read)",
        file=sys.stderr,
    )
    return 1


def _crl_policy(settings: Settings, config: CAConfig) -> CRLPolicy:
    return CRLPolicy(
        validity=config.crl_validity,
        urls=config.urls,
        keep_expired=dt.timedelta(days=settings.crl_keep_expired_days),
        shards=settings.crl_shards,
        refresh=dt.timedelta(seconds=settings.crl_refresh_seconds),
    )


def _ocsp_policy(settings: Settings, config: CAConfig) -> OCSPPolicy:
    return OCSPPolicy(
        response_validity=dt.timedelta(hours=settings.ocsp_validity_hours),
        ca_config=config,
        linter=lint.check_certificate if settings.lint_before_signing else None,
    )


def cmd_db_upgrade(_args: argparse.Namespace) -> int:
    """Apply pending schema migrations."""
    upgrade(Settings().resolved_database_url)
    return 0


def cmd_mail_deliver(_args: argparse.Namespace) -> int:
    """Deliver pending outbox mail now."""
    services = build_services(Settings())
    try:
        sent, failed = services.deliver_mail()
    finally:
        services.dispose()
    print(f"sent {sent}, failed {failed}")
    return 0 if failed == 0 else 1


def cmd_tasks_run(args: argparse.Namespace) -> int:
    """Run the periodic jobs once (all, or those named with ``--only``)."""
    from api.tasks import run_tasks

    services = build_services(Settings())
    try:
        results = run_tasks(services, set(args.only) if args.only else None)
        _notify_workers(services.settings, Notification.REVOCATION, Notification.CRL)
    finally:
        services.dispose()
    for name, summary in results:
        print(f"{name}: {summary}")
    return 1 if any(s.startswith("failed") for _, s in results) else 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (settings come from ``EHRCA_*`` variables, see the README)."""
    parser = argparse.ArgumentParser(prog="ehrca", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    init = sub.add_parser("init", help="create the CA hierarchy and the database")
    init.add_argument("--root-key-type", choices=["ec-p384", "rsa-3072", "rsa-4096"])
    init.add_argument("--issuing-key-type", choices=["ec-p256", "rsa-2048", "rsa-3072"])
    init.add_argument(
        "--exist-ok", action="store_true", help="succeed quietly if already initialised"
    )
    init.set_defaults(func=cmd_init)
    serve = sub.add_parser("serve", help="run the HTTP API and the mTLS listener")
    serve.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    serve.set_defaults(func=cmd_serve)
    officer = sub.add_parser("officer", help="manage officers").add_subparsers(
        dest="action", required=True
    )
    add = officer.add_parser("add", help="add an officer (password on stdin)")
    add.add_argument("name")
    add.add_argument("--role", required=True, choices=[r.value for r in OfficerRole])
    add.set_defaults(func=cmd_officer_add)
    crl = sub.add_parser("crl", help="CRLs").add_subparsers(dest="action", required=True)
    crl.add_parser("publish", help="re-sign every CRL now").set_defaults(func=cmd_crl_publish)
    audit = sub.add_parser("audit", help="audit trail").add_subparsers(dest="action", required=True)
    audit.add_parser("verify", help="check the hash chain of the audit trail").set_defaults(
        func=cmd_audit_verify
    )
    db = sub.add_parser("db", help="database").add_subparsers(dest="action", required=True)
    db.add_parser("upgrade", help="apply migrations").set_defaults(func=cmd_db_upgrade)
    mail = sub.add_parser("mail", help="mail outbox").add_subparsers(dest="action", required=True)
    mail.add_parser("deliver", help="deliver pending mail").set_defaults(func=cmd_mail_deliver)
    tasks = sub.add_parser("tasks", help="periodic jobs")
    tasks_sub = tasks.add_subparsers(dest="action", required=True)
    run = tasks_sub.add_parser("run", help="run the periodic jobs once")
    run.add_argument("--only", action="append", help="run only this task (repeatable)")
    run.set_defaults(func=cmd_tasks_run)
    return parser


def describe_validation_error(exc: ValidationError) -> str:
    """One line for ``exc``: each failing field with its message, ``; ``-separated.

    Fields of :class:`Settings` are named by their environment variable
    (``invalid setting EHRCA_CLIENT_VALIDITY_DAYS: Input should be less than or equal
    to 3650``). The rejected input is left out: it may be a secret put in the wrong
    variable.
    """
    parts = []
    for error in exc.errors():
        field = ".".join(str(part) for part in error["loc"])
        if exc.title == Settings.__name__ and field:
            name = f"EHRCA_{field.upper()}"
        else:
            name = f"{exc.title}.{field}" if field else exc.title
        parts.append(f"{name}: {error['msg']}")
    return "invalid setting " + "; ".join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ehrca`` console script.

    Returns:
        The command's exit code, or 1 after one ``ehrca: ...`` line on stderr for a
        refusal (:class:`~ca.errors.DomainError`), unusable settings
        (:class:`~api.settings.SettingsError`; a pydantic ``ValidationError`` from
        :class:`Settings`, e.g. an out-of-range ``EHRCA_CLIENT_VALIDITY_DAYS``; a
        ``ca.profiles.ProfileError`` from :func:`~ca.profiles.configured_profiles`, e.g.
        a lifetime above its issuer's), a key store error, or another ``ValueError`` or
        ``OverflowError`` (a duration too large for ``datetime``).
    """
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ValidationError as exc:  # before ValueError, of which it is a subclass
        print(f"ehrca: {describe_validation_error(exc)}", file=sys.stderr)
        return 1
    except (DomainError, SettingsError, KeyStoreError, ValueError, OverflowError) as exc:
        print(f"ehrca: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
