"""Facts the scenario files are written from, kept in code where something computes them
(fence_scsi's keys, checked against the files by a test; the two-QEMU-guest scenario uses them),
and ``phase`` for scenarios built in code (tests)."""

from __future__ import annotations

import dataclasses
import hashlib

from scsi_pr.rig.scenarios.model import Item, Race
from scsi_pr.sim.constants import ReservationType

WE_RO = ReservationType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY
CLUSTER_NAME = "scsi-pr"


def fence_scsi_key(cluster: str, node_id: int) -> int:
    """fence_scsi's default ``--key-value=id`` key: 4 hex digits of md5(cluster name) and the
    corosync node id as 4 decimal digits (``"%.4s%.4d"``), read by sg_persist as hex."""
    return int(f"{hashlib.md5(cluster.encode('ascii')).hexdigest()[:4]}{node_id:04d}", 16)


#: The two cluster nodes' keys, as fence_scsi makes them (the built-ins' node1 and node2).
K1, K2 = fence_scsi_key(CLUSTER_NAME, 1), fence_scsi_key(CLUSTER_NAME, 2)


def phase(name: str, *items: Item) -> list[Item]:
    """``items`` as one phase of the timeline: each gets the phase ``name``, so a scenario
    reads like its docs, a phase heading and then the commands sent in it."""

    def named(item: Item) -> Item:
        if isinstance(item, Race):
            steps = tuple(dataclasses.replace(s, phase=name) for s in item.steps)
            return dataclasses.replace(item, phase=name, steps=steps)
        return dataclasses.replace(item, phase=name)

    return [named(item) for item in items]
