"""``scsi-pr sim``: serve simulated LUs shared by several helpers, and inspect or change them.

``serve`` starts one ``scsi-pr-helper --backend sim`` per initiator on one state dir (N hosts
sharing a LUN) and supervises them; ``show``, ``power-cycle``, ``stall`` and ``forget`` act on
the LU an image file stands for, through ``scsi_pr.helper.simserve.SharedLUs`` (which alone
knows the state dir's files).
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from scsi_pr.helper.errors import HelperError
from scsi_pr.helper.executable import helper_executable
from scsi_pr.helper.getopt import seconds_within
from scsi_pr.helper.lu_identity import identify_path
from scsi_pr.helper.simserve import SharedLUs
from scsi_pr.sim import profiles
from scsi_pr.sim.device import LogicalUnit

POLL_INTERVAL = 0.2  # seconds between checks that every served helper still runs


def describe_lu(lu: LogicalUnit) -> dict[str, Any]:
    """The LU's PR state as ``show`` prints it (JSON)."""
    res = lu.pr.reservation
    return {
        "profile": lu.profile.name,
        "generation": lu.pr.generation,
        "aptpl": lu.pr.aptpl,
        "registrations": [
            {"nexus": str(r.nexus), "key": f"{r.key:#x}", "all_tg_pt": r.all_tg_pt}
            for r in lu.pr.registrations.values()
        ],
        "reservation": None
        if res is None
        else {
            "holder": None if res.holder is None else str(res.holder),
            "type": res.type.abbreviation,
        },
    }


def serve(
    state_dir: str,
    socket_dir: str,
    initiators: int,
    ports: int,
    profile: str = profiles.DEFAULT_PROFILE,
) -> int:
    """Run one ``scsi-pr-helper --backend sim --profile PROFILE`` per initiator on
    ``socket_dir/hostN.sock``, all sharing ``state_dir`` (N hosts sharing a LUN), until
    SIGTERM/SIGINT; then stop them."""
    helper = helper_executable()
    Path(socket_dir).mkdir(parents=True, exist_ok=True)
    procs: list[subprocess.Popen[bytes]] = []
    stop = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        for i in range(initiators):
            name = f"naa.50014050000000{i + 1:02x}"
            sock = Path(socket_dir) / f"host{i + 1}.sock"
            argv = [helper, "--backend", "sim", "--initiator", name, "--state-dir", state_dir]
            argv += ["--target-port", str(i + 1), "--target-ports", str(max(ports, initiators))]
            argv += ["--profile", profile]
            procs.append(subprocess.Popen([*argv, "-k", str(sock)]))
            print(f"{name} (relative target port {i + 1}): {sock}", flush=True)
        while not stop and all(p.poll() is None for p in procs):
            time.sleep(POLL_INTERVAL)
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            p.wait()
    failed = [p.returncode for p in procs if p.returncode not in (0, -signal.SIGTERM)]
    return 1 if failed else 0


# -- actions on one LU: (the LUs, the image file, --seconds) -> exit status ------------------
def _show(lus: SharedLUs, image: str, seconds: float) -> int:
    print(json.dumps(lus.run_on_file(image, describe_lu), indent=2))
    return 0


def _power_cycle(lus: SharedLUs, image: str, seconds: float) -> int:
    def cycle(lu: LogicalUnit) -> None:
        lu.power_loss()
        lu.power_on()

    lus.run_on_file(image, cycle)
    return _show(lus, image, seconds)


def _stall(lus: SharedLUs, image: str, seconds: float) -> int:
    lus.set_stall(identify_path(image)[0], seconds)
    return 0


def _forget(lus: SharedLUs, image: str, seconds: float) -> int:
    lus.forget(identify_path(image)[0])
    return 0


LU_ACTIONS: dict[str, Callable[[SharedLUs, str, float], int]] = {
    "show": _show,
    "power-cycle": _power_cycle,
    "forget": _forget,
    "stall": _stall,
}


#: a stall is a test's slow device: a day is more than any test waits (and time.sleep refuses
#: what does not fit its clock); serve's helpers are processes, not to be started by the million
MAX_STALL = 86400.0
MAX_INITIATORS = 64


def _stall_seconds(text: str) -> float:
    seconds = seconds_within(text, MAX_STALL, zero_allowed=True)  # 0 stops a stall
    if seconds is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds 0..{MAX_STALL:g}")
    return seconds


def main(argv: list[str] | None = None) -> int:
    """``scsi-pr sim {serve,show,power-cycle,stall,forget} ...``."""
    parser = argparse.ArgumentParser(
        prog="scsi-pr sim",
        description="Simulated LUs shared by several scsi-pr-helper --backend sim processes: "
        "serve starts one helper per initiator on one state dir; the other actions inspect "
        "or change the LU an image file stands for.",
    )
    parser.add_argument("action", choices=["serve", *LU_ACTIONS])
    parser.add_argument("image", nargs="?", help="the image file that stands for the LU")
    parser.add_argument("--state-dir", required=True, help="the helpers' --state-dir")
    parser.add_argument(
        "--seconds", type=_stall_seconds, default=0.0,
        help=f"stall: delay every command (0 = stop; at most {MAX_STALL:g})",
    )  # fmt: skip
    parser.add_argument("--socket-dir", help="serve: where hostN.sock go (default: state dir)")
    parser.add_argument("--initiators", type=int, default=2, help="serve: helpers to start")
    parser.add_argument("--target-ports", type=int, default=2, help="serve: LU target ports")
    parser.add_argument(
        "--profile",
        default=profiles.DEFAULT_PROFILE,
        choices=list(profiles.PROFILES),
        help="serve: how the LUs answer (default %(default)s; lio-6.1: as LIO on 6.1, see "
        "docs/lio-deviations.md); the other actions use the profile each LU was saved with",
    )
    args = parser.parse_intermixed_args(argv)  # options between ACTION and IMAGE too
    if args.action == "serve":
        if args.image is not None:  # it would be ignored: serve's helpers take any image's fd
            parser.error(f"serve takes no IMAGE (got {args.image!r})")
        if not 1 <= args.initiators <= MAX_INITIATORS:
            parser.error(f"--initiators must be 1..{MAX_INITIATORS}")
        return serve(args.state_dir, args.socket_dir or args.state_dir, args.initiators,
                     args.target_ports, args.profile)  # fmt: skip
    if args.image is None:
        parser.error(f"{args.action} needs the IMAGE file")
    try:
        lus = SharedLUs(args.state_dir, profile=None)  # each LU as it was saved
        return LU_ACTIONS[args.action](lus, args.image, args.seconds)
    except (OSError, HelperError) as e:  # HelperError: a damaged state file, named
        print(f"scsi-pr sim: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
