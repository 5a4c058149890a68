"""What ``scsi-pr target serve`` may be configured with, and what a login is offered from it:
every limit refused one past each end and taken at each end, without a socket."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from scsi_pr.target.proto import ChapCredentials, ChapPolicy, Portal
from scsi_pr.target.proto.constants import MAX_24
from scsi_pr.target.server import PORTAL_GROUP_TAG, TargetConfig, TargetConfigError, TargetServer

IQN = "iqn.2024-01.test:target"
#: each limit with the smallest and largest value a target may serve
LIMITS = {
    "max_sessions": (1, 0xFFFF),
    "command_window": (1, 1 << 16),
    "max_recv_data_segment_length": (512, MAX_24),
    "max_burst_length": (512, MAX_24),
    "max_write_length": (512, 1 << 30),
}
TIMEOUTS = ("nop_interval", "nop_timeout", "login_timeout", "data_out_timeout")


def config(**changes: Any) -> TargetConfig:
    return TargetConfig(**{"iqn": IQN, "state_dir": Path("/nonexistent")} | changes)


@pytest.mark.parametrize("name", LIMITS)
def test_each_limit_is_served_at_both_ends(name: str) -> None:
    low, high = LIMITS[name]
    assert getattr(config(**{name: low}), name) == low
    assert getattr(config(**{name: high}), name) == high


@pytest.mark.parametrize("name", LIMITS)
@pytest.mark.parametrize("end", ["below", "above"])
def test_a_limit_past_either_end_is_refused_naming_it_and_its_range(name: str, end: str) -> None:
    low, high = LIMITS[name]
    value = low - 1 if end == "below" else high + 1
    with pytest.raises(TargetConfigError) as refused:
        config(**{name: value})
    assert str(refused.value) == f"{name} {value}: must be {low}..{high}"


@pytest.mark.parametrize(
    ("port", "ports"),
    [(1, 1), (2, 2), (0xFFFF, 0xFFFF), (1, 0xFFFF)],
)
def test_the_sessions_target_port_may_be_any_of_the_lus_ports(port: int, ports: int) -> None:
    assert config(target_port=port, target_ports=ports).target_port == port


@pytest.mark.parametrize(
    ("port", "ports"),
    [(0, 2), (3, 2), (2, 1), (0x10000, 0x10000), (1, 0x10000)],
)
def test_a_target_port_the_lus_do_not_have_is_refused(port: int, ports: int) -> None:
    with pytest.raises(TargetConfigError) as refused:
        config(target_port=port, target_ports=ports)
    assert str(refused.value) == f"target port {port} is not one of 1..{ports}"


@pytest.mark.parametrize("name", TIMEOUTS)
@pytest.mark.parametrize("value", [0.0, -1.0])
def test_each_interval_and_timeout_must_be_positive(name: str, value: float) -> None:
    with pytest.raises(
        TargetConfigError,
        match=r"^NOP interval and the NOP, login and Data-Out timeouts must be > 0$",
    ):
        config(**{name: value})
    assert getattr(config(**{name: 0.001}), name) == 0.001


def test_a_login_is_offered_exactly_what_was_configured() -> None:
    """Every setting differs from its default, so one dropped on the way shows."""
    chap = ChapPolicy(ChapCredentials("host", b"initiator-secret"))
    discovery = ChapPolicy(ChapCredentials("finder", b"discovery-secret"))
    allowed = frozenset({"iqn.2024-01.test:host"})
    settings = config(
        alias="disk", chap=chap, discovery_chap=discovery, allowed_initiators=allowed,
        max_recv_data_segment_length=8192, max_burst_length=131072, command_window=7,
    ).login_settings()  # fmt: skip
    (node,) = settings.targets
    assert (node.name, node.alias, node.allowed_initiators, node.chap) == (
        IQN, "disk", allowed, chap,
    )  # fmt: skip
    assert settings.portal_group_tag == PORTAL_GROUP_TAG == 1
    assert settings.discovery_chap == discovery and settings.command_window == 7
    op = settings.operational
    assert (op.max_recv_data_segment_length, op.max_burst_length) == (8192, 131072)
    assert op.first_burst_length == 65536  # RFC 7143 13.14's default, below the burst


@pytest.mark.parametrize(("burst", "first"), [(512, 512), (65536, 65536), (65537, 65536)])
def test_the_first_burst_never_exceeds_the_burst(burst: int, first: int) -> None:
    """RFC 7143 13.14: FirstBurstLength must not exceed MaxBurstLength."""
    op = config(max_burst_length=burst).login_settings().operational
    assert op.first_burst_length == first


def test_a_connection_gets_the_configured_timers_and_names_the_portal_it_came_to(
    tmp_path: Path,
) -> None:
    """SendTargets answers with the address the connection arrived at (right when listening
    on every address); the timers and the write limit come from the configuration."""
    server = TargetServer(config(state_dir=tmp_path, size=1 << 20, nop_interval=3.0,
                                 nop_timeout=4.0, login_timeout=5.0, data_out_timeout=6.0,
                                 max_write_length=4096))  # fmt: skip
    try:
        settings = server.connection_settings(("10.0.0.1", 3261))
        timers = (settings.nop_interval, settings.nop_timeout, settings.login_timeout,
                  settings.data_out_timeout, settings.max_write_length)  # fmt: skip
        assert timers == (3.0, 4.0, 5.0, 6.0, 4096)
        assert settings.portals == (Portal("10.0.0.1", 3261, PORTAL_GROUP_TAG),)
        other = server.connection_settings(("10.0.0.2", 3260, 0, 0))
        assert other.portals == (Portal("10.0.0.2", 3260, PORTAL_GROUP_TAG),)
        assert other.login is settings.login == config().login_settings()
        unknown = server.connection_settings(None)  # a socket without an address
        assert unknown.portals == (Portal("0.0.0.0", 3260, PORTAL_GROUP_TAG),)
    finally:
        server._worker.shutdown()


def test_the_lus_are_served_with_the_configured_profile_ports_and_read_limit(
    tmp_path: Path,
) -> None:
    server = TargetServer(config(state_dir=tmp_path, size=1 << 20, profile="lio-6.12",
                                 target_ports=3, max_write_length=4096))  # fmt: skip
    try:
        shared = server.lus.shared
        assert shared.profile is not None and shared.profile.name == "lio-6.12"
        assert shared.target_ports == (1, 2, 3) and server.lus.max_read == 4096
    finally:
        server._worker.shutdown()
