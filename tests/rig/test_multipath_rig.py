"""The multipath rig's configuration text (the rig itself runs in the VM tier:
tests/vm/test_multipath_vm.py)."""

from __future__ import annotations

from scsi_pr.rig.multipath import config_text


def test_only_the_named_paths_are_excepted_from_the_blacklist() -> None:
    text = config_text(["sdb", "sda"])
    blacklist = text.split("blacklist {", 1)[1].split("}", 1)[0]
    exceptions = text.split("blacklist_exceptions {", 1)[1].split("}", 1)[0]
    assert blacklist.split() == ["devnode", '".*"']
    assert exceptions.split() == ["devnode", '"^(sda|sdb)$"']


def settings(section: str) -> dict[str, str]:
    """One section of the configuration text, keyword: value."""
    body = config_text(["sda", "sdb"]).split(f"{section} {{", 1)[1].split("}", 1)[0]
    return dict(line.split(None, 1) for line in body.strip().splitlines())


def test_keys_go_through_multipathd_s_prkeys_file() -> None:
    assert settings("defaults") == {
        "user_friendly_names": "no",
        "find_multipaths": "no",
        "reservation_key": "file",
    }


def test_every_block_spans_lines() -> None:
    """multipath-tools 0.9.4 does not parse a one-line block (measured)."""
    for line in config_text(["sda", "sdb"]).splitlines():
        assert not ("{" in line and "}" in line), line


def test_multipathd_sends_nothing_down_the_paths_on_its_own() -> None:
    """Its TUR checker and ALUA prioritiser would take the tests' unit attentions; the
    overrides section wins over the built-in LIO-ORG entry."""
    assert settings("overrides") == {
        "path_checker": "none",
        "detect_checker": "no",
        "prio": "const",
        "detect_prio": "no",
    }


def test_the_checker_each_path_has_is_read_from_multipathd() -> None:
    from scsi_pr.rig.multipath import checkers

    assert checkers("sda none\nsdb tur\n\n") == {"sda": "none", "sdb": "tur"}
    assert checkers("") == {}
