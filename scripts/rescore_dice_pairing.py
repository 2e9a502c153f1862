"""Each committed study's Dice verdicts, and each run's held-out check, under the old pairing (a case either side
leaves undefined drops out) and the current one (a class neither there nor predicted counts 1 against a false
positive's 0), from the per-case files alone: the workdirs that wrote those reports are gone, their per-case
scores are committed.

    python scripts/rescore_dice_pairing.py            # from the repository root; prints a markdown table
"""
import contextlib
import csv
import glob
from pathlib import Path

from nnunet_ext.benchmark import report
from nnunet_ext.benchmark.spec import VANILLA


def dropped_pairing(rows, trainer, reference, cls, metric):
    a, b = report.scores(rows, trainer, cls, metric), report.scores(rows, reference, cls, metric)
    keys = sorted(set(a) & set(b), key=str)
    return [a[k] for k in keys], [b[k] for k in keys]


@contextlib.contextmanager
def pairing_in_report(pairing):
    """The report's own code, with ``pairing`` in place of its ``paired`` while it runs."""
    current, report.paired = report.paired, pairing
    try:
        yield
    finally:
        report.paired = current


def verdicts(rows, labels, reference, pairing):
    with pairing_in_report(pairing):
        tests, holm = report.dice_tests(rows, labels, reference)
    return {t: (tests[t].n, tests[t].mean_difference, holm[t], report.plain_verdict(tests[t], holm[t]))
            for t in tests}


def held_out_marks(final, start, pairing, tolerance=0.005):
    """(trainer, fold, class) -> (cases, change, mark) of one committed held-out check, as the report computes it."""
    out = {}
    for key in dict.fromkeys((r["trainer"], r["fold"]) for r in final):
        runs = [[r for r in rows if (r["trainer"], r["fold"]) == key] for rows in (final, start)]
        with pairing_in_report(pairing):
            changes = report.run_held_out_changes(*runs, key[1], 0)
        out.update({(*key, cls): (h.n, h.mean, h.mark(tolerance).strip("*")) for cls, h in changes.items()})
    return out


def held_out_table():
    print("\n| held-out check | run | class | cases | change | mark |\n|---|---|---|---|---|---|")
    for f in sorted(glob.glob("docs/benchmarks/**/cases_window_start.csv", recursive=True)):
        start = list(csv.DictReader(open(f)))
        final = list(csv.DictReader(open(Path(f).with_name("cases.csv"))))
        old, new = held_out_marks(final, start, dropped_pairing), held_out_marks(final, start, report.paired)
        moved = [k for k in old if old[k][0] != new[k][0] or abs(old[k][1] - new[k][1]) > 1e-9]
        for k in moved:
            (n0, c0, m0), (n1, c1, m1) = old[k], new[k]
            mark = f"{m0} -> **{m1}**" if m0 != m1 else m1
            print(f"| {Path(f).parent} | {k[0]} fold {k[1]} | {k[2]} | {n0} -> {n1} | {c0:+.4f} -> {c1:+.4f} "
                  f"| {mark} |")
        print(f"| {Path(f).parent} | the other {len(old) - len(moved)} (run, class)s | | unchanged | | |")


def main():
    print("| per-case file | arm | pairs | ΔDice | Holm p | verdict |\n|---|---|---|---|---|---|")
    files = sorted(glob.glob("docs/benchmarks/**/cases.csv", recursive=True) +
                   glob.glob("docs/benchmarks/**/pipeline_cases.csv", recursive=True))
    for f in files:
        rows = list(csv.DictReader(open(f)))
        if f.endswith("pipeline_cases.csv"):
            reference, key = "single_stage", "pipeline"
            rows = [dict(r, trainer=r[key], fold=0) for r in rows]  # one fold: the cases vary
        else:
            reference = VANILLA
        labels = list(dict.fromkeys(r["trainer"] for r in rows))
        if reference not in labels:
            continue
        labels = [reference] + [t for t in labels if t != reference]
        old, new = verdicts(rows, labels, reference, dropped_pairing), verdicts(rows, labels, reference, report.paired)
        for t in old:
            (n0, d0, p0, v0), (n1, d1, p1, v1) = old[t], new[t]
            verdict = f"{v0} -> **{v1}**" if v0 != v1 else v1
            print(f"| {f} | {t} | {n0} -> {n1} | {d0:+.3f} -> {d1:+.3f} | {p0:.3g} -> {p1:.3g} | {verdict} |")
    held_out_table()


if __name__ == "__main__":
    main()
