"""``scsi-pr explain``: a CDB, sense data, a status or PR IN parameter data, in words.

    scsi-pr explain 5f 01 05 00 00 00 00 00 18 00 [PARAMETER-LIST]
    scsi-pr explain 70000600000000000a000000002a0500
    scsi-pr explain --as keys 00000003000000080000000000000abc
    sg_persist -vv ... 2>&1 | scsi-pr explain -

Hex may be spaced, joined, ``0x``-prefixed or colon-separated. Separate byte tokens on the
command line form one blob; two blobs (quoted) are a PR OUT CDB and its parameter list, or
explained one after the other. ``-`` reads a trace from stdin and explains every run of six or
more hex bytes. The decoding is ``scsi_pr.sim.explain``'s. Exit status 2 for input that is not hex.
"""

from __future__ import annotations

import argparse
import re
import sys

from scsi_pr.sim.constants import Opcode
from scsi_pr.sim.explain import PR_IN_READERS, ExplainError, explain, explain_trace, parse_hex

PR_OUT = Opcode.PERSISTENT_RESERVE_OUT
BYTE_TOKEN = re.compile(r"(0x)?[0-9a-fA-F]{2},?")


def blobs(words: list[str]) -> list[bytes]:
    """One blob when every word is a single byte (``5f 00 …``), else one blob per word."""
    if all(BYTE_TOKEN.fullmatch(w) for w in words):
        return [parse_hex(" ".join(words))]
    return [parse_hex(w) for w in words]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="scsi-pr explain", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--as", dest="as_", choices=sorted(PR_IN_READERS),
                   help="read the bytes as this PR IN service action's parameter data")  # fmt: skip
    p.add_argument("hex", nargs="*", help="bytes in hex, or - for a trace on stdin")
    args = p.parse_args(argv)
    try:
        if args.hex in ([], ["-"]):
            lines = explain_trace(sys.stdin.read())
        else:
            parts = blobs(args.hex)
            if len(parts) == 2 and args.as_ is None and parts[0][0] == PR_OUT:
                lines = explain(parts[0], data=parts[1])
            else:
                lines = [line for blob in parts for line in explain(blob, as_=args.as_)]
    except ExplainError as e:
        print(f"scsi-pr explain: {e}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    return 0
