"""Sense data as sg3_utils reads and prints it: the exit category a sense key maps to
(``sg_err_category_sense``) and the text sg_persist prints for sense it reports
(``sg_get_sense_str``). The helper sends 96 bytes of sense without a length, so the length
SG_IO would have reported is derived here (``sense_length``).
"""

from __future__ import annotations

from dataclasses import dataclass

from scsi_pr.helper.persist.exit_codes import Exit
from scsi_pr.helper.persist.hexdump import hex_text
from scsi_pr.sim.constants import SenseKey

SENSE_KEY_TEXT = (
    "No Sense", "Recovered Error", "Not Ready", "Medium Error", "Hardware Error",
    "Illegal Request", "Unit Attention", "Data Protect", "Blank Check", "Vendor specific(9)",
    "Copy Aborted", "Aborted Command", "Equal", "Volume Overflow", "Miscompare", "Completed",
)  # fmt: skip

# The additional sense codes a PR client meets (from devices, LIO and qemu-pr-helper), in the
# wording sg3_utils prints; others print as "ASC=xx, ASCQ=xx (hex)" (docs/persist.md).
ASC_TEXT: dict[tuple[int, int], str] = {
    (0x00, 0x00): "No additional sense information",
    (0x00, 0x06): "I/O process terminated",
    (0x04, 0x00): "Logical unit not ready, cause not reportable",
    (0x04, 0x01): "Logical unit is in process of becoming ready",
    (0x04, 0x02): "Logical unit not ready, initializing command required",
    (0x04, 0x03): "Logical unit not ready, manual intervention required",
    (0x05, 0x00): "Logical unit does not respond to selection",
    (0x08, 0x00): "Logical unit communication failure",
    (0x08, 0x01): "Logical unit communication time-out",
    (0x0B, 0x00): "Warning",
    (0x11, 0x00): "Unrecovered read error",
    (0x1A, 0x00): "Parameter list length error",
    (0x20, 0x00): "Invalid command operation code",
    (0x21, 0x00): "Logical block address out of range",
    (0x24, 0x00): "Invalid field in cdb",
    (0x25, 0x00): "Logical unit not supported",
    (0x26, 0x00): "Invalid field in parameter list",
    (0x26, 0x01): "Parameter not supported",
    (0x26, 0x02): "Parameter value invalid",
    (0x26, 0x04): "Invalid release of persistent reservation",
    (0x27, 0x00): "Write protected",
    (0x27, 0x07): "Space allocation failed write protect",
    (0x29, 0x00): "Power on, reset, or bus device reset occurred",
    (0x29, 0x01): "Power on occurred",
    (0x29, 0x02): "SCSI bus reset occurred",
    (0x29, 0x03): "Bus device reset function occurred",
    (0x29, 0x04): "Device internal reset",
    (0x29, 0x07): "I_T nexus loss occurred",
    (0x2A, 0x00): "Parameters changed",
    (0x2A, 0x03): "Reservations preempted",
    (0x2A, 0x04): "Reservations released",
    (0x2A, 0x05): "Registrations preempted",
    (0x2A, 0x06): "Asymmetric access state changed",
    (0x2C, 0x00): "Command sequence error",
    (0x2C, 0x09): "Previous reservation conflict status",
    (0x2E, 0x02): "Command timeout during processing",
    (0x2F, 0x00): "Commands cleared by another initiator",
    (0x2F, 0x02): "Commands cleared by device server",
    (0x3A, 0x00): "Medium not present",
    (0x3F, 0x00): "Target operating conditions have changed",
    (0x3F, 0x0E): "Reported luns data has changed",
    (0x44, 0x00): "Internal target failure",
    (0x44, 0x01): "Persistent reservation information lost",
    (0x4B, 0x00): "Data phase error",
    (0x55, 0x02): "Insufficient reservation resources",
    (0x55, 0x03): "Insufficient resources",
    (0x55, 0x04): "Insufficient registration resources",
}


def asc_text(asc: int, ascq: int) -> str:
    """The ASC/ASCQ line: a known code's words, else its hex as sg3_utils prints unknown ones."""
    known = ASC_TEXT.get((asc, ascq))
    if known is not None:
        return f"Additional sense: {known}"
    if asc >= 0x80:
        return f"vendor specific ASC={asc:02x}, ASCQ={ascq:02x} (hex)"
    if ascq >= 0x80:
        return f"ASC={asc:02x}, vendor specific qualification ASCQ={ascq:02x} (hex)"
    return f"ASC={asc:02x}, ASCQ={ascq:02x} (hex)"


def sense_length(sense: bytes) -> int:
    """The sense length SG_IO would have reported (the helper pads to 96 bytes)."""
    if not any(sense):
        return 0
    if 0x70 <= (sense[0] & 0x7F) <= 0x73 and len(sense) > 7:
        return min(len(sense), sense[7] + 8)
    return len(sense.rstrip(b"\0"))  # not SPC sense: all we can drop is the helper's padding


@dataclass(frozen=True)
class SenseHeader:
    """sg_scsi_normalize_sense: response code, key, ASC, ASCQ of fixed or descriptor sense."""

    response_code: int
    key: int
    asc: int
    ascq: int

    @classmethod
    def parse(cls, sense: bytes) -> SenseHeader | None:
        if not sense:
            return None
        code = sense[0] & 0x7F
        if not 0x70 <= code <= 0x73:
            return None
        n = len(sense)
        if code >= 0x72:
            return cls(
                code,
                sense[1] & 0x0F if n > 1 else 0,
                sense[2] if n > 2 else 0,
                sense[3] if n > 3 else 0,
            )
        if n > 7:
            n = min(n, sense[7] + 8)
        return cls(
            code,
            sense[2] & 0x0F if n > 2 else 0,
            sense[12] if n > 12 else 0,
            sense[13] if n > 13 else 0,
        )


# sg_err_category_sense: sense key -> exit status (ILLEGAL REQUEST and ABORTED COMMAND refine).
KEY_CATEGORY: dict[int, int] = {
    SenseKey.NO_SENSE: Exit.NO_SENSE,
    SenseKey.RECOVERED_ERROR: Exit.RECOVERED,
    SenseKey.NOT_READY: Exit.NOT_READY,
    SenseKey.MEDIUM_ERROR: Exit.MEDIUM_HARD,
    SenseKey.HARDWARE_ERROR: Exit.MEDIUM_HARD,
    SenseKey.BLANK_CHECK: Exit.MEDIUM_HARD,
    SenseKey.UNIT_ATTENTION: Exit.UNIT_ATTENTION,
    SenseKey.ILLEGAL_REQUEST: Exit.ILLEGAL_REQ,
    SenseKey.ABORTED_COMMAND: Exit.ABORTED_COMMAND,
    SenseKey.MISCOMPARE: Exit.MISCOMPARE,
    SenseKey.DATA_PROTECT: Exit.DATA_PROTECT,
    SenseKey.COPY_ABORTED: Exit.COPY_ABORTED,
}
ILLEGAL_REQUEST_CATEGORY = {(0x20, 0x00): Exit.INVALID_OP, (0x21, 0x00): Exit.LBA_OUT_OF_RANGE}


def sense_category(sense: bytes) -> int:
    """sg_err_category_sense: the exit status a CHECK CONDITION with this sense becomes."""
    header = SenseHeader.parse(sense) if len(sense) > 2 else None
    if header is None:
        return Exit.SENSE
    if header.key == SenseKey.ILLEGAL_REQUEST:
        return ILLEGAL_REQUEST_CATEGORY.get((header.asc, header.ascq), Exit.ILLEGAL_REQ)
    if header.key == SenseKey.ABORTED_COMMAND and header.asc == 0x10:
        return Exit.PROTECTION
    return KEY_CATEGORY.get(header.key, Exit.SENSE)


RESPONSE_CODE_TEXT = {
    0x70: "Fixed format, current",
    0x71: "Fixed format, <<<deferred>>>",
    0x72: "Descriptor format, current",
    0x73: "Descriptor format, <<<deferred>>>",
}


def _sense_key_specific(key: int, sense: bytes) -> str:
    b15, value = sense[15], int.from_bytes(sense[16:18], "big")
    if key == SenseKey.ILLEGAL_REQUEST:
        where = "Command" if b15 & 0x40 else "Data parameters"
        bit = f" bit {b15 & 0x07}\n" if b15 & 0x08 else "\n"
        return f"  Sense Key Specific: Error in {where}: byte {value}{bit}"
    if key in (SenseKey.NO_SENSE, SenseKey.NOT_READY):
        pct, rem = (value * 100) // 65536, ((value * 100) % 65536) // 656
        return f"  Progress indication: {pct}.{rem:02d}%\n"
    if key in (SenseKey.HARDWARE_ERROR, SenseKey.MEDIUM_ERROR, SenseKey.RECOVERED_ERROR):
        return f"  Actual retry count: 0x{sense[16]:02x}{sense[17]:02x}\n"
    if key == SenseKey.COPY_ABORTED:
        rel = "segment descriptor" if b15 & 0x20 else "parameter list"
        bit = f" bit {b15 & 0x07}\n" if b15 & 0x08 else "\n"
        return f"  Segment pointer: Relative to start of {rel}, byte {value}{bit}"
    if key == SenseKey.UNIT_ATTENTION:
        return f"  Unit attention condition queue: overflow flag is {b15 & 1}\n"
    return f"  Sense_key: 0x{key:x} unexpected\n"


def sense_text(sense: bytes, raw: bool) -> str:
    """sg_get_sense_str with no lead-in: what sg_persist prints for sense it reports."""
    if not sense:
        return " >>> sense buffer empty\n"
    header = SenseHeader.parse(sense)
    out = []
    valid = bool(sense[0] & 0x80)
    if header is None:
        if len(sense) < 4:
            out.append("sense buffer too short (4 byte minimum)\n")
        elif sense[0] & 0x7F == 0x7F:
            return "Vendor specific sense buffer, in hex:\n" + hex_text(sense, "", -1)
        else:
            lines = (
                "Probably uninitialized data.\n  Try to view as SCSI-1 non-extended sense:\n"
                f"  AdValid={int(valid)}  Error class={(sense[0] >> 4) & 7}"
                f"  Error code={sense[0] & 0xF}\n"
            )
            if valid:
                lines += f"  lba=0x{int.from_bytes(sense[1:4], 'big') & 0x1FFFFF:x}\n"
            out.append(lines + "\n")
    else:
        descriptor = header.response_code >= 0x72
        n = len(sense)
        if not descriptor and n > 7:
            n = min(n, sense[7] + 8)
        if descriptor:  # SDAT_OVFL is in byte 4, which a short buffer does not reach
            ovfl = len(sense) > 4 and bool(sense[4] & 0x80)
        else:
            ovfl = n > 2 and bool(sense[2] & 0x10)
        out.append(
            f"{RESPONSE_CODE_TEXT[header.response_code]}; Sense key: {SENSE_KEY_TEXT[header.key]}\n"
        )
        if ovfl and (not descriptor or len(sense) > 4):
            out.append("<<<Sense data overflow (SDAT_OVFL)>>>\n")
        if descriptor:
            out.append(asc_text(header.asc, header.ascq) + "\n")
        elif n > 2:
            if n > 12:
                out.append(asc_text(header.asc, header.ascq) + "\n")
            out.append(_fixed_sense_fields(header, sense, n, valid))
    if raw:
        out.append(f" Raw sense data (in hex), sb_len={len(sense)}")
        if len(sense) > 7 and 0x70 <= sense[0] < 0x74:
            embed = sense[7] + 8
            out.append(f", embedded_len={embed}\n")
        else:
            embed = len(sense)
            out.append("\n")
        out.append(hex_text(sense[:embed].ljust(embed, b"\0"), " " * 8, -1))
    return "".join(out)


def _fixed_sense_fields(header: SenseHeader, sense: bytes, n: int, valid: bool) -> str:
    text = ""
    info = 0
    if n > 6:
        info = int.from_bytes(sense[3:7], "big")
        if valid:
            text += f"  Info fld=0x{info:x} [{info}] "
        elif info > 0:
            text += f"  Valid=0, Info fld=0x{info:x} [{info}] "
    if sense[2] & 0xE0:
        flags = ((0x80, " FMK"), (0x40, " EOM"), (0x20, " ILI"))
        text += "".join(word for bit, word in flags if sense[2] & bit) + "\n"
    elif valid or info > 0:
        text += "\n"
    # as sg3_utils: counted from the ADDITIONAL SENSE LENGTH, read from the buffer (a 14-byte
    # buffer has no byte 14; sg3_utils' own buffer is zeroed past what the device wrote)
    if n >= 14 and len(sense) > 14 and sense[14]:
        text += f"  Field replaceable unit code: {sense[14]}\n"
    if n >= 18 and sense[15] & 0x80:
        text += _sense_key_specific(header.key, sense)
    return text
