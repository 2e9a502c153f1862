"""`nnunet-ext benchmark --pipelines`: the comparison job a benchmark config asks for, and its report table."""
import csv
import json
from pathlib import Path

import pytest

from nnunet_ext.benchmark.runner import BenchmarkConfig, WorkspaceFolders
from nnunet_ext.cascade.compare import (BENCHMARK_FOLDER, CASES_FILE, PIPELINES, benchmark_pipeline_job,
                                        check_pipelines, format_rows, pipelines_section)
from nnunet_ext.cli import build_parser
from nnunet_ext.commands.benchmark import config_from_args

FOLDERS = WorkspaceFolders("/r", "/p", "/s", 0)


def test_pipeline_names_and_all():
    assert check_pipelines(["all"]) == PIPELINES
    assert check_pipelines(["cascade", "single_stage", "cascade"]) == ("cascade", "single_stage")
    with pytest.raises(ValueError, match=r"unknown pipelines \['detector'\]; choose from single_stage, cascade"):
        check_pipelines(["detector"])
    with pytest.raises(ValueError, match="unknown pipelines"):
        BenchmarkConfig(workdir=Path("w"), dataset_id=5, pipelines=("nope",)).validate()


def test_job_uses_the_benchmark_schedule_configuration_device_and_default_ids(tmp_path):
    cfg = BenchmarkConfig(workdir=tmp_path, dataset_id=960, configuration="3d_lowres", epochs=3, iterations=4,
                          val_iterations=1, device="cuda", pipelines=("all",))
    job = benchmark_pipeline_job(cfg, FOLDERS, "test", tmp_path)
    assert (job.dataset_id, job.cascade_id, job.detector_stage2_id) == (960, 961, 962)
    # the same name as the benchmark's nnUNetTrainer arm: single stage reuses that fold-0 model
    assert job.settings.trainer == "nnUNetTrainer_ep3it4val1"
    assert job.settings.segmentor_trainer == "StageSkippingSegmentorTrainer_ep3it4val1"
    assert (job.settings.configuration, job.settings.device, job.settings.pipelines) == ("3d_lowres", "cuda", PIPELINES)
    assert job.output_root == str(tmp_path / BENCHMARK_FOLDER)
    cfg.pipeline_ids = (970, 971)
    job = benchmark_pipeline_job(cfg, FOLDERS, "test", tmp_path)
    assert (job.cascade_id, job.detector_stage2_id) == (970, 971)


def test_job_refuses_validation_only_data_and_clashing_ids(tmp_path):
    cfg = BenchmarkConfig(workdir=tmp_path, dataset_id=960, pipelines=("cascade",))
    with pytest.raises(ValueError, match="needs imagesTs and labelsTs .*--test-cases"):
        benchmark_pipeline_job(cfg, FOLDERS, "validation", tmp_path)
    cfg.pipeline_ids = (960, 961)
    with pytest.raises(ValueError, match=r"--pipeline-ids .* got \[960, 961\]"):
        benchmark_pipeline_job(cfg, FOLDERS, "test", tmp_path)


def test_command_line_reaches_the_config():
    args = build_parser().parse_args(["benchmark", "-d", "960", "--generate", "--pipelines", "cascade",
                                      "detector_segmentor", "--pipeline-ids", "970", "971"])
    cfg = config_from_args(args, argv=[])
    assert cfg.pipelines == ("cascade", "detector_segmentor") and list(cfg.pipeline_ids) == [970, 971]


def test_report_section_is_the_written_comparison(tmp_path):
    assert "missing; see Failed runs" in pipelines_section(tmp_path, ("cascade",))[-1]
    rows = [{"pipeline": "single_stage", "dice_organ": 0.5, "dice_lesion": float("nan"), "seconds": 1.25,
             "peak_rss_mib": 100.0, "train_seconds": "trained earlier", "notes": "n"},
            {"pipeline": "cascade", "dice_organ": 0.123456, "dice_lesion": 0.0, "seconds": 2.0,
             "peak_rss_mib": 120.5, "train_seconds": 3.0, "notes": "m"}]
    (tmp_path / BENCHMARK_FOLDER).mkdir()
    (tmp_path / BENCHMARK_FOLDER / "comparison.json").write_text(json.dumps(rows))
    section = pipelines_section(tmp_path, ("single_stage", "cascade"))
    table = next(block for block in section if block.startswith("| pipeline |")).splitlines()
    assert table[0] == "| pipeline | dice_organ | dice_lesion | seconds | peak_rss_mib | train_seconds | notes |"
    assert table[2] == "| single_stage | 0.5000 | nan | 1.25 | 100.0 | trained earlier | n |"
    assert table[3] == "| cascade | 0.1235 | 0.0000 | 2.0 | 120.5 | 3.0 | m |"
    assert format_rows(rows).splitlines() == table
    # a comparison written before per-case scores were kept: said so, no verdicts invented
    assert section[-1].startswith("No per-case scores") and "rerun the benchmark" in section[-1]


def _case_rows(pipeline, organ, lesion):
    """Per-case rows as compare_pipelines writes them (case_rows' layout; ``mean`` = mean over the classes)."""
    rows = []
    for i, (o, les) in enumerate(zip(organ, lesion)):
        for cls, dice in (("organ", o), ("lesion", les), ("mean", (o + les) / 2)):
            rows.append({"pipeline": pipeline, "case": f"c{i}", "class": cls, "dice": dice, "iou": dice / (2 - dice),
                         "hd95": 2.0 - dice, "assd": 1.0, "nsd": dice, "rvd": 0.0, "precision": dice,
                         "recall": dice})
    return rows


def test_pipelines_are_tested_against_single_stage_case_by_case(tmp_path):
    """Eight held-out cases. cascade: organ identical to single stage, lesion better by 0.02..0.16 (all eight
    signed-rank pairs positive: exact two-sided p = 2 / 2^8 = 0.0078125). segmentor: organ worse by the same
    amounts, lesion identical. Holm over the two pipelines per class: 2 x 0.0078125 = 0.015625 < 0.05."""
    delta = [0.02 * (i + 1) for i in range(8)]
    rows = (_case_rows("single_stage", [0.8] * 8, [0.3] * 8)
            + _case_rows("cascade", [0.8] * 8, [0.3 + d for d in delta])
            + _case_rows("segmentor_without_crop", [0.8 - d for d in delta], [0.3] * 8))
    folder = tmp_path / BENCHMARK_FOLDER
    folder.mkdir()
    (folder / "comparison.json").write_text(json.dumps([{"pipeline": "single_stage", "dice_organ": 0.8}]))
    (folder / CASES_FILE).write_text(json.dumps(rows))
    section = "\n".join(pipelines_section(tmp_path, ("all",), out_dir=tmp_path))
    dice_table, surface_table = section.split("HD95 (mm, lower is better")
    lines = {tuple(cell.strip() for cell in line.split("|")[1:3]): line for line in dice_table.splitlines()
             if line.startswith("| ")}
    # pipeline | class | Dice | paired cases | ΔDice [95% CI] | Wilcoxon p | Holm p | verdict
    assert lines[("**single_stage** (reference)", "mean")] == \
        "| **single_stage** (reference) | mean | 0.550 | 8 | - | - | - | reference |"
    assert lines[("cascade", "lesion")].startswith("| cascade | lesion | 0.390 | 8 | 0.090 [")
    assert lines[("cascade", "lesion")].endswith(" | 0.00781 | 0.0156 | **better** |")
    assert lines[("cascade", "organ")] == \
        "| cascade | organ | 0.800 | 8 | 0.000 [0.000, 0.000] | 1 | 1 | **no detectable difference** |"
    assert lines[("cascade", "mean")].startswith("| cascade | mean | 0.595 | 8 | 0.045 [")  # (0.8 + 0.39) / 2
    assert lines[("cascade", "mean")].endswith(" | 0.00781 | 0.0156 | **better** |")
    assert lines[("segmentor_without_crop", "organ")].startswith("| segmentor_without_crop | organ | 0.710 | 8 | "
                                                                 "-0.090 [")
    assert lines[("segmentor_without_crop", "organ")].endswith(" | 0.00781 | 0.0156 | **worse** |")
    assert lines[("segmentor_without_crop", "mean")].endswith(" | 0.00781 | 0.0156 | **worse** |")
    assert lines[("segmentor_without_crop", "lesion")].endswith(" | 1 | 1 | **no detectable difference** |")
    for (pipeline, cls), sign in ((("cascade", "lesion"), 1), (("segmentor_without_crop", "organ"), -1)):
        # the bootstrap interval of the mean difference lies between the smallest and largest difference
        low, high = sorted(sign * float(v) for v in lines[(pipeline, cls)].split("[")[1].split("]")[0].split(","))
        assert 0.02 <= low <= 0.09 <= high <= 0.16
    # HD95 = 2 - Dice here: lower for the cascade's lesions on all eight cases, the same paired p
    assert "| cascade | lesion | 1.61 [" in surface_table and "(p 0.00781) | 0.390 [" in surface_table
    with open(tmp_path / "pipeline_cases.csv") as f:
        written = list(csv.DictReader(f))
    assert len(written) == 3 * 8 * 3 and list(written[0])[:4] == ["pipeline", "case", "class", "dice"]


def test_no_verdicts_without_the_single_stage_reference(tmp_path):
    folder = tmp_path / BENCHMARK_FOLDER
    folder.mkdir()
    (folder / "comparison.json").write_text(json.dumps([{"pipeline": "cascade", "dice_organ": 0.8}]))
    (folder / CASES_FILE).write_text(json.dumps(_case_rows("cascade", [0.8] * 3, [0.3] * 3)))
    assert "No verdicts: single_stage, the reference, is not among" in pipelines_section(tmp_path, ("cascade",))[-1]
