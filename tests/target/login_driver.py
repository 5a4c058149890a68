"""The login tests' initiator: a ``Driver`` that sends a ``Login`` one request at a time."""

from __future__ import annotations

from itertools import count
from typing import Any

from scsi_pr.target.proto import LoginRequest, LoginResponse, Stage
from scsi_pr.target.proto.chap import ChapCredentials, ChapPolicy
from scsi_pr.target.proto.login import Login, LoginSettings, TargetNode
from scsi_pr.target.proto.text import build_text, parse_text

TARGET = "iqn.2024-01.test.scsi-pr:disk"
INITIATOR = "iqn.2024-01.test:host1"
ISID = 0x23D000000001
SEC, OP, FFP = (
    Stage.SECURITY_NEGOTIATION,
    Stage.LOGIN_OPERATIONAL_NEGOTIATION,
    Stage.FULL_FEATURE_PHASE,
)
CHAP = ChapPolicy(
    ChapCredentials("host1", b"host1-secret"), ChapCredentials("disk", b"disk-secret!")
)
NAMES = {"InitiatorName": INITIATOR, "TargetName": TARGET}


def settings(**kwargs: Any) -> LoginSettings:
    node = {k: kwargs.pop(k) for k in ("alias", "allowed_initiators", "chap") if k in kwargs}
    return LoginSettings(targets=(TargetNode(TARGET, **node),), **kwargs)


class Driver:
    """Plays the initiator: one LoginRequest per ``send``; answers come back parsed."""

    def __init__(self, login_settings: LoginSettings | None = None, **kwargs: Any) -> None:
        counter = count()
        self.login = Login(login_settings or settings(), tsih=7,
                           random_bytes=lambda n: bytes(next(counter) & 0xFF for _ in range(n)),
                           **kwargs)  # fmt: skip
        self.response: LoginResponse | None = None

    def send(
        self,
        csg: int,
        nsg: int = 0,
        transit: bool = False,
        keys: dict[str, str] | None = None,
        **fields: Any,
    ) -> dict[str, str]:
        request = LoginRequest(transit=transit, csg=csg, nsg=nsg, isid=ISID, cmd_sn=10,
                               exp_stat_sn=100, data=build_text((keys or {}).items()),
                               **fields)  # fmt: skip
        self.response = self.login.receive(request)
        return dict(parse_text(self.response.data))

    @property
    def status(self) -> int:
        assert self.response is not None
        return self.response.status
