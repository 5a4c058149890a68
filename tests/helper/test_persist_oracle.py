"""``scsi-pr persist`` against the real sg_persist, byte for byte, on the same device answers.

The real ``/usr/bin/sg_persist`` cannot reach a SCSI device on this host, so it is run with a
small LD_PRELOAD shim (compiled here from the C below, our own code) that answers its SG_IO
ioctls from files: each step first runs our front end on a simulated LU, records every
(CDB, parameter list) -> (status, sense, data-in) exchange, then replays those answers to
sg_persist. The two must print the same stdout and stderr, exit with the same status and put
the same bytes in the CDB and parameter list. Steps run in sequence on one LU, so conflicts,
unit attentions and preemptions come from the model, not from hand-made bytes.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from needs import unavailable

from scsi_pr.helper.persist.cli import execute
from scsi_pr.helper.persist.command import Response, Transport
from scsi_pr.sim.constants import Status
from scsi_pr.sim.device import LogicalUnit
from scsi_pr.sim.faults import Fail
from scsi_pr.sim.nexus import ITNexus
from scsi_pr.sim.result import CommandResult
from scsi_pr.sim.transportid import TransportId

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


PRIN_VIEWS = [
    ["-n", "-k"], ["-n", "-r"], ["-n", "-s"], ["-n", "-c"], ["-n", "-i", "-k", "-H"],
    ["-n", "-k", "-HH"], ["-n", "-k", "-HHH"], ["-n", "-r", "-H"], ["-n", "-s", "-H"],
    ["-n", "-c", "-H"], ["-n", "-s", "-v"], ["-n", "-k", "-v"], ["-n", "-k", "-vv"],
    ["-n", "-s", "-vvv"], ["-n", "--read-full-status"], ["--no-inquiry", "--read-keys"],
    ["-n", "-k", "-l", "1c"], ["-n", "-k", "-m", "64"], ["-n", "-s", "-l", "200"],
    ["-n", "-r", "-m", "0x18"], ["-n", "-k", "-y"], ["-nik"], ["-n", "-s", "-HH"],
    ["-n", "-r", "-HHH"], ["-n", "-c", "-HH"], ["-n", "-s", "-HHH", "-vvv"],
]  # fmt: skip
# Allocation lengths that cut a response short are left out: sg_persist then decodes past its
# buffer (heap bytes it never received); we decode zeros there (tests/helper/test_persist_sim.py).


def test_empty_lu_views(oracle: Oracle) -> None:
    for argv in PRIN_VIEWS:
        oracle.check(argv, code=0)


def test_fence_scsi_sequence_and_conflicts(oracle: Oracle) -> None:
    """fence_scsi's own command lines (agents/scsi/fence_scsi.py), then every view."""
    oracle.check(["-n", "-o", "-I", "-S", "123abc", "-d"], A, code=0)
    oracle.check(["-n", "-o", "-I", "-S", "0x456def", "-v", "-d"], B, code=0)
    oracle.check(["-n", "-o", "-R", "-T", "5", "-K", "123abc", "-d"], A, code=0)
    for argv in PRIN_VIEWS:
        oracle.check(argv, A, code=0)
    # B is registered but not the holder: RESERVE of another type conflicts
    oracle.check(["-n", "-o", "-R", "-T", "1", "-K", "456def", "-d"], B, code=24)
    oracle.check(["-n", "-o", "-R", "-T", "1", "-K", "456def", "-v", "-d"], B, code=24)
    # a key B does not hold: RESERVATION CONFLICT too
    oracle.check(["-n", "-o", "-G", "-K", "999", "-S", "1", "-d"], B, code=24)
    # fence A off: PREEMPT AND ABORT its key
    oracle.check(["-n", "-o", "-A", "-T", "5", "-K", "456def", "-S", "123abc", "-d"], B, code=0)
    # A's next command reports REGISTRATIONS PREEMPTED (noisy, exit 6), then A is gone
    oracle.check(["-n", "-i", "-k", "-d"], A, code=6)
    oracle.check(["-n", "-i", "-r", "-d"], A, code=0)
    oracle.check(["-n", "-o", "-R", "-T", "5", "-K", "123abc", "-d"], A, code=24)
    for argv in PRIN_VIEWS:
        oracle.check(argv, B, code=0)


def test_preempt(oracle: Oracle) -> None:
    oracle.check(["-n", "-o", "-G", "-S", "aa"], A, code=0)
    oracle.check(["--no-inquiry", "--out", "--register", "--param-sark=bb"], B, code=0)
    oracle.check(["-n", "-o", "-R", "-T", "3", "-K", "aa"], A, code=0)
    oracle.check(["-n", "-k"], B, code=0)  # PR IN is allowed under EXCLUSIVE ACCESS
    oracle.check(["-n", "-o", "--preempt", "--prout-type=3", "--param-rk=bb", "--param-sark=aa"],
                 B, code=0)  # fmt: skip
    oracle.check(["-n", "-r"], A, code=6)
    oracle.check(["-n", "-r"], A, code=0)
    oracle.check(["-n", "-o", "-R", "-T", "3", "-K", "aa"], A, code=24)
    oracle.check(["-n", "-s"], B, code=0)


def test_unit_attention_after_power_cycle(oracle: Oracle) -> None:
    oracle.check(["-n", "-o", "-G", "-S", "1", "-Z"], A, code=0)
    oracle.lu.power_loss()
    oracle.lu.power_on()
    oracle.check(["-n", "-k"], A, code=6)
    oracle.check(["-n", "-k", "-vv"], B, code=6)
    oracle.check(["-n", "-c"], A, code=0)  # APTPL kept the registration: PTPL_A set
    oracle.check(["-n", "-s"], A, code=0)


def test_illegal_requests(oracle: Oracle) -> None:
    oracle.check(["-n", "-o", "-G", "-S", "aa"], A, code=0)
    for verbose in ([], ["-v"], ["-vv"]):
        oracle.check(["-n", "-o", "-R", "-T", "2", "-K", "aa", *verbose], A, code=5)
    oracle.check(["-n", "-o", "-R", "-K", "aa"], A)  # type 0: warning, then the device's answer
    oracle.check(["-n", "-o", "-z", "-S", "ab", "-T", "5"], A)
    oracle.check(["-n", "-o", "-L", "-T", "5", "-K", "aa"], A, code=0)


def test_release_clear_and_all_target_ports(oracle: Oracle) -> None:
    oracle.check(["-n", "-o", "-G", "-S", "aa", "-Y"], A, code=0)
    oracle.check(["-n", "-o", "-I", "-S", "bb"], B, code=0)
    oracle.check(["-n", "-o", "-R", "-T", "7", "-K", "aa"], A, code=0)
    oracle.check(["-n", "-s"], B, code=0)
    oracle.check(["-n", "-r"], B, code=0)
    oracle.check(["-n", "-o", "-L", "-T", "7", "-K", "bb"], B, code=0)
    # releasing an all-registrants reservation is a RESERVATIONS RELEASED unit attention for A
    oracle.check(["-n", "-o", "-C", "-K", "aa"], A, code=6)
    oracle.check(["-n", "-o", "-C", "-K", "aa"], A, code=0)
    oracle.check(["-n", "-k"], B, code=6)
    oracle.check(["-n", "-k"], B, code=0)


def test_transport_ids_and_register_and_move(oracle: Oracle) -> None:
    oracle.check(["-n", "-o", "-G", "-S", "aa", "-X", "sas,5001405000000002", "-vv"], A)
    oracle.check(["-n", "-s", "-vvv"], A)
    oracle.check(["-n", "-o", "-G", "-S", "cc", "-X", "iqn.2003-01.org.example:x,i,0x1234"], A)
    oracle.check(["-n", "-o", "-G", "-S", "dd", "-X", "fcp,10000000c9f3a571"], A)
    oracle.check(["-n", "-o", "-R", "-T", "1", "-K", "aa"], A)
    oracle.check(["-n", "-o", "-M", "-K", "aa", "-S", "ee", "-T", "1", "-Q", "2", "-X",
                  "sas,5001405000000002", "-vv"], A)  # fmt: skip
    oracle.check(["-n", "-s"], B, code=0)
    oracle.check(["-n", "-r", "-v"], B, code=0)


def full_status_descriptor(key: int, flags: int, scope_type: int, port: int, tid: bytes) -> bytes:
    """SPC-5 table 170: one READ FULL STATUS descriptor."""
    return struct.pack(">Q4xBB4xHI", key, flags, scope_type, port, len(tid)) + tid


def test_full_status_transport_id_decoding(shim: Path, tmp_path: Path) -> None:
    """Protocols the SAS-only model never reports, answered by the fault hook: FC, iSCSI in
    both formats, SAS with ALL_TG_PT, SOP, an unknown protocol and a short TransportID."""
    fc = TransportId.fibre_channel(0x10000000C9F3A571).encode()
    iscsi_device = TransportId.iscsi("iqn.2003-01.org.example:a").encode()
    iscsi_port = TransportId.iscsi("iqn.x", 0x23D000000001).encode()
    descriptors = [
        full_status_descriptor(0x11, 0x01, 0x05, 1, fc),
        full_status_descriptor(0x22, 0x00, 0x00, 2, iscsi_device),
        full_status_descriptor(0x33, 0x02, 0x00, 0, iscsi_port),
        full_status_descriptor(0x44, 0x02, 0x00, 0, TransportId.sas(0x5001405000000009).encode()),
        full_status_descriptor(0x55, 0x00, 0x00, 3, bytes([0x0A, 0, 0x12, 0x34]) + bytes(20)),
        full_status_descriptor(0x66, 0x00, 0x00, 4, bytes([0x4C]) + bytes(range(1, 24))),
        full_status_descriptor(0x77, 0x00, 0x00, 5, bytes([0x01, 0, 0, 7, 0, 0, 0, 9]) + bytes(16)),
        full_status_descriptor(0x88, 0x00, 0x00, 6, bytes([0x06]) + bytes(19)),
    ]
    body = b"".join(descriptors)
    data = struct.pack(">II", 7, len(body)) + body
    lu = LogicalUnit(fault=lambda nexus, cdb: Fail(CommandResult(Status.GOOD, b"", data)))
    oracle = Oracle(shim, tmp_path, lu)
    for argv in (["-n", "-s"], ["-n", "-s", "-v"], ["-n", "-s", "-H"], ["-n", "-k"], ["-n", "-r"]):
        oracle.check(argv, code=0)
    decoded = oracle.check(["-n", "-s"]).stdout
    for text in (
        "FCP-2 World Wide Name:\n      10 00 00 00 c9 f3 a5 71\n",
        "iSCSI name: iqn.2003-01.org.example:a\n",
        "iSCSI world wide unique port id: iqn.x,i,0x23d000000001\n",
        "All target ports bit set",
        "SAS address: 0x5001405000000009",
        "SOP Routing ID: 0x1234",
        "unknown protocol id=0xc",
        "Transport Id short or not multiple of 4 [length=1024]",
        "Parallel SCSI initiator SCSI address: 0x7",
    ):
        assert text in decoded


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


@pytest.mark.parametrize(
    "result",
    [
        CommandResult(Status.BUSY),
        CommandResult(Status.TASK_SET_FULL),
        CommandResult(Status.TASK_ABORTED),
        CommandResult(Status.ACA_ACTIVE),
        CommandResult(0x10),  # an obsolete status sg3_utils does not map: it "succeeds"
        CommandResult(Status.CHECK_CONDITION),  # CHECK CONDITION without sense
        CommandResult(Status.CHECK_CONDITION, bytes([0x72, 0x06, 0x29, 0x07, 0, 0, 0, 0])),
        CommandResult(
            Status.CHECK_CONDITION,
            fixed_sense(0x03, 0x11, 0x00, code=0xF1, info=9, fru=4, specific=(0x80, 0, 2)),
        ),
        CommandResult(
            Status.CHECK_CONDITION, fixed_sense(0x02, 0x04, 0x01, specific=(0x80, 0x40, 0))
        ),
        CommandResult(Status.CHECK_CONDITION, fixed_sense(0x05, 0x20, 0x00, specific=(0xC0, 0, 0))),
        CommandResult(Status.CHECK_CONDITION, fixed_sense(0x0B, 0x08, 0x00)),
        CommandResult(Status.CHECK_CONDITION, fixed_sense(0x01, 0x0B, 0x00)),
        CommandResult(Status.CHECK_CONDITION, bytes([0x01, 2, 3, 4, 5])),
        CommandResult(Status.GOOD, b"", bytes(8)),  # REPORT CAPABILITIES with a bad length
    ],
    ids=lambda r: f"{int(r.status):02x}-{r.sense.hex()[:8]}",
)
@pytest.mark.parametrize("argv", [["-n", "-c"], ["-n", "-c", "-H"], ["-n", "-o", "-G", "-vv"]])
def test_device_failures(
    shim: Path, tmp_path: Path, result: CommandResult, argv: list[str]
) -> None:
    lu = LogicalUnit(fault=lambda nexus, cdb: Fail(result))
    Oracle(shim, tmp_path, lu).check(argv)
