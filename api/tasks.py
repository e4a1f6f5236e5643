"""Periodic jobs, run by ``ehrca tasks run`` (once, e.g. from cron) and by the
in-process scheduler of ``ehrca serve`` (each at its own interval).

A job takes the process's :class:`Services` and returns a one-line summary. Jobs
must be idempotent and read "now" from ``services.clock`` so tests can drive them
with a frozen clock. Packages add their jobs to :data:`TASKS` (one entry each).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from api.changes import revocation_sweep_task, time_rules_task
from api.expiry import expiry_notices_task
from api.services import Services
from revocation.responder import ensure_all_responders, refresh_responses
from revocation.service import publish_due_crls

log = logging.getLogger("ehrca.tasks")


@dataclass(frozen=True, slots=True)
class Task:
    """A periodic job: ``name``, ``run(services) -> summary``, interval in seconds
    (``None``: use ``services.settings.crl_refresh_seconds``)."""

    name: str
    run: Callable[[Services], str]
    every_seconds: float | None


def _deliver_mail(services: Services) -> str:
    sent, failed = services.deliver_mail()
    return f"sent {sent}, failed {failed}"


def _refresh_crls(services: Services) -> str:
    """Re-sign every CRL scope that is due (``revocation.service.publish_due_crls``)."""
    with services.sessions() as session:
        rows = publish_due_crls(
            session, services.keystore, services.crl_policy, now=services.clock()
        )
        summary = ", ".join(f"{r.issuer.name}#{r.crl_number}" for r in rows)
    if rows:
        services.notify_crl_published()
    return f"re-signed {len(rows)} CRLs" + (f": {summary}" if summary else "")


def _renew_ocsp_responders(services: Services) -> str:
    """Make or renew the OCSP responder certificate of every issuing CA when less than
    half its lifetime is left (``revocation.responder.ensure_all_responders``)."""
    with services.sessions() as session:
        created = ensure_all_responders(
            session, services.keystore, services.ocsp_policy, now=services.clock()
        )
    return f"new responders: {', '.join(created)}" if created else "responders current"


def _refresh_ocsp(services: Services) -> str:
    """Pre-sign missing or half-expired OCSP responses (``refresh_responses``)."""
    with services.sessions() as session:
        signed = refresh_responses(
            session, services.keystore, services.ocsp_policy, now=services.clock()
        )
    return f"pre-signed {signed} OCSP responses"


TASKS: list[Task] = [
    # Before mail.deliver, so one `ehrca tasks run` also sends the mails they stage.
    Task("registration.time_rules", time_rules_task, 300.0),
    Task("registration.revoke_ceased", revocation_sweep_task, 300.0),
    Task("certificate.expiry_notices", expiry_notices_task, 3600.0),
    Task("mail.deliver", _deliver_mail, 30.0),
    Task("crl.refresh", _refresh_crls, None),
    Task("ocsp.responder", _renew_ocsp_responders, 3600.0),
    Task("ocsp.refresh", _refresh_ocsp, 600.0),
]


def interval(task: Task, services: Services) -> float:
    """Seconds between two runs of ``task`` under ``services``' settings."""
    if task.every_seconds is None:
        return float(services.settings.crl_refresh_seconds)
    return task.every_seconds


def run_tasks(services: Services, only: set[str] | None = None) -> list[tuple[str, str]]:
    """Run every task (or those named in ``only``) once; a failing task is logged and
    reported as ``failed: <error type>``, never stopping the others.

    Raises:
        ValueError: ``only`` names a task that does not exist (the message lists them).
    """
    unknown = sorted((only or set()) - {task.name for task in TASKS})
    if unknown:
        names = ", ".join(task.name for task in TASKS)
        raise ValueError(f"unknown task {', '.join(unknown)}; tasks: {names}")
    results: list[tuple[str, str]] = []
    for task in TASKS:
        if only is not None and task.name not in only:
            continue
        try:
            summary = task.run(services)
        except Exception as exc:  # one job's failure must not stop the others
            log.exception("task %s failed", task.name)
            summary = f"failed: {type(exc).__name__}"
        results.append((task.name, summary))
    return results
