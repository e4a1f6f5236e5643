"""The mTLS fast path's helpers: when the revocation status counts as current
(:meth:`api.server.ListenerSync.is_current`), and the CLI's send-only notification
of the serving workers (:func:`api.notify.notify_siblings`)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from api import cli
from api import server as server_module
from api.notify import Notification, WorkerNotifier, notify_siblings
from api.server import ListenerSync, build_mtls_context, notify_directory
from api.services import Services
from api.settings import Settings
from api.tls import SSLContextHolder


class _Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_status_is_current_for_three_polls_after_a_refresh_started(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = _Clock(100.0)
    monkeypatch.setattr(server_module, "monotonic", clock)
    sync = ListenerSync(services, SSLContextHolder(build_mtls_context(services)), poll_seconds=0.5)
    assert sync.is_current() is False  # never refreshed
    assert sync.refresh_status() is True  # no CRL loaded yet
    clock.now = 101.5  # 3 polls of 0.5 s after the refresh started
    assert sync.is_current() is True
    clock.now = 101.5001
    assert sync.is_current() is False


def test_start_publishes_is_current_and_aclose_withdraws_it(services: Services) -> None:
    sync = ListenerSync(services, SSLContextHolder(build_mtls_context(services)), poll_seconds=3600)
    assert services.revocation_status_current() is False
    sync.refresh_now()

    async def scenario() -> tuple[bool, bool]:
        sync.start()
        during = services.revocation_status_current()
        await sync.aclose()
        return during, services.revocation_status_current()

    assert asyncio.run(scenario()) == (True, False)


def test_notify_siblings_reaches_each_worker_and_leaves_no_socket(tmp_path: Path) -> None:
    directory = tmp_path / "notify"
    worker = WorkerNotifier(directory)
    worker.open()
    try:
        assert notify_siblings(directory, Notification.REVOCATION, Notification.CRL) == 2
        assert worker.receive() == {Notification.REVOCATION, Notification.CRL}
        assert sorted(p.name for p in directory.iterdir()) == [worker.name]
    finally:
        worker.close()


def test_notify_siblings_without_a_directory_does_nothing(tmp_path: Path) -> None:
    directory = tmp_path / "never-served"
    assert notify_siblings(directory, Notification.CRL) == 0
    assert not directory.exists()


def test_cli_crl_publish_wakes_the_workers(
    services: Services, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    worker = WorkerNotifier(notify_directory(settings))
    worker.open()
    monkeypatch.setattr(cli, "Settings", lambda: settings)
    try:
        assert cli.main(["crl", "publish"]) == 0
        assert worker.receive() == {Notification.CRL}
        monkeypatch.setattr(settings, "worker_notify", False)
        assert cli.main(["crl", "publish"]) == 0
        assert worker.receive() == set()
    finally:
        worker.close()
