"""The CDB and parameter list sg_persist sends for the options given. The layouts themselves
are the model's (``scsi_pr.sim.cdb``): one writer of PR bytes for every caller; what is
sg_persist's own is which fields it fills from which option."""

from __future__ import annotations

from scsi_pr.helper.persist.options import Options
from scsi_pr.helper.persist.transport_id import compact_transport_ids
from scsi_pr.sim.cdb import (
    persistent_reserve_in,
    persistent_reserve_out,
    pr_out_parameters,
    register_and_move_parameters,
)
from scsi_pr.sim.constants import PersistentReserveOutAction


def prin_cdb(op: Options) -> bytes:
    """PERSISTENT RESERVE IN for ``op.prin_sa`` with ALLOCATION LENGTH ``op.alloc_len``."""
    return persistent_reserve_in(op.prin_sa, op.alloc_len)


def prout_command(op: Options) -> tuple[bytes, bytes]:
    """(CDB, parameter list) of PERSISTENT RESERVE OUT for ``op.prout_sa``."""
    action = op.prout_sa
    tids = compact_transport_ids(op.transport_ids)
    if action == PersistentReserveOutAction.REGISTER_AND_MOVE:
        params = register_and_move_parameters(
            op.param_rk,
            op.param_sark,
            op.param_rtp,
            tids,
            unreg=op.param_unreg,
            aptpl=op.param_aptpl,
        )
        if not tids:  # the TransportID PARAMETER DATA LENGTH stays 0
            params = params[:24]
    else:
        params = pr_out_parameters(
            op.param_rk,
            op.param_sark,
            aptpl=op.param_aptpl,
            all_tg_pt=op.param_alltgpt,
            spec_i_pt=bool(tids),
            transport_ids=[tids] if tids else (),
        )
    return persistent_reserve_out(action, len(params), op.prout_type), params
