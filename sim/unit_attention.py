"""Unit attention conditions, queued per I_T nexus (SAM-5 5.14; the PR ones: SPC-5 5.14.11).

Reset-class conditions (ASC 29h) are established for *every* I_T nexus, including ones the LU
has not seen yet, so they are kept as an epoch counter rather than per-nexus entries: a nexus
whose last seen epoch is older than the LU's gets the reset UA first (SAM-5 gives 29h
priority over other UAs). UA_INTLCK_CTRL is 00b: reporting a UA clears that one condition.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import Any

from scsi_pr.sim.constants import ADDITIONAL_SENSE_BY_CODE, AdditionalSense
from scsi_pr.sim.nexus import ITNexus
from scsi_pr.sim.state import (
    StateFormatError,
    checked_int,
    field_value,
    int_field,
    nexus_from_dict,
    nexus_to_dict,
    reading_state,
)


class UnitAttentions:
    def __init__(self) -> None:
        self._queues: dict[ITNexus, deque[AdditionalSense]] = {}
        self._epoch = 0
        self._epoch_code: AdditionalSense | None = None
        self._seen_epoch: dict[ITNexus, int] = {}

    def establish(self, nexuses: Iterable[ITNexus], code: AdditionalSense) -> None:
        for nexus in nexuses:
            queue = self._queues.setdefault(nexus, deque())
            if code not in queue:  # SAM-5: the same condition is not queued twice
                queue.append(code)

    def establish_for_all(self, code: AdditionalSense) -> None:
        """A reset-class event: volatile UAs are gone, every I_T nexus gets ``code``."""
        self._queues.clear()
        self._seen_epoch.clear()
        self._epoch += 1
        self._epoch_code = code

    def _materialise(self, nexus: ITNexus) -> None:
        if self._epoch and self._seen_epoch.get(nexus, 0) < self._epoch:
            self._seen_epoch[nexus] = self._epoch
            assert self._epoch_code is not None
            queue = self._queues.setdefault(nexus, deque())
            if self._epoch_code not in queue:
                queue.appendleft(self._epoch_code)

    def pending(self, nexus: ITNexus) -> bool:
        if self._epoch and self._seen_epoch.get(nexus, 0) < self._epoch:
            return True
        return bool(self._queues.get(nexus))

    def pop(self, nexus: ITNexus, clear_all: bool = False) -> AdditionalSense | None:
        """Report (and so clear) the highest-priority condition for ``nexus``; with
        ``clear_all`` every queued one goes with it (LIO, ``deviations.UA_CLEARS_ALL``)."""
        if self._epoch:
            self._materialise(nexus)
        queue = self._queues.get(nexus)
        if not queue:
            return None
        code = queue.popleft()
        if not queue or clear_all:
            del self._queues[nexus]
        return code

    def peek_all(self, nexus: ITNexus) -> list[AdditionalSense]:
        self._materialise(nexus)
        return list(self._queues.get(nexus, ()))

    def clear(self, nexus: ITNexus) -> None:
        self._queues.pop(nexus, None)

    # -- serialisation ---------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        code = self._epoch_code
        return {
            "epoch": self._epoch,
            "epoch_code": None if code is None else [code.asc, code.ascq],
            "seen": [[nexus_to_dict(n), e] for n, e in self._seen_epoch.items()],
            "queues": [
                [nexus_to_dict(n), [[c.asc, c.ascq] for c in q]] for n, q in self._queues.items()
            ],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> UnitAttentions:
        """Inverse of ``to_dict``; StateFormatError for anything it did not write."""
        ua = cls()
        with reading_state("unit attention state"):
            ua._epoch = int_field(d, "epoch", EPOCH_RANGE, 0)
            code = field_value(d, "epoch_code", None)
            ua._epoch_code = None if code is None else _sense(code, "epoch_code")
            ua._seen_epoch = {
                nexus_from_dict(n, f"seen[{i}][0]"): checked_int(e, f"seen[{i}][1]", EPOCH_RANGE)
                for i, (n, e) in enumerate(field_value(d, "seen", []))
            }
            ua._queues = {
                nexus_from_dict(n, f"queues[{i}][0]"): deque(
                    _sense(c, f"queues[{i}][1][{j}]") for j, c in enumerate(codes)
                )
                for i, (n, codes) in enumerate(field_value(d, "queues", []))
            }
        return ua


#: how many resets an LU has seen: a counter no LU takes past 64 bits, so anything beyond is
#: a damaged state rather than a long-lived LU
EPOCH_RANGE = range(1 << 64)
_BYTE = range(0x100)


def _sense(value: object, field: str) -> AdditionalSense:
    """The condition an ``[asc, ascq]`` pair names: two ints of a byte each (a float would
    find its condition by hash equality), one of the conditions the model establishes."""
    if isinstance(value, list) and len(value) == 2:
        asc, ascq = checked_int(value[0], field, _BYTE), checked_int(value[1], field, _BYTE)
        code = ADDITIONAL_SENSE_BY_CODE.get((asc, ascq))
        if code is not None:
            return code
    raise StateFormatError(f"{field}: {value!r} is not a unit attention condition", field)
