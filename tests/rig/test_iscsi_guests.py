"""scsi_pr.rig.iscsi_guests: two QEMU guests, two iSCSI nexuses on one LU of ``scsi-pr target
serve``, one fencing the other.

The pure parts (QEMU arguments, the scenario's consistency, the choreography, the checks) are
tested on their own and on a recorded run (``data/iscsi_guests_run.log``: both guests' console
protocol lines and the target's logins, A on scsi-block, B on scsi-generic); changing any one
observed fact must be caught. The last test boots both guests for real: no root and no VM
(QEMU runs under TCG as a user process), so it belongs to the host tier; it is skipped where
QEMU, its iscsi driver or busybox-static are missing, and fails for that in CI.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path

import pytest
from needs import unavailable

from scsi_pr.rig import cli as rig_cli
from scsi_pr.rig.guest.console import Console
from scsi_pr.rig.guest.initramfs import GuestBuildError, Initramfs
from scsi_pr.rig.guest.steps import Command, Pause, check_sequence
from scsi_pr.rig.iscsi_guests import cli
from scsi_pr.rig.iscsi_guests.checks import (
    HostView,
    Observed,
    evaluate,
    logins,
    raw_sense,
    target_problems,
)
from scsi_pr.rig.iscsi_guests.choreography import Choreography
from scsi_pr.rig.iscsi_guests.driver import (
    INITIATORS,
    GuestsError,
    Options,
    iscsi_drive,
    missing_tools,
    qemu_argv,
    run,
)
from scsi_pr.rig.iscsi_guests.scenario import (
    DONE,
    HOST_EXPECT,
    HOST_LOOKS,
    KEY_A,
    KEY_B,
    RELEASES,
    SCRIPTS,
    A,
    B,
    expectations,
    steps_of,
)
from scsi_pr.sim.constants import ReservationType
from scsi_pr.sim.result import SenseData

RECORDED = Path(__file__).parent / "data" / "iscsi_guests_run.log"
WE_RO = ReservationType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY
NODE_A = "iqn.2026-01.org.scsi-pr:node-a"


# -- QEMU's arguments --------------------------------------------------------------------------
def test_drive_logs_in_with_its_own_initiator_name() -> None:
    drive = iscsi_drive("lun0", "127.0.0.1", 3260, "iqn.2026-01.org.x:t", NODE_A)
    assert drive == (
        "driver=iscsi,transport=tcp,portal=127.0.0.1:3260,target=iqn.2026-01.org.x:t,lun=0,"
        f"initiator-name={NODE_A},if=none,id=lun0"
    )


@pytest.mark.parametrize("bad", ["iqn.2026-01.x:a,b", "iqn.2026-01.x:a=b", ""])
def test_drive_refuses_what_qemu_would_split(bad: str) -> None:
    with pytest.raises(GuestsError):
        iscsi_drive("lun0", "127.0.0.1", 3260, "iqn.2026-01.org.x:t", bad)


@pytest.mark.parametrize("device", ["scsi-block", "scsi-generic"])
def test_qemu_argv_puts_the_iscsi_drive_behind_a_passthrough_device(device: str) -> None:
    image = Initramfs(Path("/w/guest-A.gz"), Path("/boot/vmlinuz-x"))
    argv = qemu_argv(image, "DRIVE", device)
    assert argv[0] == "qemu-system-x86_64"
    assert argv[argv.index("-drive") + 1] == "DRIVE"
    devices = [argv[i + 1] for i, a in enumerate(argv) if a == "-device"]
    assert devices == ["virtio-scsi-pci,id=scsi0", f"{device},drive=lun0,bus=scsi0.0"]
    assert argv[argv.index("-initrd") + 1] == "/w/guest-A.gz"


def test_qemu_argv_refuses_a_device_that_emulates_the_disk() -> None:
    """scsi-hd would answer PR commands itself (invalid opcode): never the target's."""
    with pytest.raises(GuestsError, match="scsi-hd"):
        qemu_argv(Initramfs(Path("i"), Path("k")), "DRIVE", "scsi-hd")


# -- the scenario and its choreography ---------------------------------------------------------
def test_scenario_is_consistent() -> None:
    pauses = {(g, s.name) for g in SCRIPTS for s in steps_of(g) if isinstance(s, Pause)}
    for g in SCRIPTS:
        check_sequence(steps_of(g))
        commands = [s.name for s in steps_of(g) if isinstance(s, Command)]
        assert list(expectations(g)) == commands
    assert set(RELEASES) == pauses  # every pause says what it waits for
    events = {e for needs in RELEASES.values() for e in needs}
    assert events <= pauses | {(g, DONE) for g in SCRIPTS}
    assert set(HOST_LOOKS) <= pauses and set(HOST_LOOKS.values()) == set(HOST_EXPECT)
    assert KEY_A != KEY_B


def test_choreography_orders_the_guests_whatever_boots_first() -> None:
    for first in (A, B):
        chor = Choreography(RELEASES)
        if first == A:
            assert chor.paused(A, "reserved") == []
            assert chor.paused(B, "start") == [(B, "start")]
        else:
            assert chor.paused(B, "start") == []
            assert chor.paused(A, "reserved") == [(B, "start")]
        assert chor.paused(B, "registered") == [(B, "registered")]
        assert chor.paused(B, "fenced") == [(A, "reserved")]
        assert chor.done(A) == [(B, "fenced")]
        assert chor.done(B) == [] and chor.waiting == []


def test_choreography_says_when_a_pause_can_never_end() -> None:
    chor = Choreography(RELEASES)
    chor.paused(A, "reserved")
    assert chor.stuck() == []
    chor.end(B)  # B's QEMU died before it fenced A
    assert chor.stuck() == ["A waits at 'reserved' for B 'fenced', but B has ended"]


def test_a_pause_without_a_rule_goes_on_at_once() -> None:
    assert Choreography({}).paused(A, "anything") == [(A, "anything")]


# -- checks on a recorded run ------------------------------------------------------------------
def _replay() -> tuple[Observed, list[str]]:
    """The recorded run as ``run`` would return it, and the order the pauses were released in
    when the recorded lines are played through the choreography."""
    consoles = {g: Console() for g in INITIATORS}
    chor = Choreography(RELEASES)
    waiting: set[str] = set()
    released: list[str] = []
    target_log = []
    for line in RECORDED.read_text().splitlines():
        who, _, text = line.partition(" ")
        if who == "target":
            target_log.append(text)
            continue
        if who not in consoles:
            continue
        assert who not in waiting, f"{who} went on before its pause was released: {line}"
        was_done = consoles[who].done
        pause = consoles[who].feed(text)
        ready = chor.paused(who, pause) if pause else []
        if pause:
            waiting.add(who)
        if consoles[who].done and not was_done:
            ready = chor.done(who)
        for g, name in ready:
            waiting.discard(g)
            released.append(f"{g}.{name}")
    ports = {p.name: p for p in logins("\n".join(target_log) + "\n")}
    a, b = ports[INITIATORS[A]], ports[INITIATORS[B]]
    obs = Observed(
        dict(INITIATORS),
        steps={g: c.steps for g, c in consoles.items()},
        finished={g: c.done and not c.errors for g, c in consoles.items()},
        looks={
            "registered": HostView(((KEY_A, a, True), (KEY_B, b, False)), WE_RO),
            "fenced": HostView(((KEY_B, b, True),), WE_RO),
        },
        logins=[a, b],
    )
    return obs, released


def test_recorded_run_passes_in_the_choreographed_order() -> None:
    obs, released = _replay()
    verdict = evaluate(obs)
    assert verdict.problems == []
    assert released == ["B.start", "B.registered", "A.reserved", "B.fenced"]
    assert verdict.readings[A]["tur_fenced"].sense == SenseData(0x6, 0x2A, 0x05)
    assert verdict.readings[B]["status"].registrants is not None


def _set_rc(guest: str, step: str, rc: int) -> Callable[[Observed], None]:
    def mutate(obs: Observed) -> None:
        obs.steps[guest][step].rc = rc

    return mutate


def _edit_out(guest: str, step: str, old: str, new: str) -> Callable[[Observed], None]:
    def mutate(obs: Observed) -> None:
        result = obs.steps[guest][step]
        joined = "\n".join(result.err if step == "tur_fenced" else result.out)
        assert old in joined
        lines = joined.replace(old, new).split("\n")
        if step == "tur_fenced":
            result.err = lines
        else:
            result.out = lines

    return mutate


def _other_isid_in_model(obs: Observed) -> None:
    key, port, holder = obs.looks["registered"].registrations[0]
    other = type(port).iscsi(port.name, 0x800000000001)
    obs.looks["registered"] = HostView(
        ((key, other, holder), *obs.looks["registered"].registrations[1:]), WE_RO
    )


MUTATIONS: dict[str, tuple[Callable[[Observed], None], str]] = {
    "fenced write went through": (_set_rc(A, "write_fenced", 0), "A write_fenced: exit status 0"),
    "preempt failed": (_set_rc(B, "preempt", 24), "B preempt: exit status 24"),
    "victim kept its key": (
        _edit_out(A, "keys_fenced", "00 00 00 00 b9 6e 00 02", "00 00 00 00 b9 6e 00 01"),
        "A keys_fenced: keys",
    ),
    "reservation not moved": (
        _edit_out(B, "resv_after", "b9 6e 00 02", "b9 6e 00 01"),
        "B resv_after: reservation",
    ),
    "another unit attention": (
        _edit_out(A, "tur_fenced", "2a 05", "29 00"),
        "A tur_fenced: sense",
    ),
    "B's full status without A": (
        _edit_out(B, "status", "6e 6f 64 65  2d 61", "6e 6f 64 65  2d 63"),
        "B status: registrants",
    ),
    "model sees another port": (_other_isid_in_model, "the model"),
    "target never logged A in": (lambda o: o.logins.pop(0), "not a session the target logged"),
    "host look missing": (lambda o: o.looks.pop("fenced"), "host look 'fenced': not taken"),
    "model kept A": (
        lambda o: o.looks.__setitem__("fenced", o.looks["registered"]),
        "host look 'fenced': registrants",
    ),
    "guest died": (lambda o: o.finished.__setitem__(A, False), "guest A did not finish"),
    "step missing": (lambda o: o.steps[B].pop("write"), "B write: no result"),
    "run aborted": (
        lambda o: setattr(o, "aborted", "guest B printed nothing"),
        "run aborted: guest B",
    ),
    "target crashed": (
        lambda o: setattr(o, "target", target_problems(1, "")),
        "target: exit status 1",
    ),
}


@pytest.mark.parametrize("name", list(MUTATIONS))
def test_every_changed_fact_is_caught(name: str) -> None:
    obs, _ = _replay()
    obs = copy.deepcopy(obs)
    mutate, expected = MUTATIONS[name]
    mutate(obs)
    problems = evaluate(obs).problems
    assert any(expected in p for p in problems), problems


def test_raw_sense_reads_sg_raw_verbose_output() -> None:
    lines = [
        "Sense Information:",
        " Raw sense data (in hex), sb_len=18, embedded_len=18",
        "        70 00 06 00 00 00 00 0a  00 00 00 00 2a 05 00 00",
        "        00 00",
        "",
        "Unit attention",
    ]
    assert raw_sense(lines) == bytes.fromhex("700006000000000a000000002a0500000000")
    assert raw_sense(["SCSI Status: Reservation Conflict"]) == b""


def test_target_problems() -> None:
    assert target_problems(0, "INFO stopped\n") == []
    problems = target_problems(0, "x\nTraceback (most recent call last):\n  boom\n")
    assert len(problems) == 1 and "boom" in problems[0]


def test_summary_names_both_nexuses_and_every_step() -> None:
    obs, _ = _replay()
    lines = cli.summary(obs, evaluate(obs), {A: "scsi-block", B: "scsi-generic"})
    text = "\n".join(lines)
    assert lines[-1].endswith("PASS")
    assert "nexus A: iqn.2026-01.org.scsi-pr:node-a,i,0x80fc13e80000" in text
    assert "nexus B: iqn.2026-01.org.scsi-pr:node-b,i,0x801e98bb0000" in text
    assert "guest B: iqn.2026-01.org.scsi-pr:node-b on scsi-generic" in text
    for g in SCRIPTS:
        for step in expectations(g):
            assert any(line.startswith(f"{g} {step} ") for line in lines), step
    assert "UNIT ATTENTION: REGISTRATIONS PREEMPTED" in text


def test_cli_help_and_umbrella_entry(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["--help"])
    assert exc.value.code == 0
    assert "--device-a" in capsys.readouterr().out
    assert rig_cli.SUBCOMMANDS["guests"][0] == "scsi_pr.rig.iscsi_guests.cli"


# -- the real thing ----------------------------------------------------------------------------
def test_two_qemu_guests_fence_each_other_through_pr(tmp_path: Path) -> None:
    """Both guests boot at once; A (scsi-block) is fenced by B (scsi-generic). The deadlines
    follow each guest's console (``driver.STARTUP_LIMIT`` / ``QUIET_LIMIT``), not the clock."""
    if missing := missing_tools():
        unavailable("missing: " + "; ".join(missing))
    lines: list[str] = []
    opts = Options(tmp_path, {A: "scsi-block", B: "scsi-generic"}, log=lines.append)
    try:
        obs = run(opts)
    except GuestBuildError as e:  # no busybox-static, no kernel in /boot
        unavailable(str(e))
    verdict = evaluate(obs)
    assert verdict.ok, "\n".join([*verdict.problems, "--- log tail:", *lines[-60:]])
    assert {p.name for p in obs.logins} == set(INITIATORS.values())
