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

from api.services import Services

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
    services.publish_crls()
    return "CRLs re-signed"


TASKS: list[Task] = [
    Task("mail.deliver", _deliver_mail, 30.0),
    Task("crl.refresh", _refresh_crls, None),
]


def interval(task: Task, services: Services) -> float:
    """Seconds between two runs of ``task`` under ``services``' settings."""
    if task.every_seconds is None:
        return float(services.settings.crl_refresh_seconds)
    return task.every_seconds


def run_tasks(services: Services, only: set[str] | None = None) -> list[tuple[str, str]]:
    """Run every task (or those named in ``only``) once; a failing task is logged and
    reported as ``failed: <error type>``, never stopping the others."""
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
