"""A pure-Python SCSI logical unit with complete SPC-5 persistent-reservation state.

Sans-IO: ``LogicalUnit.execute(nexus, cdb, data)`` returns a ``CommandResult``; nothing in the
model touches files, sockets, clocks or threads. Persistence (APTPL) and faults are hooks the
caller supplies.
"""

from sim.constants import (
    PersistentReserveInAction,
    PersistentReserveOutAction,
    ReservationType,
    SenseKey,
    Status,
)
from sim.describe import describe
from sim.device import LogicalUnit
from sim.nexus import ITNexus
from sim.result import CommandResult, SenseData
from sim.transportid import TransportId

__all__ = [
    "CommandResult",
    "ITNexus",
    "LogicalUnit",
    "PersistentReserveInAction",
    "PersistentReserveOutAction",
    "ReservationType",
    "SenseData",
    "SenseKey",
    "Status",
    "TransportId",
    "describe",
]
