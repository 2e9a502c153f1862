"""Each committed study's Dice verdicts under the old pairing (a case either arm leaves undefined drops out) and
the current one (a class neither there nor predicted counts 1 against a false positive's 0), from the per-case
files alone: the workdirs that wrote those reports are gone, their per-case scores are committed.

    python scripts/rescore_dice_pairing.py            # from the repository root; prints a markdown table
"""
import csv
import glob

from nnunet_ext.benchmark import report
from nnunet_ext.benchmark.spec import VANILLA


def dropped_pairing(rows, trainer, reference, cls, metric):
    a, b = report.scores(rows, trainer, cls, metric), report.scores(rows, reference, cls, metric)
    keys = sorted(set(a) & set(b), key=str)
    return [a[k] for k in keys], [b[k] for k in keys]


def verdicts(rows, labels, reference, pairing):
    current, report.paired = report.paired, pairing
    try:
        tests, holm = report.dice_tests(rows, labels, reference)
    finally:
        report.paired = current
    return {t: (tests[t].n, tests[t].mean_difference, holm[t], report.plain_verdict(tests[t], holm[t]))
            for t in tests}


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


if __name__ == "__main__":
    main()
