"""The iSCSI rig notices a session the kernel re-established (host test: a stand-in rig)."""

from __future__ import annotations

from pathlib import Path

import pytest

from scsi_pr.rig import iscsi_rig

LOGIN = "INFO scsi_pr.target: login: {name},i,0x{isid} TSIH {tsih} from ('127.0.0.1', 4{tsih}) " \
    "(Normal session, header None, data None digest)\n"  # fmt: skip
DISCOVERY = "INFO scsi_pr.target: login: discovery TSIH 9 from x (Discovery session, …)\n"


def stand_in(tmp_path: Path, log: str, sessions: int) -> iscsi_rig.IscsiRig:
    rig = iscsi_rig.IscsiRig.__new__(iscsi_rig.IscsiRig)  # no iscsid, no target: only the log
    rig.root = tmp_path
    (tmp_path / "target.log").write_text(log)
    rig.ports = [iscsi_rig.IscsiPort(f"n{i}", "0", f"/dev/sg{i}", f"/dev/sd{i}")
                 for i in range(sessions)]  # fmt: skip
    return rig


def test_one_login_per_session_is_fine_and_discovery_does_not_count(tmp_path: Path) -> None:
    log = (
        DISCOVERY
        + LOGIN.format(name="a", isid="1", tsih=1)
        + LOGIN.format(name="b", isid="2", tsih=2)
    )
    stand_in(tmp_path, log, 2).check_sessions()


def test_a_second_login_of_a_session_is_an_error(tmp_path: Path) -> None:
    log = "".join(LOGIN.format(name=n, isid=i, tsih=t) for n, i, t in
                  (("a", "1", 1), ("b", "2", 2), ("a", "1", 3)))  # fmt: skip
    with pytest.raises(iscsi_rig.IscsiRigError, match="3 session logins for 2 sessions"):
        stand_in(tmp_path, log, 2).check_sessions()
