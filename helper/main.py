"""``scsi-pr-helper``: the process life cycle of qemu-pr-helper, in its order.

Startup follows the C helper: options (``scsi_pr.helper.options``), trace (-T), listen or
socket activation, daemonize, pidfile, privilege drop, run until SIGTERM/SIGINT/SIGHUP, then
remove the socket and the pidfile. Extra long options choose what executes the commands:
``--backend sg`` (default: SG_IO, with dm-multipath devices handled as the C helper's
multipath build does) or ``--backend sim`` (regular files are simulated LUs; ``--initiator``,
``--state-dir``), and set the server's limits.

Where it deliberately differs (docs/helper.md, "Known differences"): a socket file at the
``-k`` path is replaced only when nobody answers on it, the ``-d`` parent returns once the daemon
serves (``scsi_pr.helper.background``), the capabilities kept are the ones the
executor declares (none for sim), NoNewPrivs is set, and the sim state dir is handed to the
``-u``/``-g`` user before the drop (``scsi_pr.helper.state_owner``).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import shutil
import signal
import socket
import stat
import sys
from collections.abc import Callable, Sequence
from typing import TextIO

from scsi_pr.helper import caps, cpus, state_owner
from scsi_pr.helper.background import detach
from scsi_pr.helper.daemon import Audit, HelperServer, ListenerError
from scsi_pr.helper.errors import HelperError
from scsi_pr.helper.executable import PROGRAM
from scsi_pr.helper.executors.base import Executor
from scsi_pr.helper.options import Exit, Options, parse, parse_trace
from scsi_pr.helper.systemd import (
    FIRST_SOCKET_ACTIVATION_FD,
    NotifyError,
    ServiceNotifier,
    listener_name,
    socket_activation,
)


class SocketInUse(HelperError):
    """A live helper (or anything else) listens on the ``-k`` path: it is not ours to take."""


class StateDirUnusable(HelperError):
    """The ``-u``/``-g`` user could not write the sim state dir: every command would fail."""


def answers(path: str) -> bool:
    """Whether something listens on the socket file at ``path``. A non-blocking connect
    succeeds, or finds the backlog full (EAGAIN), only then; a stale file (its helper died)
    refuses (ECONNREFUSED). The listener sees a client that leaves at once, as with
    ``rig.processes.wait_listening``."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.setblocking(False)
        try:
            probe.connect(path)
        except BlockingIOError:
            return True
        except OSError:
            return False
    return True


def listen(path: str) -> socket.socket:
    """Listen on ``path``. A stale socket file from a previous run is replaced, as QEMU's
    listen does, but a live one is refused (SocketInUse): the C helper unlinks it even when it
    then fails on the pidfile lock, which cuts the running helper off from every new client."""
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISSOCK(os.lstat(path).st_mode):
            if answers(path):
                raise SocketInUse("a helper is already listening there")
            os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock


def write_pidfile(path: str) -> int:
    """Create and lock the pidfile (kept open: the lock lives as long as we do)."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o600)
    except OSError as e:
        raise OSError(e.errno, f"Could not create '{path}': {e.strerror}") from e
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        os.close(fd)
        raise OSError(e.errno, f"Cannot lock pid file: {e.strerror}") from e
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def make_executor(opts: Options) -> Executor:
    if opts.backend == "sim":
        from scsi_pr.helper.executors.sim import DEFAULT_INITIATOR, SimExecutor

        return SimExecutor(
            DEFAULT_INITIATOR if opts.initiator is None else opts.initiator,
            opts.state_dir,
            opts.target_port,
            max(opts.target_ports, opts.target_port),
            opts.profile,
        )
    if opts.backend == "ioctl":
        from scsi_pr.helper.executors.ioctl import IoctlExecutor

        return IoctlExecutor()
    from scsi_pr.helper.executors.multipath import with_multipath
    from scsi_pr.helper.executors.sg import SgExecutor

    return with_multipath(SgExecutor(), verbose=opts.loglevel, quiet=opts.quiet)


def make_server(opts: Options, executor: Executor, audit: Audit) -> HelperServer:
    return HelperServer(
        executor,
        audit,
        verbose=opts.verbose,
        max_clients=opts.max_clients,
        idle_timeout=opts.idle_timeout,
        shutdown_grace=opts.shutdown_grace,
    )


def hand_over_state_dir(opts: Options) -> None:
    """Give the sim state dir to the ``-u``/``-g`` user, who must then be able to write it
    (StateDirUnusable otherwise). Nothing to do without a state dir or a user to give it to."""
    if opts.backend != "sim" or opts.state_dir is None:
        return
    if opts.uid is None and opts.gid is None:
        return
    uid = os.getuid() if opts.uid is None else opts.uid
    gid = os.getgid() if opts.gid is None else opts.gid
    try:
        state_owner.hand_over(opts.state_dir, opts.uid, opts.gid)
    except OSError as e:
        raise StateDirUnusable(
            f"cannot hand state dir {opts.state_dir} to uid {uid}, gid {gid}: {e.strerror}"
        ) from e
    if not state_owner.writable_by(opts.state_dir, opts.uid, opts.gid):
        raise StateDirUnusable(
            f"state dir {opts.state_dir} is not writable by uid {uid}, gid {gid}"
        )


def drop_privileges(opts: Options, executor: Executor) -> None:
    """Keep exactly the capabilities ``executor`` declares, switch to ``-u``/``-g``, set
    NoNewPrivs. A helper started without root has nothing to drop but still sets NoNewPrivs."""
    if os.geteuid() != 0 and opts.uid is None and opts.gid is None:
        caps.no_new_privileges()
        return
    hand_over_state_dir(opts)
    caps.drop_privileges(opts.uid, opts.gid, caps.numbers(executor.capabilities))


async def _run(
    server: HelperServer,
    listener: socket.socket,
    notifier: ServiceNotifier,
    announce: Callable[[str], None],
) -> None:
    """Serve until a signal. ``announce`` tells whoever waits for our start that we serve: the
    service manager (``notifier.ready``) or, under ``-d``, the parent (``Daemon.ready``)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def stopping() -> None:
        notifier.stopping()
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.add_signal_handler(sig, stopping)

    def ready() -> None:  # once serve() has found the listener usable
        announce(f"serving {listener_name(listener)}")

    await server.serve(listener, stop, ready)


def invoked_name(path: str) -> str:
    """argv[0] as the user typed it, as far as we can tell. The kernel's shebang handling
    replaces it with the script's path; when that path is what PATH resolves the bare name
    to, the user most likely typed the bare name (what the C helper would print)."""
    base = os.path.basename(path)
    found = shutil.which(base)
    if found and os.path.realpath(found) == os.path.realpath(path):
        return base
    return path


def main(argv: Sequence[str] | None = None) -> int:
    # An empty argv (execve allows it) runs as the program's own name would, with no options.
    argv = list(sys.argv if argv is None else argv) or [PROGRAM]
    if argv[0]:
        argv[0] = invoked_name(argv[0])
    name = os.path.basename(argv[0])
    try:
        return _main(argv, name)
    except Exit as e:
        return e.code
    except KeyboardInterrupt:
        return 0


def _interrupted(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def _main(argv: list[str], name: str) -> int:
    def fail(message: str) -> Exit:
        print(f"{name}: {message}", file=sys.stderr)
        return Exit(1)

    opts = parse(argv, sys.stdout, sys.stderr)
    try:
        patterns, trace_file = parse_trace(opts.traces)
        stream: TextIO | None = open(trace_file, "a") if trace_file else sys.stderr  # noqa: SIM115
    except (OSError, ValueError) as e:
        raise fail(str(e)) from None
    if opts.quiet and not opts.traces:
        stream = None
    audit = Audit.from_patterns(patterns, stream)
    try:  # before any thread starts: the ones started later inherit the mask
        cpus.confine(opts.cpus)
    except cpus.CpuListError as e:
        raise fail(str(e)) from None
    try:
        executor = make_executor(opts)
    except (OSError, ValueError) as e:
        raise fail(str(e)) from None

    # Until the loop's own handlers take over (_run), a SIGTERM or SIGHUP that arrives once the
    # socket exists would end us by default action, leaving the socket file and the pidfile
    # behind; as KeyboardInterrupt it takes the cleanup below. SIGINT too: Python leaves it
    # ignored when we were started with it ignored (a shell's background job), and the C
    # helper, like our loop, stops on all three whatever it inherited.
    for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(signum, _interrupted)
    activated = socket_activation()
    created_path: str | None = None
    if activated == 0:
        try:
            listener = listen(opts.socket_path)
        except SocketInUse as e:
            raise fail(f"Failed to bind socket to {opts.socket_path}: {e}") from None
        except OSError as e:
            raise fail(f"Failed to bind socket to {opts.socket_path}: {e.strerror}") from None
        created_path = opts.socket_path
    else:
        if opts.socket_given:
            raise fail("Unix socket can't be set when using socket activation")
        if activated > 1:
            raise fail(f"{argv[0]} does not support socket activation with LISTEN_FDS > 1")
        try:
            listener = socket.socket(fileno=FIRST_SOCKET_ACTIVATION_FD)
        except OSError as e:
            raise fail(f"Failed to use socket activation: {e.strerror}") from None
    pid_fd = None
    notifier = ServiceNotifier(None)
    try:
        try:  # after fd 3 is adopted: the notifier's socket must not take a free fd 3
            notifier = ServiceNotifier.from_environment()
        except NotifyError as e:
            raise fail(str(e)) from None
        announce = notifier.ready
        if opts.daemonize:
            try:
                announce = detach(name, notifier).ready
            except OSError as e:
                raise fail(f"Failed to daemonize: {e.strerror}") from None
        if opts.daemonize or opts.pidfile_given:
            try:
                pid_fd = write_pidfile(opts.pidfile)
            except OSError as e:
                raise fail(str(e.strerror)) from None
        try:
            drop_privileges(opts, executor)
        except StateDirUnusable as e:
            raise fail(str(e)) from None
        except OSError as e:
            raise fail(f"Failed to drop privileges: {e.strerror}") from None
        try:
            asyncio.run(_run(make_server(opts, executor, audit), listener, notifier, announce))
        except (ListenerError, NotifyError) as e:
            raise fail(str(e)) from None
    finally:
        listener.close()
        notifier.close()
        if created_path is not None:
            with contextlib.suppress(OSError):
                os.unlink(created_path)
        if pid_fd is not None:
            with contextlib.suppress(OSError):
                os.unlink(opts.pidfile)
            os.close(pid_fd)
    return 0


if __name__ == "__main__":
    sys.exit(main())
