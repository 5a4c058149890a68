"""A process's own rig generations (``backend_lio.generations``, ``$SCSI_PR_LIO_FIRST_GENERATION``):
the VM tier's hang phase builds and wedges LUs beside the rig the other phases share. On a fake
``lio``: which generations are built, and that the shared rig is neither taken over nor
recorded from there."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from scsi_pr.rig import backend_lio, lio
from scsi_pr.rig.errors import RigError

SHARED = lio.RigDescription(
    lio.LunSpec(initiators=3, name="scsipr0", generation=0),
    "serial0",
    [SimpleNamespace(wwn=f"port{i}") for i in range(3)],  # type: ignore[misc]
)


class FakeLio:
    """``lio.up`` and what ``shared_rig`` reads: builds are recorded, with ``record``."""

    def __init__(
        self, monkeypatch: pytest.MonkeyPatch, present: frozenset[int] = frozenset()
    ) -> None:
        self.built: list[tuple[int, bool]] = []  # (generation, recorded as the shared rig)
        self.present = set(present)
        monkeypatch.setattr(backend_lio, "_shared", backend_lio._Shared())
        monkeypatch.setattr(backend_lio.atexit, "register", lambda f: None)
        monkeypatch.setattr(lio, "current", lambda: SHARED)  # the rig's lane built one
        monkeypatch.setattr(lio, "up", self.up)
        monkeypatch.setattr(lio, "generations_present", lambda: set(self.present))

    def up(self, spec: lio.LunSpec, *, record: bool = True) -> lio.RigDescription:
        self.built.append((spec.generation, record))
        self.present.add(spec.generation)
        ports = [SimpleNamespace(wwn=f"port{i}") for i in range(spec.initiators)]
        return lio.RigDescription(spec, f"serial{spec.generation}", ports)  # type: ignore[arg-type]


def test_by_default_a_process_takes_over_the_rig_its_lane_recorded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(backend_lio.ENV_FIRST_GENERATION, raising=False)
    fake = FakeLio(monkeypatch, present={0})
    assert backend_lio.shared_rig(2) is SHARED
    assert fake.built == []
    assert backend_lio.generations() == range(0, backend_lio.GENERATIONS)


def test_a_process_with_generations_of_its_own_builds_them_and_records_none(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(backend_lio.ENV_FIRST_GENERATION, "0x80")
    fake = FakeLio(monkeypatch, present={0, 0xE2})
    assert backend_lio.shared_rig(2).spec.generation == 0x80
    backend_lio.mark_hung()
    assert backend_lio.shared_rig(2).spec.name == "scsipr129"
    assert fake.built == [(0x80, False), (0x81, False)]


def test_its_first_generation_left_by_an_earlier_process_is_built_beside(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A wedged LU of an earlier run cannot be removed: never rebuild over it."""
    monkeypatch.setenv(backend_lio.ENV_FIRST_GENERATION, "128")
    fake = FakeLio(monkeypatch, present={0, 0x80, 0x83})
    assert backend_lio.shared_rig(2).spec.generation == 0x84
    assert fake.built == [(0x84, False)]


def test_a_process_whose_generations_ran_out_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(backend_lio.ENV_FIRST_GENERATION, "0x80")
    last = 0x80 + backend_lio.GENERATIONS - 1
    fake = FakeLio(monkeypatch, present={0x80, last})
    with pytest.raises(RigError, match=rf"no rig generation left in 128\.\.{last}$"):
        backend_lio.shared_rig(2)
    assert fake.built == []


@pytest.mark.parametrize(
    ("value", "why"),
    [("eighty", "not a number"), ("-1", "generations are 0..255"), ("0xF0", "0..255")],
)
def test_a_bad_first_generation_is_refused(
    monkeypatch: pytest.MonkeyPatch, value: str, why: str
) -> None:
    monkeypatch.setenv(backend_lio.ENV_FIRST_GENERATION, value)
    with pytest.raises(RigError, match=why):
        backend_lio.generations()


def test_the_end_of_a_process_waits_a_bounded_time_for_a_removal_lio_blocks(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A removal that never returns (LIO blocks it in the kernel) must not keep the process
    from ending: it is waited for a while, then left with a message; one that ends says
    nothing."""
    backend_lio._remove(7)  # no LIO here: lio.down finds nothing and ends at once
    assert capsys.readouterr().err == ""
    blocked = tmp_path / "python"
    blocked.write_text("#!/bin/sh\nsleep 5\n")
    blocked.chmod(0o755)
    monkeypatch.setattr(backend_lio.sys, "executable", str(blocked))
    monkeypatch.setattr(backend_lio, "REMOVAL_WAIT_SECONDS", 0.2)
    started = time.monotonic()
    backend_lio._remove(7)
    assert time.monotonic() - started < 4
    err = capsys.readouterr().err
    assert "removing LIO LU scsipr7 did not end in 0.2 s" in err and "left to the VM's end" in err
