"""``scsi-pr sim``: stall, show, forget and serve, as a user runs them; a damaged state file is
a clear error naming it."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from scsi_pr.helper.client import Client
from scsi_pr.helper.errors import HelperError
from scsi_pr.helper.executable import helper_executable
from scsi_pr.helper.executors.sim import SimExecutor
from scsi_pr.helper.lu_identity import identify_path
from scsi_pr.helper.lu_state_file import StateFileError
from scsi_pr.helper.sim_cli import main
from scsi_pr.helper.simserve import SharedLUs
from scsi_pr.rig.processes import spawn_listening, stop
from scsi_pr.sim.cdb import persistent_reserve_in, persistent_reserve_out, pr_out_parameters


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
    tmp_path: Path, capsys: pytest.CaptureFixture[str], count: str
) -> None:
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
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["serve", "--state-dir", str(tmp_path), "lu.img"])
    assert caught.value.code == 2
    assert "serve takes no IMAGE (got 'lu.img')" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # refused before any helper started
