"""``scripts/bench [--model] [--helper] [--iscsi] [--vm] [--rig]``: run the chosen benchmarks
(default: all but ``--iscsi``, ``--vm`` and ``--rig``, which boot a VM and take minutes).

Benchmarks print rates and latencies; they are never timed tests (timings vary per machine).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from scsi_pr.rig.progress import Tracker

BENCHMARKS = {
    "model": "benchmarks.model",
    "helper": "benchmarks.helper",
    "iscsi": "benchmarks.iscsi",
    "vm": "benchmarks.helper_vm",
    "rig": "benchmarks.rig_vm",
}
#: run only when named: they need the VM
ON_REQUEST = frozenset({"iscsi", "vm", "rig"})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench", description=__doc__)
    for name, module in BENCHMARKS.items():
        parser.add_argument(f"--{name}", action="store_true", help=f"run {module}")
    args = parser.parse_args(argv)
    chosen = [n for n in BENCHMARKS if getattr(args, n)] or [
        n for n in BENCHMARKS if n not in ON_REQUEST
    ]
    status = 0
    with Tracker("benchmarks", total=len(chosen)) as bar:
        for done, name in enumerate(chosen):
            bar.update(done, name)
            status |= int(importlib.import_module(BENCHMARKS[name]).main() or 0)
    return status


if __name__ == "__main__":
    sys.exit(main())
