"""``scsi-pr target serve``: the model's LUs as an iSCSI target (see docs/target.md).

Every option is checked before anything listens; a bad one is a one-line error and exit status
2, a portal that cannot be bound exit status 1. SIGTERM and SIGINT stop the target cleanly:
every session ends (an I_T nexus loss each, as for a target that goes away) and the LU work
queued so far finishes, so the state dir is consistent.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import re
import signal
import sys
from pathlib import Path

from scsi_pr.helper.getopt import seconds_within
from scsi_pr.helper.systemd import NotifyError, ServiceNotifier
from scsi_pr.sim.profiles import DEFAULT_PROFILE, PROFILES
from scsi_pr.target.errors import TargetError
from scsi_pr.target.lus import MAX_LUNS, LunConfigError, parse_size
from scsi_pr.target.proto import ChapCredentials, ChapPolicy, LocalProtocolError, Portal
from scsi_pr.target.proto.text import MAX_NAME_LENGTH
from scsi_pr.target.server import TargetConfig, TargetConfigError, TargetServer

log = logging.getLogger("scsi_pr.target")
ISCSI_NAME = re.compile(r"(iqn\.\d{4}-\d{2}\.[^\s,]+|eui\.[0-9A-Fa-f]{16}|naa\.[0-9A-Fa-f]{16,32})")


class UsageError(TargetError, ValueError):
    """An option value the target cannot use; the message names the option."""


def parse_portal(text: str) -> tuple[str, int]:
    """``HOST:PORT``, ``HOST`` (port 3260) or ``[IPv6]:PORT``."""
    match = re.fullmatch(r"\[([\w:.%]+)\](?::(\d+))?|([^:\[\]]+)(?::(\d+))?", text)
    if match is None:
        raise UsageError(f"--portal {text!r}: use HOST:PORT or [IPv6]:PORT")
    host = match[1] or match[3]
    port = int(match[2] or match[4] or 3260)
    if not 0 <= port <= 65535:
        raise UsageError(f"--portal {text!r}: port out of range")
    return host, port


def is_utf8(text: str) -> bool:
    """Whether ``text`` can go on the wire: iSCSI text values are UTF-8 (RFC 7143 6.1), and an
    argument that was not (bytes Python kept as surrogate escapes) would otherwise fail to
    encode only when a login sends it, or here as an uncaught UnicodeEncodeError."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def parse_name(text: str, option: str) -> str:
    """``text`` if it is an iSCSI name of at most MAX_NAME_LENGTH UTF-8 bytes."""
    if (
        not ISCSI_NAME.fullmatch(text)
        or not is_utf8(text)
        or len(text.encode("utf-8")) > MAX_NAME_LENGTH
    ):
        raise UsageError(f"{option} {text!r}: not an iSCSI name (iqn.YYYY-MM.domain[:id], eui.…)")
    return text


def parse_chap(text: str, option: str) -> ChapCredentials:
    """``USER:SECRET`` as credentials; the message never repeats the secret."""
    user, sep, secret = text.partition(":")
    if not sep or not user or not secret:
        raise UsageError(f"{option}: use USER:SECRET")
    if not is_utf8(text):
        raise UsageError(f"{option}: USER and SECRET must be UTF-8 text")
    if not 12 <= len(secret.encode("utf-8")) <= 255:  # RFC 7143 9.2.1: at least 96 bits
        raise UsageError(f"{option}: the secret must be 12 to 255 bytes (RFC 7143 9.2.1)")
    return ChapCredentials(user, secret.encode("utf-8"))


def _positive(text: str) -> int:
    try:
        value = int(text, 0)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from e
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


#: the longest of the connection timers: a day (nan and inf are no timer, and a timer beyond
#: what the event loop's clock holds would never fire)
MAX_TIMER = 86400.0


def _seconds(text: str) -> float:
    value = seconds_within(text, MAX_TIMER, zero_allowed=False)
    if value is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a number of seconds, more than 0 and at most {MAX_TIMER:g}"
        )
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scsi-pr target",
        description="Serve the simulated LUs over iSCSI: every initiator (Linux, Windows, "
        "ESXi, QEMU's iscsi:// driver, libiscsi) is its own I_T nexus of the model.",
    )
    sub = parser.add_subparsers(dest="action", required=True)
    serve = sub.add_parser("serve", help="run the target until SIGTERM/SIGINT")
    add = serve.add_argument
    add("--portal", action="append", help="HOST:PORT to listen on, repeatable "
        "(default 0.0.0.0:3260)")  # fmt: skip
    add("--iqn", required=True, help="the target's iSCSI name")
    add("--state-dir", required=True, type=Path,
        help="LUN images lunN.img and the model's state (the helper's --state-dir)")  # fmt: skip
    add("--luns", type=_positive, default=TargetConfig.luns,
        help=f"LUNs to serve, 1..{MAX_LUNS} (default %(default)s)")  # fmt: skip
    add("--size", default="1G", help="size of LUN images created now (default 1G)")
    add("--profile", default=DEFAULT_PROFILE,
        help=f"how the LUs answer: {', '.join(PROFILES)} (default {DEFAULT_PROFILE}; the "
        "helpers sharing the state dir must say the same)")  # fmt: skip
    add("--alias", help="TargetAlias sent at login")
    add("--chap", metavar="USER:SECRET", help="require CHAP from initiators")
    add("--mutual-chap", metavar="USER:SECRET", help="the target's credentials for mutual CHAP")
    add("--discovery-chap", action="store_true", help="require --chap for discovery too")
    add("--allow-initiator", action="append", metavar="IQN",
        help="accept only these initiator names, repeatable (default: any)")  # fmt: skip
    add("--max-sessions", type=_positive, default=TargetConfig.max_sessions,
        help="sessions at once; more fail their login (default %(default)s)")  # fmt: skip
    add("--max-commands", type=_positive, default=TargetConfig.command_window,
        help="commands outstanding per session (CmdSN window; default %(default)s)")  # fmt: skip
    add("--max-data-segment", type=_positive, default=TargetConfig.max_recv_data_segment_length,
        help="MaxRecvDataSegmentLength the target declares (default %(default)s)")  # fmt: skip
    add("--max-burst", type=_positive, default=TargetConfig.max_burst_length,
        help="MaxBurstLength (default %(default)s)")  # fmt: skip
    add("--max-write", type=_positive, default=TargetConfig.max_write_length,
        help="largest write buffered and READ served, bytes (default %(default)s)")  # fmt: skip
    add("--target-port", type=_positive, default=TargetConfig.target_port,
        help="RELATIVE TARGET PORT IDENTIFIER of the sessions (default %(default)s)")  # fmt: skip
    add("--target-ports", type=_positive, default=TargetConfig.target_ports,
        help="ports of the LUs, as the helpers sharing the state dir say "
        "(default %(default)s)")  # fmt: skip
    add("--nop-interval", type=_seconds, default=TargetConfig.nop_interval,
        help="seconds before pinging an idle initiator (default %(default)s)")  # fmt: skip
    add("--nop-timeout", type=_seconds, default=TargetConfig.nop_timeout,
        help="seconds a ping may stay unanswered (default %(default)s)")  # fmt: skip
    add("--data-out-timeout", type=_seconds, default=TargetConfig.data_out_timeout,
        help="seconds a write waiting for data may get none before its connection ends "
        "(default %(default)s)")  # fmt: skip
    add("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return parser


def config_from(args: argparse.Namespace) -> TargetConfig:
    """The checked configuration (UsageError naming the option otherwise)."""
    if args.profile not in PROFILES:
        raise UsageError(f"--profile {args.profile!r}: known profiles: {', '.join(PROFILES)}")
    if args.luns > MAX_LUNS:
        raise UsageError(f"--luns {args.luns}: at most {MAX_LUNS}")
    # ``is None``, not falsehood: an empty value is a bad value, not "not given"
    if args.mutual_chap is not None and args.chap is None:
        raise UsageError("--mutual-chap needs --chap")
    chap = None
    if args.chap is not None:
        mutual = None
        if args.mutual_chap is not None:
            mutual = parse_chap(args.mutual_chap, "--mutual-chap")
        try:
            chap = ChapPolicy(parse_chap(args.chap, "--chap"), mutual)
        except LocalProtocolError as e:
            raise UsageError(f"--mutual-chap: {e}") from e
    elif args.discovery_chap:
        raise UsageError("--discovery-chap needs --chap")
    if args.alias is not None and not is_utf8(args.alias):
        raise UsageError(f"--alias {args.alias!r}: not UTF-8 text")
    allowed = args.allow_initiator
    try:
        size = parse_size(args.size)
        return TargetConfig(
            iqn=parse_name(args.iqn, "--iqn"),
            state_dir=args.state_dir,
            portals=tuple(parse_portal(p) for p in args.portal or ["0.0.0.0:3260"]),
            luns=args.luns,
            size=size,
            alias=args.alias,
            chap=chap,
            discovery_chap=chap if args.discovery_chap else None,
            allowed_initiators=None
            if not allowed
            else frozenset(parse_name(a, "--allow-initiator") for a in allowed),
            max_sessions=args.max_sessions,
            command_window=args.max_commands,
            max_recv_data_segment_length=args.max_data_segment,
            max_burst_length=args.max_burst,
            max_write_length=args.max_write,
            target_port=args.target_port,
            target_ports=args.target_ports,
            nop_interval=args.nop_interval,
            nop_timeout=args.nop_timeout,
            data_out_timeout=args.data_out_timeout,
            profile=args.profile,
        )
    except LunConfigError as e:
        raise UsageError(f"--{e}") from e


async def serve(config: TargetConfig, notifier: ServiceNotifier) -> int:
    server = TargetServer(config)
    # Before listening: a SIGTERM sent as soon as a client can connect (a test's set-up that
    # fails at once) would otherwise kill it by default action, without the orderly close.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def stopping() -> None:
        notifier.stopping()
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping)
    try:
        await server.start()
    except OSError as e:
        log.error("cannot listen: %s", e)
        await server.close()
        return 1
    portals = ", ".join(Portal(host, port).address for host, port in server.addresses)
    try:
        notifier.ready(f"{config.iqn} on {portals}")
    except NotifyError as e:
        log.error("%s", e)
        await server.close()
        return 1
    await stop.wait()
    log.info("stopping on a signal")
    await server.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = config_from(args)
    except (UsageError, TargetConfigError) as e:
        parser.error(str(e))
    logging.basicConfig(level=args.log_level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(message)s")  # fmt: skip
    notifier = ServiceNotifier(None)
    try:
        notifier = ServiceNotifier.from_environment()
        return asyncio.run(serve(config, notifier))
    except (NotifyError, TargetError) as e:  # e.g. an unusable LUN image in the state dir
        print(f"scsi-pr target: {e}", file=sys.stderr)
        return 1
    finally:
        notifier.close()
