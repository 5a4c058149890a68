"""Backends ``iscsi`` and ``helper-iscsi``: the model behind the Linux kernel's iSCSI initiator.

``scsi_pr.rig.iscsi_rig`` serves the model with ``scsi-pr target serve`` and logs in once per
initiator (its own initiator name, so its own I_T nexus); each initiator is the /dev/sgN of its
session's LUN 0.

* ``iscsi``: every command by SG_IO on that device, through the kernel's SCSI and iSCSI layers.
* ``helper-iscsi``: PR commands through a ``scsi-pr-helper --backend sg`` in front of those
  devices (as QEMU's guests reach them), everything else by SG_IO.

Each backend instance starts from a fresh LU: the model's files for the image are forgotten in
the shared state dir, and the target reads the fresh state on its next command. Power cycle and
LUN reset act on the model through the same state dir.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from scsi_pr.helper.lu_identity import identify_path
from scsi_pr.rig import iscsi_rig
from scsi_pr.rig.backend_helper import HelperLioBackend
from scsi_pr.rig.backend_lio import SgInitiator
from scsi_pr.rig.backends import Backend, BackendUnavailable, Capability, Initiator, drain
from scsi_pr.sim.device import LogicalUnit
from scsi_pr.sim.transportid import TransportId

RELATIVE_TARGET_PORT = 1  # every session comes through the target's one portal group


@dataclass
class IscsiInitiator(SgInitiator):
    """One session's LUN 0 by SG_IO."""

    port: iscsi_rig.IscsiPort
    fd: int = field(default=-1, repr=False)
    hung: bool = False

    @property
    def name(self) -> str:
        return str(self.port.transport_id)

    @property
    def transport_id(self) -> TransportId:
        return self.port.transport_id

    @property
    def relative_target_port(self) -> int:
        return RELATIVE_TARGET_PORT


def fresh_rig(initiators: int) -> iscsi_rig.IscsiRig:
    """The shared rig, its LU forgotten (a fresh LU on the next command)."""
    forced = os.environ.get("SCSI_PR_ISCSI_UNAVAILABLE")
    if forced:
        raise BackendUnavailable(forced)
    try:
        rig = iscsi_rig.shared(initiators)
    except iscsi_rig.IscsiUnavailable as e:
        raise BackendUnavailable(str(e)) from e
    rig.check_sessions()
    rig.lus.forget(identify_path(rig.image)[0])
    return rig


class _ModelEvents:
    """Power cycle and LUN reset on the model, through the rig's state dir; the target's
    command trace since the backend opened."""

    rig: iscsi_rig.IscsiRig
    log_start: int

    def device_log(self) -> str:
        return self.rig.target_log_since(self.log_start)

    def power_cycle(self) -> None:
        def cycle(lu: LogicalUnit) -> None:
            lu.power_loss()
            lu.power_on()

        self.rig.lus.run_on_file(self.rig.image, cycle)

    def lun_reset(self) -> None:
        self.rig.lus.run_on_file(self.rig.image, lambda lu: lu.lun_reset())


class IscsiBackend(_ModelEvents, Backend):
    """N kernel-initiator sessions on one LU of ``scsi-pr target serve``."""

    name = "iscsi"
    capabilities = frozenset({Capability.POWER_CYCLE, Capability.LUN_RESET})

    def __init__(self, initiators: int = 2) -> None:
        self.rig = fresh_rig(initiators)
        self.log_start = self.rig.target_log_size()
        self.iscsi_initiators = [IscsiInitiator(p) for p in self.rig.ports[:initiators]]
        for it in self.iscsi_initiators:
            it.open()
        for it in self.iscsi_initiators:
            drain(it, iscsi_rig.IscsiRigError)
        self.initiators: list[Initiator] = list(self.iscsi_initiators)

    @property
    def hung(self) -> bool:
        return any(it.hung for it in self.iscsi_initiators)

    def __exit__(self, *exc: object) -> None:
        for it in self.iscsi_initiators:
            it.close()


class HelperIscsiBackend(_ModelEvents, HelperLioBackend):
    """PR through ``scsi-pr-helper --backend sg`` on the kernel-initiator sessions' devices."""

    name = "helper-iscsi"
    capabilities = frozenset(
        {Capability.RESTART_HELPER, Capability.POWER_CYCLE, Capability.LUN_RESET}
    )

    def __init__(self, initiators: int = 2) -> None:
        self.rig = fresh_rig(initiators)
        self.log_start = self.rig.target_log_size()
        ports = self.rig.ports[:initiators]
        super().__init__(
            initiators,
            devices=[(p.sg, p.transport_id, RELATIVE_TARGET_PORT) for p in ports],
        )
        for it in self.initiators:
            drain(it, iscsi_rig.IscsiRigError)
