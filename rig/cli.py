"""``scsi-pr``: one umbrella command; each subcommand lives in the module that owns it.

The table keeps this file free of per-command logic: a subcommand module exposes
``main(argv: list[str]) -> int`` and parses its own options.
"""

from __future__ import annotations

import importlib
import sys

SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "persist": (
        "scsi_pr.helper.persist",
        "sg_persist-compatible PR commands through a helper socket",
    ),
    "sim": ("scsi_pr.helper.sim_cli", "serve simulated LUs shared by several helper processes"),
    "scenario": (
        "scsi_pr.rig.scenarios.cli",
        "run a reservation-conflict scenario with a timeline",
    ),
    "profiles": (
        "scsi_pr.rig.profiles_cli",
        "device profiles and the LIO deviation registry (docs/lio-deviations.md)",
    ),
    "explain": ("scsi_pr.rig.explain", "a CDB, sense data, a status or PR IN data in words"),
    "lockstep": (
        "scsi_pr.rig.lockstep.cli",
        "the model against a device (real LIO), the same commands, step by step",
    ),
    "lio": ("scsi_pr.rig.lio_cli", "bring LIO loopback LUNs up or down (root, LIO kernel)"),
    "vm": ("scsi_pr.rig.vm", "run a command in a virtme-ng VM with LIO ready"),
    "target": ("scsi_pr.target.cli", "serve the simulated LUs over iSCSI (scsi-pr target serve)"),
    "guests": (
        "scsi_pr.rig.iscsi_guests.cli",
        "two QEMU guests, two iSCSI nexuses on one LU: one fences the other",
    ),
}


def usage() -> str:
    lines = ["usage: scsi-pr COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name:<10} {text}" for name, (_, text) in SUBCOMMANDS.items()]
    lines += ["", "scsi-pr COMMAND --help shows a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        print(usage())
        return 0 if args else 1
    entry = SUBCOMMANDS.get(args[0])
    if entry is None:
        print(f"scsi-pr: unknown command {args[0]!r}\n\n{usage()}", file=sys.stderr)
        return 1
    module = importlib.import_module(entry[0])
    return int(module.main(args[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main())
