"""scripts/gpu_check.sh: the GPU check's --dry-run end to end on the CPU (one shared run), plus its tables' sources.

The dry run trains every family with torch.compile forced on (tests/trainers/nnunet_ext_test_trainers_compiled.py,
backend aot_eager), so nnUNetv2_train saves the checkpoint of a compiled network and nnUNetv2_predict loads it.
"""
import json
import math
import subprocess
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from nnunet_ext.benchmark import gpu_check
from nnunet_ext.commands.model_cost import PAPER_TABLE9 as COST_TABLE9
from nnunet_ext.network_cost import count_parameters, measure

REPO = Path(__file__).resolve().parents[1]


def test_paper_figures_agree_with_nnunet_ext_cost():
    for key, (params, flops) in COST_TABLE9.items():
        assert gpu_check.PAPER_TABLE9[key][:2] == (params, flops)


def test_nnunet_default_network_at_128_is_the_papers_nnunet_row():
    # the paper's nnUNet (3d) row (31.20 M, 480.83 G multiply-adds) is nnU-Net's 6-stage network at 128^3
    report = measure(lambda: gpu_check.nnunet_default_network(2, 1), (1, 2, 128, 128, 128))
    assert report.params == 31_195_653
    assert abs(report.macs / 1e9 - 480.83) / 480.83 < 0.005


def test_table9_rows_at_paper_and_dry_run_sizes():
    rows = {key: (size, build) for key, _, build, size in gpu_check.table9_networks(144)}
    assert rows["nnunet3d"][0] == 128 and rows["es_unet"][0] == 144  # 144 is not divisible by 2^5
    rows32 = {key: size for key, _, _, size in gpu_check.table9_networks(32)}
    assert rows32 == {"es_unet": 32, "unet3plus": 32, "unet3d": 32, "nnunet3d": 32}
    nnunet32 = [b for k, _, b, _ in gpu_check.table9_networks(32) if k == "nnunet3d"][0]
    with torch.device("meta"):
        assert nnunet32().encoder.stages.__len__() == 4  # 32 -> 4 voxels at the bottom: 4 stages


def test_trainer_names_and_bad_family():
    assert gpu_check.trainer_name("ESUNetDWDRSSTrainer", gpu_check.GPU) == "ESUNetDWDRSSTrainer_ep1it20val2"
    assert gpu_check.trainer_name("nnUNetTrainer", gpu_check.DRY_RUN) == "nnUNetTrainer_ep1it2val1_compiled"
    with pytest.raises(SystemExit, match="unknown trainer family"):
        gpu_check.main(["--dry-run", "--out", "/nonexistent/x", "--families", "NoSuchTrainer"])


@pytest.mark.e2e
def test_dry_run_end_to_end(tmp_path):
    out = tmp_path / "gpu_check"
    proc = subprocess.run(["bash", str(REPO / "scripts" / "gpu_check.sh"), "--dry-run", "--out", str(out)],
                          capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]
    result = json.loads((out / "gpu_check.json").read_text())
    markdown = (out / "gpu_check.md").read_text()
    assert result["dry_run"] and result["device"] == "cpu"

    # Table 9 at 16^3: the counts are the networks' own, times are real, CPU has no CUDA peak memory
    builders = {key: build for key, _, build, _ in gpu_check.table9_networks(16)}
    assert [r["key"] for r in result["table9"]] == ["es_unet", "unet3plus", "unet3d", "nnunet3d"]
    for row in result["table9"]:
        with torch.device("meta"):
            assert row["params"] == row["params_on_device"] == count_parameters(builders[row["key"]]())
        assert row["input"] == [1, 2, 16, 16, 16]
        assert row["torch_flops"] == 2 * row["macs"] > 0
        assert len(row["ms_all"]) == 2 and all(0 < ms < 600_000 for ms in row["ms_all"])
        assert row["peak_gb_inference"] is None and row["paper_params_m"] is None  # paper only at 144^3
    es, u3 = (next(r for r in result["table9"] if r["key"] == k) for k in ("es_unet", "unet3plus"))
    assert es["params"] > u3["params"]  # SE attention + transposed convs on top of UNet 3+ (paper: 9.01 vs 6.14 M)

    # every family trained compiled, losses finite, the checkpoint is the trainer's network, prediction loaded it
    rows = {r["trainer"]: r for r in result["families"]}
    assert set(rows) == {f"{t}_ep1it2val1_compiled" for _, t in gpu_check.FAMILIES}
    for name, row in rows.items():
        assert row["ok"], row
        assert row["compiled"] and row["checkpoint_matches_network"] and row["epochs"] == 1
        assert not row["grad_scaler"]  # nnU-Net uses a GradScaler only on CUDA
        assert len(row["train_losses"]) == len(row["val_losses"]) == 1
        assert all(math.isfinite(v) for v in row["train_losses"] + row["val_losses"])
        assert row["predicted_cases"] == 1 and 0.0 <= row["test_dice"] <= 1.0
        assert (out / "predictions" / name).is_dir() and f"| {name} | yes |" in markdown
        log = next((out / "workspace" / "nnUNet_results").glob(f"*/{name}__nnUNetPlans__3d_fullres/fold_0/"
                                                                  "training_log_*.txt")).read_text()
        assert "torch.compile forced on, backend aot_eager" in log

    # the vanilla row's parameter count is nnU-Net's own network from the plans the run wrote
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
    plans = json.loads(next((out / "workspace" / "nnUNet_preprocessed").glob("*/nnUNetPlans.json")).read_text())
    arch = plans["configurations"]["3d_fullres"]["architecture"]
    vanilla = get_network_from_plans(arch["network_class_name"], arch["arch_kwargs"], arch["_kw_requires_import"],
                                     2, 3, deep_supervision=True)
    assert rows["nnUNetTrainer_ep1it2val1_compiled"]["params"] == count_parameters(vanilla)
    assert result["patch_size"] == plans["configurations"]["3d_fullres"]["patch_size"]


def test_gpu_table_puts_measurements_next_to_the_paper():
    assert gpu_check.paper_figures("es_unet", gpu_check.GPU) == (9.01, 3020.38, 178.52, 16.13)
    assert gpu_check.paper_figures("es_unet", gpu_check.DRY_RUN) == (None,) * 4
    row = {"key": "es_unet", "network": "ES-UNet (paper preset)", "input": [1, 2, 144, 144, 144], "params": 8_981_300,
           "macs": 3_001_234_000_000, "ms_per_forward": 95.25, "peak_gb_inference": 7.5, "peak_gb_train_step": 21.25,
           "precision": "float16 autocast"}
    row.update(zip(("paper_params_m", "paper_gflops", "paper_ms", "paper_peak_gb"),
                   gpu_check.paper_figures("es_unet", gpu_check.GPU)))
    family = {"family": "ES-UNet", "trainer": "ESUNetDWDRSSTrainer_ep1it20val2", "ok": True, "params": 2_456_000,
              "compiled": True, "grad_scaler": True, "train_losses": [1.25], "val_losses": [0.5],
              "seconds_per_iteration_median": 0.125, "test_dice": 0.5, "train_seconds": 200.0, "predict_seconds": 30.0}
    text = gpu_check.format_markdown({"dry_run": False, "device": "NVIDIA H200", "command": "bash scripts/gpu_check.sh",
                                      "seconds": 400.0, "config": asdict(gpu_check.GPU), "table9": [row],
                                      "families": [family], "patch_size": [64, 128, 128], "batch_size": 2})
    assert ("| ES-UNet (paper preset) | 144^3 | 8.981 | 9.01 | 3001.23 | 3020.38 | 95.25 | 178.52 | 7.50 | 21.25 "
            "| 16.13 |") in text
    assert ("| ES-UNet | ESUNetDWDRSSTrainer_ep1it20val2 | yes | 2.456 | True | True | 1.2500 | 0.5000 | 0.125 | "
            "0.500 | 200 | 30 |") in text
