"""Wake-up calls between sibling ``ehrca serve`` workers on one host.

Each worker keeps two things in memory for its mTLS listener: the revocation status
(:class:`revocation.status.RevocationStatusCache`) and an SSL context holding the
newest CRLs. Every worker polls the database for both (``EHRCA_STATUS_POLL_SECONDS``,
default 0.5 s); with this module the worker that revoked or published wakes its
siblings before its answer leaves, and they catch up within milliseconds (one small
query, and for a new CRL a new SSL context), while the poll stays as the fallback
(workers on other hosts, a lost datagram, a notification directory that cannot be
used).

Protocol:

- Every worker binds a Unix datagram socket (``AF_UNIX``/``SOCK_DGRAM``, unix(7))
  named ``<pid>-<8 hex>.sock`` in the notification directory (``ehrca serve``:
  ``<EHRCA_VAR_DIR>/run/notify``). The directory is created with mode 0700 and must
  be a real directory owned by this user (a group/world-accessible one is tightened
  to 0700); each socket file is 0600. So only this user (and root) can send.
- A message is a hint, never data: exactly :data:`MESSAGE_REVOCATION` ("a revocation
  was committed") or :data:`MESSAGE_CRL` ("a CRL was published"). The receiver then
  reads the committed state from the database itself, so a forged, repeated,
  reordered or lost datagram cannot make a worker believe anything false; the worst
  it does is cost one cheap refresh. Anything else (other bytes, longer datagrams)
  is ignored and counted in :attr:`WorkerNotifier.ignored`.
- Senders send only after the commit (the callers: the status cache's listeners run
  after ``mark_revoked``, which follows the commit; CRL listeners after publication),
  so the receiver's refresh, which starts after the datagram arrived, sees the row.
- Sending is best effort and never blocks or raises. A full receive queue
  (``EAGAIN``) means the receiver already has unread wake-ups, which trigger a
  refresh that starts after this send, so nothing is lost. A socket file nobody is
  bound to any more (a killed worker: ``ECONNREFUSED``) is deleted. Other errors
  are logged; the poll covers them.
- A socket path longer than ``sun_path`` (108 bytes) is reached through
  ``/proc/self/fd/<directory fd>/<name>``.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import errno
import logging
import os
import re
import secrets
import socket
import stat
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Generic, TypeVar

__all__ = [
    "MESSAGE_CRL",
    "MESSAGE_REVOCATION",
    "CoalescedJob",
    "Notification",
    "NotifyDirectoryError",
    "WorkerNotifier",
    "notify_siblings",
]

log = logging.getLogger("ehrca.notify")

MESSAGE_REVOCATION = b"ehrca-notify/1 revocation"
"""Datagram meaning: a revocation was committed; refresh the revocation status."""
MESSAGE_CRL = b"ehrca-notify/1 crl"
"""Datagram meaning: a CRL was published; load the newest CRLs into the SSL context."""

_MAX_DATAGRAM = 64  # bytes read per datagram: longer ones are truncated, then ignored
_MAX_READS = 1024  # datagrams drained per readable event (the rest on the next one)
_SUN_PATH_MAX = 107  # usable bytes of sockaddr_un.sun_path (108 with the NUL), unix(7)
_NAME = re.compile(r"\A[0-9]{1,10}-[0-9a-f]{8}\.sock\Z")


class Notification(enum.Enum):
    """What a sibling says happened (and so what the receiver should re-read)."""

    REVOCATION = "revocation"
    CRL = "crl"


_MESSAGES: dict[bytes, Notification] = {
    MESSAGE_REVOCATION: Notification.REVOCATION,
    MESSAGE_CRL: Notification.CRL,
}
_DATAGRAMS: dict[Notification, bytes] = {kind: data for data, kind in _MESSAGES.items()}


class NotifyDirectoryError(OSError):
    """The notification directory is unsafe: not a directory, a symlink, or owned by
    another user."""


class WorkerNotifier:
    """This worker's end of the sibling notification bus (see the module docstring).

    Thread-safe for :meth:`notify` (called from request threads); :meth:`receive`,
    :meth:`attach` and :meth:`detach` belong to the event loop thread.

    Attributes:
        directory: the notification directory.
        name: this worker's socket file name in it, ``<pid>-<8 hex>.sock``.
        ignored: datagrams received that were not a known message.
        sent: datagrams handed to a sibling's socket.
    """

    def __init__(self, directory: Path) -> None:
        """Prepare (nothing is created until :meth:`open`).

        Args:
            directory: the notification directory, shared by the siblings.
        """
        self.directory = Path(directory)
        self.name = f"{os.getpid()}-{secrets.token_hex(4)}.sock"
        self.ignored = 0
        self.sent = 0
        self._sock: socket.socket | None = None
        self._dir_fd: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._muted = threading.local()
        self._sent_lock = threading.Lock()
        self._warned: set[str] = set()

    # ------------------------------------------------------------------ lifecycle

    def open(self) -> None:
        """Create (or check) the directory, sweep dead siblings' socket files, bind.

        Raises:
            NotifyDirectoryError: the directory is a symlink, not a directory, or owned
                by another user.
            OSError: it cannot be created, or the socket cannot be bound.
        """
        if self._sock is not None:
            return
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = os.lstat(self.directory)
        if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
            raise NotifyDirectoryError(f"{self.directory} is not a directory")
        if info.st_uid != os.geteuid():
            raise NotifyDirectoryError(f"{self.directory} is owned by uid {info.st_uid}")
        dir_fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            if stat.S_IMODE(os.fstat(dir_fd).st_mode) != 0o700:
                os.fchmod(dir_fd, 0o700)
            self._dir_fd = dir_fd
            self._sweep()
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            try:
                sock.setblocking(False)
                sock.bind(self._address(self.name))
                os.chmod(self.name, 0o600, dir_fd=dir_fd)
            except BaseException:
                sock.close()
                raise
        except BaseException:
            self._dir_fd = None
            os.close(dir_fd)
            raise
        self._sock = sock

    def close(self) -> None:
        """Stop listening, close the socket and delete its file. Idempotent."""
        self.detach()
        sock, self._sock = self._sock, None
        dir_fd, self._dir_fd = self._dir_fd, None
        if sock is not None:
            sock.close()
        if dir_fd is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.name, dir_fd=dir_fd)
            os.close(dir_fd)

    def fileno(self) -> int:
        """The bound socket's descriptor (-1 when not open)."""
        return self._sock.fileno() if self._sock is not None else -1

    # ------------------------------------------------------------------ sending

    def notify(self, kind: Notification) -> int:
        """Send ``kind`` to every sibling socket in the directory; never raises.

        Does nothing when closed or inside :meth:`muted` in this thread.

        Returns:
            How many siblings it was delivered to.
        """
        sock, dir_fd = self._sock, self._dir_fd
        if sock is None or dir_fd is None or getattr(self._muted, "active", False):
            return 0
        data = _DATAGRAMS[kind]
        delivered = 0
        try:
            names = [n for n in os.listdir(dir_fd) if n != self.name and _NAME.match(n)]
        except OSError as exc:
            self._warn_once("list", "cannot list %s: %s", self.directory, exc)
            return 0
        for name in names:
            try:
                sock.sendto(data, self._address(name))
                delivered += 1
            except BlockingIOError:
                pass  # its queue is full of wake-ups that will refresh after this send
            except (ConnectionRefusedError, FileNotFoundError):
                self._unlink_stale(name)
            except OSError as exc:
                self._warn_once(f"send {exc.errno}", "notifying %s failed: %s", name, exc)
        with self._sent_lock:
            self.sent += delivered
        return delivered

    @contextlib.contextmanager
    def muted(self) -> Iterator[None]:
        """In this thread, make :meth:`notify` do nothing inside the block: a worker
        refreshing because of a sibling (or the poll) must not echo what it learns."""
        previous = getattr(self._muted, "active", False)
        self._muted.active = True
        try:
            yield
        finally:
            self._muted.active = previous

    def revocation_listener(self, _issuer_id: int, _serial_hex: str) -> None:
        """A :meth:`revocation.status.RevocationStatusCache.add_listener` callback:
        tell the siblings a revocation was committed."""
        self.notify(Notification.REVOCATION)

    def crl_listener(self) -> None:
        """A ``Services.crl_listeners`` callback: tell the siblings a CRL was published."""
        self.notify(Notification.CRL)

    # ------------------------------------------------------------------ receiving

    def receive(self) -> set[Notification]:
        """Drain the socket without blocking; return the kinds of the valid messages.

        Any other datagram is ignored (counted in :attr:`ignored`); at most
        ``_MAX_READS`` are read per call.
        """
        sock = self._sock
        kinds: set[Notification] = set()
        if sock is None:
            return kinds
        for _ in range(_MAX_READS):
            try:
                data = sock.recv(_MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:  # never let the socket take the worker down
                self._warn_once(f"recv {exc.errno}", "receiving a notification failed: %s", exc)
                break
            kind = _MESSAGES.get(data)
            if kind is None:
                self.ignored += 1
                self._warn_once("garbage", "ignored a datagram that is not a notification")
            else:
                kinds.add(kind)
        return kinds

    def attach(
        self, loop: asyncio.AbstractEventLoop, on_notified: Callable[[set[Notification]], None]
    ) -> None:
        """Watch the socket in ``loop`` (``add_reader``); call ``on_notified(kinds)`` in
        the loop thread for each batch of valid messages. An exception in it is logged.

        Raises:
            RuntimeError: not open.
        """
        if self._sock is None:
            raise RuntimeError("the notifier is not open")
        self.detach()

        def _readable() -> None:
            kinds = self.receive()
            if kinds:
                try:
                    on_notified(kinds)
                except Exception:
                    log.exception("handling a worker notification failed")

        loop.add_reader(self._sock.fileno(), _readable)
        self._loop = loop

    def detach(self) -> None:
        """Stop watching the socket (queued datagrams stay queued). Idempotent."""
        loop, self._loop = self._loop, None
        if loop is not None and self._sock is not None and not loop.is_closed():
            loop.remove_reader(self._sock.fileno())

    # ------------------------------------------------------------------ helpers

    def _address(self, name: str) -> str:
        """The ``sun_path`` that reaches ``name`` in the directory (see the module doc)."""
        path = str(self.directory / name)
        if len(os.fsencode(path)) <= _SUN_PATH_MAX:
            return path
        return f"/proc/self/fd/{self._dir_fd}/{name}"

    def _sweep(self) -> None:
        """Delete the socket files no process is bound to any more (killed workers).

        ``connect(2)`` on a datagram socket sends nothing: it succeeds for a live
        socket and fails with ``ECONNREFUSED`` for a dead one.
        """
        assert self._dir_fd is not None
        for name in os.listdir(self._dir_fd):
            if not _NAME.match(name):
                continue
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as probe:
                try:
                    probe.connect(self._address(name))
                except ConnectionRefusedError:
                    self._unlink_stale(name)
                except OSError:
                    continue

    def _unlink_stale(self, name: str) -> None:
        dir_fd = self._dir_fd
        if dir_fd is None:
            return
        try:
            if stat.S_ISSOCK(os.lstat(name, dir_fd=dir_fd).st_mode):
                os.unlink(name, dir_fd=dir_fd)
                log.debug("removed the stale notification socket %s", name)
        except OSError as exc:
            if exc.errno != errno.ENOENT:
                self._warn_once("unlink", "cannot remove the stale socket %s: %s", name, exc)

    def _warn_once(self, key: str, message: str, *args: object) -> None:
        if key in self._warned:
            log.debug(message, *args)
        else:
            self._warned.add(key)
            log.warning(message, *args)


T = TypeVar("T")


def notify_siblings(directory: Path, *kinds: Notification) -> int:
    """Send-only, for a process that is not a worker (the CLI, after its commits): tell
    every worker bound in ``directory`` about each of ``kinds``; never raises.

    Binds a :class:`WorkerNotifier` for the duration of the call (the directory checks
    of :meth:`WorkerNotifier.open` apply) and removes it again. Does nothing when the
    directory does not exist (no worker ever ran here); a failure is logged, and the
    workers' poll still picks the change up.

    Returns:
        How many datagrams were delivered.
    """
    if not Path(directory).is_dir():
        return 0
    notifier = WorkerNotifier(directory)
    try:
        notifier.open()
    except OSError as exc:
        log.warning("cannot notify the workers in %s: %s", directory, exc)
        return 0
    try:
        return sum(notifier.notify(kind) for kind in kinds)
    finally:
        notifier.close()


class CoalescedJob(Generic[T]):
    """A blocking job run in its own thread on request, with requests coalesced.

    :meth:`request` (loop thread only) runs ``job`` soon; requests that arrive while it
    runs make it run once more afterwards, never more, so a burst of notifications
    costs at most two runs and a run always starts after the latest request. Runs
    never overlap. ``on_result(result)`` is called in the loop thread after each run;
    an exception from ``job`` or ``on_result`` is logged and the next request runs
    the job again.
    """

    def __init__(
        self,
        job: Callable[[], T],
        *,
        name: str,
        on_result: Callable[[T], None] | None = None,
    ) -> None:
        """Args:
        job: the blocking callable (e.g. a small database query).
        name: thread name prefix, and the name in log messages.
        on_result: called with each run's result, in the loop thread.
        """
        self._job = job
        self._name = name
        self._on_result = on_result
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._wanted = False
        self._task: asyncio.Task[None] | None = None
        self.runs = 0

    def request(self) -> None:
        """Ask for a run that starts after now (call in the event loop thread).

        Raises:
            RuntimeError: no running event loop in this thread.
        """
        self._wanted = True
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        while self._wanted:
            self._wanted = False
            try:
                result = await loop.run_in_executor(self._executor, self._job)
                self.runs += 1
                if self._on_result is not None:
                    self._on_result(result)
            except Exception:
                log.exception("%s failed", self._name)

    async def aclose(self) -> None:
        """Cancel a pending run, wait for none, and let the thread go."""
        self._wanted = False
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._executor.shutdown(wait=False, cancel_futures=True)
