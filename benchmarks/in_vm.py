"""Run a benchmark inside the VM when this machine lacks the kernel pieces it needs.

The benchmark module calls ``run_in_vm(flag, reason)`` from its ``main``: the same ``scripts/bench
--FLAG`` is started in the guest (``scsi-pr vm run``), with ``SCSI_PR_BENCH_IN_VM`` set so that a
guest without the pieces says so instead of booting a VM of its own. The guest's root is
read-only, so results travel back as lines of its output: ``lines_after(text, marker)`` picks
them out of what ``run_in_vm`` captured.
"""

from __future__ import annotations

import io
import os
import sys

from scsi_pr.rig import vm

IN_VM = "SCSI_PR_BENCH_IN_VM"  # set for the run inside the VM: never boot a VM from a VM
QUIET_TIMEOUT = 900.0  # the VM is killed after this long without output


class _Tee(io.RawIOBase):
    """Forwards the guest's output to our stdout and keeps a copy."""

    def __init__(self) -> None:
        self.kept = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.kept += data
        sys.stdout.buffer.write(data)
        return len(data)

    def flush(self) -> None:
        sys.stdout.buffer.flush()


def in_vm() -> bool:
    return bool(os.environ.get(IN_VM))


def run_in_vm(flag: str, reason: str) -> tuple[int, str]:
    """``scripts/bench --FLAG`` in the VM: its exit status and its output (``""`` if the VM
    could not start). ``reason`` says why the host cannot run it; a guest that cannot either
    fails at once."""
    name = flag.lstrip("-")
    if in_vm():
        print(f"{name}: the VM cannot run the benchmark: {reason}", file=sys.stderr)
        return 2, ""
    print(f"{name}: {reason}; running in the VM (scsi-pr vm run, minutes under TCG)", flush=True)
    os.environ[IN_VM] = "1"  # SCSI_PR_* variables travel into the guest
    tee = _Tee()
    try:
        cmd = [sys.executable, "-m", "benchmarks", flag]
        rc = vm.run(cmd, quiet_timeout=QUIET_TIMEOUT, out=tee)
    except vm.VmError as e:
        print(f"{name}: cannot start the VM: {e}", file=sys.stderr)
        return 2, ""
    return rc, tee.kept.decode(errors="replace")


def lines_after(text: str, marker: str) -> list[str]:
    """The rest of each output line that starts with ``marker``."""
    return [line[len(marker) :] for line in text.splitlines() if line.startswith(marker)]
