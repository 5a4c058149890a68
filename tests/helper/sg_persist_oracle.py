"""The real sg_persist, run on recorded device answers: the oracle ``scsi-pr persist`` is held to.

The real ``/usr/bin/sg_persist`` cannot reach a SCSI device on this host, so it is run with a
small LD_PRELOAD shim (compiled here from the C below, our own code) that answers its SG_IO
ioctls from files: each step first runs our front end on a simulated LU, records every
(CDB, parameter list) -> (status, sense, data-in) exchange, then replays those answers to
sg_persist (``Oracle.check``). A test module using it imports the ``shim`` fixture too.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest
from needs import unavailable

from scsi_pr.helper.persist.cli import execute
from scsi_pr.helper.persist.command import Response, Transport
from scsi_pr.sim.constants import Opcode
from scsi_pr.sim.device import LogicalUnit
from scsi_pr.sim.faults import Fail
from scsi_pr.sim.nexus import ITNexus
from scsi_pr.sim.result import CommandResult

SG_PERSIST = shutil.which("sg_persist")
CC = shutil.which("cc") or shutil.which("gcc")

# Answers SG_IO (v3, interface 'S') from $SGSHIM_DIR/resp.<opcode>: status byte, sense length
# byte, sense, data-in. Writes the CDB and data-out it was given to $SGSHIM_DIR/req.<opcode>.
SHIM_SOURCE = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <scsi/sg.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int ioctl(int fd, unsigned long request, ...)
{
    va_list ap;
    va_start(ap, request);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    const char *dir = getenv("SGSHIM_DIR");
    sg_io_hdr_t *h = arg;
    if (request == SG_IO && dir && h && h->interface_id == 'S') {
        char path[4096];
        unsigned char hdr[2], sense[256];
        snprintf(path, sizeof path, "%s/req.%02x", dir, h->cmdp[0]);
        FILE *f = fopen(path, "wb");
        if (!f) return -1;
        fwrite(h->cmdp, 1, h->cmd_len, f);
        if (h->dxfer_direction == SG_DXFER_TO_DEV) fwrite(h->dxferp, 1, h->dxfer_len, f);
        fclose(f);
        snprintf(path, sizeof path, "%s/resp.%02x", dir, h->cmdp[0]);
        f = fopen(path, "rb");
        if (!f) { errno = ENOTTY; return -1; }
        if (fread(hdr, 1, 2, f) != 2) { fclose(f); errno = EIO; return -1; }
        size_t slen = fread(sense, 1, hdr[1], f), n = 0;
        if (slen > h->mx_sb_len) slen = h->mx_sb_len;
        memcpy(h->sbp, sense, slen);
        if (h->dxfer_direction == SG_DXFER_FROM_DEV) n = fread(h->dxferp, 1, h->dxfer_len, f);
        fclose(f);
        h->status = hdr[0];
        h->masked_status = (hdr[0] >> 1) & 0x7f;
        h->sb_len_wr = slen;
        h->host_status = 0;
        h->driver_status = slen ? 0x08 : 0;
        h->resid = h->dxfer_direction == SG_DXFER_FROM_DEV ? (int)(h->dxfer_len - n) : 0;
        h->info = (hdr[0] || slen) ? SG_INFO_CHECK : 0;
        h->duration = 0;
        return 0;
    }
    int (*real)(int, unsigned long, ...) =
        (int (*)(int, unsigned long, ...))dlsym(RTLD_NEXT, "ioctl");
    return real(fd, request, arg);
}
"""

A = ITNexus.named("naa.5001405000000001", 1)
B = ITNexus.named("naa.5001405000000002", 2)


@pytest.fixture(scope="module")
def shim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if SG_PERSIST is None or CC is None:
        reason = "needs sg_persist (apt sg3-utils) and a C compiler to run the oracle"
        unavailable(reason)
    build = tmp_path_factory.mktemp("sgshim")
    (build / "sgshim.c").write_text(SHIM_SOURCE)
    subprocess.run(
        [
            CC,
            "-shared",
            "-fPIC",
            "-O2",
            "-o",
            str(build / "sgshim.so"),
            str(build / "sgshim.c"),
            "-ldl",
        ],
        check=True,
    )
    return build / "sgshim.so"


@dataclass
class Recorder(Transport):
    """In-process transport over the model that remembers each exchange; it pads sense to the
    96 bytes the helper sends, while the shim gets the LU's own sense length (as SG_IO)."""

    lu: LogicalUnit
    nexus: ITNexus
    calls: list[tuple[bytes, bytes, CommandResult]] = field(default_factory=list)

    def execute(self, cdb: bytes, data: bytes = b"") -> Response:
        result = self.lu.execute(self.nexus, cdb, data)
        self.calls.append((cdb, data, result))
        # the shim reports duration 0, as a fast device does through SG_IO
        return Response(int(result.status), result.sense.ljust(96, b"\0"), result.data, 0)


@dataclass
class Run:
    stdout: str
    stderr: str
    code: int
    sent: bytes


class Oracle:
    def __init__(self, shim: Path, workdir: Path, lu: LogicalUnit) -> None:
        self.shim, self.workdir, self.lu = shim, workdir, lu
        self.image = workdir / "lu.img"
        self.image.write_bytes(b"")
        self.steps = 0

    def both(self, argv: list[str], nexus: ITNexus = A) -> tuple[Run, Run]:
        """Our run on the LU, then sg_persist on the same answers."""
        self.steps += 1
        box = self.workdir / f"step{self.steps}"
        box.mkdir()
        recorder = Recorder(self.lu, nexus)
        outcome = execute([*argv, str(self.image)], lambda op, fd: recorder, env={})
        sent = b""
        for cdb, data, result in recorder.calls:
            sent += cdb + data
            response = bytes([int(result.status), len(result.sense)]) + result.sense + result.data
            (box / f"resp.{cdb[0]:02x}").write_bytes(response)
        env = {"PATH": os.environ.get("PATH", "/usr/bin"), "SGSHIM_DIR": str(box),
               "LD_PRELOAD": str(self.shim), "LC_ALL": "C"}  # fmt: skip
        real = subprocess.run(
            [SG_PERSIST or "sg_persist", *argv, str(self.image)],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        real_sent = b"".join(p.read_bytes() for p in sorted(box.glob("req.*")))
        mine = Run("".join(outcome.stdout), "".join(outcome.stderr), outcome.code, sent)
        return mine, Run(real.stdout, real.stderr, real.returncode, real_sent)

    def check(self, argv: list[str], nexus: ITNexus = A, code: int | None = None) -> Run:
        mine, real = self.both(argv, nexus)
        assert mine.sent == real.sent, f"{argv}: different CDB/parameter bytes"
        assert mine.stdout == real.stdout, f"{argv}: stdout differs"
        assert mine.stderr == real.stderr, f"{argv}: stderr differs"
        assert mine.code == real.code, f"{argv}: exit status differs"
        if code is not None:
            assert mine.code == code, f"{argv}: exit {mine.code}, expected {code}"
        return mine


@pytest.fixture
def oracle(shim: Path, tmp_path: Path) -> Iterator[Oracle]:
    lu = LogicalUnit(target_ports=(1, 2))
    # the model starts with a POWER ON unit attention per nexus; consume it for both nexuses
    for nexus in (A, B):
        lu.execute(nexus, bytes(6))
    yield Oracle(shim, tmp_path, lu)


def answering(shim: Path, workdir: Path, result: CommandResult) -> Oracle:
    """An oracle whose LU answers every command with ``result``, a PR IN's data cut to the
    CDB's ALLOCATION LENGTH as a device cuts it: the device answers the model never gives."""

    def answer(nexus: ITNexus, cdb: bytes) -> Fail:
        if cdb[0] != Opcode.PERSISTENT_RESERVE_IN:
            return Fail(result)
        return Fail(replace(result, data=result.data[: int.from_bytes(cdb[7:9], "big")]))

    return Oracle(shim, workdir, LogicalUnit(fault=answer))


def full_status_descriptor(key: int, flags: int, scope_type: int, port: int, tid: bytes) -> bytes:
    """SPC-5 table 170: one READ FULL STATUS descriptor."""
    return struct.pack(">Q4xBB4xHI", key, flags, scope_type, port, len(tid)) + tid


def fixed_sense(
    key: int,
    asc: int,
    ascq: int,
    *,
    code: int = 0x70,
    info: int = 0,
    fru: int = 0,
    specific: tuple[int, int, int] = (0, 0, 0),
) -> bytes:
    """SPC-5 4.4.3: 18 bytes of fixed-format sense (ADDITIONAL SENSE LENGTH 10)."""
    head = bytes([code, 0, key, *info.to_bytes(4, "big"), 10])
    return head + bytes([0, 0, 0, 0, asc, ascq, fru, *specific])
