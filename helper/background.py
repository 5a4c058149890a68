"""``-d``: run in the background, and still say whether the start worked.

The C helper calls ``daemon(0, 0)`` once its socket listens: the parent exits 0 at once, the
daemon's own start-up errors after that (pidfile, privilege drop) go to /dev/null, and a
caller that connects as soon as the command returns may find nobody serving yet. Ours forks at
the same point, but the parent waits: it exits 0 once the daemon has written its pidfile,
dropped its privileges and serves, or with the daemon's exit status, the daemon's error on the
terminal they share until then.

Under a ``Type=notify`` unit the parent is the main process the manager listens to, so the
parent tells it ``READY=1`` with ``MAINPID=`` the daemon (sd_notify(3)): a READY=1 of the
daemon's own would not pass ``NotifyAccess=main``. From then on the daemon is the main process,
and its ``STOPPING=1`` is heard.
"""

from __future__ import annotations

import os
import signal
import sys

from scsi_pr.helper.systemd import NotifyError, ServiceNotifier

#: the first byte of the daemon's report: it serves (the rest is its STATUS line, which names
#: a socket path of at most 108 bytes); the parent reads it whole (one write of under PIPE_BUF
#: bytes to a pipe is atomic) or, the daemon gone, nothing
SERVING = b"+"
_READ_SIZE = 4096


class Daemon:
    """The daemon's end of the pipe its parent waits on; ``let_go``: the fds that go to
    /dev/null once it serves (stdout and stderr)."""

    def __init__(self, fd: int, let_go: tuple[int, ...] = (1, 2)) -> None:
        self._fd: int | None = fd
        self._let_go = let_go

    def ready(self, status: str) -> None:
        """We serve: the parent passes ``status`` on and exits 0. Then the terminal is let
        go (stdout and stderr to /dev/null), as ``daemon(0, 0)`` does at once."""
        if self._fd is None:
            return
        try:
            os.write(self._fd, SERVING + status.encode())
        except OSError:
            pass  # the parent is gone (killed): nobody waits for the answer any more
        finally:
            os.close(self._fd)
            self._fd = None
        _to_null(*self._let_go)


def detach(name: str, notifier: ServiceNotifier) -> Daemon:
    """Fork. In the parent this never returns: it waits for ``Daemon.ready`` or the daemon's
    end, and exits (``os._exit``: the socket and pidfile cleanups belong to the daemon). In the
    daemon: a new session, cwd /, stdin from /dev/null; stdout and stderr stay until ready."""
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid:
        os.close(write_end)
        sys.stdout.flush()
        os._exit(_wait_for(pid, read_end, name, notifier))
    os.close(read_end)
    os.setsid()
    os.chdir("/")
    _to_null(0)
    return Daemon(write_end)


def _wait_for(pid: int, read_end: int, name: str, notifier: ServiceNotifier) -> int:
    # Killed or interrupted while waiting, the parent just dies: the daemon goes on (it owns
    # the socket); the handlers main() installed would raise into its cleanup.
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_DFL)
    report = os.read(read_end, _READ_SIZE)
    if report.startswith(SERVING):
        try:
            notifier.ready(report[len(SERVING) :].decode(), main_pid=pid)
        except NotifyError as e:
            # the manager would kill the unit at its start timeout: fail now, and take the
            # daemon with us rather than leave one the manager does not know of
            _say(f"{name}: {e}")
            os.kill(pid, signal.SIGTERM)
            return 1
        return 0
    _, wait_status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(wait_status)
    if code > 0:  # its error is on the terminal we share
        return code
    if code < 0:  # killed by a signal: the shell's numbering
        return 128 - code
    _say(f"{name}: the daemon ended before it served")  # stopped (SIGTERM): not started
    return 1


def _to_null(*fds: int) -> None:
    null = os.open(os.devnull, os.O_RDWR)
    for fd in fds:
        os.dup2(null, fd)
    if null not in fds:  # a closed stdin made /dev/null fd 0 itself
        os.close(null)


def _say(message: str) -> None:
    print(message, file=sys.stderr)
    sys.stderr.flush()
