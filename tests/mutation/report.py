"""What a mutation run found, per target: the score and every survivor, with the equivalents
applied.

Score = killed / (mutants - equivalent). A mutant no selected test reaches ("no tests") is a
survivor like any other: nothing would notice it. A timeout counts as killed (the tests did
notice: they stopped finishing).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mutation import equivalents as eq
from mutation import mutmut_run as mm
from mutation import stage


@dataclass
class Tally:
    target: str
    total: int = 0
    killed: int = 0
    equivalent: int = 0
    survivors: list[tuple[mm.Mutant, int | None]] = field(default_factory=list)
    unclear: list[tuple[mm.Mutant, int | None]] = field(default_factory=list)

    @property
    def score(self) -> float:
        counted = self.total - self.equivalent
        return 100.0 * self.killed / counted if counted else 100.0


@dataclass
class Findings:
    tallies: list[Tally]
    used: set[eq.Entry]

    @property
    def failures(self) -> list[tuple[mm.Mutant, int | None]]:
        """Survivors not listed as equivalent, and mutants mutmut could not judge."""
        found = [s for t in self.tallies for s in (*t.survivors, *t.unclear)]
        return sorted(found, key=lambda s: (s[0].file, s[0].line, s[0].name))


def target_of(targets: Sequence[str], file: str) -> str | None:
    for target in sorted(targets, key=len, reverse=True):
        clean = target.strip("/")
        if file == clean or file.startswith(clean + "/"):
            return target
    return None


def collect(
    root: Path,
    stage_dir: Path,
    targets: Sequence[str],
    names: Iterable[str] | None,
    equivalents: list[eq.Entry],
) -> Findings:
    """Tally the verdicts of ``names`` (all mutants when None) per target."""
    tallies = {t: Tally(t) for t in targets}
    used: set[eq.Entry] = set()
    found = mm.verdicts(stage_dir)
    wanted = found.keys() if names is None else names
    for name in sorted(wanted):
        staged, code = found[name]
        file = stage.checkout_path(root, staged)
        target = target_of(targets, file)
        if target is None:
            continue
        tally = tallies[target]
        tally.total += 1
        answer = mm.verdict(code)
        if answer == mm.KILLED:
            tally.killed += 1
            continue
        mutant = mm.describe(stage_dir, staged, name)
        mutant = mm.Mutant(
            name, file, mutant.line, mutant.function, mutant.original, mutant.mutated
        )
        match = eq.find(equivalents, file, mutant.function, mutant.original, mutant.mutated)
        if answer == mm.SURVIVED and match is not None:
            tally.equivalent += 1
            used.add(match)
        elif answer == mm.SURVIVED:
            tally.survivors.append((mutant, code))
        else:
            tally.unclear.append((mutant, code))
    return Findings(list(tallies.values()), used)


def format_mutant(mutant: mm.Mutant, code: int | None) -> str:
    note = " (no test reaches it)" if code in mm.NO_TESTS else ""
    if mm.verdict(code) == mm.UNCLEAR:
        note = f" (mutmut exit code {code}: not judged)"
    return (
        f"{mutant.file}:{mutant.line} {mutant.function}{note}\n"
        f"    - {mutant.original}\n    + {mutant.mutated}\n    [{mutant.name}]"
    )


def render(findings: Findings, equivalents: list[eq.Entry], full: bool) -> str:
    out = []
    for t in findings.tallies:
        out.append(
            f"{t.target}: {t.score:.1f}% killed ({t.killed} of {t.total - t.equivalent}; "
            f"{t.equivalent} equivalent, {len(t.survivors)} survived"
            + (f", {len(t.unclear)} not judged" if t.unclear else "")
            + ")"
        )
    failures = findings.failures
    if failures:
        out.append(f"\n{len(failures)} survivor(s) not listed in {eq.EQUIVALENTS_FILE.name}:")
        out.extend(format_mutant(m, code) for m, code in failures)
    if full:
        stale = [e for e in equivalents if isinstance(e, eq.Equivalent) and e not in findings.used]
        if stale:
            out.append(f"\n{len(stale)} {eq.EQUIVALENTS_FILE.name} entries match no survivor:")
            out.extend(f"{e.file} {e.function}: {e.original} -> {e.mutated}" for e in stale)
    return "\n".join(out)
