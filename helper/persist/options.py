"""sg_persist's option handling (its ``main()`` up to opening the device): every message and
exit status of parsing, checking and combining the options, as sg_persist 0.67 has them.

Options are acted on in the order ``getopt_long`` returns them, as the C loop does, so the first
problem on the command line is the one reported (``-K zz -x`` complains about ``zz``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import cast

from scsi_pr.helper.getopt import GetoptError, GetoptLong, LongOption, OptionTable
from scsi_pr.helper.persist.exit_codes import Exit
from scsi_pr.helper.persist.numbers import get_num, scan_hex
from scsi_pr.helper.persist.outcome import Done, Outcome
from scsi_pr.helper.persist.transport_id import (
    MX_TID_LEN,
    TransportIdSyntax,
    file_transport_ids,
    hex_list_transport_id,
    symbolic_transport_id,
    transport_id_text,
)
from scsi_pr.helper.persist.usage import ME, VERSION, usage
from scsi_pr.sim.constants import (
    PR_HELPER_DATA_SIZE,
    PersistentReserveInAction,
    PersistentReserveOutAction,
)

# sg_persist's PR IN buffer, 8192 bytes: the same as the most data the helper carries.
MX_ALLOC_LEN = PR_HELPER_DATA_SIZE
READONLY_ENV = "SG_PERSIST_IN_RDONLY"

_ARG, _NO = True, False
# sg_persist's long options, in its table order (the order getopt reports ambiguities in),
# plus this front end's own --socket at the end.
_LONG: tuple[tuple[str, bool, str], ...] = (
    ("alloc-length", _ARG, "l"), ("alloc_length", _ARG, "l"),
    ("clear", _NO, "C"), ("device", _ARG, "d"), ("help", _NO, "h"),
    ("hex", _NO, "H"), ("in", _NO, "i"), ("maxlen", _ARG, "m"),
    ("no-inquiry", _NO, "n"), ("no_inquiry", _NO, "n"), ("out", _NO, "o"),
    ("param-alltgpt", _NO, "Y"), ("param_alltgpt", _NO, "Y"),
    ("param-aptpl", _NO, "Z"), ("param_aptpl", _NO, "Z"),
    ("param-rk", _ARG, "K"), ("param_rk", _ARG, "K"),
    ("param-sark", _ARG, "S"), ("param_sark", _ARG, "S"),
    ("param-unreg", _NO, "U"), ("param_unreg", _NO, "U"),
    ("preempt", _NO, "P"), ("preempt-abort", _NO, "A"),
    ("preempt_abort", _NO, "A"), ("prout-type", _ARG, "T"),
    ("prout_type", _ARG, "T"), ("read-full-status", _NO, "s"),
    ("read_full_status", _NO, "s"), ("read-keys", _NO, "k"),
    ("read_keys", _NO, "k"), ("readonly", _NO, "y"),
    ("read-reservation", _NO, "r"), ("read_reservation", _NO, "r"),
    ("read-status", _NO, "s"), ("read_status", _NO, "s"),
    ("register", _NO, "G"), ("register-ignore", _NO, "I"),
    ("register_ignore", _NO, "I"), ("register-move", _NO, "M"),
    ("register_move", _NO, "M"), ("release", _NO, "L"),
    ("relative-target-port", _ARG, "Q"), ("relative_target_port", _ARG, "Q"),
    ("replace-lost", _NO, "z"), ("replace_lost", _NO, "z"),
    ("report-capabilities", _NO, "c"), ("report_capabilities", _NO, "c"),
    ("reserve", _NO, "R"), ("transport-id", _ARG, "X"),
    ("transport_id", _ARG, "X"), ("unreg", _NO, "U"),
    ("verbose", _NO, "v"), ("version", _NO, "V"),
    ("socket", _ARG, "socket"),
)  # fmt: skip
OPTIONS = OptionTable(
    "AcCd:GHhiIkK:l:Lm:MnoPQ:rRsS:T:UvVX:yYzZ", tuple(LongOption(*row) for row in _LONG)
)


@dataclass
class Options:
    """sg_persist's ``struct opts_t`` plus the helper socket."""

    inquiry: bool = True
    param_alltgpt: bool = False
    param_aptpl: bool = False
    param_unreg: bool = False
    pr_in: bool = True
    readonly: bool = False
    readwrite_force: bool = False
    hex: int = 0
    prin_sa: int = -1
    prout_sa: int = -1
    verbose: int = 0
    alloc_len: int = MX_ALLOC_LEN
    param_rtp: int = 0
    prout_type: int = 0
    param_rk: int = 0
    param_sark: int = 0
    transport_ids: list[bytes] = field(default_factory=list)
    device: str | None = None
    socket: str | None = None


# Short option -> PR service action it selects.
PRIN_FLAGS = {
    "k": PersistentReserveInAction.READ_KEYS,
    "r": PersistentReserveInAction.READ_RESERVATION,
    "c": PersistentReserveInAction.REPORT_CAPABILITIES,
    "s": PersistentReserveInAction.READ_FULL_STATUS,
}
PROUT_FLAGS = {
    "G": PersistentReserveOutAction.REGISTER,
    "R": PersistentReserveOutAction.RESERVE,
    "L": PersistentReserveOutAction.RELEASE,
    "C": PersistentReserveOutAction.CLEAR,
    "P": PersistentReserveOutAction.PREEMPT,
    "A": PersistentReserveOutAction.PREEMPT_AND_ABORT,
    "I": PersistentReserveOutAction.REGISTER_AND_IGNORE_EXISTING_KEY,
    "M": PersistentReserveOutAction.REGISTER_AND_MOVE,
    "z": PersistentReserveOutAction.REPLACE_LOST_RESERVATION,
}
HEX_ARGS = {"K": ("param_rk", "param-rk", 64), "S": ("param_sark", "param-sark", 64),
            "T": ("prout_type", "prout-type", 32)}  # fmt: skip


def _transport_id_arg(value: str, out: Outcome, read_stdin: Callable[[], list[str]]) -> list[bytes]:
    """build_transportid for one -X argument; raises Done(1) after sg_persist's messages."""
    messages: list[str] = []
    try:
        if value.startswith("-") or value[:5] in ("file=", "FILE="):
            if value.startswith("-"):
                lines = read_stdin()
            else:
                try:
                    # as argv and stdin are read, so a name's bytes reach the TransportID
                    # once, whichever way it was given
                    # and its lines end at "\n" only, as fgets ends them
                    with open(
                        value[5:], encoding="utf-8", errors="surrogateescape", newline="\n"
                    ) as f:
                        lines = f.readlines()
                except OSError:
                    raise TransportIdSyntax(
                        f"decode_file_tids: unable to open {value[5:]}"
                    ) from None
            return file_transport_ids(lines, messages)
        sym = symbolic_transport_id(value, messages)
        return [sym if sym is not None else hex_list_transport_id(value)]
    except TransportIdSyntax as e:
        messages.append(str(e))
        messages.append("bad argument to '--transport-id'")
        raise Done(Exit.SYNTAX_ERROR) from None
    finally:
        for m in messages:
            out.err(f"{m}\n")


@dataclass
class _Given:
    """What main() keeps in locals while it reads the options: counts and requests."""

    help_level: int = 0
    prin_sa: int = 0
    prout_sa: int = 0
    want_prin: bool = False
    want_prout: bool = False
    verbose: bool = False
    version: bool = False


def parse_options(
    argv: Sequence[str], out: Outcome, env: dict[str, str], read_stdin: Callable[[], list[str]]
) -> Options:
    """sg_persist's main() up to opening the device: every message and exit code of its
    option handling (raises Done when it stops there)."""
    op, given = Options(), _Given()
    getopt = GetoptLong(OPTIONS, argv, posixly_correct="POSIXLY_CORRECT" in env)
    try:
        for key, value in getopt:
            _take(op, given, key, value, out, read_stdin)
    except GetoptError as e:
        out.err(f"{ME}: {e}\n")
        out.err(usage(1))
        raise Done(Exit.OK) from None
    if getopt.operands:
        rest = getopt.operands
        if op.device is None:
            op.device, rest = rest[0], rest[1:]
        if rest:
            for extra in rest:
                out.err(f"Unexpected extra argument: {extra}\n")
            out.err(usage(1))
            raise Done(Exit.SYNTAX_ERROR)
    if given.help_level > 0:
        out.err(usage(given.help_level))
        raise Done(Exit.OK)
    if given.verbose and given.version:
        out.err("Not in DEBUG mode, so '-vV' has no special action\n")
    if given.version:
        out.err(f"version: {VERSION}\n")
        raise Done(Exit.OK)
    if op.device is None:
        out.err("No device name given\n")
        out.err(usage(1))
        raise Done(Exit.SYNTAX_ERROR)
    _check_service_actions(op, given, out)
    if not op.readwrite_force:
        if READONLY_ENV in env and op.pr_in:
            op.readonly = True
    else:
        op.readonly = False
    return op


def _take(
    op: Options,
    given: _Given,
    key: str,
    value: str | None,
    out: Outcome,
    read_stdin: Callable[[], list[str]],
) -> None:
    """One pass of main()'s getopt loop: the option's effect, or Done after its complaint."""
    arg = cast(str, value)  # getopt gives every option that takes an argument its text
    if key in PRIN_FLAGS:
        op.prin_sa = PRIN_FLAGS[key]
        given.prin_sa += 1
    elif key in PROUT_FLAGS:
        op.prout_sa = PROUT_FLAGS[key]
        given.prout_sa += 1
    elif key in HEX_ARGS:
        attr, long_name, bits = HEX_ARGS[key]
        number = scan_hex(arg, bits)
        if number is None:
            out.err(f"bad argument to '--{long_name}'\n")
            raise Done(Exit.SYNTAX_ERROR)
        setattr(op, attr, number)
    elif key in ("l", "m"):
        name = "maxlen" if key == "m" else "alloc-length"
        number = get_num(arg) if key == "m" else scan_hex(arg)  # both masked to 32 bits below
        if number is None or number == -1:
            out.err(f"bad argument to '--{name}'\n")
            raise Done(Exit.SYNTAX_ERROR)
        op.alloc_len = number & 0xFFFFFFFF
        if op.alloc_len > MX_ALLOC_LEN:
            out.err(f"'--{name}' argument exceeds maximum value ({MX_ALLOC_LEN})\n")
            raise Done(Exit.SYNTAX_ERROR)
    elif key == "Q":
        number = scan_hex(arg, 32)
        if number is None:
            out.err("bad argument to '--relative-target-port'\n")
            raise Done(Exit.SYNTAX_ERROR)
        if number > 0xFFFF:
            out.err("argument to '--relative-target-port' 0 to ffff inclusive\n")
            raise Done(Exit.SYNTAX_ERROR)
        op.param_rtp = number
    elif key == "X":
        op.transport_ids = _transport_id_arg(arg, out, read_stdin)
    elif key == "y":
        if not op.readwrite_force:
            op.readwrite_force, op.readonly = op.readonly, not op.readonly
    else:
        _FLAG_ACTIONS[key](op, value)
        given.want_prin |= key == "i"
        given.want_prout |= key == "o"
        given.help_level += key == "h"
        given.verbose |= key == "v"
        given.version |= key == "V"


_FLAG_ACTIONS: dict[str, Callable[[Options, str | None], None]] = {
    "d": lambda op, v: setattr(op, "device", v),
    "h": lambda op, v: None,
    "H": lambda op, v: setattr(op, "hex", op.hex + 1),
    "i": lambda op, v: None,
    "o": lambda op, v: None,
    "n": lambda op, v: setattr(op, "inquiry", False),
    "U": lambda op, v: setattr(op, "param_unreg", True),
    "v": lambda op, v: setattr(op, "verbose", op.verbose + 1),
    "V": lambda op, v: None,
    "Y": lambda op, v: setattr(op, "param_alltgpt", True),
    "Z": lambda op, v: setattr(op, "param_aptpl", True),
    "socket": lambda op, v: setattr(op, "socket", v),
}


def _check_service_actions(op: Options, given: _Given, out: Outcome) -> None:
    """The combinations sg_persist refuses (exit 31) or warns about, in its order."""
    want_prin, want_prout = given.want_prin, given.want_prout
    n_in, n_out = given.prin_sa, given.prout_sa
    if want_prout and want_prin:
        out.err("choose '--in' _or_ '--out' (not both)\n")
        out.err(usage(1))
        raise Done(Exit.CONTRADICT)
    if want_prout:
        op.pr_in = False
        if n_out != 1 or n_in != 0:
            out.err(
                ">> For Persistent Reserve Out one and only one appropriate\n>> service "
                "action must be chosen (e.g. '--register')\n"
            )
            raise Done(Exit.CONTRADICT)
    else:
        if n_out > 0:
            out.err(
                ">> When a service action for Persistent Reserve Out is chosen the\n"
                ">> '--out' option must be given (as a safeguard)\n"
            )
            raise Done(Exit.CONTRADICT)
        if n_in == 0:
            out.err(
                ">> No service action given; assume Persistent Reserve In command\n"
                ">> with Read Keys service action\n"
            )
            op.prin_sa = PersistentReserveInAction.READ_KEYS
        elif n_in > 1:
            out.err("Too many service actions given; choose one only\n")
            out.err(usage(1))
            raise Done(Exit.CONTRADICT)
    move = PersistentReserveOutAction.REGISTER_AND_MOVE
    if (op.param_unreg or op.param_rtp) and op.prout_sa != move:
        out.err("--unreg or --relative-target-port only useful with --register-move\n")
        out.err(usage(1))
        raise Done(Exit.CONTRADICT)
    if op.prout_sa == move and len(op.transport_ids) != 1:
        out.err("with --register-move one (and only one) --transport-id should be given\n")
        out.err(usage(1))
        raise Done(Exit.CONTRADICT)
    needs_type = (
        PersistentReserveOutAction.RESERVE,
        PersistentReserveOutAction.RELEASE,
        PersistentReserveOutAction.PREEMPT,
        PersistentReserveOutAction.PREEMPT_AND_ABORT,
    )
    if op.prout_sa in needs_type and op.prout_type == 0:
        out.err("warning>>> --prout-type probably needs to be given\n")
    if op.verbose > 2 and op.transport_ids:
        out.err(
            f"number of tranport-ids decoded from command line (or stdin): "
            f"{len(op.transport_ids)}\n"
        )
        out.err("  Decode given transport-ids:\n")
        for tid in op.transport_ids:
            out.out(transport_id_text("      ", tid.ljust(MX_TID_LEN, b"\0"), MX_TID_LEN))
