"""sg_persist's exit statuses and their words (``helper.persist.exit_codes``) against
libsgutils2's ``sg_convert_errno``, ``sg_exit2str`` and ``sg_get_category_sense_str``, called
through ctypes for every value a script could meet: what ``scsi-pr persist`` prints after a
failure is the C library's text, to the byte."""

from __future__ import annotations

import ctypes

import pytest
from libsgutils import load

from scsi_pr.helper.persist.exit_codes import Exit, category_text, convert_errno, exit_text

SG = load()
CODES = range(-3, 300)


@pytest.mark.parametrize("err", range(-3, 130))
def test_convert_errno_is_sg_convert_errno(err: int) -> None:
    assert convert_errno(err) == SG.sg_convert_errno(err)


def _exit2str(code: int, longer: bool) -> str | None:
    buffer = ctypes.create_string_buffer(256)
    return buffer.value.decode() if SG.sg_exit2str(code, longer, 256, buffer) else None


@pytest.mark.parametrize("longer", [False, True])
def test_exit_text_is_sg_exit2str(longer: bool) -> None:
    ours = {code: exit_text(code, longer) for code in CODES}
    assert ours == {code: _exit2str(code, longer) for code in CODES}


@pytest.mark.parametrize("verbose", [0, 1, 2])
def test_category_text_is_sg_get_category_sense_str_in_sg_persists_buffer(verbose: int) -> None:
    """sg_persist hands it 80 bytes: a text is cut to 79 characters."""

    def theirs(code: int) -> str:
        buffer = ctypes.create_string_buffer(80)
        return SG.sg_get_category_sense_str(code, 80, buffer, verbose).decode()

    assert {code: category_text(code, verbose) for code in CODES} == {c: theirs(c) for c in CODES}


def test_the_statuses_sg_persist_returns_keep_their_numbers() -> None:
    """Scripts branch on these numbers (sg_lib.h SG_LIB_*)."""
    assert {e.name: e.value for e in Exit} == {
        "OK": 0, "SYNTAX_ERROR": 1, "NOT_READY": 2, "MEDIUM_HARD": 3, "ILLEGAL_REQ": 5,
        "UNIT_ATTENTION": 6, "DATA_PROTECT": 7, "INVALID_OP": 9, "COPY_ABORTED": 10,
        "ABORTED_COMMAND": 11, "MISCOMPARE": 14, "FILE_ERROR": 15, "NO_SENSE": 20,
        "RECOVERED": 21, "LBA_OUT_OF_RANGE": 22, "RES_CONFLICT": 24, "CONDITION_MET": 25,
        "BUSY": 26, "TS_FULL": 27, "ACA_ACTIVE": 28, "TASK_ABORTED": 29, "CONTRADICT": 31,
        "PROTECTION": 40, "OS_BASE_ERR": 50, "MALFORMED": 97, "SENSE": 98, "OTHER": 99,
    }  # fmt: skip
