"""`--resenc-dataset-cap`: the ResEnc preset planned with nnU-Net's default 5% dataset cap on the batch size."""
import json
import sys

import pytest

from nnunet_ext.benchmark import runner
from nnunet_ext.benchmark.runner import RESENC_CHOICE_FILE, VANILLA, BenchmarkConfig, WorkspaceFolders
from nnunet_ext.cli import build_parser
from nnunet_ext.commands.benchmark import config_from_args
from nnunet_ext.workspace import NnUNetWorkspace

CASES, SHAPE = 60, (8, 16, 16)
CAPPED = "nnUNetResEncUNetMPlans_cap5pct"


def test_the_capped_arm_has_its_own_plans_and_label(tmp_path):
    cfg = BenchmarkConfig(workdir=tmp_path, dataset_id=870, resenc="M", resenc_dataset_cap=True)
    cfg.validate()
    assert [a.plans for a in cfg.arms()] == ["nnUNetPlans", CAPPED]
    assert cfg.arms()[-1].label == f"nnUNetTrainer [{CAPPED}]"
    assert BenchmarkConfig(workdir=tmp_path, dataset_id=870, resenc="M").arms()[-1].plans == "nnUNetResEncUNetMPlans"
    BenchmarkConfig(workdir=tmp_path, dataset_id=870, resenc="nearest", resenc_dataset_cap=True).validate()


def test_the_flag_is_parsed_and_needs_resenc(tmp_path):
    argv = ["benchmark", "-d", "5", "--resenc", "nearest", "--resenc-dataset-cap", "--workdir", str(tmp_path / "w")]
    cfg = config_from_args(build_parser().parse_args(argv), argv=argv[1:])
    assert (cfg.resenc, cfg.resenc_dataset_cap) == ("nearest", True)
    assert not config_from_args(build_parser().parse_args(argv[:5]), argv=argv[1:5]).resenc_dataset_cap
    with pytest.raises(ValueError, match="--resenc-dataset-cap .* needs --resenc"):
        BenchmarkConfig(workdir=tmp_path, dataset_id=5, resenc_dataset_cap=True).validate()
    # the command line's one-line error: tests/test_cli_fuzz.py


def _no_nnunet(monkeypatch):
    calls = []

    def run(self, *cmd, **kw):
        calls.append(cmd)
        raise RuntimeError("no nnU-Net here")
    monkeypatch.setattr(NnUNetWorkspace, "run", run)
    return calls


def _folders(tmp_path):
    root = tmp_path / "nnunet"
    (root / "nnUNet_raw" / "Dataset870_Fake").mkdir(parents=True)
    return WorkspaceFolders(str(root / "nnUNet_raw"), str(root / "nnUNet_preprocessed"),
                            str(root / "nnUNet_results"), 0), root / "nnUNet_preprocessed" / "Dataset870_Fake"


def test_existing_capped_plans_are_kept_and_missing_ones_are_planned_by_the_capped_planner(tmp_path, monkeypatch):
    calls = _no_nnunet(monkeypatch)
    folders, pre = _folders(tmp_path)
    pre.mkdir(parents=True)
    (pre / f"{CAPPED}.json").write_text("{}")  # a resumed workdir: no planner runs
    assert runner.plan_resenc(folders.open(), 870, "M", True, {}, log=lambda _: None) == CAPPED and calls == []
    with pytest.raises(RuntimeError, match="no nnU-Net"):
        runner.plan_resenc(folders.open(), 870, "L", True, {}, log=lambda _: None)
    assert calls == [(sys.executable, "-m", "nnunet_ext.benchmark.resenc_cap", 870, "L")]


def test_nearest_with_the_cap_plans_the_capped_presets_and_keeps_its_own_choice(tmp_path, monkeypatch):
    calls = _no_nnunet(monkeypatch)
    folders, _ = _folders(tmp_path)
    key = {"dataset_id": 870, "configuration": "3d_fullres", "trainers": [VANILLA]}
    (tmp_path / RESENC_CHOICE_FILE).write_text(json.dumps({"key": key, "choice": {}}))  # a choice without the cap
    cfg = BenchmarkConfig(workdir=tmp_path, dataset_id=870, resenc="nearest", resenc_dataset_cap=True)
    with pytest.raises(RuntimeError, match="no nnU-Net"):  # not the uncapped choice: planning starts
        runner.resolve_resenc(cfg, folders, log=lambda _: None)
    assert calls == [(sys.executable, "-m", "nnunet_ext.benchmark.resenc_cap", 870, "M")]


def test_capped_plans_batch_is_nnunets_5_percent_formula_and_stock_plans_are_untouched(tmp_path):
    # nnU-Net's own fingerprint and planners on 60 generated cases of 8x16x16 (~20 s, no preprocessing)
    ws = NnUNetWorkspace(tmp_path / "nnunet")
    ws.generate(871, name="Cap", num_cases=CASES, shape=SHAPE, spacing=(1.0, 1.0, 1.0))
    env = {"nnUNet_n_proc_DA": "1"}
    ws.run("nnUNetv2_extract_fingerprint", "-d", 871, "-np", 1, env=env)
    stock_file = ws.preprocessed / "Dataset871_Cap" / "nnUNetResEncUNetMPlans.json"
    assert runner.plan_resenc(ws, 871, "M", False, env, log=lambda _: None) == "nnUNetResEncUNetMPlans"
    stock_text = stock_file.read_text()
    assert runner.plan_resenc(ws, 871, "M", True, env, log=lambda _: None) == CAPPED
    assert stock_file.read_text() == stock_text  # the stock preset plans are neither rewritten nor changed
    stock = json.loads(stock_text)["configurations"]["3d_fullres"]
    capped_plans = json.loads((stock_file.parent / f"{CAPPED}.json").read_text())
    capped = capped_plans["configurations"]["3d_fullres"]
    assert capped_plans["plans_name"] == CAPPED
    assert capped["patch_size"] == stock["patch_size"] == [8, 16, 16]  # the median shape: patch == image
    # nnU-Net's formula: max(min(b, round(0.05 * voxels of the dataset / voxels of a patch)), 2), where the stock
    # preset's batch is the same with 100% (b itself here: 60 = the whole dataset)
    cap = round(0.05 * CASES * (8 * 16 * 16) / (8 * 16 * 16))
    assert cap == 3 and stock["batch_size"] == CASES
    assert capped["batch_size"] == max(min(stock["batch_size"], cap), 2) == 3
    # everything else is the preset's, and its 3d_fullres data is nnUNetPlans' (no preprocessing of its own)
    assert {k: v for k, v in capped.items() if k != "batch_size"} == {k: v for k, v in stock.items()
                                                                      if k != "batch_size"}
    assert capped["data_identifier"] == "nnUNetPlans_3d_fullres"
