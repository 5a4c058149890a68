"""Device profiles: the standard, or Linux LIO as measured on one kernel, as data.

Why profiles: the model answers as SPC-5 says (profile ``spc5``, the default), but a cluster
stack is tested against the LIO it will meet, and LIO answers some PR commands differently. A
profile is a name and the set of deviations the model reproduces; each deviation is one named
entry of ``REGISTRY``: the clause, what SPC-5 requires, what LIO answers and on which kernel,
and the conformance test that asserts LIO's answer on the real LUN. The model consults its
LU's profile at the few decision points those entries name (``Profile.choose``), the
conformance suite asserts the entry's answer wherever the profile has it, and
``docs/lio-deviations.md`` is generated from the registry (``scsi-pr profiles doc``).

A kernel is "measured" for an entry only when that entry's tests ran on it against LIO and
passed asserting the answer written here. ``lio-6.12`` was measured on Debian's 6.12
(6.12.107+deb12-amd64): every entry but READ CAPACITY(10)'s, which 6.12 answers as SPC-5 does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TypeVar

from scsi_pr.sim.deviations import (
    KERNEL_6_1,
    KERNEL_6_12,
    READ_CAPACITY_10_CONFLICT,
    REGISTRY,
    Deviation,
)
from scsi_pr.sim.errors import SimError

T = TypeVar("T")


class UnknownProfile(SimError, ValueError):
    """No profile has this name; the message lists the known ones."""


class ProfileMismatch(SimError):
    """A saved LU state was written under another profile than the LU restoring it: two
    processes sharing a state dir must agree on how the LU answers."""

    def __init__(self, saved: str, running: str) -> None:
        super().__init__(
            f"the LU's state was written under profile {saved!r}, this LU runs {running!r} "
            "(every process sharing a state dir must use the same --profile)"
        )
        self.saved, self.running = saved, running


@dataclass(frozen=True)
class Profile:
    """How a simulated LU answers: the standard plus ``deviations``."""

    name: str
    title: str
    deviations: frozenset[Deviation] = frozenset()
    #: the LIO kernel this profile stands for (None: the standard)
    kernel: str | None = None
    #: REPORT CAPABILITIES RLR_C and REPLACE LOST RESERVATION (optional in SPC-5; LIO has
    #: neither, which is not a deviation)
    replace_lost_reservation: bool = True

    def __contains__(self, deviation: object) -> bool:
        return deviation in self.deviations

    def choose(self, deviation: Deviation, standard: T, deviant: T) -> T:
        """``deviant`` where this profile has ``deviation``, else the standard's answer: the
        one form in which the model names a deviation at a decision point."""
        return deviant if deviation in self.deviations else standard

    def measured(self, deviation: Deviation) -> bool:
        """Whether ``deviation``'s answer was measured on this profile's kernel."""
        return self.kernel is not None and self.kernel in deviation.measured_on


SPC5 = Profile("spc5", "SPC-5 r17, the standard")
LIO_6_1 = Profile(
    "lio-6.1",
    "Linux LIO on Debian 12's 6.1 kernel (tcm_loop, ramdisk backstore)",
    frozenset(REGISTRY),
    kernel=KERNEL_6_1,
    replace_lost_reservation=False,
)
LIO_6_12 = Profile(
    "lio-6.12",
    "Linux LIO on Debian 12's 6.12 kernel (tcm_loop, ramdisk backstore)",
    frozenset(REGISTRY) - {READ_CAPACITY_10_CONFLICT},
    kernel=KERNEL_6_12,
    replace_lost_reservation=False,
)
PROFILES: dict[str, Profile] = {p.name: p for p in (SPC5, LIO_6_1, LIO_6_12)}
DEFAULT_PROFILE = SPC5.name


def get(profile: Profile | str) -> Profile:
    """The profile named ``profile`` (a Profile is returned as it is); UnknownProfile else."""
    if isinstance(profile, Profile):
        return profile
    try:
        return PROFILES[profile]
    except KeyError:
        known = ", ".join(PROFILES)
        raise UnknownProfile(f"unknown profile {profile!r}; known profiles: {known}") from None


def kernel_series(release: str) -> str:
    """``6.12`` for the release ``6.12.107+deb12-amd64``, ``6.1`` for ``6.1.0-57-amd64``: how
    profiles, the VM's kernel choice and the helper's capabilities name a kernel."""
    return ".".join(re.split(r"[-+]", release, maxsplit=1)[0].split(".")[:2])


def kernel_version(release: str) -> tuple[int, ...]:
    """``(6, 12)`` for ``6.12.107+deb12-amd64``: a kernel series to compare (ValueError for a
    release that does not start with numbers)."""
    return tuple(int(part) for part in kernel_series(release).split("."))


def lio_profile_for(release: str) -> Profile | None:
    """The LIO profile for a kernel release string (``platform.release()``, e.g.
    ``6.1.0-57-amd64``); None when no profile stands for that kernel."""
    major_minor = kernel_series(release)
    for p in PROFILES.values():
        if p.kernel == major_minor:
            return p
    return None
