"""Roles, states and every transition of one helper connection, as a table.

HELPER (qemu-pr-helper's side) and CLIENT (QEMU's ``pr-manager-helper``) walk mirrored paths:

    HELPER: SEND_FEATURES -> AWAIT_FEATURES -> IDLE -> [AWAIT_PROUT_DATA] -> SEND_RESPONSE -> IDLE
    CLIENT: AWAIT_FEATURES -> SEND_FEATURES -> IDLE -> AWAIT_RESPONSE -> IDLE

The helper speaks first because QEMU blocks on a 4-byte read before writing anything. Any
protocol error moves the connection to ERROR; a clean EOF to CLOSED. Both refuse further use.
"""

from __future__ import annotations

from enum import Enum

from scsi_pr.helper.proto.errors import LocalProtocolError
from scsi_pr.helper.proto.events import ConnectionClosed, Features, Request, Response


class Role(Enum):
    HELPER = "helper"
    CLIENT = "client"

    __hash__ = object.__hash__  # members are singletons; Enum's name hash is slow per request


class State(Enum):
    SEND_FEATURES = "SEND_FEATURES"
    AWAIT_FEATURES = "AWAIT_FEATURES"
    IDLE = "IDLE"
    AWAIT_PROUT_DATA = "AWAIT_PROUT_DATA"
    SEND_RESPONSE = "SEND_RESPONSE"
    AWAIT_RESPONSE = "AWAIT_RESPONSE"
    CLOSED = "CLOSED"
    ERROR = "ERROR"

    __hash__ = object.__hash__


# (role, state, event type, direction) -> next state. "send" = we emit it, "recv" = peer sent it.
TRANSITIONS: dict[tuple[Role, State, type, str], State] = {
    (Role.HELPER, State.SEND_FEATURES, Features, "send"): State.AWAIT_FEATURES,
    (Role.HELPER, State.AWAIT_FEATURES, Features, "recv"): State.IDLE,
    (Role.HELPER, State.IDLE, Request, "recv"): State.SEND_RESPONSE,
    (Role.HELPER, State.AWAIT_PROUT_DATA, Request, "recv"): State.SEND_RESPONSE,
    (Role.HELPER, State.SEND_RESPONSE, Response, "send"): State.IDLE,
    (Role.HELPER, State.IDLE, ConnectionClosed, "recv"): State.CLOSED,
    (Role.CLIENT, State.AWAIT_FEATURES, Features, "recv"): State.SEND_FEATURES,
    (Role.CLIENT, State.SEND_FEATURES, Features, "send"): State.IDLE,
    (Role.CLIENT, State.IDLE, Request, "send"): State.AWAIT_RESPONSE,
    (Role.CLIENT, State.AWAIT_RESPONSE, Response, "recv"): State.IDLE,
    (Role.CLIENT, State.IDLE, ConnectionClosed, "recv"): State.CLOSED,
}

INITIAL_STATE = {Role.HELPER: State.SEND_FEATURES, Role.CLIENT: State.AWAIT_FEATURES}


def next_state(role: Role, state: State, kind: type, direction: str) -> State:
    """Look the transition up for an event of frame ``kind`` (``Request``, ...); an absent row
    is a misuse of the API."""
    try:
        return TRANSITIONS[(role, state, kind, direction)]
    except KeyError:
        raise LocalProtocolError(
            f"{role.value} cannot {direction} {kind.__name__} in state {state.value}"
        ) from None
