"""`nnunet-ext benchmark --pipelines`: the comparison job a benchmark config asks for, and its report table."""
import json
from pathlib import Path

import pytest

from nnunet_ext.benchmark.runner import BenchmarkConfig, WorkspaceFolders
from nnunet_ext.cascade.compare import (BENCHMARK_FOLDER, PIPELINES, benchmark_pipeline_job, check_pipelines,
                                        format_rows, pipelines_section)
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
    table = pipelines_section(tmp_path, ("single_stage", "cascade"))[-1].splitlines()
    assert table[0] == "| pipeline | dice_organ | dice_lesion | seconds | peak_rss_mib | train_seconds | notes |"
    assert table[2] == "| single_stage | 0.5000 | nan | 1.25 | 100.0 | trained earlier | n |"
    assert table[3] == "| cascade | 0.1235 | 0.0000 | 2.0 | 120.5 | 3.0 | m |"
    assert format_rows(rows).splitlines() == table
