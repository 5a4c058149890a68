"""``--profile`` on the helper's sim backend and ``scsi-pr sim``: the option, the LU's state file
naming its profile, a helper of another profile refused on that LU, and LIO's PREEMPT AND ABORT
stall withheld instead of answered."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from scsi_pr.helper.client import Client
from scsi_pr.helper.errors import HelperError
from scsi_pr.helper.executors.sim import CommandNeverCompletes, SimExecutor
from scsi_pr.helper.lu_state_file import StateFileError
from scsi_pr.helper.options import Exit, InvalidOption, parse
from scsi_pr.helper.sim_cli import main as sim_main
from scsi_pr.helper.simserve import LuProfileMismatch, SharedLUs
from scsi_pr.sim import cdb as C
from scsi_pr.sim.constants import PersistentReserveOutAction as SA
from scsi_pr.sim.constants import ReservationType as T
from scsi_pr.sim.device import LogicalUnit
from scsi_pr.sim.nexus import ITNexus
from scsi_pr.sim.profiles import ProfileMismatch

A, B = 0xA, 0xB


def test_profile_option() -> None:
    assert parse(["x"], io.StringIO(), io.StringIO()).profile == "spc5"
    assert parse(["x", "--profile=lio-6.1"], io.StringIO(), io.StringIO()).profile == "lio-6.1"
    err = io.StringIO()
    with pytest.raises(Exit) as caught:
        parse(["x", "--profile", "lio"], io.StringIO(), err)
    assert isinstance(caught.value.__cause__, InvalidOption)
    assert err.getvalue() == "x: invalid profile 'lio' (choose from spc5, lio-6.1, lio-6.12)\n"
    out = io.StringIO()
    with pytest.raises(Exit):
        parse(["scsi-pr-helper", "--help"], out, io.StringIO())
    assert "--profile=NAME" in out.getvalue() and "spc5, lio-6.1, lio-6.12" in out.getvalue()


def _image(tmp_path: Path) -> Path:
    image = tmp_path / "lu.img"
    image.write_bytes(bytes(1 << 16))
    return image


def _register(lu: LogicalUnit) -> None:
    cdb, data = C.prout(SA.REGISTER, 0, A)
    assert lu.execute(ITNexus.named("naa.5001405000000001", 1), cdb, data).status == 0


def test_an_lu_saved_under_one_profile_is_refused_under_another(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image, state = _image(tmp_path), tmp_path / "state"
    SharedLUs(state, profile="lio-6.1").run_on_file(image, _register)
    with pytest.raises(LuProfileMismatch) as caught:
        SharedLUs(state).run_on_file(image, lambda lu: None)
    assert isinstance(caught.value, StateFileError) and isinstance(caught.value, HelperError)
    assert isinstance(caught.value.__cause__, ProfileMismatch)
    assert "'lio-6.1'" in str(caught.value) and "--profile" in str(caught.value)
    # the inspection tools take each LU as it was saved
    assert SharedLUs(state, profile=None).run_on_file(image, lambda lu: lu.profile.name) == (
        "lio-6.1"
    )
    assert sim_main(["show", str(image), "--state-dir", str(state)]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["profile"] == "lio-6.1" and len(shown["registrations"]) == 1
    # a helper of the same profile goes on
    SharedLUs(state, profile="lio-6.1").run_on_file(image, lambda lu: None)


def _preempt_and_abort(ex: SimExecutor, fd: int) -> tuple[bytes, bytes]:
    for cdb, data in (C.prout(SA.REGISTER, 0, A), C.prout(SA.RESERVE, A, 0, T.WRITE_EXCLUSIVE)):
        assert ex.execute(fd, cdb, data, 0).status == 0
    return C.prout(SA.PREEMPT_AND_ABORT, A, A, T.EXCLUSIVE_ACCESS)


def test_preempt_and_abort_is_never_answered_under_lio(tmp_path: Path) -> None:
    image = _image(tmp_path)
    ex = SimExecutor("naa.5001405000000001", tmp_path / "state", profile="lio-6.1")
    fd = os.open(image, os.O_RDWR)
    try:
        cdb, data = _preempt_and_abort(ex, fd)
        with pytest.raises(CommandNeverCompletes):
            ex.execute(fd, cdb, data, 0)
        # it took effect, as on LIO: the reservation is EA now
        res = ex.lus.run_on_file(image, lambda lu: lu.pr.reservation)
        assert res is not None and res.type == T.EXCLUSIVE_ACCESS
    finally:
        os.close(fd)


def test_serve_passes_the_profile_to_every_helper(tmp_path: Path) -> None:
    image, state = _image(tmp_path), tmp_path / "state"
    exe = Path(sys.executable).parent / "scsi-pr"
    proc = subprocess.Popen(
        [str(exe), "sim", "serve", "--state-dir", str(state), "--initiators", "2",
         "--profile", "lio-6.1"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    socks = [state / "host1.sock", state / "host2.sock"]
    try:
        deadline = time.monotonic() + 30
        while not all(s.exists() for s in socks):
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
        time.sleep(0.3)
        fd = os.open(image, os.O_RDWR)
        try:
            with Client(str(socks[0])) as c:
                # LIO: RESERVE from an unregistered I_T nexus with no reservation is NOT READY
                reply = c.execute(fd, *C.prout(SA.RESERVE, 0, 0, T.WRITE_EXCLUSIVE))
                assert reply.status == 2 and (reply.sense[2] & 0x0F, reply.sense[12]) == (2, 8)
                assert c.execute(fd, *C.prout(SA.REGISTER, 0, B)).status == 0
        finally:
            os.close(fd)
        lus = SharedLUs(state, profile=None)
        assert lus.run_on_file(image, lambda lu: lu.profile.name) == "lio-6.1"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
