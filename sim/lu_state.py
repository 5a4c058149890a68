"""What the command handlers of ``scsi_pr.sim.commands`` may read and change of their logical
unit, declared as a Protocol.

``LogicalUnit`` satisfies it structurally and passes itself to every handler; the handlers
depend only on this declaration, so ``commands`` does not import ``device`` (which imports
``commands`` for its dispatch table).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from scsi_pr.sim.medium import Medium
from scsi_pr.sim.nexus import ITNexus
from scsi_pr.sim.profiles import Profile
from scsi_pr.sim.state import PersistentReservations
from scsi_pr.sim.unit_attention import UnitAttentions


@runtime_checkable
class LuState(Protocol):
    #: INQUIRY standard data and VPD pages 80h/83h
    vendor: str
    product: str
    revision: str
    serial: str
    naa: int
    #: READ CAPACITY, MODE SENSE block descriptor and the LBA range check
    blocks: int
    block_size: int
    medium: Medium
    #: the PR state SPC-2 RESERVE/RELEASE consult under Compatible Reservation Handling
    pr: PersistentReservations
    #: REQUEST SENSE reports (and clears) a pending unit attention
    ua: UnitAttentions
    #: the I_T nexus holding an SPC-2 reservation (RESERVE(6/10)), if any
    spc2_holder: ITNexus | None
    #: how the LU answers where LIO and SPC-5 differ (REQUEST SENSE clears one UA or all)
    profile: Profile
