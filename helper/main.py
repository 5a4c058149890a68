"""``scsi-pr-helper``: qemu-pr-helper's command line, defaults, messages and exit codes.

Startup follows the C helper: signals, options (glibc getopt_long semantics, including the
order in which -h/-V/errors win), trace (-T), listen or socket activation, daemonize, pidfile,
privilege drop, run. Extra long options choose what executes the commands: ``--backend sg``
(default: SG_IO, with dm-multipath devices handled as the C helper's multipath build does) or
``--backend sim`` (regular files are simulated LUs; ``--initiator``, ``--state-dir``).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import grp
import os
import pwd
import shutil
import signal
import socket
import stat
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TextIO

from scsi_pr.helper import caps
from scsi_pr.helper.daemon import Audit, HelperServer
from scsi_pr.helper.errors import HelperError
from scsi_pr.helper.executors.base import Executor

DEFAULT_SOCKET = "/var/run/qemu-pr-helper.sock"  # qemu: <localstatedir>/run/qemu-pr-helper.sock
DEFAULT_PIDFILE = "/var/run/qemu-pr-helper.pid"
FIRST_SOCKET_ACTIVATION_FD = 3
VERSION = "scsi-pr 0.1.0 (qemu-pr-helper protocol of QEMU 2.11-10.x)"
SHORT_OPTIONS = "hVk:f:dT:u:g:vq"
# long name -> (takes argument, short letter or the long name itself for our extras)
LONG_OPTIONS: dict[str, tuple[bool, str]] = {
    "help": (False, "h"),
    "version": (False, "V"),
    "socket": (True, "k"),
    "pidfile": (True, "f"),
    "daemon": (False, "d"),
    "trace": (True, "T"),
    "user": (True, "u"),
    "group": (True, "g"),
    "verbose": (False, "v"),
    "quiet": (False, "q"),
    "backend": (True, "backend"),
    "initiator": (True, "initiator"),
    "state-dir": (True, "state-dir"),
    "target-port": (True, "target-port"),
    "target-ports": (True, "target-ports"),
}
BACKENDS = ("sg", "sim")

USAGE = """\
Usage: {name} [OPTIONS] FILE
Persistent Reservation helper program for QEMU

  -h, --help                display this help and exit
  -V, --version             output version information and exit

  -d, --daemon              run in the background
  -f, --pidfile=PATH        PID file when running as a daemon
                            (default '{pidfile}')
  -k, --socket=PATH         path to the unix socket
                            (default '{socket}')
  -T, --trace [[enable=]<pattern>][,events=<file>][,file=<file>]
                            specify tracing options
  -u, --user=USER           user to drop privileges to
  -g, --group=GROUP         group to drop privileges to

scsi-pr extensions:
      --backend=sg|sim      what runs the commands (default 'sg': SG_IO, dm-multipath
                            devices through multipathd as a multipath build does)
      --initiator=NAME      sim: this helper's initiator port (default '{initiator}')
      --state-dir=DIR       sim: share simulated LUs with other helpers through DIR
      --target-port=N       sim: this helper's relative target port (default 1)
      --target-ports=N      sim: target ports of the simulated LUs (default 2; the
                            same for every helper sharing a state dir)
  -v, --verbose / -q, --quiet   more / no diagnostics; trace events: prh_command,
                            prh_refused, prh_error, prh_connect, prh_disconnect

See <https://qemu.org/contribute/report-a-bug> for how to report bugs.
More information on the QEMU project at <https://qemu.org>.
"""

VERSION_TEXT = """\
{name} {version}
Written by Paolo Bonzini.

Copyright (c) 2003-2022 Fabrice Bellard and the QEMU Project developers
This is free software; see the source for copying conditions.  There is NO
warranty; not even for MERCHANTABILITY or FITNESS FOR A PARTICULAR PURPOSE.
"""


class Exit(HelperError):
    """Stop startup with this exit code (messages were already printed)."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


@dataclass
class Options:
    socket_path: str = DEFAULT_SOCKET
    socket_given: bool = False
    pidfile: str = DEFAULT_PIDFILE
    pidfile_given: bool = False
    daemonize: bool = False
    traces: list[str] = field(default_factory=list)
    uid: int | None = None
    gid: int | None = None
    loglevel: int = 1
    quiet: bool = False
    backend: str = "sg"
    initiator: str | None = None
    state_dir: str | None = None
    target_port: int = 1
    target_ports: int = 2

    @property
    def verbose(self) -> int:
        return 0 if self.quiet else min(self.loglevel, 3)


def getopt_long(argv: Sequence[str], err: TextIO) -> list[tuple[str, str | None]]:
    """glibc getopt_long with argument permutation; errors become ``("?", None)`` after the
    message glibc prints. Processing stops at the first error, like the C helper's loop."""
    prog = argv[0]
    out: list[tuple[str, str | None]] = []
    args = list(argv[1:])
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg == "--":
            break
        if arg.startswith("--"):
            name, eq, value = arg[2:].partition("=")
            matches = [n for n in LONG_OPTIONS if n.startswith(name)]
            if name in LONG_OPTIONS:
                matches = [name]
            if not matches:
                err.write(f"{prog}: unrecognized option '--{name}'\n")
                return [*out, ("?", None)]
            if len(matches) > 1:
                shown = " ".join(f"'--{m}'" for m in matches)
                err.write(f"{prog}: option '--{name}' is ambiguous; possibilities: {shown}\n")
                return [*out, ("?", None)]
            full = matches[0]
            takes, key = LONG_OPTIONS[full]
            if takes and not eq:
                if i >= len(args):
                    err.write(f"{prog}: option '--{full}' requires an argument\n")
                    return [*out, ("?", None)]
                value = args[i]
                i += 1
            elif not takes and eq:
                err.write(f"{prog}: option '--{full}' doesn't allow an argument\n")
                return [*out, ("?", None)]
            out.append((key, value if takes else None))
        elif arg.startswith("-") and arg != "-":
            j = 1
            while j < len(arg):
                letter = arg[j]
                j += 1
                pos = SHORT_OPTIONS.find(letter)
                if pos < 0 or letter == ":":
                    err.write(f"{prog}: invalid option -- '{letter}'\n")
                    return [*out, ("?", None)]
                if SHORT_OPTIONS[pos + 1 : pos + 2] == ":":
                    if j < len(arg):
                        value = arg[j:]
                    elif i < len(args):
                        value = args[i]
                        i += 1
                    else:
                        err.write(f"{prog}: option requires an argument -- '{letter}'\n")
                        return [*out, ("?", None)]
                    out.append((letter, value))
                    break
                out.append((letter, None))
        # non-options (the vestigial FILE) are ignored, as in the C helper
    return out


def _lookup_id(kind: str, text: str) -> int:
    try:
        return pwd.getpwnam(text).pw_uid if kind == "user" else grp.getgrnam(text).gr_gid
    except KeyError:
        pass
    if text.isdigit() and int(text) < 2**32 - 1:
        return int(text)
    raise ValueError(f"invalid {kind} '{text}'")


def parse(argv: Sequence[str], out: TextIO, err: TextIO) -> Options:
    """Options, or ``Exit`` after printing what the C helper prints."""
    name = os.path.basename(argv[0])
    opts = Options()

    def fail(message: str) -> Exit:
        err.write(f"{name}: {message}\n")
        return Exit(1)

    for key, value in getopt_long(argv, err):
        if key == "k":
            assert value is not None
            opts.socket_path, opts.socket_given = value, True
            if not value.startswith("/"):
                raise fail("socket path must be absolute")
        elif key == "f":
            assert value is not None
            opts.pidfile, opts.pidfile_given = value, True
        elif key in ("u", "g"):
            assert value is not None
            try:
                ident = _lookup_id("user" if key == "u" else "group", value)
            except ValueError as e:
                raise fail(str(e)) from None
            if key == "u":
                opts.uid = ident
            else:
                opts.gid = ident
        elif key == "d":
            opts.daemonize = True
        elif key == "q":
            opts.quiet = True
        elif key == "v":
            opts.loglevel += 1
        elif key == "T":
            assert value is not None
            opts.traces.append(value)
        elif key == "V":
            out.write(VERSION_TEXT.format(name=argv[0], version=VERSION))
            raise Exit(0)
        elif key == "h":
            out.write(
                USAGE.format(
                    name=argv[0],
                    pidfile=DEFAULT_PIDFILE,
                    socket=DEFAULT_SOCKET,
                    initiator="naa.5001405000000001",
                )
            )
            raise Exit(0)
        elif key == "backend":
            if value not in BACKENDS:
                raise fail(f"invalid backend '{value}' (choose from {', '.join(BACKENDS)})")
            opts.backend = value
        elif key == "initiator":
            opts.initiator = value
        elif key == "state-dir":
            opts.state_dir = value
        elif key in ("target-port", "target-ports"):
            assert value is not None
            if not value.isdigit() or not 1 <= int(value) <= 0xFFFF:
                raise fail(f"invalid {key} '{value}' (1..65535)")
            setattr(opts, key.replace("-", "_"), int(value))
        elif key == "?":
            raise fail(f"Try `{argv[0]} --help' for more information.")
    return opts


def parse_trace(specs: Sequence[str]) -> tuple[list[str], str | None]:
    """QEMU -T: ``[[enable=]PATTERN][,events=FILE][,file=FILE]`` -> (patterns, output file)."""
    patterns: list[str] = []
    output: str | None = None
    for spec in specs:
        for item in spec.split(","):
            if not item:
                continue
            key, eq, value = item.partition("=")
            if not eq:
                patterns.append(item)
            elif key == "enable":
                patterns.append(value)
            elif key == "events":
                with open(value) as f:
                    patterns += [ln.strip() for ln in f if ln.strip() and not ln.startswith("#")]
            elif key == "file":
                output = value
            else:
                raise ValueError(f"Invalid parameter '{key}'")
    return patterns, output


def socket_activation() -> int:
    """Number of sockets systemd passed (LISTEN_PID must be us), as QEMU checks it."""
    try:
        if int(os.environ.get("LISTEN_PID", "")) != os.getpid():
            return 0
        count = int(os.environ.get("LISTEN_FDS", ""))
    except ValueError:
        return 0
    return max(count, 0)


def listen(path: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISSOCK(os.lstat(path).st_mode):
            os.unlink(path)  # a stale socket from a previous run, as QEMU's listen does
    sock.bind(path)
    sock.listen(128)
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


def daemonize() -> None:
    """``daemon(0, 0)``: fork (the parent exits 0), new session, cwd /, stdio to /dev/null."""
    if os.fork() > 0:
        os._exit(0)
    os.setsid()
    os.chdir("/")
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    if null > 2:
        os.close(null)


def make_executor(opts: Options) -> Executor:
    if opts.backend == "sim":
        from scsi_pr.helper.executors.sim import DEFAULT_INITIATOR, SimExecutor

        return SimExecutor(
            opts.initiator or DEFAULT_INITIATOR,
            opts.state_dir,
            opts.target_port,
            max(opts.target_ports, opts.target_port),
        )
    from scsi_pr.helper.executors.multipath import with_multipath
    from scsi_pr.helper.executors.sg import SgExecutor

    return with_multipath(SgExecutor(), verbose=opts.verbose)


async def _run(server: HelperServer, listener: socket.socket) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.add_signal_handler(sig, stop.set)
    await server.serve(listener, stop)


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
    argv = list(sys.argv if argv is None else argv)
    if argv and argv[0]:
        argv[0] = invoked_name(argv[0])
    name = os.path.basename(argv[0])
    try:
        return _main(argv, name)
    except Exit as e:
        return e.code
    except KeyboardInterrupt:
        return 0


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
    try:
        executor = make_executor(opts)
    except (OSError, ValueError) as e:
        raise fail(str(e)) from None

    activated = socket_activation()
    created_path: str | None = None
    if activated == 0:
        try:
            listener = listen(opts.socket_path)
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
    if opts.daemonize:
        try:
            daemonize()
        except OSError as e:
            raise fail(f"Failed to daemonize: {e.strerror}") from None
    pid_fd = None
    if opts.daemonize or opts.pidfile_given:
        try:
            pid_fd = write_pidfile(opts.pidfile)
        except OSError as e:
            raise fail(str(e.strerror)) from None
    if os.geteuid() == 0 or opts.uid is not None or opts.gid is not None:
        keep = [caps.CAP_SYS_RAWIO]
        multipath = getattr(executor, "needs_sys_admin", False)
        if multipath:
            keep.append(caps.CAP_SYS_ADMIN)  # dm ioctls on /dev/mapper/control
        try:
            caps.drop_privileges(opts.uid, opts.gid, keep, for_children=multipath)
        except OSError as e:
            raise fail(f"Failed to drop privileges: {e.strerror}") from None

    server = HelperServer(executor, audit, verbose=opts.verbose)
    try:
        asyncio.run(_run(server, listener))
    finally:
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
