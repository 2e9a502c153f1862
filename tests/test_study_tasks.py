"""Study tasks (nnunet_ext.data.tasks) and the convergence criterion (nnunet_ext.benchmark.convergence)."""
import json
import math

import numpy as np
import pytest
from scipy import ndimage

from nnunet_ext.benchmark.convergence import (Convergence, ConvergenceCriterion, HeldOutChange, assess,
                                               held_out_change, window_checkpoint_epoch,
                                               window_checkpoint_name, window_trend)
from nnunet_ext.benchmark.report import convergence_section, held_out_section
from nnunet_ext.data.phantoms import generate_dataset
from nnunet_ext.data.tasks import HECKTOR_LABELS, SMALL_TARGET_LABELS, TASKS, get_task


def test_flat_curve_converges_with_a_three_epoch_window():
    c = assess([0.5] * 10)
    assert c.converged is True and c.window_epochs == 3 and c.change == pytest.approx(0.0) and c.final == 0.5


def test_rising_curve_does_not_converge():
    # 0.01 per epoch; the last 3 epochs' trend moves the curve by 0.01 * 2 = 0.02 > 0.005
    c = assess([0.01 * e for e in range(10)])
    assert c.converged is False and c.change == pytest.approx(0.02)


def test_window_is_a_fraction_of_the_epochs_and_tolerance_is_strict():
    # 50 epochs -> window 10; a ramp of 0.0005 / epoch moves 0.0005 * 9 = 0.0045 < 0.005 in it
    slow = [0.0005 * e for e in range(50)]
    c = assess(slow)
    assert c.window_epochs == 10 and c.change == pytest.approx(0.0045) and c.converged is True
    assert assess(slow, ConvergenceCriterion(tolerance=0.004)).converged is False


def test_noise_around_a_plateau_is_judged_by_its_trend_not_one_epoch():
    # alternating +-0.006 around 0.8 over 40 epochs (window 8, starting on a low epoch): window's last-minus-first
    # is 0.012, but the trend is sum((x - 3.5) * y) / sum((x - 3.5)^2) = (4 * 0.006) / 42 per epoch, times 7
    y = [0.8 + (0.006 if e % 2 else -0.006) for e in range(40)]
    c = assess(y)
    assert y[-1] - y[-8] == pytest.approx(0.012)
    assert c.change == pytest.approx(4 * 0.006 / 42 * 7) and c.converged is True


def test_too_short_or_nan_curves_are_not_judged():
    assert assess([0.1, 0.2, 0.3, 0.4, 0.5]).converged is None
    c = assess([0.5] * 9 + [math.nan])
    assert c.converged is None and math.isnan(c.change)


def test_raw_trend_standard_error_by_hand():
    # window [0, .02, 0, .02] at x = 0..3: Sxx = 5, Sxy = 0.02, slope 0.004, change 0.012; fitted .004 .008 .012
    # .016, residuals -.004 .012 -.012 .004, SSR 320e-6, s^2 = SSR / 2 = 160e-6, SE(slope) = sqrt(160e-6 / 5),
    # SE(change) = 3 * SE(slope) = 0.016971
    change, se = window_trend([0.5, 0.0, 0.02, 0.0, 0.02], 4)
    assert change == pytest.approx(0.012) and se == pytest.approx(3 * math.sqrt(160e-6 / 5))
    assert all(math.isnan(v) for v in window_trend([0.1, 0.2], 2))
    assert all(math.isnan(v) for v in window_trend([0.1, math.nan, 0.2, 0.3], 3))


def test_noise_that_cannot_resolve_the_tolerance_is_flagged():
    # 20 epochs -> window 4; EMA flat (converged), raw alternating as above: 2 * 0.0170 > 0.005 -> unresolved
    raw = [0.5] * 16 + [0.0, 0.02, 0.0, 0.02]
    c = assess([0.5] * 20, raw=raw)
    assert c.converged is True and c.raw_change == pytest.approx(0.012)
    assert c.resolves(0.005) is False and c.resolves(0.04) is True
    quiet = assess([0.5] * 20, raw=[0.5] * 20)
    assert quiet.raw_change_se == pytest.approx(0.0) and quiet.resolves(0.005) is True
    assert assess([0.5] * 20).resolves(0.005) is None   # no raw curve given: not judged


def test_a_raw_curve_rising_beyond_its_noise_is_still_rising():
    # 20 epochs -> window 4; raw window 0, .01, .02, .03 (exact line, SE 0): change 0.03 - 0 > 0.005 -> rising;
    # the noisy window above (change 0.012, SE 0.016971): 0.012 - 2 * 0.016971 < 0.005 -> not shown rising
    rising = assess([0.01 * e for e in range(20)], raw=[0.5] * 16 + [0.0, 0.01, 0.02, 0.03])
    assert rising.raw_change == pytest.approx(0.03) and rising.raw_change_se == pytest.approx(0.0, abs=1e-12)
    assert rising.still_rising(0.005) is True and rising.still_rising(0.04) is False
    assert assess([0.5] * 20, raw=[0.5] * 16 + [0.0, 0.02, 0.0, 0.02]).still_rising(0.005) is False
    assert assess([0.5] * 20).still_rising(0.005) is None   # no raw curve: not judged


def test_convergence_section_lists_rising_and_unresolved_runs_apart():
    crit = ConvergenceCriterion()
    # 0.03 - 2 * 0.005 > 0.005: rising; its 2 SE = 0.01 > 0.005 too, but a run shown to rise is not "too noisy"
    rising = Convergence(False, 0.03, 4, 0.8, raw_change=0.03, raw_change_se=0.005)
    noisy = Convergence(True, 0.0, 4, 0.8, raw_change=0.012, raw_change_se=0.017)     # 2 * 0.017 > 0.005
    flat = Convergence(True, 0.001, 4, 0.8, raw_change=0.001, raw_change_se=0.001)
    text = "\n".join(convergence_section({"A": [(0, rising), (1, flat)], "B": [(0, noisy)]}, crit))
    assert "**Not converged by this criterion:** A fold 0." in text
    assert "**Still rising** (1 of 3 runs" in text and "A fold 0 (+0.030 ± 0.005)" in text
    assert "too noisy to resolve the tolerance** (1 of 3 runs" in text and "): B fold 0. A flat" in text
    assert "A fold 1" not in text.split("**Still rising**")[1]


def test_window_checkpoint_is_the_model_before_the_criterions_window():
    # window = max(3, ceil(0.2 E)) epochs: E=160 -> 32, kept after 128 epochs; E=80 -> 16 -> 64; E=10 -> 3 -> 7
    assert [window_checkpoint_name(e) for e in (160, 80, 10, 4)] == [
        "checkpoint_ep128.pth", "checkpoint_ep64.pth", "checkpoint_ep7.pth", "checkpoint_ep1.pth"]
    assert window_checkpoint_name(3) is None and window_checkpoint_name(1) is None  # the window is the whole run
    # the name parses back to its epoch; nnU-Net's own checkpoints are not window checkpoints
    assert window_checkpoint_epoch(window_checkpoint_name(160)) == 128
    assert [window_checkpoint_epoch(n) for n in ("checkpoint_final.pth", "checkpoint_best.pth",
                                                 "checkpoint_ep12.pth.bak", "checkpoint_epx.pth")] == [None] * 4


def test_held_out_change_pairs_cases_and_reads_its_interval():
    # every case gains exactly 0.001 (case d only in one model, case e NaN: dropped): interval [0.001, 0.001]
    c = held_out_change({"a": 0.801, "b": 0.701, "c": 0.5, "d": 0.9, "e": float("nan")},
                        {"a": 0.8, "b": 0.7, "c": 0.499, "e": 0.3}, start_epoch=64)
    assert (c.n, c.start_epoch) == (3, 64) and c.mean == pytest.approx(0.001) and c.low == pytest.approx(0.001)
    assert c.mark(0.005) == "flat"
    assert HeldOutChange(64, 0.02, 0.012, 0.03, 50).mark(0.005) == "**still gaining**"
    assert HeldOutChange(64, -0.02, -0.03, -0.012, 50).mark(0.005) == "**losing**"
    assert HeldOutChange(64, 0.004, -0.002, 0.010, 50).mark(0.005) == "undecided"  # within, but the CI is not
    assert HeldOutChange(64, 0.004, float("nan"), float("nan"), 1).mark(0.005) == "n/a"
    # a mixed change: mean by hand (+0.02 - 0.01 + 0.03) / 3 = 0.04 / 3; the bootstrap's extremes are -0.01, 0.03
    mixed = held_out_change({"a": 0.82, "b": 0.69, "c": 0.53}, {"a": 0.8, "b": 0.7, "c": 0.5}, start_epoch=7)
    assert mixed.mean == pytest.approx(0.04 / 3)
    assert -0.01 - 1e-12 <= mixed.low < mixed.mean < mixed.high <= 0.03 + 1e-12
    assert mixed.mark(0.005) == "undecided"


def test_held_out_section_marks_each_run():
    changes = {("nnUNetTrainer", 0, "mean"): HeldOutChange(128, 0.001, -0.002, 0.004, 50),
               ("nnUNetTrainer", 0, "lesion"): HeldOutChange(128, 0.003, -0.001, 0.007, 40),
               ("nnUNetTrainerDWD", 0, "mean"): HeldOutChange(128, 0.02, 0.012, 0.03, 50),
               ("nnUNetTrainerDWD", 0, "lesion"): HeldOutChange(128, 0.03, 0.02, 0.04, 40)}
    text = "\n".join(held_out_section(changes, ConvergenceCriterion(), epochs=160))
    assert "| nnUNetTrainer | 0 | mean | 128 -> 160 | 50 | +0.0010 | [-0.0020, +0.0040] | flat |" in text
    assert "| nnUNetTrainer | 0 | lesion | 128 -> 160 | 40 | +0.0030 | [-0.0010, +0.0070] | undecided |" in text
    assert ("| nnUNetTrainerDWD | 0 | mean | 128 -> 160 | 50 | +0.0200 | [+0.0120, +0.0300] | **still gaining** |"
            in text)
    assert ("Flat on the held-out cases (class `mean`, no class never predicted): 1 of 2 runs. Still gaining in at "
            "least one class: nnUNetTrainerDWD fold 0.") in text
    assert "Never predicted" not in text
    assert held_out_section({}, ConvergenceCriterion(), epochs=160) == []


def test_a_class_never_predicted_is_not_flat_but_dead():
    # study C's vanilla fold 1: the organ learned, the lesion Dice 0 -> 0 on every case; the mean "flat"
    changes = {("nnUNetTrainer", 1, "mean"): HeldOutChange(56, 0.002, -0.0001, 0.004, 50),
               ("nnUNetTrainer", 1, "lesion"): HeldOutChange(56, 0.0, 0.0, 0.0, 50, never_predicted=True),
               ("ELANRes", 1, "mean"): HeldOutChange(56, 0.001, -0.002, 0.003, 50)}
    assert changes[("nnUNetTrainer", 1, "lesion")].mark(0.005) == "**never predicted**"
    text = "\n".join(held_out_section(changes, ConvergenceCriterion(), epochs=70))
    assert "| nnUNetTrainer | 1 | lesion | 56 -> 70 | 50 | +0.0000 | [+0.0000, +0.0000] | **never predicted** |" in text
    assert "(class `mean`, no class never predicted): 1 of 2 runs." in text   # ELANRes only
    assert "**Never predicted** by the window-start model nor the final one, on any test case: " \
        "nnUNetTrainer fold 1 (lesion)." in text
    assert held_out_change({"a": 0.0}, {"a": 0.0}, 56, never_predicted=True).mark(0.005) == "**never predicted**"


def _row(trainer, fold, case, cls, precision, recall):
    return {"trainer": trainer, "fold": fold, "case": case, "class": cls, "precision": precision, "recall": recall}


def test_never_predicted_needs_no_prediction_anywhere_and_the_class_somewhere():
    from nnunet_ext.benchmark.case_scores import never_predicted
    from nnunet_ext.benchmark.report import never_predicted_classes

    nan = float("nan")
    assert never_predicted([_row("v", 0, "a", "lesion", nan, 0.0), _row("v", 0, "b", "lesion", nan, nan)])
    # one case with a predicted voxel (precision 0: all false positives) is a live channel, even at Dice 0
    assert not never_predicted([_row("v", 0, "a", "lesion", nan, 0.0), _row("v", 0, "b", "lesion", 0.0, 0.0)])
    assert not never_predicted([_row("v", 0, "a", "lesion", nan, nan)])   # absent everywhere: nothing to find
    assert not never_predicted([])
    assert never_predicted([{"precision": "nan", "recall": "0.0"}])        # rows read back from cases.csv
    rows = [_row("v", 1, "a", "organ", 0.9, 0.8), _row("v", 1, "a", "lesion", nan, 0.0),
            _row("v", 1, "a", "mean", 0.9, 0.4), _row("v", 0, "a", "lesion", 0.5, 0.5),
            _row("e", 1, "a", "lesion", nan, 0.0), _row("e", 1, "b", "lesion", 0.7, 0.6)]
    assert never_predicted_classes(rows) == {("v", 1): ["lesion"]}


def test_convergence_section_names_classes_never_predicted():
    flat = Convergence(True, 0.001, 14, 0.456, raw_change=0.001, raw_change_se=0.001)
    runs = {"nnUNetTrainer": [(1, flat), (2, flat)]}
    text = "\n".join(convergence_section(runs, ConvergenceCriterion(), {("nnUNetTrainer", 1): ["lesion"]}))
    assert "Every run meets the criterion." in text
    assert "**Classes never predicted** (1 run:" in text and "): nnUNetTrainer fold 1 (lesion). That output" in text
    assert "never predicted" not in "\n".join(convergence_section(runs, ConvergenceCriterion(), {}))


@pytest.mark.parametrize("name", list(TASKS))
def test_tasks_are_deterministic_and_have_every_label(name):
    task = TASKS[name]
    a = task.maker(np.random.default_rng([0, 3]), task.shape, task.spacing)
    b = task.maker(np.random.default_rng([0, 3]), task.shape, task.spacing)
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert a.images.shape == (len(task.channel_names), *task.shape) and a.images.dtype == np.float32
    seen = set()
    for case in range(12):
        seen |= set(np.unique(task.maker(np.random.default_rng([0, case]), task.shape, task.spacing).labels))
    assert seen == set(task.labels.values())


def test_hecktor_tumour_is_found_on_pet_not_ct():
    task = get_task("hecktor")
    ct_gap, pet_gap = [], []
    for case in range(6):
        p = task.maker(np.random.default_rng([0, case]), task.shape, task.spacing)
        primary = p.labels == HECKTOR_LABELS["primary"]
        soft = (p.labels == 0) & (p.images[0] > -200) & (p.images[0] < 300)
        ct_gap.append(p.images[0][primary].mean() - p.images[0][soft].mean())
        pet_gap.append(p.images[1][primary].mean() / p.images[1][soft].mean())
    assert abs(np.mean(ct_gap)) < 30       # within textured soft tissue (std 18 HU + noise 15 HU) on CT
    assert np.mean(pet_gap) > 2.5          # hot on PET


def test_small_targets_are_small_and_sometimes_absent():
    task = get_task("small_targets")
    sizes, empty = [], 0
    for case in range(60):
        p = task.maker(np.random.default_rng([0, case]), task.shape, task.spacing)
        components, n = ndimage.label(p.labels == SMALL_TARGET_LABELS["lesion"])
        empty += n == 0
        sizes += list(np.bincount(components.ravel())[1:])
    assert 5 <= empty <= 20                  # ~1 in 6
    assert min(sizes) >= 1 and max(sizes) <= 60 and np.median(sizes) < 25


def test_generate_dataset_writes_the_tasks_labels_and_channels(tmp_path):
    out = generate_dataset(tmp_path, 7, "Hn", num_cases=2, shape=(16, 32, 32), spacing=(3, 2, 2), task="hecktor")
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["labels"] == HECKTOR_LABELS and meta["channel_names"] == {"0": "CT", "1": "PET"}
    assert len(list((out / "imagesTr").glob("*_0001.nii.gz"))) == 2


@pytest.mark.parametrize("kwargs, message", [
    (dict(task="nope"), "unknown task 'nope'"),
    (dict(task="small_targets", shape=(16, 32, 32), spacing=(1, 1, 1)), "is 2D"),
    (dict(task="hecktor", label_variant="ignore"), "plain labels only"),
])
def test_bad_task_arguments_name_the_problem(tmp_path, kwargs, message):
    kwargs = {"num_cases": 1, "shape": (16, 32, 32), "spacing": (3, 2, 2), **kwargs}
    with pytest.raises(ValueError, match=message):
        generate_dataset(tmp_path, 8, "Bad", **kwargs)


def test_held_out_change_counts_a_false_positive_the_final_model_dropped(tmp_path):
    """The two models are paired as two arms are: on case b the window-start model predicted a lesion where there
    is none (Dice 0) and the final model rightly nothing (nnU-Net: no Dice), a change of +1 on that case."""
    from types import SimpleNamespace

    from nnunet_ext.benchmark.report import held_out_changes
    from nnunet_ext.benchmark.spec import CASES_FILE, WINDOW_CASES_FILE

    nan = float("nan")

    def rows(a, b, b_precision):
        return [{"case": "a", "class": "lesion", "dice": a, "precision": 1.0, "recall": 1.0},
                {"case": "a", "class": "mean", "dice": a, "precision": 1.0, "recall": 1.0},
                {"case": "b", "class": "lesion", "dice": b, "precision": b_precision, "recall": nan},
                {"case": "b", "class": "mean", "dice": b, "precision": b_precision, "recall": nan}]
    fold = tmp_path / "fold_0"
    fold.mkdir()
    (fold / CASES_FILE).write_text(json.dumps(rows(0.8, nan, nan)))
    (fold / WINDOW_CASES_FILE).write_text(json.dumps(rows(0.7, 0.0, 0.0)))
    spec = SimpleNamespace(arm=SimpleNamespace(label="X"), fold=0, fold_folder=lambda ws: fold,
                           window_checkpoint=lambda ws: fold / "checkpoint_ep8.pth")
    changes = held_out_changes([spec], SimpleNamespace(open=lambda: None))
    for cls in ("mean", "lesion"):
        c = changes[("X", 0, cls)]
        assert (c.n, c.start_epoch) == (2, 8) and c.mean == pytest.approx((0.1 + 1.0) / 2)
