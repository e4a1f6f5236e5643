"""The periodic task registry (``ehrca tasks run``)."""

from __future__ import annotations

import pytest

from api.services import Services
from api.tasks import TASKS, run_tasks


def test_unknown_task_names_are_refused_with_the_list(services: Services) -> None:
    with pytest.raises(ValueError, match=r"unknown task bogus; tasks: .*crl\.refresh"):
        run_tasks(services, {"bogus", "crl.refresh"})


def test_only_runs_the_named_task(services: Services) -> None:
    assert run_tasks(services, {"mail.deliver"}) == [("mail.deliver", "sent 0, failed 0")]
    names = [task.name for task in TASKS]
    assert len(names) == len(set(names))
    assert "crl.refresh" in names and "mail.deliver" in names
