"""The scenarios: command sequences real cluster software sends, with what each must cause.

Every sequence is transcribed from the software that issues it (``Source``); where that
software's traffic is not documented (Windows failover clustering), the docs say what was
assumed. One module per family: ``fencing`` (fence_scsi), ``windows`` (failover clustering),
``failover`` (active/standby, APTPL), ``faults`` (the PR helper dies), ``migration`` (a
guest's reservation follows it). ``docs/scenarios.md`` shows each one's timeline and chart.
"""

from __future__ import annotations

from scsi_pr.rig.scenarios.library import failover, faults, fencing, migration, windows
from scsi_pr.rig.scenarios.library.common import WE_RO
from scsi_pr.rig.scenarios.model import Scenario

__all__ = ["ALIASES", "SCENARIOS", "WE_RO", "get"]

#: Every scenario by name, in the order ``--list`` and the docs show them.
SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        fencing.fence_scsi(),
        windows.wsfc_arbitration(),
        windows.wsfc_validation(),
        fencing.split_brain(),
        failover.failover(aptpl=False),
        failover.failover(aptpl=True),
        faults.helper_restart(),
        migration.vm_migration(),
        migration.register_and_move(),
    )
}
ALIASES: dict[str, str] = {}


def get(name: str) -> Scenario:
    try:
        return SCENARIOS[ALIASES.get(name, name)]
    except KeyError:
        raise KeyError(
            f"unknown scenario {name!r}; choose from {', '.join([*SCENARIOS, *ALIASES])}"
        ) from None
