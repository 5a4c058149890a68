"""``mpath_lib`` in process: exact bytes of the conversions and exact calls into the library.

``test_mpath_lib.py`` checks the layouts against a device's bytes; this module pins what the
real library only sees in the VM tier: every byte of ``struct transportid`` (its length too, as
a slice assignment that grows or shrinks the buffer would hand the library shifted fields), the
host-order fields beyond 2**31, and ``Library`` driven through a fake ``libmpathpersist`` that
reads and fills the ctypes buffers as the C library does, for each return code."""

from __future__ import annotations

import ctypes
import struct
import types
from typing import Any

import pytest
from mpath_layout import ProutParamDescriptor

from scsi_pr.helper.executors import mpath_lib as M
from scsi_pr.sim.constants import PR_HELPER_DATA_SIZE
from scsi_pr.sim.transportid import TransportId

FC = TransportId.fibre_channel(0x21000024FF123456).encode()
SAS = TransportId.sas(0x5001405F00000001).encode()
ISCSI = TransportId.iscsi("iqn.2020-01.example:node1", 0x23D000000001).encode()


# -- PR OUT: TransportIDs in the library's form ---------------------------------------------------
def test_fibre_channel_is_the_n_port_name_in_a_258_byte_struct() -> None:
    tid = FC + b"\xee"  # a byte past the TransportID is not the library's
    assert M.library_transport_id(tid) == b"\x00\x00" + FC[8:16] + bytes(248)


def test_sas_is_the_sas_address_in_a_258_byte_struct() -> None:
    tid = SAS + b"\xee"
    assert M.library_transport_id(tid) == b"\x00\x06" + SAS[4:12] + bytes(248)


def test_iscsi_copies_from_additional_length_to_its_end_only() -> None:
    """Bytes after the TransportID (the next one in a parameter list) stay out of the name."""
    body = ISCSI[2:]
    padding = bytes(256 - len(body))
    assert M.library_transport_id(ISCSI + b"\xee" * 8) == b"\x40\x05" + body + padding


def test_an_iscsi_name_longer_than_the_struct_is_cut_at_256_bytes() -> None:
    """ADDITIONAL LENGTH above 255 (both bytes count); the struct keeps its size."""
    name = bytes(range(1, 256)) + b"\x01" * 45  # 300 bytes
    tid = b"\x05\x00" + (300).to_bytes(2, "big") + name
    assert M.library_transport_id(tid) == b"\x00\x05" + tid[2:258]


def test_unsupported_protocol_names_it() -> None:
    with pytest.raises(M.TransportIdUnsupported, match=r"^protocol identifier 0x1$"):
        M.library_transport_id(b"\x01" + bytes(23))


# -- PR IN: host-order header fields up to 2**32 - 1 ----------------------------------------------
def test_read_keys_generation_uses_all_32_bits() -> None:
    resp = M.PR_IN_HEADER.pack(0xFFFFFFFF, 8) + b"\x80" * 8 + b"\x11" * 8
    assert M.parameter_data(0, resp) == b"\xff\xff\xff\xff\x00\x00\x00\x08" + b"\x80" * 8


def test_full_status_fields_use_all_their_bits() -> None:
    resp = M.PR_IN_HEADER.pack(0xFFFFFFFF, 1)
    resp += M.FULL_DESCRIPTOR.pack(b"\xff" * 8, 0x83, 0xF8, 0xFFFF)
    resp += b"\x00\x00" + FC[8:16] + bytes(248)
    descriptor = b"\xff" * 8 + bytes(4) + b"\x83\xf8" + bytes(4) + b"\xff\xff" + b"\0\0\0\x18"
    assert M.parameter_data(3, resp) == b"\xff\xff\xff\xff\0\0\0\x30" + descriptor + FC


# -- the edge, through a fake library --------------------------------------------------------------
class FakeLibrary:
    """``libmpathpersist`` as ctypes presents it: records calls, fills the answer buffer."""

    def __init__(self, rc: int = 0, answer: bytes = b"", init_rc: int = 0) -> None:
        self.rc, self.answer, self.init_rc = rc, answer, init_rc
        self.calls: list[tuple[Any, ...]] = []
        self.seen: dict[str, Any] = {}

    def libmpathpersist_init(self) -> int:
        self.calls.append(("init",))
        return self.init_rc

    def libmpathpersist_exit(self) -> int:
        self.calls.append(("exit",))
        return 0

    def mpath_persistent_reserve_in(
        self, fd: int, action: int, resp: Any, noisy: int, verbose: int
    ) -> int:
        self.calls.append(("in", fd, action, ctypes.sizeof(resp), noisy, verbose))
        ctypes.memmove(resp, self.answer, len(self.answer))
        return self.rc

    def mpath_persistent_reserve_out(
        self, fd: int, action: int, scope: int, type_: int, desc: Any, noisy: int, verbose: int
    ) -> int:
        self.calls.append(("out", fd, action, scope, type_, ctypes.sizeof(desc), noisy, verbose))
        prout = ctypes.cast(desc, ctypes.POINTER(ProutParamDescriptor)).contents
        n = prout.num_transportid
        self.seen = {
            "key": bytes(prout.key),
            "sa_key": bytes(prout.sa_key),
            "sa_flags": prout.sa_flags,
            "raw": desc.raw[: M.NUM_TRANSPORT_IDS_OFFSET],
            "tids": [bytes(prout.trnptid_list[i].contents) for i in range(n)],
        }
        return self.rc


class FakeUint:
    """``ctypes.c_uint.in_dll``: remembers which library, which symbol and what was stored."""

    stored: list[tuple[Any, str, Any]] = []

    def __init__(self, lib: Any, name: str) -> None:
        self.lib, self.name = lib, name

    @classmethod
    def in_dll(cls, lib: Any, name: str) -> FakeUint:
        return cls(lib, name)

    def __setattr__(self, attr: str, value: Any) -> None:
        if attr == "value":
            FakeUint.stored.append((self.lib, self.name, value))
        object.__setattr__(self, attr, value)


def patch_ctypes(monkeypatch: pytest.MonkeyPatch, cdll: Any) -> list[tuple[Any, ...]]:
    """Swap ``CDLL`` and ``c_uint`` in the module's view of ctypes only; returns CDLL's calls."""
    opened: list[tuple[Any, ...]] = []

    def fake_cdll(*args: Any, **kwargs: Any) -> Any:
        opened.append((args, kwargs))
        return cdll(*args, **kwargs) if callable(cdll) else cdll

    view = types.SimpleNamespace(**vars(ctypes))
    view.CDLL, view.c_uint = fake_cdll, FakeUint
    monkeypatch.setattr(M, "ctypes", view)
    FakeUint.stored = []
    return opened


def test_loading_opens_the_soname_inits_and_sizes_pr_in(monkeypatch: pytest.MonkeyPatch) -> None:
    lib = FakeLibrary()
    opened = patch_ctypes(monkeypatch, lib)
    library = M.Library()
    assert opened == [(("libmpathpersist.so.0",), {"use_errno": True})]
    assert lib.calls == [("init",)]
    assert FakeUint.stored == [(lib, "mpath_mx_alloc_len", PR_HELPER_DATA_SIZE)]
    assert (library.noisy, library.verbose) == (0, 0)
    assert type(library.noisy) is int


def test_noisy_and_verbosity_are_the_library_s_ints(monkeypatch: pytest.MonkeyPatch) -> None:
    patch_ctypes(monkeypatch, FakeLibrary())
    library = M.Library(noisy=True, verbose=2)
    assert (library.noisy, library.verbose) == (1, 2) and type(library.noisy) is int
    assert M.Library(verbose=9).verbose == 3  # the library's highest level
    assert M.Library(verbose=3).verbose == 3


def test_a_library_that_will_not_load(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_: Any, **__: Any) -> Any:
        raise OSError("cannot open shared object file")

    patch_ctypes(monkeypatch, refuse)
    with pytest.raises(M.LibraryUnavailable) as caught:
        M.Library()
    assert str(caught.value) == "libmpathpersist.so.0: cannot open shared object file"
    assert isinstance(caught.value.__cause__, OSError)


@pytest.mark.parametrize("init_rc", [1, -1])
def test_a_library_that_will_not_init(monkeypatch: pytest.MonkeyPatch, init_rc: int) -> None:
    patch_ctypes(monkeypatch, FakeLibrary(init_rc=init_rc))
    with pytest.raises(M.LibraryUnavailable) as caught:
        M.Library()
    assert str(caught.value) == "libmpathpersist_init failed (multipath configuration)"
    assert FakeUint.stored == []


def loaded(monkeypatch: pytest.MonkeyPatch, lib: FakeLibrary, **kw: Any) -> M.Library:
    patch_ctypes(monkeypatch, lib)
    library = M.Library(**kw)
    lib.calls.clear()
    return library


READ_KEYS_ANSWER = M.PR_IN_HEADER.pack(0x80000001, 16) + bytes(range(1, 17))


def test_pr_in_passes_fd_action_and_a_full_buffer(monkeypatch: pytest.MonkeyPatch) -> None:
    lib = FakeLibrary(rc=0, answer=READ_KEYS_ANSWER)
    library = loaded(monkeypatch, lib, noisy=True, verbose=2)
    assert library.pr_in(7, 0) == (0, b"\x80\0\0\x01\0\0\0\x10" + bytes(range(1, 17)))
    assert lib.calls == [("in", 7, 0, M.PR_IN_BUFFER_SIZE, 1, 2)]


def test_pr_in_reads_back_per_action(monkeypatch: pytest.MonkeyPatch) -> None:
    answer = struct.pack("=H2sH2x", 8, b"\x1d\x81", 0xEA01)
    lib = FakeLibrary(rc=0, answer=answer)
    assert loaded(monkeypatch, lib).pr_in(5, 2) == (0, b"\0\x08\x1d\x81\xea\x01\0\0")
    assert lib.calls == [("in", 5, 2, M.PR_IN_BUFFER_SIZE, 0, 0)]


@pytest.mark.parametrize("rc", [1, 2, 3, 13, 15])  # MPATH_PR_SENSE_NOT_READY, ...
def test_pr_in_failure_has_no_data(monkeypatch: pytest.MonkeyPatch, rc: int) -> None:
    lib = FakeLibrary(rc=rc, answer=READ_KEYS_ANSWER)
    assert loaded(monkeypatch, lib).pr_in(7, 0) == (rc, b"")


KEY, SA_KEY = bytes(range(1, 9)), bytes(range(0x11, 0x19))


def test_pr_out_fixed_fields_and_no_transport_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    lib = FakeLibrary(rc=0)
    library = loaded(monkeypatch, lib, noisy=True, verbose=1)
    assert library.pr_out(9, 6, 0, 1, (KEY, SA_KEY, 0x0D), []) == 0
    assert lib.calls == [("out", 9, 6, 0, 1, M.PROUT_SIZE, 1, 1)]
    assert (lib.seen["key"], lib.seen["sa_key"], lib.seen["sa_flags"]) == (KEY, SA_KEY, 0x0D)
    assert lib.seen["raw"] == bytes(M.prout_descriptor(KEY, SA_KEY, 0x0D))[: len(lib.seen["raw"])]
    assert lib.seen["tids"] == []


def test_pr_out_points_the_library_at_each_transport_id(monkeypatch: pytest.MonkeyPatch) -> None:
    lib = FakeLibrary(rc=0)
    library = loaded(monkeypatch, lib)
    assert library.pr_out(3, 0x07, 0, 0x05, (KEY, SA_KEY, 0x04), [FC, ISCSI, SAS]) == 0
    assert lib.calls == [("out", 3, 7, 0, 5, M.PROUT_SIZE, 0, 0)]
    assert lib.seen["tids"] == [M.library_transport_id(t) for t in (FC, ISCSI, SAS)]


@pytest.mark.parametrize("rc", [0, 1, 2, 6, 13])
def test_pr_out_returns_the_library_s_result(monkeypatch: pytest.MonkeyPatch, rc: int) -> None:
    lib = FakeLibrary(rc=rc)
    result = loaded(monkeypatch, lib).pr_out(4, 1, 2, 3, (KEY, SA_KEY, 0), [SAS])
    assert result == rc and type(result) is int
    assert lib.calls == [("out", 4, 1, 2, 3, M.PROUT_SIZE, 0, 0)]


def test_close_exits_the_library(monkeypatch: pytest.MonkeyPatch) -> None:
    lib = FakeLibrary()
    loaded(monkeypatch, lib).close()
    assert lib.calls == [("exit",)]
