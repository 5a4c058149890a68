"""``scsi-pr-helper``'s command line: qemu-pr-helper's options, defaults, usage and version
texts, messages and exit codes, plus the extensions that choose what executes the commands.

Why separate from the process life cycle (``main``): everything here decides on argv alone and
writes only the texts the C helper writes for it, so it can be checked without starting a
daemon. Options are acted on in the order ``getopt_long`` returns them, as QEMU's loop does:
``-V`` before a bad option prints the version, a bad option before ``-V`` fails.
"""

from __future__ import annotations

import grp
import os
import pwd
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TextIO

from scsi_pr.helper.cpus import AUTO as CPUS_AUTO
from scsi_pr.helper.cpus import CpuListError
from scsi_pr.helper.cpus import parse as parse_cpus
from scsi_pr.helper.daemon import MAX_CLIENTS_CAP, SHUTDOWN_GRACE, default_max_clients
from scsi_pr.helper.errors import HelperError
from scsi_pr.helper.getopt import (
    GetoptError,
    GetoptLong,
    LongOption,
    OptionTable,
    is_decimal,
    seconds_within,
)
from scsi_pr.sim.profiles import DEFAULT_PROFILE, PROFILES
from scsi_pr.sim.transportid import TransportId, TransportIdError

DEFAULT_SOCKET = "/var/run/qemu-pr-helper.sock"  # qemu: <localstatedir>/run/qemu-pr-helper.sock
DEFAULT_PIDFILE = "/var/run/qemu-pr-helper.pid"
VERSION = "scsi-pr 0.1.0 (qemu-pr-helper protocol of QEMU 2.11-10.x)"
BACKENDS = ("sg", "sim", "ioctl")

# QEMU's optstring and longopts; extensions have no short letter and report their own name.
OPTIONS = OptionTable(
    "hVk:f:dT:u:g:vq",
    (
        LongOption("help", False, "h"),
        LongOption("version", False, "V"),
        LongOption("socket", True, "k"),
        LongOption("pidfile", True, "f"),
        LongOption("daemon", False, "d"),
        LongOption("trace", True, "T"),
        LongOption("user", True, "u"),
        LongOption("group", True, "g"),
        LongOption("verbose", False, "v"),
        LongOption("quiet", False, "q"),
        LongOption("backend", True, "backend"),
        LongOption("initiator", True, "initiator"),
        LongOption("state-dir", True, "state-dir"),
        LongOption("target-port", True, "target-port"),
        LongOption("target-ports", True, "target-ports"),
        LongOption("profile", True, "profile"),
        LongOption("max-clients", True, "max-clients"),
        LongOption("idle-timeout", True, "idle-timeout"),
        LongOption("shutdown-grace", True, "shutdown-grace"),
        LongOption("cpus", True, "cpus"),
    ),
)

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
      --backend=sg|sim|ioctl  what runs the commands (default 'sg': SG_IO, dm-multipath
                            maps through libmpathpersist as a multipath build does;
                            'ioctl': the block layer's PR ioctls, no CAP_SYS_RAWIO)
      --initiator=NAME      sim: this helper's initiator port (default '{initiator}')
      --state-dir=DIR       sim: share simulated LUs with other helpers through DIR
      --target-port=N       sim: this helper's relative target port (default 1)
      --target-ports=N      sim: target ports of the simulated LUs (default 2; the
                            same for every helper sharing a state dir)
      --profile=NAME        sim: how the simulated LUs answer: {profiles}
                            (default '{profile}'; the same for every helper sharing a
                            state dir)
      --max-clients=N       connections served at once; one more is closed at once
                            (default {max_clients}, from the open files limit)
      --idle-timeout=SECONDS  close a connection idle this long (default off:
                            QEMU keeps its connection idle for hours)
      --shutdown-grace=SECONDS  after SIGTERM, time for requests in flight
                            (default {grace:g})
      --cpus=auto|all|LIST  CPUs the helper's threads run on (default 'auto': the one
                            it starts on, as threads of one Python process take turns;
                            'all': the scheduler's choice; LIST: e.g. 0,2-3)
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
    """What the command line asked for; defaults are the C helper's."""

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
    profile: str = DEFAULT_PROFILE
    max_clients: int | None = None  # None: HelperServer's default, from RLIMIT_NOFILE
    idle_timeout: float | None = None  # None: off, as in the C helper
    shutdown_grace: float = SHUTDOWN_GRACE
    cpus: frozenset[int] | str = CPUS_AUTO  # scsi_pr.helper.cpus

    @property
    def verbose(self) -> int:
        return 0 if self.quiet else min(self.loglevel, 3)


class InvalidOption(HelperError):
    """An option value the C helper refuses; the message is what it prints after the name."""


def _lookup_id(kind: str, text: str) -> int:
    try:
        return pwd.getpwnam(text).pw_uid if kind == "user" else grp.getgrnam(text).gr_gid
    except KeyError:
        pass
    if is_decimal(text) and int(text) < 2**32 - 1:
        return int(text)
    raise InvalidOption(f"invalid {kind} '{text}'")


def _socket(opts: Options, value: str) -> None:
    opts.socket_path, opts.socket_given = value, True
    if not value.startswith("/"):
        raise InvalidOption("socket path must be absolute")


def _pidfile(opts: Options, value: str) -> None:
    opts.pidfile, opts.pidfile_given = value, True


def _backend(opts: Options, value: str) -> None:
    if value not in BACKENDS:
        raise InvalidOption(f"invalid backend '{value}' (choose from {', '.join(BACKENDS)})")
    opts.backend = value


def _initiator(opts: Options, value: str) -> None:
    """Checked when given, so that a bad name (an empty one included: it is not "no name")
    stops the helper before it listens, as the other options' values do."""
    try:
        TransportId.from_name(value)
    except TransportIdError as e:
        raise InvalidOption(f"invalid initiator: {e}") from None
    opts.initiator = value


def _profile(opts: Options, value: str) -> None:
    if value not in PROFILES:
        raise InvalidOption(f"invalid profile '{value}' (choose from {', '.join(PROFILES)})")
    opts.profile = value


def _port_number(attr: str) -> Callable[[Options, str], None]:
    def take(opts: Options, value: str) -> None:
        if not is_decimal(value) or not 1 <= int(value) <= 0xFFFF:
            raise InvalidOption(f"invalid {attr.replace('_', '-')} '{value}' (1..65535)")
        setattr(opts, attr, int(value))

    return take


def _max_clients(opts: Options, value: str) -> None:
    if not is_decimal(value) or not 1 <= int(value) <= MAX_CLIENTS_CAP:
        raise InvalidOption(f"invalid max-clients '{value}' (a whole number, 1..{MAX_CLIENTS_CAP})")
    opts.max_clients = int(value)


#: the longest wait an option may ask for (about 31 years): a socket timeout beyond ~9.2e9 s
#: does not fit the kernel's time_t in nanoseconds, and every connection's thread would die
MAX_SECONDS = 1e9


def _seconds(attr: str, zero_allowed: bool) -> Callable[[Options, str], None]:
    """A finite number of seconds up to MAX_SECONDS, more than 0 (or also 0 when
    ``zero_allowed``)."""
    bound = f"{'0 or more' if zero_allowed else 'more than 0'}, at most {MAX_SECONDS:g}"

    def take(opts: Options, value: str) -> None:
        seconds = seconds_within(value, MAX_SECONDS, zero_allowed=zero_allowed)
        if seconds is None:
            raise InvalidOption(f"invalid {attr.replace('_', '-')} '{value}' (seconds, {bound})")
        setattr(opts, attr, seconds)

    return take


def _cpus(opts: Options, value: str) -> None:
    try:
        opts.cpus = parse_cpus(value)
    except CpuListError as e:
        raise InvalidOption(f"invalid cpus: {e}") from None


# What each option does to Options (the argument is "" for options without one).
_TAKE: dict[str, Callable[[Options, str], None]] = {
    "k": _socket,
    "f": _pidfile,
    "u": lambda opts, value: setattr(opts, "uid", _lookup_id("user", value)),
    "g": lambda opts, value: setattr(opts, "gid", _lookup_id("group", value)),
    "d": lambda opts, value: setattr(opts, "daemonize", True),
    "q": lambda opts, value: setattr(opts, "quiet", True),
    "v": lambda opts, value: setattr(opts, "loglevel", opts.loglevel + 1),
    "T": lambda opts, value: opts.traces.append(value),
    "backend": _backend,
    "initiator": _initiator,
    "state-dir": lambda opts, value: setattr(opts, "state_dir", value),
    "target-port": _port_number("target_port"),
    "target-ports": _port_number("target_ports"),
    "profile": _profile,
    "max-clients": _max_clients,
    "idle-timeout": _seconds("idle_timeout", zero_allowed=False),
    "shutdown-grace": _seconds("shutdown_grace", zero_allowed=True),
    "cpus": _cpus,
}


def usage_text(program: str) -> str:
    """``--help`` for ``program`` (argv[0], as QEMU prints it)."""
    from scsi_pr.helper.executors.sim import DEFAULT_INITIATOR  # only --help needs the sim

    return USAGE.format(
        name=program,
        pidfile=DEFAULT_PIDFILE,
        socket=DEFAULT_SOCKET,
        initiator=DEFAULT_INITIATOR,
        max_clients=default_max_clients(),
        grace=SHUTDOWN_GRACE,
        profiles=", ".join(PROFILES),
        profile=DEFAULT_PROFILE,
    )


def parse(argv: Sequence[str], out: TextIO, err: TextIO) -> Options:
    """Options, or ``Exit`` after printing what the C helper prints."""
    name = os.path.basename(argv[0])
    opts = Options()
    try:
        for key, value in GetoptLong(OPTIONS, argv[1:]):
            if key == "V":
                out.write(VERSION_TEXT.format(name=argv[0], version=VERSION))
                raise Exit(0)
            if key == "h":
                out.write(usage_text(argv[0]))
                raise Exit(0)
            _TAKE[key](opts, value or "")
    except GetoptError as e:
        err.write(f"{argv[0]}: {e}\n")
        err.write(f"{name}: Try `{argv[0]} --help' for more information.\n")
        raise Exit(1) from e
    except InvalidOption as e:
        err.write(f"{name}: {e}\n")
        raise Exit(1) from e
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
