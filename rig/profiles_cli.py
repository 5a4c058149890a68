"""``scsi-pr profiles``: the device profiles and the LIO deviation registry, and the doc made
from them.

``scsi-pr profiles`` lists the profiles, ``scsi-pr profiles show NAME`` one profile's entries,
``scsi-pr profiles doc`` writes ``docs/lio-deviations.md`` from ``scsi_pr.sim.deviations.REGISTRY``
(``--check``: exit 1 if the committed file differs), so the doc says what the model and the
conformance suite do, not what someone typed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from scsi_pr import checkout_root
from scsi_pr.rig.errors import RigError, reason
from scsi_pr.sim import profiles
from scsi_pr.sim.deviations import REGISTRY, Deviation
from scsi_pr.sim.profiles import PROFILES, Profile

DOC_NAME = Path("docs") / "lio-deviations.md"
LIO_PROFILES = tuple(p for p in PROFILES.values() if p.kernel is not None)

HEADER = """\
# LIO deviations and device profiles

<!-- Generated from scsi_pr.sim.deviations.REGISTRY by `scsi-pr profiles doc`: edit the registry,
not this file (tests/rig/test_profiles_cli.py fails when they differ). -->

Where Linux LIO answers a persistent-reservation command differently from SPC-5 (revision 17,
[docs/model.md](model.md)), the difference is one named entry of the registry in
`sim/deviations.py`: the clause, what SPC-5 requires, what LIO answers and on which kernel, and
the conformance test that asserts LIO's answer on the real LUN. A *profile* is a set of these
entries; the model reproduces the entries of the profile its LU runs:

- `spc5` (default): the standard, no deviation.
- `lio-6.1`: every entry, as measured on Debian 12's 6.1 kernel (tcm_loop, ramdisk backstore)
  in the VM tier.
- `lio-6.12`: as measured on Debian 12's 6.12 kernel (`scripts/test --kernel 6.12`): every
  entry but `read-capacity-10-conflicts-under-ea` (6.12 answers READ CAPACITY(10) as SPC-5
  does). A run of the conformance suite on another kernel's LIO asserts the nearest profile and
  fails where that kernel answers otherwise.

Every surface that builds an LU takes `--profile NAME`: `scsi-pr-helper --backend sim`,
`scsi-pr sim serve`, `scsi-pr target serve`, `scsi-pr scenario` (sim and helper-sim) and the
pytest plugin (`pytest --backend sim --backend helper-sim --profile lio-6.1`). An LU's state
file records its profile; a helper or target sharing the state dir under another profile is
refused (`LuProfileMismatch`, `scsi-pr sim show` names the LU's profile). Two sim-backed
helpers with `--profile lio-6.1` answer the conformance suite as LIO on 6.1 does.

In the conformance suite (`tests/conformance`) a test marked `lio_deviation(NAME)` asserts
LIO's answer where the device's profile has the entry (the `lio` and `helper-lio` backends, and
the model under a LIO profile) and the standard's answer elsewhere, so a kernel whose LIO
changes fails the test, and so does a model that stops following SPC-5.

The lio profiles also report REPORT CAPABILITIES with RLR_C clear (no REPLACE LOST
RESERVATION), as LIO does; SPC-5 makes that optional, so it is no deviation.
"""


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def measured_text(deviation: Deviation) -> str:
    """Per LIO profile: measured on its kernel, not yet, or not its answer there."""
    parts = []
    for p in LIO_PROFILES:
        if deviation not in p:
            state = f"not in this profile ({p.kernel} answers as SPC-5 requires)"
        elif p.measured(deviation):
            state = "measured"
        else:
            state = f"not yet measured on {p.kernel}"
        parts.append(f"`{p.name}`: {state}")
    return "; ".join(parts)


def profile_rows() -> list[str]:
    rows = ["| Profile | Stands for | Entries | Measured on its kernel |", "|---|---|---|---|"]
    for p in PROFILES.values():
        measured = sum(p.measured(d) for d in p.deviations)
        shown = "—" if p.kernel is None else f"{measured} of {len(p.deviations)}"
        rows.append(f"| `{p.name}` | {_cell(p.title)} | {len(p.deviations)} | {shown} |")
    return rows


def entry_section(deviation: Deviation) -> list[str]:
    lines = [
        f"### `{deviation.name}`",
        "",
        f"{deviation.title[0].upper()}{deviation.title[1:]}.",
        "",
        f"- **Clause:** {deviation.clause}",
        f"- **SPC-5 requires:** {deviation.requires}",
        f"- **LIO answers:** {deviation.lio_answer}",
        f"- **Kernels:** {measured_text(deviation)}",
        "- **Test on the real LUN:** " + ", ".join(f"`{t}`" for t in deviation.tests),
    ]
    if deviation.note:
        lines.append(f"- **Note:** {deviation.note}")
    return [*lines, ""]


def render_markdown() -> str:
    """``docs/lio-deviations.md`` as the registry says it."""
    lines = [HEADER, "## Profiles", "", *profile_rows(), "", "## Deviations", ""]
    lines += ["| Entry | Situation | In profiles |", "|---|---|---|"]
    for d in REGISTRY:
        names = ", ".join(f"`{p.name}`" for p in PROFILES.values() if d in p)
        lines.append(f"| [`{d.name}`](#{d.name}) | {_cell(d.title)} | {names} |")
    lines.append("")
    for d in REGISTRY:
        lines += entry_section(d)
    return "\n".join(lines).rstrip() + "\n"


def describe(profile: Profile) -> str:
    lines = [f"{profile.name}: {profile.title}"]
    for d in REGISTRY:
        if d in profile:
            state = "measured" if profile.measured(d) else "not yet measured"
            lines.append(f"  {d.name} ({state}): {d.title}")
    if not profile.deviations:
        lines.append("  (no deviation: the standard)")
    return "\n".join(lines)


def doc_path() -> Path:
    return checkout_root() / DOC_NAME


class DocFileError(RigError):
    """``--output`` cannot be read or written (a directory, a missing parent, a name too long,
    not UTF-8 text): one line naming the path and the reason, exit status 1, no traceback."""


def read_doc(path: Path) -> str:
    """The doc at ``path``; "" when there is none yet (``--check`` then says it is stale)."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ""
    except (OSError, UnicodeDecodeError) as e:
        raise DocFileError(f"cannot read {path}: {reason(e)}") from e


def write_doc(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` as UTF-8 (the doc is not ASCII, whatever the locale)."""
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as e:
        raise DocFileError(f"cannot write {path}: {reason(e)}") from e


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="scsi-pr profiles",
        description="Device profiles (how the model answers) and the LIO deviation registry.",
    )
    sub = parser.add_subparsers(dest="action")
    sub.add_parser("list", help="the profiles (default)")
    show = sub.add_parser("show", help="one profile's deviations")
    show.add_argument("name", choices=list(PROFILES))
    doc = sub.add_parser("doc", help=f"write {DOC_NAME} from the registry")
    doc.add_argument("--output", type=Path, help=f"where to write (default: {DOC_NAME})")
    doc.add_argument("--check", action="store_true", help="exit 1 if the file is not up to date")
    args = parser.parse_args(argv)
    if args.action == "show":
        print(describe(profiles.get(args.name)))
        return 0
    if args.action == "doc":
        path = args.output or doc_path()
        text = render_markdown()
        try:
            if args.check:
                if read_doc(path) != text:
                    print(f"{path} is stale: run scsi-pr profiles doc", file=sys.stderr)
                    return 1
                return 0
            write_doc(path, text)
        except DocFileError as e:
            print(f"scsi-pr profiles: {e}", file=sys.stderr)
            return 1
        print(f"wrote {path}")
        return 0
    for p in PROFILES.values():
        default = " (default)" if p.name == profiles.DEFAULT_PROFILE else ""
        print(f"{p.name:<10} {len(p.deviations):>2} deviations  {p.title}{default}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
