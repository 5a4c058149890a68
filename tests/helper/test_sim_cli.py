"""``scsi-pr sim``: stall, show, forget and serve, as a user runs them; a damaged state file is
a clear error naming it."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from scsi_pr.helper import sim_cli
from scsi_pr.helper.client import Client
from scsi_pr.helper.errors import HelperError
from scsi_pr.helper.executable import helper_executable
from scsi_pr.helper.executors.sim import SimExecutor
from scsi_pr.helper.lu_identity import identify_path
from scsi_pr.helper.lu_state_file import StateFileError
from scsi_pr.helper.sim_cli import describe_lu, main
from scsi_pr.helper.simserve import SharedLUs
from scsi_pr.rig.processes import spawn_listening, stop
from scsi_pr.sim.cdb import (
    persistent_reserve_in,
    persistent_reserve_out,
    pr_out_parameters,
    prout,
)
from scsi_pr.sim.constants import PersistentReserveOutAction as Action
from scsi_pr.sim.constants import ReservationType as Type
from scsi_pr.sim.device import LogicalUnit
from scsi_pr.sim.nexus import ITNexus


def test_stall_fault_and_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    image = tmp_path / "lu.img"
    image.write_bytes(bytes(4096))
    state = tmp_path / "state"
    ex = SimExecutor("naa.5001405000000001", state)
    fd = os.open(image, os.O_RDWR)
    try:
        assert main(["stall", str(image), "--state-dir", str(state), "--seconds", "2.5"]) == 0
        result = ex.run(fd, persistent_reserve_in(0, 64), b"")
        assert result.stall == 2.5
        assert main(["stall", str(image), "--state-dir", str(state), "--seconds", "0"]) == 0
        assert ex.run(fd, persistent_reserve_out(6, 24), pr_out_parameters(0, 9)).stall == 0
    finally:
        os.close(fd)
    capsys.readouterr()
    assert main(["show", str(image), "--state-dir", str(state)]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["generation"] == 1
    assert shown["registrations"] == [
        {"nexus": "naa.5001405000000001@1", "key": "0x9", "all_tg_pt": False}
    ]
    assert main(["show", str(tmp_path / "missing.img"), "--state-dir", str(state)]) == 1
    # power-cycle keeps registrations only with APTPL (this one has none) and prints the LU
    assert main(["power-cycle", str(image), "--state-dir", str(state)]) == 0
    assert json.loads(capsys.readouterr().out)["registrations"] == []
    # forget: the next helper command finds a fresh LU, generation 0 and no stall
    assert main(["stall", str(image), "--state-dir", str(state), "--seconds", "3"]) == 0
    assert main(["forget", str(image), "--state-dir", str(state)]) == 0
    assert list(state.iterdir()) == []
    fd = os.open(image, os.O_RDWR)
    try:
        fresh = SimExecutor("naa.5001405000000002", state)
        assert fresh.run(fd, persistent_reserve_out(6, 24), pr_out_parameters(0, 4)).stall == 0
    finally:
        os.close(fd)
    assert main(["show", str(image), "--state-dir", str(state)]) == 0
    assert json.loads(capsys.readouterr().out)["generation"] == 1


def test_serve_runs_one_helper_per_initiator(tmp_path: Path) -> None:
    image = tmp_path / "lu.img"
    image.write_bytes(bytes(4096))
    state = tmp_path / "state"
    exe = Path(sys.executable).parent / "scsi-pr"
    proc = subprocess.Popen(
        [str(exe), "sim", "serve", "--state-dir", str(state), "--initiators", "2"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    socks = [state / "host1.sock", state / "host2.sock"]
    try:
        deadline = time.monotonic() + 20
        while not all(s.exists() for s in socks):
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
        time.sleep(0.3)
        fd = os.open(image, os.O_RDWR)
        try:
            for n, sock in enumerate(socks, 1):
                with Client(str(sock)) as c:
                    reply = c.execute(fd, persistent_reserve_out(6, 24), pr_out_parameters(0, n))
                    assert reply.status == 0
            lu = SharedLUs(state).run_on_file(image, lambda lu: lu)
            assert sorted((r.nexus.target_port, r.key) for r in lu.pr.registrations.values()) == [
                (1, 1),
                (2, 2),
            ]
        finally:
            os.close(fd)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    assert not any(s.exists() for s in socks)


def _with(field: str, value: object) -> Callable[[bytes], bytes]:
    def damage(good: bytes) -> bytes:
        return json.dumps({**json.loads(good), field: value}).encode()

    return damage


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda good: b"", id="empty"),
        pytest.param(lambda good: good[: len(good) // 2], id="torn"),
        pytest.param(lambda good: b"[1, 2]", id="not an object"),
        pytest.param(lambda good: b"\xff\xfe", id="not UTF-8"),
        pytest.param(_with("format", 99), id="unknown format"),
        pytest.param(_with("state", {"pr": "?"}), id="bad LU state"),
        pytest.param(_with("aptpl", [1]), id="bad APTPL image"),
    ],
)
def test_a_damaged_state_file_is_a_clear_error_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], damage: Callable[[bytes], bytes]
) -> None:
    """9e: every action on an LU whose state file is damaged exits 1 with one line that names
    the file; no traceback. The helper's executor raises the same typed error (the session
    answers it with a CHECK CONDITION and logs it)."""
    image = tmp_path / "lu.img"
    image.write_bytes(bytes(4096))
    state = tmp_path / "state"
    assert main(["power-cycle", str(image), "--state-dir", str(state)]) == 0
    capsys.readouterr()
    doc = SharedLUs(state).files(identify_path(image)[0]).state
    doc.write_bytes(damage(doc.read_bytes()))
    for action in ("show", "power-cycle"):
        assert main([action, str(image), "--state-dir", str(state)]) == 1
        err = capsys.readouterr().err
        assert str(doc) in err and "Traceback" not in err, err
        assert re.fullmatch(r"scsi-pr sim: [^\n]+\n", err), err
    fd = os.open(image, os.O_RDWR)
    try:
        with pytest.raises(StateFileError, match=re.escape(str(doc))) as caught:
            SimExecutor(state_dir=state).run(fd, persistent_reserve_in(0, 64), b"")
        assert isinstance(caught.value, HelperError)
    finally:
        os.close(fd)
    assert main(["forget", str(image), "--state-dir", str(state)]) == 0
    assert main(["show", str(image), "--state-dir", str(state)]) == 0


def test_a_stalled_and_locked_lu_does_not_delay_another_lu_of_the_helper(tmp_path: Path) -> None:
    """9c: LU A is stalled (``scsi-pr sim stall``) and its lock is held by another process (as
    by a helper stopped mid-command); a command for A waits, one for LU B answers at once."""
    state = tmp_path / "state"
    busy, free = tmp_path / "a.img", tmp_path / "b.img"
    for image in (busy, free):
        image.write_bytes(bytes(4096))
    sock = tmp_path / "h.sock"
    argv = [helper_executable(), "--backend", "sim", "--state-dir", str(state), "-k", str(sock)]
    proc = spawn_listening(argv, sock, tmp_path / "h.log", 20)
    assert main(["stall", str(busy), "--state-dir", str(state), "--seconds", "2"]) == 0
    inside, release = threading.Event(), threading.Event()

    def hold(lu: object) -> None:
        inside.set()
        release.wait(30)

    def read_keys(image: Path) -> tuple[int, float]:
        start = time.monotonic()
        fd = os.open(image, os.O_RDWR)
        try:
            with Client(str(sock), timeout=30) as c:
                return c.execute(fd, persistent_reserve_in(0, 64), b"", 64).status, (
                    time.monotonic() - start
                )
        finally:
            os.close(fd)

    holder = threading.Thread(target=SharedLUs(state).run_on_file, args=(busy, hold))
    waiting: list[tuple[int, float]] = []
    waiter = threading.Thread(target=lambda: waiting.append(read_keys(busy)))
    try:
        holder.start()
        assert inside.wait(10)
        waiter.start()
        time.sleep(0.5)  # the helper's command for A now waits for A's lock
        status, took = read_keys(free)
        assert status == 0 and took < 1.5, f"LU B answered after {took:.1f}s"
        assert waiter.is_alive()
    finally:
        release.set()
        holder.join(30)
        waiter.join(30)
        stop(proc)
    assert waiting and waiting[0][0] == 0 and waiting[0][1] >= 2.5  # A: the lock, then 2 s


@pytest.mark.parametrize("seconds", ["nan", "inf", "-1", "1e300", "86400.5", "soon"])
def test_a_stall_is_a_number_of_seconds_up_to_a_day(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], seconds: str
) -> None:
    image = tmp_path / "lu.img"
    image.write_bytes(bytes(4096))
    stall = ["stall", str(image), "--state-dir", str(tmp_path / "s"), "--seconds"]
    with pytest.raises(SystemExit) as caught:
        main([*stall, seconds])
    assert caught.value.code == 2
    assert f"'{seconds}' is not a number of seconds 0..86400" in capsys.readouterr().err
    assert main([*stall, "86400"]) == 0  # a day is the longest


@pytest.mark.parametrize("count", ["0", "65"])
def test_serve_starts_1_to_64_helpers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, count: str
) -> None:
    monkeypatch.setattr(sim_cli, "serve", _no_serve)  # refused, or it would serve for ever
    with pytest.raises(SystemExit) as caught:
        main(["serve", "--state-dir", str(tmp_path), "--initiators", count])
    assert caught.value.code == 2
    assert "--initiators must be 1..64" in capsys.readouterr().err


def test_options_may_stand_between_the_action_and_the_image(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``scsi-pr sim show --state-dir D IMAGE`` was "unrecognized arguments: IMAGE"."""
    image = tmp_path / "lu.img"
    image.write_bytes(bytes(4096))
    state = str(tmp_path / "s")
    assert main(["show", "--state-dir", state, str(image)]) == 0
    after = capsys.readouterr().out
    assert main(["show", str(image), "--state-dir", state]) == 0
    assert capsys.readouterr().out == after and '"generation": 0' in after


def test_serve_refuses_an_image_it_would_ignore(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sim_cli, "serve", _no_serve)  # refused, or it would serve for ever
    with pytest.raises(SystemExit) as caught:
        main(["serve", "--state-dir", str(tmp_path), "lu.img"])
    assert caught.value.code == 2
    assert "serve takes no IMAGE (got 'lu.img')" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # refused before any helper started


def _no_serve(*args: object) -> int:
    raise AssertionError(f"serve{args} was called")


# -- in process, every action's whole contract -----------------------------------------------
#: ``scsi-pr sim``'s usage at 80 columns, as every usage error prints it first
USAGE = """\
usage: scsi-pr sim [-h] --state-dir STATE_DIR [--seconds SECONDS]
                   [--socket-dir SOCKET_DIR] [--initiators INITIATORS]
                   [--target-ports TARGET_PORTS]
                   [--profile {spc5,lio-6.1,lio-6.12}]
                   {serve,show,power-cycle,forget,stall} [image]
"""
NODE_A = ITNexus.named("naa.5001405000000001", 1)
NODE_B = ITNexus.named("naa.5001405000000002", 2)
POWER_ON = 0x29  # ASC of POWER ON OCCURRED, the unit attention a power cycle leaves


@pytest.fixture(autouse=True)
def _columns(monkeypatch: pytest.MonkeyPatch) -> None:
    """argparse wraps its usage to the terminal's width: fix it, so the usage is one text."""
    monkeypatch.setenv("COLUMNS", "80")


def _usage_error(capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> None:
    """``main(argv)`` is refused as argparse refuses: exit status 2, the usage, then
    ``scsi-pr sim: error: MESSAGE``, all on stderr and nothing on stdout."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as caught:
        main(argv)
    assert caught.value.code == 2
    out, err = capsys.readouterr()
    assert (out, err) == ("", f"{USAGE}scsi-pr sim: error: {message}\n")


def _run(lus: SharedLUs, image: Path, *commands: tuple[ITNexus, tuple[bytes, bytes]]) -> None:
    """Run PR OUT commands on the LU of ``image``; each must be GOOD."""

    def run(lu: LogicalUnit) -> list[int]:
        return [lu.execute(nexus, *command).status for nexus, command in commands]

    assert lus.run_on_file(image, run) == [0] * len(commands)


def _shown(lu: dict[str, object]) -> str:
    """What ``show`` prints for the LU ``lu`` describes: JSON, indented by two."""
    return json.dumps(lu, indent=2) + "\n"


A_REGISTERED = {"nexus": "naa.5001405000000001@1", "key": "0xabc", "all_tg_pt": False}
B_REGISTERED = [  # ALL_TG_PT: one registration per target port of the LU
    {"nexus": "naa.5001405000000002@1", "key": "0x1f", "all_tg_pt": True},
    {"nexus": "naa.5001405000000002@2", "key": "0x1f", "all_tg_pt": True},
]


def test_show_prints_every_field_of_the_lu(
    image: Path, state_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``show`` is what a test reads an LU's PR state from: the profile, PRGENERATION, APTPL,
    every registration (its I_T nexus, its key in hex, ALL_TG_PT) and the reservation's holder
    and type, ``null`` where there is none; nothing else on stdout, nothing on stderr."""
    state = str(state_dir)
    assert main(["show", str(image), "--state-dir", state]) == 0
    fresh = {"profile": "spc5", "generation": 0, "aptpl": False, "registrations": []}
    assert capsys.readouterr() == (_shown({**fresh, "reservation": None}), "")
    lus = SharedLUs(state_dir)
    _run(
        lus,
        image,
        (NODE_A, prout(Action.REGISTER, 0, 0xABC)),
        (NODE_B, prout(Action.REGISTER, 0, 0x1F, all_tg_pt=True, aptpl=True)),
        (NODE_A, prout(Action.RESERVE, 0xABC, 0, Type.WRITE_EXCLUSIVE)),
    )
    assert main(["show", "--state-dir", state, str(image)]) == 0
    held = {"holder": "naa.5001405000000001@1", "type": "WE"}
    lu = {"profile": "spc5", "generation": 2, "aptpl": True}
    assert capsys.readouterr() == (
        _shown({**lu, "registrations": [A_REGISTERED, *B_REGISTERED], "reservation": held}),
        "",
    )
    # an all-registrants reservation has no one holder
    _run(
        lus,
        image,
        (NODE_A, prout(Action.RELEASE, 0xABC, 0, Type.WRITE_EXCLUSIVE)),
        (NODE_A, prout(Action.RESERVE, 0xABC, 0, Type.WRITE_EXCLUSIVE_ALL_REGISTRANTS)),
    )
    assert main(["show", str(image), "--state-dir", state]) == 0
    all_registrants = {"holder": None, "type": "WE-AR"}
    assert capsys.readouterr() == (
        _shown(
            {**lu, "registrations": [A_REGISTERED, *B_REGISTERED], "reservation": all_registrants}
        ),
        "",
    )


def test_show_takes_each_lus_profile_from_its_state_file(
    image: Path, state_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The actions run the LU as it was saved: an LU a ``--profile lio-6.1`` helper wrote is
    shown (and power-cycled) as a lio-6.1 LU, not refused as another profile's."""
    _run(SharedLUs(state_dir, profile="lio-6.1"), image, (NODE_A, prout(Action.REGISTER, 0, 7)))
    for action in ("show", "power-cycle"):
        assert main([action, str(image), "--state-dir", str(state_dir)]) == 0
        out, err = capsys.readouterr()
        assert (json.loads(out)["profile"], err) == ("lio-6.1", "")


def _power_cycled(
    image: Path, state_dir: Path, capsys: pytest.CaptureFixture[str], *, aptpl: bool
) -> tuple[str, str]:
    """Register A (with or without APTPL), reserve, power-cycle: what it printed."""
    _run(
        SharedLUs(state_dir),
        image,
        (NODE_A, prout(Action.REGISTER, 0, 0xABC, aptpl=aptpl)),
        (NODE_A, prout(Action.RESERVE, 0xABC, 0, Type.EXCLUSIVE_ACCESS)),
    )
    capsys.readouterr()
    assert main(["power-cycle", str(image), "--state-dir", str(state_dir)]) == 0
    return capsys.readouterr()


def _after_power_on(image: Path, state_dir: Path) -> tuple[bool, list[int]]:
    """Whether the LU is powered, and the ASC each of A and B is told first (a new process's
    view of the state dir, as a helper's)."""

    def first_sense(lu: LogicalUnit) -> tuple[bool, list[int]]:
        read_keys = persistent_reserve_in(0, 64)
        return lu.powered, [lu.execute(n, read_keys).sense[12] for n in (NODE_A, NODE_B)]

    return SharedLUs(state_dir).run_on_file(image, first_sense)


def test_power_cycle_keeps_aptpl_registrations_and_prints_the_lu(
    image: Path, state_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With APTPL the registrations and the reservation survive the power cycle (PRGENERATION
    starts again at 0); every I_T nexus then finds POWER ON OCCURRED, and the LU answers."""
    printed = _power_cycled(image, state_dir, capsys, aptpl=True)
    lu = {"profile": "spc5", "generation": 0, "aptpl": True, "registrations": [A_REGISTERED]}
    held = {"holder": "naa.5001405000000001@1", "type": "EA"}
    assert printed == (_shown({**lu, "reservation": held}), "")
    assert _after_power_on(image, state_dir) == (True, [POWER_ON, POWER_ON])


def test_power_cycle_drops_registrations_without_aptpl(
    image: Path, state_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without APTPL a power cycle loses every registration and the reservation (the LU is
    a fresh one but for the unit attentions), and prints that."""
    printed = _power_cycled(image, state_dir, capsys, aptpl=False)
    lu = {"profile": "spc5", "generation": 0, "aptpl": False, "registrations": []}
    assert printed == (_shown({**lu, "reservation": None}), "")
    assert _after_power_on(image, state_dir) == (True, [POWER_ON, POWER_ON])


def _stall_of(image: Path, state_dir: Path) -> float:
    """The stall a helper now adds to a command on the LU (0: none)."""
    return SharedLUs(state_dir).run_on_file(
        image, lambda lu: lu.execute(NODE_A, persistent_reserve_in(0, 64)).stall
    )


def test_stall_sets_the_lus_stall_and_a_bare_stall_stops_it(
    image: Path, state_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--seconds`` is taken as it is, 0 and a day included; without ``--seconds`` stall
    stops the stall (writes 0). It prints nothing and changes no other LU."""
    other = image.with_name("other.img")
    other.write_bytes(bytes(4096))
    stall = ["stall", str(image), "--state-dir", str(state_dir)]
    for seconds, expected in (("2.5", 2.5), ("86400", 86400.0), ("0", 0.0), ("1e-3", 0.001)):
        assert main([*stall, "--seconds", seconds]) == 0
        assert (_stall_of(image, state_dir), _stall_of(other, state_dir)) == (expected, 0)
    assert main(["stall", "--seconds", "3", "--state-dir", str(state_dir), str(image)]) == 0
    assert _stall_of(image, state_dir) == 3.0
    assert main(stall) == 0
    assert _stall_of(image, state_dir) == 0
    fault = SharedLUs(state_dir).files(identify_path(image)[0]).fault
    assert json.loads(fault.read_text()) == {"stall": 0}
    assert capsys.readouterr() == ("", "")


@pytest.mark.parametrize("seconds", ["86400.001", "-0.001", "-1", "nan", "soon", ""])
def test_stall_refuses_seconds_out_of_0_to_a_day_whole(
    image: Path, state_dir: Path, capsys: pytest.CaptureFixture[str], seconds: str
) -> None:
    stall = ["stall", str(image), "--state-dir", str(state_dir), "--seconds", seconds]
    message = f"argument --seconds: {seconds!r} is not a number of seconds 0..86400"
    _usage_error(capsys, stall, message)
    assert list(state_dir.iterdir()) == []  # refused before anything was written


def test_forget_removes_the_lu_and_only_it(
    image: Path, state_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = image.with_name("other.img")
    other.write_bytes(bytes(4096))
    lus = SharedLUs(state_dir)
    for path in (image, other):
        _run(lus, path, (NODE_A, prout(Action.REGISTER, 0, 5)))
    assert main(["stall", str(image), "--state-dir", str(state_dir), "--seconds", "4"]) == 0
    kept = sorted(state_dir.iterdir())
    assert main(["forget", str(image), "--state-dir", str(state_dir)]) == 0
    assert capsys.readouterr() == ("", "")
    mine = set(lus.files(identify_path(image)[0]).all)
    assert sorted(state_dir.iterdir()) == [p for p in kept if p not in mine]
    assert len(mine & set(kept)) == 3  # state, fault and lock were there
    assert _stall_of(image, state_dir) == 0
    assert main(["show", str(image), "--state-dir", str(state_dir)]) == 0
    assert json.loads(capsys.readouterr().out)["registrations"] == []
    assert main(["show", str(other), "--state-dir", str(state_dir)]) == 0
    assert len(json.loads(capsys.readouterr().out)["registrations"]) == 1


@pytest.mark.parametrize("action", ["show", "power-cycle", "stall", "forget"])
def test_a_missing_image_is_one_error_line(
    tmp_path: Path, state_dir: Path, capsys: pytest.CaptureFixture[str], action: str
) -> None:
    missing = tmp_path / "missing.img"
    assert main([action, str(missing), "--state-dir", str(state_dir)]) == 1
    error = f"scsi-pr sim: [Errno 2] No such file or directory: '{missing}'\n"
    assert capsys.readouterr() == ("", error)


def test_a_state_dir_that_is_a_file_is_one_error_line(
    image: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    not_a_dir = tmp_path / "state"
    not_a_dir.write_text("")
    assert main(["show", str(image), "--state-dir", str(not_a_dir)]) == 1
    assert capsys.readouterr() == ("", f"scsi-pr sim: [Errno 17] File exists: '{not_a_dir}'\n")


def test_a_damaged_state_file_is_one_error_line_naming_it(
    image: Path, state_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _run(SharedLUs(state_dir), image, (NODE_A, prout(Action.REGISTER, 0, 5)))
    doc = SharedLUs(state_dir).files(identify_path(image)[0]).state
    doc.write_bytes(b"[1, 2]")
    with pytest.raises(StateFileError) as caught:
        SharedLUs(state_dir).run_on_file(image, describe_lu)
    assert str(doc) in str(caught.value)
    assert main(["show", str(image), "--state-dir", str(state_dir)]) == 1
    assert capsys.readouterr() == ("", f"scsi-pr sim: {caught.value}\n")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        pytest.param(["show", "--state-dir", "S"], "show needs the IMAGE file", id="no image"),
        pytest.param(["forget", "--state-dir", "S"], "forget needs the IMAGE file", id="forget"),
        pytest.param(
            ["serve", "--state-dir", "S", "lu.img"],
            "serve takes no IMAGE (got 'lu.img')",
            id="serve",
        ),
        pytest.param(
            ["serve", "--state-dir", "S", "--initiators", "0"], "--initiators must be 1..64", id="0"
        ),
        pytest.param(
            ["serve", "--state-dir", "S", "--initiators", "65"],
            "--initiators must be 1..64",
            id="65",
        ),
        pytest.param(
            ["serve", "--state-dir", "S", "--initiators", "two"],
            "argument --initiators: invalid int value: 'two'",
            id="not a number of initiators",
        ),
        pytest.param(
            ["serve", "--state-dir", "S", "--target-ports", "2.5"],
            "argument --target-ports: invalid int value: '2.5'",
            id="not a number of ports",
        ),
        pytest.param(
            ["serve", "--state-dir", "S", "--profile", "lio"],
            "argument --profile: invalid choice: 'lio' (choose from 'spc5', 'lio-6.1', 'lio-6.12')",
            id="unknown profile",
        ),
        pytest.param(
            ["wipe", "--state-dir", "S"],
            "argument action: invalid choice: 'wipe' (choose from 'serve', 'show', "
            "'power-cycle', 'forget', 'stall')",
            id="unknown action",
        ),
        pytest.param(
            ["show", "lu.img"], "the following arguments are required: --state-dir", id="no dir"
        ),
    ],
)
def test_usage_errors_are_argparses_whole(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
    message: str,
) -> None:
    """Refused before anything runs: no state dir made, no helper started."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sim_cli, "serve", _no_serve)
    _usage_error(capsys, argv, message)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        pytest.param([], ("S", "S", 2, 2, "spc5"), id="defaults"),
        pytest.param(["--initiators", "1"], ("S", "S", 1, 2, "spc5"), id="1 initiator"),
        pytest.param(["--initiators", "64"], ("S", "S", 64, 2, "spc5"), id="64 initiators"),
        pytest.param(
            ["--socket-dir", "K", "--target-ports", "3", "--profile", "lio-6.1"],
            ("S", "K", 2, 3, "lio-6.1"),
            id="all options",
        ),
    ],
)
def test_serve_is_given_the_command_lines_options(
    monkeypatch: pytest.MonkeyPatch, options: list[str], expected: tuple[object, ...]
) -> None:
    """``main`` hands ``serve`` the state dir, the socket dir (the state dir by default), the
    initiators (1..64), the target ports and the profile, and exits with what serve returns."""
    calls: list[tuple[object, ...]] = []

    def recorded(*args: object) -> int:
        calls.append(args)
        return 7

    monkeypatch.setattr(sim_cli, "serve", recorded)
    assert main(["serve", "--state-dir", "S", *options]) == 7
    assert calls == [expected]


# -- serve, in process: real helpers, stopped by a signal to this process ----------------------
GUARD = 120.0  # seconds: only ever waited in full when something is broken


@dataclass
class Served:
    """What one in-process ``serve`` did."""

    returned: int
    out: str  # what it printed (flushed, every line, before its first wait)
    procs: list[subprocess.Popen[bytes]]
    guard_fired: bool  # serve did not stop by itself: the guard killed its helpers


def _argv(proc: subprocess.Popen[bytes]) -> list[str]:
    args = proc.args
    assert isinstance(args, list)
    return [str(a) for a in args]


def _answers(sock: Path, fd: int) -> bool:
    """Whether a helper serves ``sock`` (a READ KEYS is answered GOOD)."""
    try:
        with Client(str(sock), timeout=GUARD) as c:
            return c.execute(fd, persistent_reserve_in(0, 64), b"", 64).status == 0
    except OSError:
        return False


def _wait_answering(socks: list[Path], procs: list[subprocess.Popen[bytes]], device: int) -> None:
    """Wait until a helper answers on each of ``socks``; fail at once should a helper end."""
    deadline = time.monotonic() + GUARD
    for sock in socks:
        while not _answers(sock, device):
            assert [p.poll() for p in procs] == [None] * len(procs), f"a helper ended: {sock}"
            assert time.monotonic() < deadline, f"{sock} never answered"
            time.sleep(0.05)


def _serve(
    monkeypatch: pytest.MonkeyPatch,
    act: Callable[[list[subprocess.Popen[bytes]], Callable[[], str]], None] | None,
    *args: object,
    **kwargs: object,
) -> Served:
    """Run ``sim_cli.serve(*args, **kwargs)`` in this (the main) thread, as a user does; in a
    thread, once serve has started its helpers and waits, ``act(procs, printed)`` (the helpers
    it started and what serve printed so far, flushed) makes it stop (None: serve stops by
    itself, perhaps before it ever waits). Should serve not stop,
    the guard kills its helpers, which ends its loop. Serve's SIGTERM/SIGINT handlers are
    replaced by the ones before."""
    procs: list[subprocess.Popen[bytes]] = []
    started = threading.Event()  # serve started every helper and now polls them
    done = threading.Event()
    errors: list[BaseException] = []
    guard_fired: list[bool] = []

    class Recorded(subprocess.Popen):  # type: ignore[type-arg]
        """Starts the real process; keeps it for the test."""

        def __init__(self, *a: Any, **k: Any) -> None:
            super().__init__(*a, **k)
            procs.append(self)

    def sleep(seconds: float) -> None:
        started.set()
        time.sleep(seconds)

    raw = io.BytesIO()
    stdout = io.TextIOWrapper(raw, encoding="utf-8")  # block-buffered: only a flush shows

    def act_then_guard() -> None:
        deadline = time.monotonic() + GUARD
        while not started.wait(0.05):  # serve's own handlers are in place once it waits
            if done.is_set():  # returned (or raised) without ever waiting
                if act is not None:
                    errors.append(AssertionError("serve returned before it waited"))
                return
            if time.monotonic() > deadline:
                errors.append(AssertionError("serve neither waited nor returned"))
                break
        else:
            try:
                if act is not None:
                    act(procs, lambda: raw.getvalue().decode())
            except BaseException as e:  # the test's thread raises it
                errors.append(e)
                os.kill(os.getpid(), signal.SIGTERM)
        if not done.wait(GUARD):
            guard_fired.append(True)
            for p in procs:
                p.kill()

    monkeypatch.setattr(sim_cli, "subprocess", SimpleNamespace(Popen=Recorded))
    monkeypatch.setattr(sim_cli, "time", SimpleNamespace(sleep=sleep))
    monkeypatch.setattr(sys, "stdout", stdout)

    def timed_out(signum: int, frame: object) -> None:
        """Stopped for taking too long (mutmut's timeout sends SIGXCPU to the test process):
        the helpers would outlive it, orphans serving for ever; they go first."""
        for p in procs:
            p.kill()
        signal.signal(signal.SIGXCPU, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGXCPU)

    handlers = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    on_xcpu = signal.signal(signal.SIGXCPU, timed_out)
    thread = threading.Thread(target=act_then_guard)
    thread.start()
    try:
        returned = sim_cli.serve(*args, **kwargs)  # type: ignore[arg-type]
    finally:
        done.set()
        thread.join(GUARD)
        signal.signal(signal.SIGTERM, handlers[0])
        signal.signal(signal.SIGINT, handlers[1])
        signal.signal(signal.SIGXCPU, on_xcpu)
    if errors:
        raise errors[0]
    stdout.flush()
    return Served(returned, raw.getvalue().decode(), procs, bool(guard_fired))


def _line(n: int, sock: Path) -> str:
    return f"naa.50014050000000{n:02x} (relative target port {n}): {sock}\n"


def _helper_argv(n: int, state: Path, ports: int, profile: str, sock: Path) -> list[str]:
    initiator = f"naa.50014050000000{n:02x}"
    return [
        helper_executable(), "--backend", "sim", "--initiator", initiator, "--state-dir",
        str(state), "--target-port", str(n), "--target-ports", str(ports), "--profile", profile,
        "-k", str(sock),
    ]  # fmt: skip


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_serve_runs_helpers_until_a_signal(
    monkeypatch: pytest.MonkeyPatch, state_dir: Path, device: int, signum: signal.Signals
) -> None:
    """Serve starts one helper per initiator, each on ``STATE_DIR/hostN.sock`` by default
    (``--target-ports`` at least the initiators, as each helper is one target port), prints
    each socket flushed before it waits, and on SIGTERM or SIGINT stops them all and returns
    0: every helper reaped, having exited cleanly (its socket removed)."""
    socks = [state_dir / "host1.sock", state_dir / "host2.sock"]

    def act(procs: list[subprocess.Popen[bytes]], printed: Callable[[], str]) -> None:
        # printed, flushed, before serve first waits: then the helpers may still be starting
        assert printed() == _line(1, socks[0]) + _line(2, socks[1])
        _wait_answering(socks, procs, device)
        os.kill(os.getpid(), signum)

    served = _serve(monkeypatch, act, str(state_dir), str(state_dir), 2, 1, "lio-6.1")
    assert served.returned == 0 and not served.guard_fired
    assert [_argv(p) for p in served.procs] == [
        _helper_argv(n, state_dir, 2, "lio-6.1", sock) for n, sock in enumerate(socks, 1)
    ]
    assert [p.returncode for p in served.procs] == [0, 0]
    assert not any(s.exists() for s in socks)
    assert served.out == _line(1, socks[0]) + _line(2, socks[1])


def test_serve_makes_its_socket_dir_and_gives_the_lu_the_ports_asked(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, state_dir: Path, image: Path, device: int
) -> None:
    """More target ports than initiators: every helper builds the LU with all of them (an
    ALL_TG_PT registration spans the three), with the default profile; the socket dir is made
    with its parents."""
    socket_dir = tmp_path / "run" / "sockets"
    sock = socket_dir / "host1.sock"

    def act(procs: list[subprocess.Popen[bytes]], printed: Callable[[], str]) -> None:
        assert printed() == _line(1, sock)
        _wait_answering([sock], procs, device)
        with Client(str(sock), timeout=GUARD) as c:
            command = persistent_reserve_out(6, 24), pr_out_parameters(0, 9, all_tg_pt=True)
            assert c.execute(device, *command[0:1], command[1]).status == 0
        os.kill(os.getpid(), signal.SIGTERM)

    served = _serve(monkeypatch, act, str(state_dir), str(socket_dir), 1, 3)
    assert served.returned == 0 and not served.guard_fired
    assert [_argv(p) for p in served.procs] == [_helper_argv(1, state_dir, 3, "spc5", sock)]
    assert served.out == _line(1, sock)
    lu = SharedLUs(state_dir, target_ports=3).run_on_file(image, describe_lu)
    assert [r["nexus"] for r in lu["registrations"]] == [
        f"naa.5001405000000001@{port}" for port in (1, 2, 3)
    ]


def test_serve_stops_the_others_when_a_helper_dies(
    monkeypatch: pytest.MonkeyPatch, state_dir: Path, device: int
) -> None:
    """A helper that ends (here: killed) ends serve without a signal: it stops the other
    helpers (cleanly: exit 0, socket removed) and returns 1."""
    socks = [state_dir / "host1.sock", state_dir / "host2.sock"]

    def act(procs: list[subprocess.Popen[bytes]], printed: Callable[[], str]) -> None:
        assert printed() == _line(1, socks[0]) + _line(2, socks[1])
        _wait_answering(socks, procs, device)
        procs[0].kill()

    served = _serve(monkeypatch, act, str(state_dir), str(state_dir), 2, 2)
    assert served.returned == 1 and not served.guard_fired
    assert [p.returncode for p in served.procs] == [-signal.SIGKILL, 0]
    assert not socks[1].exists()


def test_serve_returns_1_when_its_helpers_refuse_to_start(
    monkeypatch: pytest.MonkeyPatch, state_dir: Path
) -> None:
    """Helpers that exit at once with a failure (an unknown profile: only ``main`` checks
    it) end serve with 1; nothing is left running."""
    served = _serve(monkeypatch, None, str(state_dir), str(state_dir), 2, 2, "bogus")
    assert served.returned == 1 and not served.guard_fired
    assert all(p.returncode not in (None, 0) for p in served.procs)
    assert len(served.procs) == 2


def test_a_helper_ended_by_sigterm_is_a_clean_stop(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, state_dir: Path
) -> None:
    """A helper that SIGTERM ends before it has its own handler (still starting) was stopped
    as asked: serve returns 0. (A stand-in program that SIGTERM kills plays the helper.)"""
    stand_in = tmp_path / "helper"
    stand_in.write_text("#!/bin/sh\nexec sleep 600\n")
    stand_in.chmod(0o755)
    monkeypatch.setattr(sim_cli, "helper_executable", lambda: str(stand_in))

    def act(procs: list[subprocess.Popen[bytes]], printed: Callable[[], str]) -> None:
        os.kill(os.getpid(), signal.SIGTERM)

    served = _serve(monkeypatch, act, str(state_dir), str(state_dir), 2, 2)
    assert served.returned == 0 and not served.guard_fired
    assert [p.returncode for p in served.procs] == [-signal.SIGTERM, -signal.SIGTERM]
    assert _argv(served.procs[0])[0] == str(stand_in)
