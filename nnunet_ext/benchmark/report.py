"""The benchmark report: markdown summary, a CSV of every case, cost table, and plots (matplotlib, Agg).

Every comparison is paired on (fold, case) against vanilla nnU-Net (nnUNetTrainer on nnUNetPlans).
"""
from __future__ import annotations

import csv
import json
import math
import platform
import time
from dataclasses import asdict
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from nnunet_ext.benchmark.convergence import (Convergence, ConvergenceCriterion, HeldOutChange, assess,
                                              held_out_change, window_checkpoint_epoch)
from nnunet_ext.benchmark.case_scores import (CASE_METRICS, HIGHER_IS_BETTER, MEAN_CLASS, never_predicted, read_seg,
                                              reader_writer)
from nnunet_ext.benchmark.spec import (CASES_FILE, VANILLA, WINDOW_CASES_FILE, BenchmarkConfig, RunSpec,
                                       WorkspaceFolders, training_timing)
from nnunet_ext.benchmark.stats import ALPHA, PairedComparison, bootstrap_ci, holm_adjust, paired_wilcoxon

SUMMARY_METRICS = ("dice", "iou", "hd95", "assd", "nsd", "precision", "recall", "rvd")


# -- data ------------------------------------------------------------------------------------------------
def collect_cases(specs: Sequence[RunSpec], folders: WorkspaceFolders, name: str = CASES_FILE) -> List[dict]:
    """Every (trainer, fold, case, class) row the runs scored (``WINDOW_CASES_FILE``: their window-start models)."""
    ws = folders.open()
    rows = []
    for spec in specs:
        path = spec.fold_folder(ws) / name
        if not path.is_file():
            continue
        for r in json.loads(path.read_text()):
            rows.append({"trainer": spec.arm.label, "fold": spec.fold, **r})
    return rows


def held_out_changes(specs: Sequence[RunSpec], folders: WorkspaceFolders) -> Dict[tuple, HeldOutChange]:
    """(trainer, fold, class) -> the held-out check of every run that kept and scored its window-start model;
    class ``mean`` (the per-case mean over classes) first, then each class."""
    ws = folders.open()
    out = {}
    for spec in specs:
        window = spec.window_checkpoint(ws)
        files = [spec.fold_folder(ws) / name for name in (CASES_FILE, WINDOW_CASES_FILE)]
        if window is None or not all(f.is_file() for f in files):
            continue
        final, start = (json.loads(f.read_text()) for f in files)
        for cls, change in run_held_out_changes(final, start, spec.fold,
                                                window_checkpoint_epoch(window.name)).items():
            out[(spec.arm.label, spec.fold, cls)] = change
    return out


def run_held_out_changes(final: List[dict], start: List[dict], fold, start_epoch: int) -> Dict[str, HeldOutChange]:
    """One run's held-out check from its two models' per-case rows: class -> change, ``mean`` first. The two
    models are paired as two arms are (``paired``), so a false positive gained or lost inside the window counts."""
    both = [dict(r, trainer=model, fold=fold) for model, rows in (("final", final), ("start", start)) for r in rows]
    out = {}
    for cls in [MEAN_CLASS] + sorted({r["class"] for r in final} - {MEAN_CLASS}):
        a, b = (dict(enumerate(scores)) for scores in paired(both, "final", "start", cls, "dice"))
        dead = cls != MEAN_CLASS and all(never_predicted(r for r in rows if r["class"] == cls)
                                         for rows in (final, start))
        out[cls] = held_out_change(a, b, start_epoch, dead)
    return out


def never_predicted_classes(rows: List[dict]) -> Dict[tuple, List[str]]:
    """(trainer, fold) -> the classes its final model predicted on no evaluated case (a dead output channel)."""
    groups: Dict[tuple, List[dict]] = {}
    for r in rows:
        if r["class"] != MEAN_CLASS:
            groups.setdefault((r["trainer"], r["fold"], r["class"]), []).append(r)
    out: Dict[tuple, List[str]] = {}
    for (t, fold, cls), group in groups.items():
        if never_predicted(group):
            out.setdefault((t, fold), []).append(cls)
    return out


def scores(rows: List[dict], trainer: str, cls: str, metric: str) -> Dict[tuple, float]:
    return {(r["fold"], r["case"]): float(r[metric]) for r in rows
            if r["trainer"] == trainer and r["class"] == cls}


# Dice and IoU are undefined (nnU-Net's evaluator: NaN) exactly where a class is neither in the reference nor
# predicted: the right answer. Against a model that predicted the class there (score 0) that case counts 1.
EMPTY_IS_PERFECT = ("dice", "iou")


def paired(rows, trainer: str, reference: str, cls: str, metric: str):
    """Both arms' scores on the (fold, case)s they share, in one order. For Dice and IoU a case the one arm left
    rightly empty and the other did not counts 1 against 0 (dropping it would hide the other's false positive);
    the class mean is then re-taken per case over the classes where at least one arm has a score."""
    if metric not in EMPTY_IS_PERFECT:
        a, b = scores(rows, trainer, cls, metric), scores(rows, reference, cls, metric)
        keys = sorted(set(a) & set(b), key=str)
        return [a[k] for k in keys], [b[k] for k in keys]
    classes = [cls] if cls != MEAN_CLASS else list(dict.fromkeys(r["class"] for r in rows if r["class"] != cls))
    classes = classes or [cls]  # rows without per-class entries: the mean is all there is
    per_class = [(scores(rows, trainer, c, metric), scores(rows, reference, c, metric)) for c in classes]
    keys = sorted(set().union(*(set(a) & set(b) for a, b in per_class)), key=str)
    out_a, out_b = [], []
    for k in keys:
        pairs = [(a[k], b[k]) for a, b in per_class
                 if k in a and k in b and not (math.isnan(a[k]) and math.isnan(b[k]))]
        if pairs:
            out_a.append(float(np.mean([1.0 if math.isnan(x) else x for x, _ in pairs])))
            out_b.append(float(np.mean([1.0 if math.isnan(y) else y for _, y in pairs])))
        else:
            out_a.append(math.nan)
            out_b.append(math.nan)
    return out_a, out_b


def learning_curve(spec: RunSpec, folders: WorkspaceFolders) -> Optional[dict]:
    """The per-epoch losses and pseudo Dice nnU-Net keeps in its checkpoint (``checkpoint['logging']``)."""
    from nnunet_ext.safe_load import load_checkpoint

    path = spec.fold_folder(folders.open()) / "checkpoint_final.pth"
    if not path.is_file():
        return None
    logging = load_checkpoint(path)["logging"]  # weights_only: a report never runs code from a results folder
    return {k: [float(v) for v in logging.get(k, [])] for k in ("train_losses", "val_losses", "mean_fg_dice",
                                                                   "ema_fg_dice")}


# -- formatting ------------------------------------------------------------------------------------------
def _f(x, digits=3) -> str:
    return "n/a" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.{digits}f}"


def _ci(iv, digits=3) -> str:
    if iv.n == 0:
        return "n/a"
    if not math.isfinite(iv.low):
        return f"{_f(iv.mean, digits)} (n={iv.n}, no CI)"
    return f"{_f(iv.mean, digits)} [{_f(iv.low, digits)}, {_f(iv.high, digits)}]"


def _p(p) -> str:
    return "n/a" if p is None or not math.isfinite(p) else (f"{p:.3g}" if p >= 1e-4 else "<1e-4")


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], align: Optional[str] = None) -> List[str]:
    sep = align or "|" + "---|" * len(header)
    return ["| " + " | ".join(header) + " |", sep] + ["| " + " | ".join(map(str, r)) + " |" for r in rows]


def _ratio(x, ref) -> str:
    if x is None or ref in (None, 0) or not math.isfinite(x) or not math.isfinite(ref):
        return "n/a"
    return f"{x / ref:.2f}x"


# -- sections --------------------------------------------------------------------------------------------
def scored_labels(rows, labels: Sequence[str]) -> List[str]:
    """The arms that have scored cases, in the order given."""
    return [t for t in labels if any(r["trainer"] == t for r in rows)]


def dice_tests(rows, labels: Sequence[str], reference: str = VANILLA,
               cls: str = MEAN_CLASS) -> Tuple[Dict[str, PairedComparison], Dict[str, float]]:
    """Each arm's paired Wilcoxon test of the per-case Dice of ``cls`` (default: the mean over classes) against
    ``reference`` (default: vanilla), and its Holm-corrected p over these arms: computed once, read by both the
    verdict and the accuracy section (and, per class, by ``reference_tables``)."""
    others = [t for t in labels if t != reference]
    tests = {t: paired_wilcoxon(*paired(rows, t, reference, cls, "dice")) for t in others}
    return tests, dict(zip(others, holm_adjust([tests[t].p_value for t in others])))


def accuracy_section(rows, labels: List[str], classes: List[str], dice=None) -> List[str]:
    """``dice``: ``dice_tests(rows, labels)`` when the caller has it already."""
    others = [t for t in labels if t != VANILLA]
    tests, holm = dice or dice_tests(rows, labels)
    out = ["## Accuracy: Dice (mean over classes) against vanilla nnU-Net", "",
           "Mean per case over the foreground classes, with a seeded 95% percentile-bootstrap CI over cases. "
           "The difference is paired on the same (fold, case); where a class is neither there nor predicted "
           "(nnU-Net: no Dice) that class scores 1 against the other arm's 0 for predicting it, so a false "
           "positive on a case without the class counts; p is the two-sided Wilcoxon signed-rank test; "
           "Holm p corrects for testing several trainers against the same baseline.", ""]
    table = []
    for t in labels:
        iv = bootstrap_ci(list(scores(rows, t, MEAN_CLASS, "dice").values()))
        if t == VANILLA:
            table.append([f"**{t}** (reference)", _ci(iv), str(iv.n), "-", "-", "-", "reference"])
            continue
        c = tests[t]
        table.append([t, _ci(iv), str(iv.n), _ci(c.difference_ci), _p(c.p_value), _p(holm[t]),
                      _holm_verdict(c, holm[t])])
    out += _table(["trainer", "Dice [95% CI]", "cases", "ΔDice vs nnU-Net [95% CI]", "Wilcoxon p", "Holm p",
                   "verdict"], table)
    out += ["", "Per class (Dice, mean [95% CI]):", ""]
    out += _table(["trainer"] + classes,
                  [[t] + [_ci(bootstrap_ci(list(scores(rows, t, c, "dice").values()))) for c in classes]
                   for t in labels])
    out += ["", "## Other metrics (mean over classes; p = paired Wilcoxon against nnU-Net)", "",
            "HD95 and ASSD in mm (lower is better; undefined when one mask is empty, so those cases are left "
            "out), NSD at the stated tolerance, RVD = (predicted - true volume) / true volume (0 is best).", ""]
    table = [[t] + [_metric_cell(rows, t, VANILLA, MEAN_CLASS, m) for m in SUMMARY_METRICS[1:]] for t in labels]
    out += _table(["trainer", "IoU", "HD95 (mm)", "ASSD (mm)", "NSD", "precision", "recall", "RVD"], table)
    significant = [t for t in others if math.isfinite(tests[t].p_value) and tests[t].p_value < ALPHA]
    untestable = [t for t in others if not math.isfinite(tests[t].p_value)]
    out += [""]
    if untestable:
        out.append(f"**Too few cases to test** {', '.join(untestable)}: {tests[untestable[0]].verdict}. "
                   "No claim either way can be made from this run.")
    if not significant and len(untestable) < len(others):
        out.append(f"**No trainer differs significantly from vanilla nnU-Net in Dice** (two-sided Wilcoxon, "
                   f"alpha = {ALPHA}).")
    elif significant:
        out.append("Significant Dice differences before Holm correction: " +
                   ", ".join(f"{t} ({tests[t].verdict})" for t in significant) + ".")
        after = [t for t in significant if holm[t] < ALPHA]
        out.append("After Holm correction for the " + f"{len(others)} comparisons: " +
                   (", ".join(f"{t} (Holm p = {_p(holm[t])})" for t in after) if after else
                    "**none is significant**") + ".")
    return out


def _metric_cell(rows, label: str, reference: str, cls: str, metric: str) -> str:
    """Mean [95% CI] of one metric, with the paired Wilcoxon p against ``reference`` (none for the reference)."""
    cell = _ci(bootstrap_ci(list(scores(rows, label, cls, metric).values())), 2 if metric in ("hd95", "assd") else 3)
    if label == reference:
        return cell
    c = paired_wilcoxon(*paired(rows, label, reference, cls, metric),
                        higher_is_better=HIGHER_IS_BETTER[metric] is not False)
    return cell + f" (p {_p(c.p_value)})"


def reference_tables(rows, labels: Sequence[str], reference: str, classes: Sequence[str],
                     kind: str = "trainer") -> List[str]:
    """Every label against ``reference`` per class, paired on (fold, case): Dice, ΔDice [95% CI], Wilcoxon p,
    Holm p (over the labels, within each class) and the plain verdict; then HD95 and NSD with their paired p."""
    dice = []
    for cls in classes:
        tests, holm = dice_tests(rows, labels, reference, cls)
        iv = bootstrap_ci(list(scores(rows, reference, cls, "dice").values()))
        dice.append([f"**{reference}** (reference)", cls, _f(iv.mean), str(iv.n), "-", "-", "-", "reference"])
        for t, c in tests.items():
            dice.append([t, cls, _f(bootstrap_ci(list(scores(rows, t, cls, "dice").values())).mean), str(c.n),
                         _ci(c.difference_ci), _p(c.p_value), _p(holm[t]), f"**{plain_verdict(c, holm[t])}**"])
    surface = [[t, cls] + [_metric_cell(rows, t, reference, cls, m) for m in ("hd95", "nsd")]
               for cls in classes for t in labels]
    return _table([kind, "class", "Dice", "cases", f"ΔDice vs {reference} [95% CI]", "Wilcoxon p", "Holm p",
                   "verdict"], dice) + \
        ["", f"HD95 (mm, lower is better; left out where a mask is empty) and NSD, mean [95% CI]; p = paired Wilcoxon "
             f"against {reference} (not Holm-corrected):", ""] + \
        _table([kind, "class", "HD95 (mm)", "NSD"], surface)


def plain_verdict(test, holm_p: float) -> str:
    """better / worse / no detectable difference, after Holm: the one-word answer a reader came for."""
    if not math.isfinite(test.p_value):
        return "too few cases to test"
    if math.isfinite(holm_p) and holm_p < ALPHA:
        return "better" if test.mean_difference > 0 else "worse"
    return "no detectable difference"


def verdict_section(rows, labels: List[str], convergence: Dict[str, List[Convergence]], dice=None) -> List[str]:
    """The study's answer in one table (the README links it): per arm, the paired Dice difference, Holm p, the
    verdict in plain words and how many of its runs met the convergence criterion. ``dice`` as in
    ``accuracy_section``."""
    tests, holm = dice or dice_tests(rows, scored_labels(rows, labels))
    others = list(tests)

    def converged(t):
        marks = convergence.get(t, [])
        return f"{sum(c.converged is True for c in marks)}/{len(marks)}"

    table = [[f"**{VANILLA}** (reference)", _f(bootstrap_ci(list(scores(rows, VANILLA, MEAN_CLASS, 'dice')
                                                                   .values())).mean), "-", "-", "reference",
              converged(VANILLA)]]
    for t in others:
        c = tests[t]
        table.append([t, _f(bootstrap_ci(list(scores(rows, t, MEAN_CLASS, "dice").values())).mean),
                      _ci(c.difference_ci), _p(holm[t]), f"**{plain_verdict(c, holm[t])}**", converged(t)])
    return ["## Verdicts", "",
            "Dice is the per-case mean over foreground classes; ΔDice is paired on (fold, case) against vanilla "
            f"nnU-Net; a verdict says better/worse only when the Holm-corrected Wilcoxon p < {ALPHA}. "
            "'converged' counts the runs (folds) that meet the criterion of the section 'Convergence'.", ""] + \
        _table(["trainer", "Dice", "ΔDice [95% CI]", "Holm p", "verdict", "converged"], table)


def held_out_section(changes: Dict[tuple, HeldOutChange], criterion: ConvergenceCriterion,
                     epochs: int) -> List[str]:
    """The held-out check (convergence.py): final model against the window-start model on the same test cases."""
    if not changes:
        return []
    tol = criterion.tolerance
    table = [[t, str(fold), cls, f"{c.start_epoch} -> {epochs}", str(c.n), f"{c.mean:+.4f}",
              f"[{c.low:+.4f}, {c.high:+.4f}]" if math.isfinite(c.low) else "n/a", c.mark(tol)]
             for (t, fold, cls), c in changes.items()]
    out = ["### Held-out check", "",
           f"Each run also kept its model at the start of the window; both models predicted the same held-out "
           f"test cases. Below: final minus window-start Dice per case (class `{MEAN_CLASS}`: the mean over "
           f"classes), its mean over the cases and 95% bootstrap interval. **flat**: the interval lies within "
           f"±{tol}; **still gaining** / **losing**: it lies beyond +{tol} / -{tol}; undecided: neither (more test "
           f"cases narrow it); **never predicted**: neither model predicts the class on any case.", ""]
    out += _table(["trainer", "fold", "class", "epochs", "cases", "Dice change", "95% CI", "held-out"], table)
    runs = {(t, fold) for t, fold, _ in changes}
    dead = {(t, fold) for (t, fold, _), c in changes.items() if c.never_predicted}
    flat = sum(c.mark(tol) == "flat" for (t, fold, cls), c in changes.items()
               if cls == MEAN_CLASS and (t, fold) not in dead)
    gaining = sorted({f"{t} fold {fold}" for (t, fold, _), c in changes.items() if c.mark(tol) == "**still gaining**"})
    dead_named = sorted(f"{t} fold {fold} ({cls})" for (t, fold, cls), c in changes.items() if c.never_predicted)
    out += ["", f"Flat on the held-out cases (class `{MEAN_CLASS}`, no class never predicted): {flat} of "
                f"{len(runs)} runs. Still gaining in at least one class: {', '.join(gaining) if gaining else 'none'}."]
    if dead_named:
        out += ["", f"**Never predicted** by the window-start model nor the final one, on any test case: "
                    f"{', '.join(dead_named)}. A zero change there is a dead output channel, not a plateau."]
    return out


def convergence_section(runs: Dict[str, List[tuple]], criterion: ConvergenceCriterion,
                        dead: Optional[Dict[tuple, List[str]]] = None) -> List[str]:
    """Every run's convergence mark; a run that did not converge is a finding, not something to hide. Beside it,
    the raw pseudo-Dice's trend and standard error say whether the validation could resolve the tolerance.
    ``dead``: (trainer, fold) -> classes the final model never predicts; their curve is flat at zero, which the
    criterion cannot tell from an optimum, so they are named."""
    table = []
    for t, items in runs.items():
        for fold, c in items:
            raw = "n/a" if not math.isfinite(c.raw_change) else f"{c.raw_change:+.4f} ± {c.raw_change_se:.4f}"
            table.append([t, str(fold), f"{c.window_epochs}", _f(c.final), _f(c.change, 4), raw, c.mark()])
    out = ["## Convergence", "", f"Criterion: {criterion.describe()}.", ""]
    out += _table(["trainer", "fold", "window (epochs)", "final EMA pseudo-Dice", "change over window",
                   "raw pseudo-Dice change ± SE", "converged"], table)
    failed = [f"{t} fold {fold}" for t, items in runs.items() for fold, c in items if c.converged is not True]
    out += ["", ("Every run meets the criterion." if not failed else
                 f"**Not converged by this criterion:** {', '.join(failed)}. Their Dice may still be rising; "
                 "read their verdicts as 'after this schedule', not as the method's optimum.")]
    # a run shown to rise is decided (not converged) however noisy: it belongs to the "still rising" list only
    unresolved = [f"{t} fold {fold}" for t, items in runs.items() for fold, c in items
                  if c.resolves(criterion.tolerance) is False and not c.still_rising(criterion.tolerance)]
    if unresolved:
        out += ["", f"**Validation too noisy to resolve the tolerance** ({len(unresolved)} of "
                    f"{sum(len(i) for i in runs.values())} runs: twice the standard error of the raw pseudo-Dice's "
                    f"change over the window exceeds {criterion.tolerance}): {', '.join(unresolved)}. A flat curve "
                    "would often fail the criterion there too; more validation iterations per epoch "
                    "(`--val-iterations`) make it decidable."]
    rising = [f"{t} fold {fold} ({c.raw_change:+.3f} ± {c.raw_change_se:.3f})" for t, items in runs.items()
              for fold, c in items if c.still_rising(criterion.tolerance)]
    if rising:
        out += ["", f"**Still rising** ({len(rising)} of {sum(len(i) for i in runs.values())} runs: the raw "
                    f"pseudo-Dice's change over the window minus twice its standard error exceeds "
                    f"{criterion.tolerance}, so a longer schedule would very likely still gain): {', '.join(rising)}."]
    if dead:
        named = [f"{t} fold {fold} ({', '.join(classes)})" for (t, fold), classes in dead.items()]
        runs_word = "run" if len(named) == 1 else "runs"
        out += ["", f"**Classes never predicted** ({len(named)} {runs_word}: the final model predicts none of the "
                    "class's voxels on any evaluated case, though the cases contain it): " + ", ".join(named) + ". "
                    "That output channel is dead at the end of training; a flat curve there is a dead channel, not "
                    "an optimum, whatever the criterion says."]
    return out


def _holm_verdict(test, holm_p: float) -> str:
    """The raw test's verdict, qualified when the Holm-corrected p no longer clears alpha: a reader should
    not take a difference as real that the multiple-comparison correction does not support."""
    significant = math.isfinite(test.p_value) and test.p_value < ALPHA
    if significant and not (math.isfinite(holm_p) and holm_p < ALPHA):
        return f"{test.verdict}; not after Holm (p = {_p(holm_p)})"
    return test.verdict


def step_seconds(specs: Sequence[RunSpec], folders) -> Dict[str, List[float]]:
    """Per arm, every run's median training-step seconds (nnU-Net's own steps, train_step_timing.json)."""
    ws = folders.open()
    timing: Dict[str, List[float]] = {}
    for s in specs:
        t = training_timing(s, ws)
        if t is not None:
            timing.setdefault(s.arm.label, []).append(t["seconds_per_iteration_median"])
    return timing


def train_step_seconds(costs: Dict[str, dict], specs: Sequence[RunSpec], folders) -> Tuple[Dict[str, float], str]:
    """Per arm, the median training step: the cost job's (one quiet process per trainer) when every arm's cost.json
    entry has it, else the runs' own step timings (a cost.json from before the cost job timed the step)."""
    if costs and all(c.get("train_step_seconds") is not None for c in costs.values()):
        return ({t: float(c["train_step_seconds"]) for t, c in costs.items()},
                "median of the trainer's own train_step (its loss, optimiser and precision, a random batch of the "
                "plans' shape), timed in the cost job")
    timing = step_seconds(specs, folders)
    failed = "".join(f"; the cost job could not time {t}'s step ({c['train_step_error']})"
                     for t, c in costs.items() if c.get("train_step_error"))
    return ({t: float(np.median(v)) for t, v in timing.items()},
            "median of the runs' own training steps (train_step_timing.json; runs side by side share the cores, "
            f"so this ratio depends on the company each run kept{failed})")


def cost_section(costs: Dict[str, dict], specs: Sequence[RunSpec], folders, labels, vanilla_dice) -> List[str]:
    timing, timing_source = train_step_seconds(costs, specs, folders)
    ref = costs.get(VANILLA, {})
    ref_train = timing.get(VANILLA)
    out = ["## Cost, measured side by side in this run", "",
           "Parameters and FLOPs (torch FlopCounterMode: 2 per multiply-add, conv/matmul only) of the network "
           f"each trainer builds, for one patch; train s/iter = {timing_source}; inference ms/patch = median "
           "network forward on one patch "
           "(eval, no_grad); predict s/case = nnU-Net's predictor per case (preprocessing, sliding window, "
           "mirroring, resampling); memory = one training step at the plans' batch "
           "(CUDA max allocated on a GPU, peak RSS above the post-import baseline on a CPU). Each trainer is "
           "measured in its own fresh process, all in one job. Ratios are to vanilla nnU-Net.", ""]
    table = []
    for t in labels:
        c = costs.get(t)
        train = timing.get(t)
        if c is None:
            table.append([t] + ["n/a"] * 13)
            continue
        table.append([t, "x".join(map(str, c["patch_size"])), str(c["batch_size"]), f"{c['parameters'] / 1e6:.3f}",
                      f"{c['flops_per_patch'] / 1e9:.2f}", _f(train, 3), _f(c["inference_ms_per_patch"], 1),
                      _f(c["predict_seconds_per_case"], 2), _f(c["train_step_peak_memory_mb"], 0),
                      _ratio(c["parameters"], ref.get("parameters")), _ratio(c["flops_per_patch"],
                                                                             ref.get("flops_per_patch")),
                      _ratio(train, ref_train), _ratio(c["inference_ms_per_patch"], ref.get("inference_ms_per_patch")),
                      _ratio(c["train_step_peak_memory_mb"], ref.get("train_step_peak_memory_mb"))])
    out += _table(["trainer", "patch", "batch", "params (M)", "GFLOPs/patch", "train s/iter", "infer ms/patch",
                   "predict s/case", "train memory (MB)", "params x", "FLOPs x", "train time x", "infer x",
                   "memory x"], table)
    if ref:
        out += ["", f"Device: {ref.get('device')}, torch threads for the cost job: {ref.get('threads')}; memory is "
                    f"{ref.get('memory_kind')}."]
    return out


def ablation_section(ablation, rows) -> List[str]:
    from nnunet_ext.benchmark.ablations import Ablation

    assert isinstance(ablation, Ablation)
    out = [f"## Ablation `{ablation.name}`: {ablation.title}", "", f"Layout of {ablation.source}. DSC, IoU, "
           "VOE = 1 - IoU in % (means over cases of the per-case mean over classes); Δ against the first row of "
           "each group; p = paired Wilcoxon against that row.", ""]
    table = []
    for r in ablation.rows:
        dice = bootstrap_ci(list(scores(rows, r.trainer, MEAN_CLASS, "dice").values())).mean
        iou = bootstrap_ci(list(scores(rows, r.trainer, MEAN_CLASS, "iou").values())).mean
        base = ablation.group_baseline(r)
        group = r.group if base is r else ""
        cells = [group, r.trainer] + [v for _, v in r.settings] + [_f(100 * dice, 2), _f(100 * iou, 2),
                                                                  _f(100 * (1 - iou), 2)]
        if base is r:
            cells += ["-", "-", "-"]
        else:
            bd = bootstrap_ci(list(scores(rows, base.trainer, MEAN_CLASS, "dice").values())).mean
            bi = bootstrap_ci(list(scores(rows, base.trainer, MEAN_CLASS, "iou").values())).mean
            test = paired_wilcoxon(*paired(rows, r.trainer, base.trainer, MEAN_CLASS, "dice"))
            cells += [f"{100 * (dice - bd):+.2f}", f"{100 * (iou - bi):+.2f}", _p(test.p_value)]
        table.append(cells)
    out += _table(["model", "trainer", *ablation.columns, "DSC (%)", "IoU (%)", "VOE (%)", "Δ DSC", "Δ IoU", "p"],
                  table)
    return out


def resenc_section(choice) -> List[str]:
    """Why this ResEnc preset: every estimate the choice compared (``--resenc nearest``)."""
    out = ["## ResEnc baseline chosen by memory (`--resenc nearest`)", "",
           f"**ResEnc {choice.preset}** ({choice.preset_gb:.3f} GB) is the preset whose estimated training-step memory "
           f"is nearest to the largest trainer, {choice.target} ({choice.target_gb:.3f} GB). Estimate of "
           "nnunet_ext.planning.memory (fp32 parameters + gradients + SGD momentum + saved activations at the "
           "plans' batch and patch: an upper bound to compare networks with, not a GPU reading).", ""]
    rows = [[t.name, t.plans, "x".join(map(str, t.patch_size)), str(t.batch_size), f"{t.parameters / 1e6:.3f}",
             f"{t.total_gb:.3f}", "**largest**" if t.name == choice.target else ""] for t in choice.trainers]
    rows += [[m.name, m.plans, "x".join(map(str, m.patch_size)), str(m.batch_size), f"{m.parameters / 1e6:.3f}",
              f"{m.total_gb:.3f}", "**chosen**" if p == choice.preset else ""] for p, m in choice.presets.items()]
    return out + _table(["network", "plans", "patch", "batch", "params (M)", "estimated memory (GB)", ""], rows)


# -- plots -----------------------------------------------------------------------------------------------
def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def plot_dice_boxes(rows, labels, classes, path: Path) -> Path:
    plt = _plt()
    panels = [MEAN_CLASS] + (classes if len(classes) > 1 else [])
    fig, axes = plt.subplots(1, len(panels), figsize=(max(6, 1.2 * len(labels)) * len(panels) * 0.6 + 2, 4.8),
                             squeeze=False)
    for ax, cls in zip(axes[0], panels):
        data = [[v for v in scores(rows, t, cls, "dice").values() if math.isfinite(v)] for t in labels]
        ax.boxplot(data, showmeans=True)
        for i, d in enumerate(data, start=1):
            ax.scatter(np.full(len(d), i) + np.linspace(-0.12, 0.12, len(d)) if len(d) > 1 else [i] * len(d), d,
                       s=12, alpha=0.6, color="k", zorder=3)
        ax.set_xticks(range(1, len(labels) + 1), labels, rotation=30, ha="right", fontsize=8)
        ax.set_title("Dice, mean over classes" if cls == MEAN_CLASS else f"Dice, {cls}")
        ax.set_ylabel("Dice per case")
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_cost_vs_dice(rows, labels, costs, specs, folders, path: Path) -> Optional[Path]:
    plt = _plt()
    timing, _ = train_step_seconds(costs, specs, folders)
    axes_spec = [("GFLOPs per patch", lambda t: costs[t]["flops_per_patch"] / 1e9 if t in costs else None),
                 ("training s / iteration", lambda t: timing.get(t)),
                 ("train-step memory (MB)", lambda t: costs[t]["train_step_peak_memory_mb"] if t in costs else None)]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.8))
    for ax, (name, get) in zip(axes, axes_spec):
        for i, t in enumerate(labels):
            x = get(t)
            iv = bootstrap_ci(list(scores(rows, t, MEAN_CLASS, "dice").values()))
            if x is None or iv.n == 0:
                continue
            err = None if not math.isfinite(iv.low) else [[iv.mean - iv.low], [iv.high - iv.mean]]
            ax.errorbar([x], [iv.mean], yerr=err, fmt="o", capsize=4, color=f"C{i % 10}", label=t)
            ax.annotate(t, (x, iv.mean), textcoords="offset points", xytext=(5, 5), fontsize=7)
        ax.set_xlabel(name)
        ax.set_ylabel("Dice (mean, 95% CI)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, loc="best")
    fig.suptitle("cost vs accuracy (up and left is better)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_learning_curves(curves: Dict[str, dict], path: Path) -> Optional[Path]:
    curves = {k: v for k, v in curves.items() if v}
    if not curves:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    for i, (t, c) in enumerate(curves.items()):
        color = f"C{i % 10}"
        epochs = np.arange(len(c["train_losses"]))
        axes[0].plot(epochs, c["train_losses"], "-o", ms=3, color=color, label=t)
        axes[1].plot(np.arange(len(c["val_losses"])), c["val_losses"], "-o", ms=3, color=color, label=t)
        axes[2].plot(np.arange(len(c["mean_fg_dice"])), c["mean_fg_dice"], "-o", ms=3, color=color, label=t)
    from matplotlib.ticker import MaxNLocator

    for ax, title in zip(axes, ("train loss", "validation loss", "pseudo Dice (nnU-Net, per epoch)")):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[2].legend(fontsize=7)
    fig.suptitle("learning curves (first fold; each trainer's own loss, so compare shapes, not levels)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_overlays(rows, labels, specs, folders, n_cases: int, out_dir: Path) -> List[Path]:
    """Image with ground-truth contours and each trainer's prediction, on the slice with most foreground."""
    if n_cases < 1:
        return []
    plt = _plt()
    from matplotlib.colors import ListedColormap

    ws = folders.open()
    by_label = {}
    for s in specs:
        by_label.setdefault(s.arm.label, s)
    ref = by_label.get(VANILLA)
    vanilla = scores(rows, VANILLA, MEAN_CLASS, "dice")
    ordered = sorted((k for k in vanilla if k[0] == ref.fold and math.isfinite(vanilla[k])), key=lambda k: vanilla[k])
    if not ordered:
        return []
    picks = list(dict.fromkeys(ordered[int(round(q * (len(ordered) - 1)))]
                               for q in np.linspace(0, 1, min(n_cases, len(ordered)))))
    raw = ws.raw / ws.dataset_name(ref.dataset_id)
    dataset_json = json.loads((raw / "dataset.json").read_text())
    ending = dataset_json["file_ending"]
    test = ref.eval_set == "test"
    colors = ListedColormap(["none", "#ff3b30", "#0a84ff", "#ffd60a", "#30d158", "#bf5af2"])
    paths = []
    for fold, case in picks:
        gt_file = raw / ("labelsTs" if test else "labelsTr") / f"{case}{ending}"
        img_file = raw / ("imagesTs" if test else "imagesTr") / f"{case}_0000{ending}"
        rw = reader_writer(dataset_json, str(gt_file))
        gt, _ = read_seg(rw, gt_file)
        image = rw.read_images([str(img_file)])[0][0]
        axis_sum = (gt > 0).reshape(gt.shape[0], -1).sum(1)
        z = int(np.argmax(axis_sum))
        fig, axes = plt.subplots(1, len(labels) + 1, figsize=(3.2 * (len(labels) + 1), 3.6), squeeze=False)
        axes = axes[0]
        lo, hi = np.percentile(image[z], (1, 99))
        for ax in axes:
            ax.imshow(image[z], cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
            ax.axis("off")
        axes[0].imshow(np.ma.masked_equal(gt[z], 0), cmap=colors, vmin=0, vmax=5, alpha=0.5, interpolation="nearest")
        axes[0].set_title(f"ground truth\n{case}, slice {z}", fontsize=9)
        for ax, t in zip(axes[1:], labels):
            spec = by_label[t]
            pred_file = spec.predictions_folder(ws) / f"{case}{ending}"
            if not pred_file.is_file():
                ax.set_title(f"{t}\n(no prediction)", fontsize=8)
                continue
            pred, _ = read_seg(rw, pred_file)
            ax.imshow(np.ma.masked_equal(pred[z], 0), cmap=colors, vmin=0, vmax=5, alpha=0.5,
                      interpolation="nearest")
            for label in np.unique(gt[z])[1:]:
                ax.contour(gt[z] == label, levels=[0.5], colors="white", linewidths=0.8)
            d = scores(rows, t, MEAN_CLASS, "dice").get((fold, case), math.nan)
            ax.set_title(f"{t}\nDice {_f(d)}", fontsize=8)
        from matplotlib.patches import Patch

        names = {int(v): k for k, v in dataset_json["labels"].items() if isinstance(v, int) and v > 0}
        handles = [Patch(color=colors(v), label=n) for v, n in sorted(names.items()) if v < 6]
        axes[0].legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=len(handles),
                       fontsize=7, frameon=False)
        fig.suptitle("prediction (colour) vs ground truth (white contour)", fontsize=9)
        fig.tight_layout(rect=(0, 0.06, 1, 0.93))
        path = out_dir / f"overlay_{case}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        paths.append(path)
    return paths


# -- the report ------------------------------------------------------------------------------------------
def write_cases_csv(rows: List[dict], path: Path, keys: Sequence[str] = ("trainer", "fold")) -> Path:
    """Every row's ``keys``, case, class and metrics (``keys=("pipeline",)`` for the pipelines' cases)."""
    header = [*keys, "case", "class", *CASE_METRICS]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=header, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    return path


def write_report(cfg: BenchmarkConfig, specs: Sequence[RunSpec], folders: WorkspaceFolders, costs: Dict[str, dict],
                 failures: Dict[str, str], out_dir: Path, resenc_choice=None) -> Path:
    from importlib.metadata import version

    import torch

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    labels = list(dict.fromkeys(s.arm.label for s in specs))
    rows = collect_cases(specs, folders)
    write_cases_csv(rows, out_dir / "cases.csv")
    window_rows = collect_cases(specs, folders, WINDOW_CASES_FILE)
    if window_rows:
        write_cases_csv(window_rows, out_dir / "cases_window_start.csv")
    (out_dir / "cost.json").write_text(json.dumps(costs, indent=1))
    ws = folders.open()
    dataset = ws.dataset_name(cfg.dataset_id)
    classes = list(dict.fromkeys(r["class"] for r in rows if r["class"] != MEAN_CLASS))
    schedule = specs[0].schedule_name.split("_ep")[-1] if specs else ""
    lines = [f"# nnunet-ext benchmark: {dataset}, {cfg.configuration}", "",
             "```", cfg.command_line or "(called from Python)", "```", "",
             *(["Report rewritten from that run's finished trainings and cost.json (nothing retrained or "
                "re-measured) by the same command with `--report-only`.", ""] if cfg.report_only else []),
             "## Protocol", "",
             f"- dataset: {dataset}; configuration {cfg.configuration}; folds {', '.join(map(str, cfg.folds))} "
             f"(nnU-Net's splits_final.json); evaluated on the **{specs[0].eval_set if specs else '?'}** cases",
             f"- schedule: every trainer {cfg.epochs} epoch(s) x {cfg.iterations} iterations "
             f"(val {cfg.val_iterations}), i.e. `<Trainer>_ep{schedule}`; from scratch; same plans "
             f"(`nnUNetPlans`) for every trainer except a ResEnc arm",
             f"- trainers: {', '.join(labels)}",
             f"- device: {cfg.device}; nnU-Net {version('nnunetv2')}, torch {torch.__version__}, "
             f"Python {platform.python_version()}; written {time.strftime('%Y-%m-%d %H:%M')}",
             f"- NSD tolerance {cfg.nsd_tolerance_mm} mm; Dice/IoU from nnU-Net's evaluator (NaN when a class is "
             "absent from both masks; such cases drop out of that class's mean)", ""]
    criterion = ConvergenceCriterion()
    curves_all = {s: learning_curve(s, folders) for s in specs}
    runs: Dict[str, List[tuple]] = {}
    for s, curve in curves_all.items():
        if curve:
            runs.setdefault(s.arm.label, []).append(
                (s.fold, assess(curve[criterion.metric], criterion, raw=curve["mean_fg_dice"])))
    all_converged = bool(runs) and all(c.converged is True for items in runs.values() for _, c in items)
    if cfg.epochs * cfg.iterations < 250 * 50 and not all_converged:
        lines += [f"> This is a short schedule ({cfg.epochs * cfg.iterations} iterations; nnU-Net's default is "
                  "1000 x 250). It shows the pipeline and the cost ratios; it does not say which method is "
                  "better on converged models.", ""]
    if resenc_choice is not None:
        lines += resenc_section(resenc_choice) + [""]
        (out_dir / "resenc_choice.json").write_text(json.dumps(resenc_choice.as_dict(), indent=1))
    if failures:
        lines += ["## Failed runs", ""] + [f"- {k}: `{v.splitlines()[0][:300]}`" for k, v in failures.items()] + [""]
    scored = scored_labels(rows, labels)
    dice = dice_tests(rows, scored)
    if rows:
        lines += verdict_section(rows, labels, {t: [c for _, c in items] for t, items in runs.items()}, dice) + [""]
    if runs:
        lines += convergence_section(runs, criterion, never_predicted_classes(rows)) + [""]
        lines += held_out_section(held_out_changes(specs, folders), criterion, cfg.epochs) + [""]
    if rows:
        lines += accuracy_section(rows, scored, classes, dice) + [""]
    else:
        lines += ["No run produced scored cases.", ""]
    if cfg.ablation:
        from nnunet_ext.benchmark.ablations import get_ablation
        lines += ablation_section(get_ablation(cfg.ablation), rows) + [""]
    if cfg.pipelines:
        from nnunet_ext.cascade.compare import pipelines_section
        lines += pipelines_section(Path(cfg.workdir).resolve(), cfg.pipelines, out_dir) + [""]
    lines += cost_section(costs, specs, folders, labels, None) + [""]

    plots = []
    if rows:
        plots.append(("Dice per case", plot_dice_boxes(rows, labels, classes, out_dir / "dice_boxplot.png")))
        plots.append(("Cost vs Dice", plot_cost_vs_dice(rows, labels, costs, specs, folders,
                                                        out_dir / "cost_vs_dice.png")))
    first = {}
    for s in specs:
        first.setdefault(s.arm.label, s)
    curves = {t: curves_all[s] for t, s in first.items()}
    plots.append(("Learning curves", plot_learning_curves(curves, out_dir / "learning_curves.png")))
    (out_dir / "learning_curves.json").write_text(json.dumps(curves, indent=1))
    overlays = plot_overlays(rows, labels, specs, folders, cfg.plots_overlay_cases, out_dir) if rows else []
    lines += ["## Plots", ""]
    for title, path in plots:
        if path is not None:
            lines += [f"### {title}", "", f"![{title}]({path.name})", ""]
    if overlays:
        lines += ["### Example cases (lowest, median, highest vanilla Dice)", ""]
        lines += [f"![{p.stem}]({p.name})" for p in overlays] + [""]
    lines += ["## Files", "", "- `cases.csv`: every (trainer, fold, case, class) with all metrics; class `mean` is "
              "the per-case mean over classes",
              *(["- `cases_window_start.csv`: the same for each run's window-start model (held-out check)"]
                if window_rows else []),
              "- `cost.json`: raw cost measurements (all repeats)",
              "- `learning_curves.json`: per-epoch losses and pseudo Dice from the checkpoints",
              *(["- `pipeline_cases.csv`: every (pipeline, held-out case, class) with all metrics"]
                if cfg.pipelines else []), ""]
    (out_dir / "config.json").write_text(json.dumps({k: (str(v) if isinstance(v, Path) else v)
                                                     for k, v in asdict(cfg).items()}, indent=1, default=list))
    report = out_dir / "report.md"
    report.write_text("\n".join(lines))
    return report
