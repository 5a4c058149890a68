"""The target's login state machine (RFC 7143 6.3 and 11.12/11.13).

``Login.receive(request)`` returns the Login Response for each Login Request. Stages follow
CSG/NSG and the T/C bits: SecurityNegotiation (AuthMethod None or CHAP), then
LoginOperationalNegotiation (``Negotiator``), then FullFeaturePhase. Once ``state`` is
``COMPLETE`` the outcome is ``parameters``; once it is ``FAILED`` the response carries the
login status (``error.status``) and the connection must close after it is sent.

The TSIH a new session gets and the TSIHs of live sessions are inputs (``tsih``,
``existing_sessions``): session bookkeeping stays at the edge. MaxConnections is 1, so a login
naming an existing session is refused (too many connections); session reinstatement (TSIH 0
with the ISID of a live session) is a new session here and the edge ends the old one.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from enum import Enum

from scsi_pr.sim.transportid import TransportId, TransportIdError
from scsi_pr.target.proto.chap import CHAP_KEYS, AuthenticationFailed, ChapAuthenticator, ChapPolicy
from scsi_pr.target.proto.constants import ISCSI_VERSION, LoginStatus, Stage
from scsi_pr.target.proto.errors import LocalProtocolError, RemoteProtocolError
from scsi_pr.target.proto.negotiation import (
    KEYS,
    OBSOLETE_KEYS,
    NegotiationError,
    Negotiator,
    OperationalSettings,
    SessionParameters,
)
from scsi_pr.target.proto.pdus import LoginRequest, LoginResponse
from scsi_pr.target.proto.text import (
    MAX_NAME_LENGTH,
    NOT_UNDERSTOOD,
    TextAccumulator,
    TextError,
    build_text,
)

MAX_LOGIN_REQUESTS = 64  # this target's bound on one login's round trips
SESSION_TYPES = ("Normal", "Discovery")
#: keys only the target declares; an initiator sending them is ignored
TARGET_DECLARATIONS = frozenset({"TargetAlias", "TargetAddress", "TargetPortalGroupTag"})
IDENTITY_KEYS = frozenset({"InitiatorName", "TargetName", "SessionType"})


class LoginFailed(RemoteProtocolError):
    """A login ends with a non-zero status (11.13.5); no Reject, the connection closes."""

    reject_reason = None
    close_connection = True

    def __init__(self, status: LoginStatus, message: str) -> None:
        super().__init__(f"{status.name}: {message}")
        self.status = status


class LoginState(Enum):
    IN_PROGRESS = "in progress"
    COMPLETE = "complete"
    FAILED = "failed"


@dataclass(frozen=True)
class TargetNode:
    """One iSCSI target this portal serves."""

    name: str
    alias: str | None = None
    #: initiator names allowed to log in (None: any)
    allowed_initiators: frozenset[str] | None = None
    #: CHAP required for this target (None: AuthMethod None)
    chap: ChapPolicy | None = None

    def admits(self, initiator_name: str) -> bool:
        return self.allowed_initiators is None or initiator_name in self.allowed_initiators


@dataclass(frozen=True)
class LoginSettings:
    """Everything a login decides against: targets, portal group, negotiation, discovery."""

    targets: tuple[TargetNode, ...]
    portal_group_tag: int = 1
    operational: OperationalSettings = field(default_factory=OperationalSettings)
    allow_discovery: bool = True
    discovery_chap: ChapPolicy | None = None
    #: MaxCmdSN - ExpCmdSN + 1 in the login responses (the session's command window)
    command_window: int = 32

    def target(self, name: str) -> TargetNode | None:
        return next((t for t in self.targets if t.name == name), None)


class Login:
    """One connection's login phase, from the first Login Request to full feature phase."""

    def __init__(
        self,
        settings: LoginSettings,
        *,
        tsih: int,
        random_bytes: Callable[[int], bytes],
        existing_sessions: Collection[int] = (),
    ) -> None:
        if not 1 <= tsih <= 0xFFFF:
            raise LocalProtocolError("a new session's TSIH must be 1..65535")
        self.settings = settings
        self.state = LoginState.IN_PROGRESS
        self.parameters: SessionParameters | None = None
        self.error: LoginFailed | None = None
        self.stage = Stage.SECURITY_NEGOTIATION
        self.stat_sn = 0  # the StatSN of the next response
        self._new_tsih = tsih
        self._random = random_bytes
        self._existing = existing_sessions
        self._first: LoginRequest | None = None
        self._text = TextAccumulator()
        self._identity: dict[str, str] = {}
        self._target: TargetNode | None = None
        self._auth_method: str | None = None
        self._chap: ChapAuthenticator | None = None
        self._negotiator: Negotiator | None = None
        self._requests = 0
        self._tpgt_sent = False

    @property
    def exp_cmd_sn(self) -> int:
        return self._first.cmd_sn if self._first else 0

    @property
    def max_cmd_sn(self) -> int:
        return (self.exp_cmd_sn + self.settings.command_window - 1) & 0xFFFFFFFF

    # -- the one entry point -----------------------------------------------------------------
    def receive(self, request: LoginRequest) -> LoginResponse:
        """The response to ``request``; check ``state`` afterwards."""
        if self.state is not LoginState.IN_PROGRESS:
            raise LocalProtocolError(f"login is {self.state.value}")
        try:
            return self._receive(request)
        except LoginFailed as e:
            return self.fail(e, request)
        except AuthenticationFailed as e:
            return self.fail(LoginFailed(e.status, str(e)), request)
        except TextError as e:
            return self.fail(LoginFailed(LoginStatus.INITIATOR_ERROR, str(e)), request)

    def fail(self, error: LoginFailed, request: LoginRequest | None = None) -> LoginResponse:
        """End the login with ``error.status`` (also for a non-login PDU: 0x020b)."""
        self.state, self.error = LoginState.FAILED, error
        return self._response(request, transit=False, status=error.status)

    def _receive(self, request: LoginRequest) -> LoginResponse:
        self._requests += 1
        if self._requests > MAX_LOGIN_REQUESTS:
            raise LoginFailed(LoginStatus.INITIATOR_ERROR, "too many login requests")
        self._check_header(request)
        pairs = self._text.add(request.data, request.continues)
        if pairs is None:  # more text follows (C=1): acknowledge with an empty response
            return self._response(request, transit=False)
        keys = dict(pairs)
        if len(self._identity) == 0:
            self._identify(keys)
        elif IDENTITY_KEYS & set(keys):
            raise LoginFailed(LoginStatus.INITIATOR_ERROR, "identity keys redeclared (13.4)")
        answers = self._tpgt_declaration()
        if self.stage is not Stage.SECURITY_NEGOTIATION and self._auth_method is None:
            self._choose_auth("None")  # the initiator skipped the security stage
        if self.stage is Stage.SECURITY_NEGOTIATION:
            answers += self._security(keys, request)
        else:  # answers first, then the target's own declaration and offers (once each)
            answers += self._operational(keys) + self._negotiation().offers()
        transit, next_stage = self._transition(request)
        response = self._response(request, transit=transit, next_stage=next_stage, pairs=answers)
        if transit:
            self.stage = next_stage
        return response

    # -- checks of the header ---------------------------------------------------------------
    def _check_header(self, request: LoginRequest) -> None:
        if self._first is None:
            self._first = request
            self.stat_sn = request.exp_stat_sn  # 11.13.4: the target picks; follow the initiator
            if request.version_min > ISCSI_VERSION:
                raise LoginFailed(LoginStatus.UNSUPPORTED_VERSION, "version_min above 0x00")
            if request.tsih:
                status = (LoginStatus.TOO_MANY_CONNECTIONS if request.tsih in self._existing
                          else LoginStatus.SESSION_DOES_NOT_EXIST)  # fmt: skip
                raise LoginFailed(status, f"TSIH {request.tsih}: MaxConnections is 1")
        first = self._first
        if (request.isid, request.tsih, request.cid) != (first.isid, first.tsih, first.cid):
            raise LoginFailed(LoginStatus.INITIATOR_ERROR, "ISID, TSIH or CID changed in login")
        if request.transit and request.continues:
            raise LoginFailed(LoginStatus.INITIATOR_ERROR, "T and C both set (11.12.2)")
        if request.csg != self.stage and not (
            first is request and request.csg == Stage.LOGIN_OPERATIONAL_NEGOTIATION
        ):
            raise LoginFailed(LoginStatus.INITIATOR_ERROR, f"CSG {request.csg} in {self.stage!r}")
        if request.transit and (request.nsg <= request.csg or request.nsg == 2):
            raise LoginFailed(LoginStatus.INITIATOR_ERROR, f"NSG {request.nsg} after {request.csg}")
        if first is request:
            self.stage = Stage(request.csg)

    def _identify(self, keys: dict[str, str]) -> None:
        """The first request names the initiator, the session type and (Normal) the target."""
        name = keys.get("InitiatorName")
        if not name:
            raise LoginFailed(LoginStatus.MISSING_PARAMETER, "no InitiatorName (13.5)")
        if len(name.encode()) > MAX_NAME_LENGTH:
            raise LoginFailed(LoginStatus.INITIATOR_ERROR, "InitiatorName over 223 bytes")
        session_type = keys.get("SessionType", "Normal")
        if session_type == "Normal":
            # a normal session's I_T nexus is named by a TransportID (PR registrations): a
            # name it cannot carry is refused here, not after a Login Response said success
            try:
                TransportId.iscsi(name)
            except TransportIdError as e:
                raise LoginFailed(LoginStatus.INITIATOR_ERROR, str(e)[:80]) from None
        if session_type not in SESSION_TYPES or (
            session_type == "Discovery" and not self.settings.allow_discovery
        ):
            raise LoginFailed(LoginStatus.SESSION_TYPE_NOT_SUPPORTED, session_type[:40])
        target_name = keys.get("TargetName")
        if session_type == "Normal":
            if not target_name:
                raise LoginFailed(LoginStatus.MISSING_PARAMETER, "no TargetName (13.4)")
            self._target = self.settings.target(target_name)
            if self._target is None:
                raise LoginFailed(LoginStatus.NOT_FOUND, f"no target {target_name[:80]!r}")
        self._identity = {"InitiatorName": name, "SessionType": session_type}
        if target_name:
            self._identity["TargetName"] = target_name
        if "InitiatorAlias" in keys:
            self._identity["InitiatorAlias"] = keys["InitiatorAlias"]

    @property
    def _discovery(self) -> bool:
        return self._identity.get("SessionType") == "Discovery"

    @property
    def _chap_policy(self) -> ChapPolicy | None:
        if self._discovery:
            return self.settings.discovery_chap
        return self._target.chap if self._target else None

    def _tpgt_declaration(self) -> list[tuple[str, str]]:
        """11.13 / 13.9: TargetPortalGroupTag answers the first request naming a target."""
        if self._tpgt_sent or "TargetName" not in self._identity:
            return []
        self._tpgt_sent = True
        out = [("TargetPortalGroupTag", str(self.settings.portal_group_tag))]
        if self._target is not None and self._target.alias and not self._discovery:
            out.append(("TargetAlias", self._target.alias))
        return out

    # -- stages ---------------------------------------------------------------------------
    def _security(self, keys: dict[str, str], request: LoginRequest) -> list[tuple[str, str]]:
        answers: list[tuple[str, str]] = []
        chap_keys = {k: v for k, v in keys.items() if k in CHAP_KEYS}
        for key, value in keys.items():
            if key == "AuthMethod":
                answers.append((key, self._choose_auth(value)))
            elif key in KEYS or key in OBSOLETE_KEYS:
                raise LoginFailed(LoginStatus.INITIATOR_ERROR, f"{key} in the security stage")
            elif key not in CHAP_KEYS | IDENTITY_KEYS | TARGET_DECLARATIONS | {"InitiatorAlias"}:
                answers.append((key, NOT_UNDERSTOOD))
        if self._auth_method is None and (chap_keys or request.transit):
            self._choose_auth("None")  # 12.1: AuthMethod defaults to None
        if self._chap is not None:
            answers += self._chap.step(chap_keys)
        elif chap_keys:
            raise AuthenticationFailed("CHAP keys without AuthMethod=CHAP")
        return answers

    def _choose_auth(self, offered: str) -> str:
        if self._auth_method is not None:
            raise LoginFailed(LoginStatus.INITIATOR_ERROR, "AuthMethod negotiated twice")
        policy = self._chap_policy
        wanted = "None" if policy is None else "CHAP"
        if wanted not in offered.split(","):
            raise AuthenticationFailed(f"AuthMethod={offered[:60]}: this target needs {wanted}")
        self._auth_method = wanted
        if policy is not None:
            self._chap = ChapAuthenticator(policy, self._random)
        return wanted

    @property
    def _authenticated(self) -> bool:
        if self._chap is not None:
            return self._chap.done
        return self._auth_method == "None"

    def _operational(self, keys: dict[str, str]) -> list[tuple[str, str]]:
        negotiator = self._negotiation()
        answers: list[tuple[str, str]] = []
        for key, value in keys.items():
            if key == "AuthMethod" or key in CHAP_KEYS:
                raise LoginFailed(LoginStatus.INITIATOR_ERROR, f"{key} after the security stage")
            if key in IDENTITY_KEYS | TARGET_DECLARATIONS or key == "InitiatorAlias":
                continue
            try:
                answer = negotiator.respond(key, value)
            except NegotiationError as e:
                raise LoginFailed(LoginStatus.INITIATOR_ERROR, str(e)) from e
            if answer is not None:
                answers.append((key, answer))
        return answers

    def _negotiation(self) -> Negotiator:
        if self._negotiator is None:
            settings = self.settings.operational
            self._negotiator = Negotiator(settings, discovery=self._discovery)
        return self._negotiator

    def _transition(self, request: LoginRequest) -> tuple[bool, Stage]:
        """Whether this response sets T, and the stage it names (11.13.3)."""
        if not request.transit:
            return False, self.stage
        wanted = Stage(request.nsg)
        if not self._authenticated:
            return False, self.stage  # CHAP not finished: stay
        target = self._target
        if target is not None and not target.admits(self._identity["InitiatorName"]):
            raise LoginFailed(LoginStatus.AUTHORIZATION_FAILURE, "not in the target's ACL")
        if self.stage is Stage.SECURITY_NEGOTIATION:
            if wanted is Stage.FULL_FEATURE_PHASE and self._negotiation().needs_offers():
                wanted = Stage.LOGIN_OPERATIONAL_NEGOTIATION  # 6.3: NSG may be lower than asked
        elif self._negotiation().awaiting_answers:
            return False, self.stage
        if wanted is Stage.FULL_FEATURE_PHASE:
            self._complete(request)
        return True, wanted

    def _complete(self, request: LoginRequest) -> None:
        identity = self._identity
        try:
            self.parameters = self._negotiation().parameters(
                initiator_name=identity["InitiatorName"],
                initiator_alias=identity.get("InitiatorAlias"),
                target_name=identity.get("TargetName"),
                session_type=identity["SessionType"],
                target_portal_group_tag=self.settings.portal_group_tag,
                isid=request.isid,
                tsih=self._new_tsih,
                cid=request.cid,
            )
        except NegotiationError as e:
            raise LoginFailed(LoginStatus.INITIATOR_ERROR, str(e)) from e
        self.state = LoginState.COMPLETE

    # -- responses --------------------------------------------------------------------------
    def _response(
        self,
        request: LoginRequest | None,
        *,
        transit: bool,
        next_stage: Stage | int = 0,
        pairs: list[tuple[str, str]] | None = None,
        status: LoginStatus = LoginStatus.SUCCESS,
    ) -> LoginResponse:
        request = request or self._first or LoginRequest()
        final = self.state is LoginState.COMPLETE
        response = LoginResponse(
            transit=transit,
            csg=request.csg,
            nsg=next_stage if transit else 0,
            version_max=ISCSI_VERSION,
            version_active=ISCSI_VERSION,
            isid=request.isid,
            tsih=self._new_tsih if final else request.tsih,
            initiator_task_tag=request.initiator_task_tag,
            stat_sn=self.stat_sn,
            exp_cmd_sn=self.exp_cmd_sn,
            max_cmd_sn=self.max_cmd_sn,
            status_class=status.status_class,
            status_detail=status.status_detail,
            data=build_text(pairs or []),
        )
        self.stat_sn = (self.stat_sn + 1) & 0xFFFFFFFF
        return response
