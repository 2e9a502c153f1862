"""End-to-end: STS-Net amplification trainers through the real nnU-Net CLI (tiny data, short schedules):
nnU-Net's network on 2d (methods 4 and 3), STS-Net on 2d and STS-Net 2.5D on 3d_fullres (method 4)."""
import json
import re

import pytest

from e2e_utils import Phantom, predict_test_cases

pytestmark = pytest.mark.e2e
PHANTOM = Phantom(731, "AmplifyE2E", ("2d", "3d_fullres"),
                  dict(num_cases=4, shape=(8, 48, 48), spacing=(3.0, 1.0, 1.0), num_test_cases=1, seed=0))
DATASET_ID = PHANTOM.dataset_id


def lesion_stats(ws, *extra):
    return json.loads(ws.run("nnunet-ext", "lesion-stats", "-d", DATASET_ID, "-c", "2d", "--json", *extra))


def test_lesion_stats_command_computes_and_caches(ws):
    summary = lesion_stats(ws)
    cache = ws.preprocessed / ws.dataset_name(DATASET_ID) / "nnUNetPlans_2d_lesion_stats_label2_image.json"
    assert summary["cache"] == str(cache) and cache.is_file()
    # Eq. 1-2 on whatever the generator drew: N1 = ceil(sqrt(S/A))^2, N2 = ceil(sqrt(N1/2))^2
    n1, n2 = summary["N1"], summary["N2"]
    assert round(n1 ** 0.5) ** 2 == n1 and (round(n1 ** 0.5) - 1) ** 2 < summary["S"] / summary["A"] <= n1
    assert round(n2 ** 0.5) ** 2 == n2 and (round(n2 ** 0.5) - 1) ** 2 < n1 / 2 <= n2
    mtime = cache.stat().st_mtime_ns
    assert lesion_stats(ws) == summary and cache.stat().st_mtime_ns == mtime  # reused, not rewritten


@pytest.mark.parametrize("trainer, configuration, method, copies", [
    ("nnUNetTrainerAmplify_test", "2d", 4, 5),
    ("nnUNetTrainerAmplifyM3_test", "2d", 3, 8),
    ("STSNetAmplifyTrainer_test", "2d", 4, 5),
    # 2.5D: slice statistics on the 3d_fullres data; at spacing (3, 1, 1) nnU-Net resamples neither
    # configuration, so its slices are the 2d data's and the logged N1/N2/Q must equal the 2d summary's
    ("STSNet25DAmplifyTrainer_test", "3d_fullres", 4, 5),
])
def test_amplification_trainer_trains_and_predicts(ws, tmp_path, trainer, configuration, method, copies):
    summary = lesion_stats(ws)
    ws.train(DATASET_ID, configuration, "all", trainer)
    folder = ws.model_folder(DATASET_ID, configuration, trainer) / "fold_all"
    assert (folder / "checkpoint_final.pth").is_file()
    assert (folder / "progress.png").is_file()  # nnU-Net's plot, redrawn after the last epoch (short_plot_every)
    log = "\n".join(p.read_text() for p in folder.glob("training_log_*.txt"))
    line = re.search(r"amplification \(method (\d), unit image, 2D, .*?qualifying Q=(\d+), copies per image (\d+), "
                     r"amplified draw probability ([0-9.]+)", log)
    assert line, "the trainer did not log its 2D amplification plan"
    assert int(line[1]) == method and int(line[3]) == copies
    assert f"N1={summary['N1']}, N2={summary['N2']}" in log  # fold 'all': training cases = all cases
    q = int(line[2])
    assert q == summary["below_N2"]  # methods 3 and 4 amplify 5 < size < N2
    assert float(line[4]) == pytest.approx(copies * q / (summary["num_images"] + copies * q), abs=1e-4)
    extra = ("--disable_tta",) if configuration == "3d_fullres" else ()
    predict_test_cases(ws, DATASET_ID, configuration, trainer, tmp_path / "pred", *extra, folds=("all",),
                       evaluate=False)
