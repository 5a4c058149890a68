"""``scsi-pr lio up|down|status``: the LIO loopback rig from the command line (root, LIO kernel).

``up`` prints one line per initiator (or ``--json``: the full description, the same document
``scsi_pr.rig.lio`` keeps in /run/scsi-pr/lio.json for the test backends).
"""

from __future__ import annotations

import argparse
import json
import sys

from scsi_pr.rig import lio
from scsi_pr.rig.errors import RigError

SIZE_SUFFIXES = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(text: str) -> int:
    """``64M`` -> 67108864 (1024-based, like targetcli)."""
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    unit = t[-1] if t and t[-1] in SIZE_SUFFIXES else ""
    try:
        value = float(t[: len(t) - len(unit)])
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad size {text!r}: use e.g. 64M, 1G, 1048576") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"size must be positive, not {text!r}")
    return int(value * SIZE_SUFFIXES[unit])


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="scsi-pr lio", description=__doc__)
    sub = p.add_subparsers(dest="action", required=True)
    upp = sub.add_parser("up", help="build the rig (tearing down an earlier one)")
    upp.add_argument("--initiators", type=int, default=3, help="initiators = tcm_loop targets")
    upp.add_argument("--size", type=parse_size, default=lio.DEFAULT_SIZE, help="e.g. 64M")
    upp.add_argument("--backstore", choices=lio.BACKSTORES, default="ramdisk")
    upp.add_argument("--path", help="backing file (fileio) or block device (block)")
    upp.add_argument("--name", default=lio.DEFAULT_NAME, help="backstore name")
    upp.add_argument("--json", action="store_true", help="print the description as JSON")
    downp = sub.add_parser("down", help="remove the rig and its APTPL file (idempotent)")
    downp.add_argument("--name", default=lio.DEFAULT_NAME)
    statp = sub.add_parser("status", help="the current rig and LIO's PR state")
    statp.add_argument("--name", default=lio.DEFAULT_NAME)
    return p


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.action == "up":
            spec = lio.LunSpec(args.initiators, args.size, args.backstore, args.name, args.path)
            desc = lio.up(spec)
            if args.json:
                print(desc.to_json())
            else:
                for p in desc.initiators:
                    uas = "; ".join(p.startup_unit_attentions) or "none"
                    print(
                        f"{p.wwn} -> {p.target_wwn} rtpi={p.relative_target_port} "
                        f"{p.sg} {p.sd} ({p.hctl}) start-up UAs: {uas}"
                    )
        elif args.action == "down":
            removed = lio.down(args.name)
            print("removed: " + (", ".join(removed) or "nothing (already down)"))
        else:
            desc = lio.current()
            print(
                json.dumps(
                    {
                        "rig": json.loads(desc.to_json()) if desc else None,
                        "pr": lio.pr_state(args.name),
                    },
                    indent=2,
                )
            )
    except RigError as e:
        print(f"scsi-pr lio: {e}", file=sys.stderr)
        return 2
    return 0
