"""The sibling notification bus (:mod:`api.notify`) and the listener sync of
``ehrca serve`` (:class:`api.server.ListenerSync`) that uses it.

No test here measures time: waits are bounded loops that fail with a message, and
the cross-worker test disables the fallback poll (one hour), so only a notification
can make the second worker learn of the revocation.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from api.notify import (
    MESSAGE_CRL,
    MESSAGE_REVOCATION,
    CoalescedJob,
    Notification,
    NotifyDirectoryError,
    WorkerNotifier,
)
from api.server import ListenerSync, build_mtls_context, notify_directory, open_notifier
from api.services import Services, build_services
from api.settings import Settings
from api.tls import SSLContextHolder
from revocation.models import PublishedCRL, Revocation
from tests.conftest import FrozenClock
from tests.helpers import bearer, officer_token
from tests.revocation.support import issue_client

WAIT = 10.0  # seconds: the bound of every wait (a failure bound, not an expectation)
NAME = re.compile(r"\A[0-9]+-[0-9a-f]{8}\.sock\Z")


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


@pytest.fixture
def bus_dir(tmp_path: Path) -> Path:
    return tmp_path / "run" / "notify"


@pytest.fixture
def pair(bus_dir: Path) -> Iterator[tuple[WorkerNotifier, WorkerNotifier]]:
    """Two open notifiers in one directory (two sibling workers)."""
    first, second = WorkerNotifier(bus_dir), WorkerNotifier(bus_dir)
    first.open()
    second.open()
    try:
        yield first, second
    finally:
        first.close()
        second.close()


def _send_raw(bus_dir: Path, name: str, data: bytes) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as raw:
        raw.sendto(data, str(bus_dir / name))


# ----------------------------------------------------------------------------- notifier


def test_open_creates_private_directory_and_socket_and_close_removes_it(bus_dir: Path) -> None:
    notifier = WorkerNotifier(bus_dir)
    notifier.open()
    try:
        assert NAME.match(notifier.name)
        assert notifier.name.startswith(f"{os.getpid()}-")
        assert _mode(bus_dir) == 0o700
        path = bus_dir / notifier.name
        assert stat.S_ISSOCK(os.lstat(path).st_mode)
        assert _mode(path) == 0o600
        assert os.listdir(bus_dir) == [notifier.name]
    finally:
        notifier.close()
    assert os.listdir(bus_dir) == []
    assert notifier.fileno() == -1
    notifier.close()  # idempotent
    assert notifier.notify(Notification.REVOCATION) == 0  # closed: a no-op


def test_open_tightens_a_group_readable_directory(bus_dir: Path) -> None:
    bus_dir.mkdir(parents=True)
    bus_dir.chmod(0o755)
    notifier = WorkerNotifier(bus_dir)
    notifier.open()
    notifier.close()
    assert _mode(bus_dir) == 0o700


def test_open_refuses_a_symlink_and_a_foreign_directory(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    link = tmp_path / "link"
    link.symlink_to(real)
    with pytest.raises(NotifyDirectoryError, match="is not a directory"):
        WorkerNotifier(link).open()
    if os.geteuid() != 0:
        pytest.skip("chown to another user needs root")
    os.chown(real, 65534, 65534)
    with pytest.raises(NotifyDirectoryError, match="is owned by uid 65534"):
        WorkerNotifier(real).open()
    assert os.listdir(real) == []


def test_notify_reaches_every_sibling_but_not_itself(bus_dir: Path) -> None:
    notifiers = [WorkerNotifier(bus_dir) for _ in range(3)]
    for notifier in notifiers:
        notifier.open()
    try:
        first, second, third = notifiers
        assert first.notify(Notification.REVOCATION) == 2
        assert first.notify(Notification.CRL) == 2
        assert first.sent == 4
        assert second.receive() == {Notification.REVOCATION, Notification.CRL}
        assert third.receive() == {Notification.REVOCATION, Notification.CRL}
        assert first.receive() == set()
        assert second.receive() == set()  # drained
    finally:
        for notifier in notifiers:
            notifier.close()


def test_garbage_datagrams_are_ignored(pair: tuple[WorkerNotifier, WorkerNotifier]) -> None:
    first, second = pair
    for data in (
        b"",
        b"garbage",
        MESSAGE_REVOCATION + b"\n",
        MESSAGE_REVOCATION[:-1],
        MESSAGE_CRL + b"x" * 4000,  # truncated to 64 bytes on receipt, then not a message
        b"\xff" * 200,
    ):
        _send_raw(first.directory, second.name, data)
    assert second.receive() == set()
    assert second.ignored == 6
    _send_raw(first.directory, second.name, MESSAGE_CRL)
    assert second.receive() == {Notification.CRL}
    assert second.ignored == 6


def test_foreign_files_in_the_directory_are_left_alone(
    pair: tuple[WorkerNotifier, WorkerNotifier],
) -> None:
    first, second = pair
    (first.directory / "notes.txt").write_text("not a socket")
    (first.directory / "1-00000000.sock").write_text("not a socket either")
    assert first.notify(Notification.REVOCATION) == 1
    assert sorted(os.listdir(first.directory)) == sorted(
        ["notes.txt", "1-00000000.sock", first.name, second.name]
    )
    assert second.receive() == {Notification.REVOCATION}


def test_stale_sockets_are_removed_quietly(bus_dir: Path) -> None:
    bus_dir.mkdir(parents=True, mode=0o700)
    stale_at_start = "4000000-0badcafe.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as dead:
        dead.bind(str(bus_dir / stale_at_start))  # the file outlives the socket
    first = WorkerNotifier(bus_dir)
    first.open()
    second = WorkerNotifier(bus_dir)
    second.open()
    try:
        assert sorted(os.listdir(bus_dir)) == sorted([first.name, second.name])  # swept
        stale_later = "4000001-0badcafe.sock"
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as dead:
            dead.bind(str(bus_dir / stale_later))
        assert first.notify(Notification.REVOCATION) == 1  # no exception for the dead one
        assert sorted(os.listdir(bus_dir)) == sorted([first.name, second.name])
        assert second.receive() == {Notification.REVOCATION}
    finally:
        first.close()
        second.close()


def test_a_full_queue_is_not_an_error(pair: tuple[WorkerNotifier, WorkerNotifier]) -> None:
    first, second = pair
    delivered = [first.notify(Notification.REVOCATION) for _ in range(2000)]
    assert set(delivered) == {0, 1}  # the receiver's queue filled up; nothing raised
    assert delivered[0] == 1
    assert second.receive() == {Notification.REVOCATION}
    assert first.notify(Notification.CRL) == 1  # drained: delivered again
    assert second.receive() == {Notification.CRL}


def test_muted_sends_nothing_in_its_thread_only(
    pair: tuple[WorkerNotifier, WorkerNotifier],
) -> None:
    first, second = pair
    other_thread: list[int] = []
    with first.muted():
        assert first.notify(Notification.REVOCATION) == 0
        first.revocation_listener(1, "0a")
        worker = threading.Thread(
            target=lambda: other_thread.append(first.notify(Notification.CRL))
        )
        worker.start()
        worker.join(WAIT)
    assert other_thread == [1]
    assert second.receive() == {Notification.CRL}
    first.crl_listener()
    first.revocation_listener(1, "0a")
    assert second.receive() == {Notification.CRL, Notification.REVOCATION}


def test_a_long_directory_is_reached_through_proc(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60) / "notify"
    assert len(os.fsencode(deep)) > 108
    first, second = WorkerNotifier(deep), WorkerNotifier(deep)
    first.open()
    second.open()
    try:
        assert first.notify(Notification.CRL) == 1
        assert second.receive() == {Notification.CRL}
        assert _mode(deep / second.name) == 0o600
    finally:
        first.close()
        second.close()
    assert os.listdir(deep) == []


def test_attach_calls_back_in_the_loop_and_survives_garbage(
    pair: tuple[WorkerNotifier, WorkerNotifier],
) -> None:
    first, second = pair
    heard: list[set[Notification]] = []

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        got = asyncio.Event()

        def on_notified(kinds: set[Notification]) -> None:
            heard.append(kinds)
            got.set()

        second.attach(loop, on_notified)
        _send_raw(first.directory, second.name, b"not a notification")
        first.notify(Notification.REVOCATION)
        await asyncio.wait_for(got.wait(), WAIT)
        second.detach()

    asyncio.run(scenario())
    assert heard == [{Notification.REVOCATION}]
    assert second.ignored == 1


def test_attach_needs_an_open_notifier(bus_dir: Path) -> None:
    async def scenario() -> None:
        WorkerNotifier(bus_dir).attach(asyncio.get_running_loop(), lambda kinds: None)

    with pytest.raises(RuntimeError, match="not open"):
        asyncio.run(scenario())


def test_open_notifier_follows_the_setting(settings: Settings) -> None:
    assert notify_directory(settings) == settings.var_dir / "run" / "notify"
    assert open_notifier(settings.model_copy(update={"worker_notify": False})) is None
    notifier = open_notifier(settings)
    assert notifier is not None
    try:
        assert os.listdir(notify_directory(settings)) == [notifier.name]
    finally:
        notifier.close()


def test_open_notifier_falls_back_to_polling_when_the_directory_is_unusable(
    settings: Settings,
) -> None:
    run = settings.var_dir / "run"
    run.mkdir(parents=True)
    (run / "notify").write_text("a file where the directory should be")
    assert open_notifier(settings) is None


# ----------------------------------------------------------------------------- coalescing


def test_coalesced_job_runs_once_more_for_a_burst() -> None:
    started = threading.Event()
    release = threading.Event()
    results: list[int] = []
    calls: list[str] = []

    def job() -> int:
        calls.append(threading.current_thread().name)
        started.set()
        release.wait(WAIT)
        return len(calls)

    async def scenario() -> None:
        runner = CoalescedJob(job, name="test-job", on_result=results.append)
        runner.request()
        await asyncio.to_thread(started.wait, WAIT)
        for _ in range(50):  # a burst while the first run is busy
            runner.request()
        release.set()
        while runner.runs < 2:
            await asyncio.sleep(0.001)
        await runner.aclose()

    asyncio.run(scenario())
    assert results == [1, 2]
    assert all(name.startswith("test-job") for name in calls)


def test_coalesced_job_survives_a_failing_run() -> None:
    outcomes = iter([RuntimeError("database away"), None])
    results: list[None] = []

    def job() -> None:
        outcome = next(outcomes)
        if outcome is not None:
            raise outcome

    async def scenario() -> None:
        runner = CoalescedJob(job, name="test-failing", on_result=results.append)
        runner.request()
        while runner._task is not None and not runner._task.done():
            await asyncio.sleep(0.001)
        assert runner.runs == 0
        runner.request()
        while runner.runs < 1:
            await asyncio.sleep(0.001)
        await runner.aclose()

    asyncio.run(scenario())
    assert results == [None]


# ----------------------------------------------------------------------------- two workers


class _Worker:
    """A second worker: its own services and mTLS holder, its listener sync running in
    its own event loop thread, polling only once an hour."""

    def __init__(self, settings: Settings, clock: FrozenClock) -> None:
        self.services = build_services(settings, clock=clock)
        self.holder = SSLContextHolder(build_mtls_context(self.services))
        self.initial_context = self.holder.current
        self.notifier = WorkerNotifier(notify_directory(settings))
        self.notifier.open()
        self.sync = ListenerSync(
            self.services, self.holder, notifier=self.notifier, poll_seconds=3600
        )
        self.sync.refresh_now()
        self.sync.connect()
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, name="second-worker", daemon=True)
        self._thread.start()
        assert self._started.wait(WAIT), "the second worker's loop did not start"

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.call_soon(self.sync.start)
        self._loop.call_soon(self._started.set)
        self._loop.run_forever()

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.sync.aclose(), self._loop).result(WAIT)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(WAIT)
        self._loop.close()
        self.services.dispose()


def _wait_for(condition: object, what: str) -> None:
    assert callable(condition)
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, f"not within {WAIT} s: {what}"
        time.sleep(0.002)


def test_a_revocation_reaches_the_sibling_worker_without_polling(
    client: TestClient, services: Services, settings: Settings, clock: FrozenClock
) -> None:
    issued = issue_client(services)
    token = officer_token(client, services, "sam", "security_officer")
    sibling = _Worker(settings, clock)
    # This worker: announce its revocations and publications, as serve() wires it.
    holder = SSLContextHolder(build_mtls_context(services))
    notifier = open_notifier(settings)
    assert notifier is not None
    this = ListenerSync(services, holder, notifier=notifier, poll_seconds=3600)
    this.refresh_now()
    this.connect()
    try:
        assert not sibling.services.revocation_status.is_revoked(
            issued.record.issuer_id, issued.serial_hex
        )
        crl_version_before = sibling.sync.crl_version
        response = client.post(
            f"/api/v1/officer/certificates/{issued.serial_hex}/revoke",
            json={"reason": "keyCompromise"},
            headers=bearer(token),
        )
        assert response.status_code == 200, response.text
        # One datagram for the revocation (mark_revoked), one for the CRL publication.
        assert notifier.sent == 2
        _wait_for(
            lambda: sibling.services.revocation_status.is_revoked(
                issued.record.issuer_id, issued.serial_hex
            ),
            "the sibling's revocation status",
        )
        with services.sessions() as session:
            newest_crl = session.scalar(select(func.max(PublishedCRL.id)))
            revocation_id = session.scalar(select(func.max(Revocation.id)))
        _wait_for(lambda: sibling.sync.crl_version == newest_crl, "the sibling's CRL swap")
        assert newest_crl is not None and newest_crl > crl_version_before
        assert sibling.holder.current is not sibling.initial_context
        assert sibling.services.revocation_status.version == revocation_id
        # The sibling learned from the database and did not echo it back.
        assert sibling.notifier.sent == 0
        assert notifier.receive() == set()
        # This worker swapped its own context before answering (a CRL listener).
        assert this.crl_version == newest_crl
    finally:
        sibling.stop()
        notifier.close()
    assert os.listdir(notify_directory(settings)) == []


def test_socket_named_symlinks_and_directories_are_left_alone(
    pair: tuple[WorkerNotifier, WorkerNotifier], tmp_path: Path
) -> None:
    """Entries named like sockets that are not (a dangling symlink, a symlink to a
    regular file, a directory) are neither deleted nor counted as delivered, also
    when a new notifier sweeps the directory at open."""
    first, second = pair
    directory = first.directory
    (tmp_path / "plain").write_text("x")
    (directory / "2-00000000.sock").symlink_to(tmp_path / "nowhere.sock")
    (directory / "3-00000000.sock").symlink_to(tmp_path / "plain")
    (directory / "4-00000000.sock").mkdir()
    assert first.notify(Notification.REVOCATION) == 1
    assert second.receive() == {Notification.REVOCATION}
    third = WorkerNotifier(directory)
    third.open()
    try:
        assert third.notify(Notification.CRL) == 2
        assert first.receive() == {Notification.CRL}
        assert second.receive() == {Notification.CRL}
    finally:
        third.close()
    assert sorted(os.listdir(directory)) == sorted(
        ["2-00000000.sock", "3-00000000.sock", "4-00000000.sock", first.name, second.name]
    )
    assert (tmp_path / "plain").read_text() == "x"
