"""``scsi_pr.helper.executors.limits``: the table of what a helper backend's path cannot carry.

Why: the rig picks each backend's limits with ``of_backend`` (``rig/backend_paths.py``) and the
conformance suite then expects the helper's own answer instead of the device's wherever a limit
applies. A limit dropped, given to the wrong backend, or applied on the wrong kernel series
turns into conformance failures on the VM tier only (or worse, into tests that assert the
wrong answer), so the table's decisions are pinned here in-process: which backend has which
limit, from which kernel, the sense of each refusal, and the test paths each limit lists.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from scsi_pr.helper.executors import limits
from scsi_pr.helper.executors.limits import CONF, LIMITS, PathLimit, _tests, of_backend
from scsi_pr.helper.executors.status import SenseCode

ROOT = Path(__file__).parents[2]

IOCTL_ALWAYS = {
    "ioctl-no-read-full-status",
    "ioctl-no-register-and-move",
    "ioctl-no-spec-i-pt-all-tg-pt",
    "ioctl-scope-and-type-checked-first",
    "ioctl-sense-lost",
    "ioctl-unit-attention-lost",
    "ioctl-capabilities-of-the-path",
    "ioctl-register-always-aptpl",
}
EINVAL = "ioctl-illegal-request-as-einval"  # from 6.12 only
MULTIPATH = {
    "mpath-one-registration-per-path",
    "mpath-io-by-one-path",
    "mpath-unit-attention-of-every-path",
    "mpath-key-checked-by-the-library",
    "mpath-not-ready-rebuilt",
    "mpath-illegal-request-guessed",
    "mpath-release-by-the-library",
    "mpath-parameter-list-rebuilt",
    "mpath-move-from-the-holding-path",
    "mpath-pr-in-read-whole",
}

# (sense key, ASC, ASCQ) of the helper's own answer; None: the device answers.
SENSE: dict[str, tuple[int, int, int] | None] = {
    "ioctl-no-read-full-status": (0x05, 0x24, 0x00),
    "ioctl-no-register-and-move": (0x05, 0x24, 0x00),
    "ioctl-no-spec-i-pt-all-tg-pt": (0x05, 0x26, 0x00),
    "ioctl-scope-and-type-checked-first": (0x05, 0x24, 0x00),
    "ioctl-sense-lost": (0x0B, 0x00, 0x06),
    EINVAL: (0x05, 0x24, 0x00),
    "ioctl-unit-attention-lost": None,
    "ioctl-capabilities-of-the-path": None,
    "ioctl-register-always-aptpl": None,
    "mpath-one-registration-per-path": None,
    "mpath-io-by-one-path": None,
    "mpath-unit-attention-of-every-path": None,
    "mpath-key-checked-by-the-library": (0x0B, 0x08, 0x00),
    "mpath-not-ready-rebuilt": (0x02, 0x04, 0x00),
    "mpath-illegal-request-guessed": (0x05, 0x26, 0x00),
    "mpath-release-by-the-library": None,
    "mpath-parameter-list-rebuilt": None,
    "mpath-move-from-the-holding-path": None,
    "mpath-pr-in-read-whole": None,
}


# -- the table ---------------------------------------------------------------------------------
def test_limits_map_each_name_to_the_limit_of_that_name() -> None:
    assert set(LIMITS) == IOCTL_ALWAYS | {EINVAL} | MULTIPATH
    assert len(LIMITS) == 19
    for name, limit in LIMITS.items():
        assert isinstance(limit, PathLimit) and limit.name == name
    constants = [v for v in vars(limits).values() if isinstance(v, PathLimit)]
    assert sorted(c.name for c in constants) == sorted(LIMITS)
    for constant in constants:
        assert LIMITS[constant.name] is constant


def test_each_limit_belongs_to_its_backend() -> None:
    assert {n for n, v in LIMITS.items() if v.backend == "ioctl"} == IOCTL_ALWAYS | {EINVAL}
    assert {n for n, v in LIMITS.items() if v.backend == "multipath"} == MULTIPATH


def test_only_the_einval_conversion_depends_on_the_kernel() -> None:
    assert {n: v.since for n, v in LIMITS.items() if v.since is not None} == {EINVAL: (6, 12)}


@pytest.mark.parametrize("name", sorted(SENSE))
def test_the_sense_of_each_refusal(name: str) -> None:
    limit = LIMITS[name]
    expected = SENSE[name]
    if expected is None:
        assert limit.sense is None
        with pytest.raises(ValueError) as caught:
            _ = limit.refusal
        assert str(caught.value) == f"{name}: the device answers, not the helper"
    else:
        assert limit.refusal == SenseCode(*expected) and limit.refusal is limit.sense
        # the prose answer names the same code the helper builds
        key, asc, ascq = expected
        assert f"({key:02X}/{asc:02X}/{ascq:02X})" in limit.answer


def test_refusal_of_a_limit_made_here() -> None:
    sense = SenseCode(0x05, 0x20, 0x00)
    made = PathLimit("x", "ioctl", "t", "a", sense, ())
    assert made.refusal is sense and made.since is None
    with pytest.raises(ValueError, match=r"^y: the device answers, not the helper$"):
        _ = PathLimit("y", "ioctl", "t", "a", None, ()).refusal


# -- the tests each limit lists ----------------------------------------------------------------
def test_tests_are_prefixed_with_the_conformance_folder() -> None:
    assert CONF == "tests/conformance/"
    assert _tests() == ()
    assert _tests("test_a.py::test_b") == ("tests/conformance/test_a.py::test_b",)
    assert _tests("b.py::t", "a.py::t") == (
        "tests/conformance/b.py::t",
        "tests/conformance/a.py::t",
    )


@pytest.mark.parametrize("name", sorted(LIMITS))
def test_every_listed_test_exists(name: str) -> None:
    """Each entry names a conformance file and a test defined in it, once."""
    entries = LIMITS[name].tests
    assert entries and len(set(entries)) == len(entries)
    for entry in entries:
        m = re.fullmatch(r"tests/conformance/(test_conf_\w+\.py)::(test_\w+)", entry)
        assert m, entry
        source = (ROOT / "tests" / "conformance" / m[1]).read_text()
        assert re.search(rf"^def {m[2]}\(", source, re.M), entry


# -- of_backend --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "release",
    [None, "5.10.0-30-amd64", "6", "6.1.0-57-amd64", "6.11", "6.11.99-foo", "6.2", "6.9"],
)
def test_ioctl_before_6_12_has_the_limits_of_every_kernel(release: str | None) -> None:
    assert of_backend("ioctl", release) == frozenset(IOCTL_ALWAYS)


@pytest.mark.parametrize(
    "release",
    ["6.12", "6.12.0", "6.12.118+deb12-amd64", "6.13.2", "6.19-rc1", "7.0", "10.1.1"],
)
def test_ioctl_from_6_12_adds_the_einval_conversion(release: str) -> None:
    assert of_backend("ioctl", release) == frozenset(IOCTL_ALWAYS | {EINVAL})


def test_of_backend_defaults_to_no_kernel() -> None:
    assert of_backend("ioctl") == frozenset(IOCTL_ALWAYS)
    assert type(of_backend("ioctl")) is frozenset


@pytest.mark.parametrize("release", [None, "6.1.0-57-amd64", "6.12.118+deb12-amd64"])
def test_multipath_has_its_limits_on_every_kernel(release: str | None) -> None:
    assert of_backend("multipath", release) == frozenset(MULTIPATH)


@pytest.mark.parametrize("other", ["sg", "sim", "", "IOCTL", "mpath", "ioctl "])
@pytest.mark.parametrize("release", [None, "6.12.118+deb12-amd64"])
def test_other_backends_have_none(other: str, release: str | None) -> None:
    """(``backend`` is a parameter name the rig's pytest plugin owns.)"""
    assert of_backend(other, release) == frozenset()


def test_a_release_that_is_no_version_is_refused() -> None:
    with pytest.raises(ValueError):
        of_backend("ioctl", "linux")
