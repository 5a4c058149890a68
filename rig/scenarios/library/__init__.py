"""The built-in scenarios: command sequences real cluster software sends, with what each must
cause — each one a scenario file in ``rig/scenarios/builtin/``, data like any user's file.

Every sequence is transcribed from the software that issues it (each file's ``[source]``);
where that software's traffic is not documented (Windows failover clustering) the file says
what was assumed. ``scsi-pr scenario show NAME --as-file`` prints a file to copy and edit;
``docs/scenarios.md`` shows each one's timeline and chart.
"""

from __future__ import annotations

from importlib import resources

from scsi_pr.rig.scenarios.fileread import loads
from scsi_pr.rig.scenarios.library.common import WE_RO
from scsi_pr.rig.scenarios.model import Scenario

__all__ = ["BUILTIN_ORDER", "SCENARIOS", "WE_RO", "builtin_text", "get"]

#: The built-ins in the order ``--list`` and the docs show them (a file's name is its scenario's).
BUILTIN_ORDER = (
    "fence-scsi",
    "wsfc-arbitration",
    "wsfc-validation",
    "wsfc-same-key",
    "split-brain",
    "fence-scsi-devices",
    "failover",
    "failover-aptpl",
    "helper-restart",
    "werror-report",
    "vm-migration",
    "migrate-pr",
    "register-and-move",
)


def builtin_text(name: str) -> str:
    """The scenario file that defines built-in ``name``, as shipped."""
    return (
        resources.files("scsi_pr.rig.scenarios")
        .joinpath("builtin", f"{name}.toml")
        .read_text(encoding="utf-8")
    )


#: Every scenario by name, read from its file once at import.
SCENARIOS: dict[str, Scenario] = {
    name: loads(builtin_text(name), f"builtin/{name}.toml") for name in BUILTIN_ORDER
}


def get(name: str) -> Scenario:
    try:
        return SCENARIOS[name]
    except KeyError:
        raise KeyError(f"unknown scenario {name!r}; choose from {', '.join(SCENARIOS)}") from None
