"""Fuzz: random CDBs and parameter lists never make the model raise, and every answer is a
well-formed SCSI answer (SAM-5 status, SPC-5 fixed format sense)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from scsi_pr.sim import cdb as C
from scsi_pr.sim.constants import Opcode, SenseKey, Status
from scsi_pr.sim.device import LogicalUnit
from scsi_pr.sim.nexus import ITNexus
from scsi_pr.sim.transportid import TransportId

NEXUSES = [ITNexus.named(f"naa.50014050000000{i:02x}", i) for i in (1, 2)]
KNOWN = [int(o) for o in Opcode]

# CDBs: fully random, or a known opcode with random fields, or a well-formed PR OUT.
cdbs = st.one_of(
    st.binary(max_size=20),
    st.builds(lambda op, rest: bytes([op]) + rest, st.sampled_from(KNOWN), st.binary(max_size=16)),
    st.builds(
        C.persistent_reserve_out,
        st.integers(0, 0x1F),
        st.integers(0, 80),
        st.integers(0, 0xF),
        st.integers(0, 0xF),
    ),
)
tids = st.one_of(
    st.builds(lambda v: TransportId.sas(v).encode(), st.integers(0, 2**64 - 1)),
    st.binary(min_size=4, max_size=32),
)
parameter_lists = st.one_of(
    st.binary(max_size=80),
    st.builds(
        lambda k, s, f, t: C.pr_out_parameters(k, s)[:20] + bytes([f]) + bytes(3) + t,
        st.integers(0, 3),
        st.integers(0, 3),
        st.integers(0, 255),
        st.binary(max_size=40),
    ),
    st.builds(
        C.register_and_move_parameters,
        st.integers(0, 3),
        st.integers(0, 3),
        st.integers(0, 4),
        tids,
    ),
)


@settings(max_examples=400)
@given(st.lists(st.tuples(st.sampled_from(NEXUSES), cdbs, parameter_lists), max_size=8))
def test_random_commands_answer_well_formed(commands: list[tuple[ITNexus, bytes, bytes]]) -> None:
    lu = LogicalUnit(target_ports=(1, 2), blocks=64)
    for nexus, cdb, data in commands:
        r = lu.execute(nexus, cdb, data)
        assert r.status in (Status.GOOD, Status.CHECK_CONDITION, Status.RESERVATION_CONFLICT)
        if r.status != Status.CHECK_CONDITION:
            assert r.sense == b""
            continue
        s = r.sense
        assert len(s) == 18 and s[0] == 0x70 and s[7] == 10, s.hex()
        assert s[2] & 0xF0 == 0 and SenseKey(s[2]) is not None
        assert (s[12], s[13]) != (0x44, 0x00), (
            f"model bug surfaced as INTERNAL TARGET FAILURE: {cdb.hex()}"
        )
        if s[15] & 0x80:
            assert s[2] == SenseKey.ILLEGAL_REQUEST, "SKSV field pointer only for ILLEGAL REQUEST"
            assert s[15] & 0x30 == 0, "reserved bits of the sense-key specific field"
            limit = max(len(cdb), 16) if s[15] & 0x40 else max(len(data), 24)
            assert int.from_bytes(s[16:18], "big") <= limit
        if r.data:
            assert r.status == Status.GOOD
