"""The real-scale cost benchmark: a tiny version of the committed run (docs/benchmarks/real_scale), and its table."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nnunet_ext.benchmark import real_scale
from nnunet_ext.benchmark.real_scale import main, merge_estimates, render
from nnunet_ext.data.phantoms import generate_dataset

DATASET_ID = 952


def row(trainer, memory, step, gflops, forward, checkpointing=False, cpu=None):
    return {"trainer": trainer, "patch_size": [16, 32, 32], "batch_size": 2, "parameters": 1_500_000,
            "gflops_per_patch": gflops, "train_memory_gb": memory, "memory_kind": "CPU peak RSS", "estimate_gb": None,
            "train_step_s": step, "train_step_cpu_s": cpu, "forward_ms": forward, "loss": 0.5,
            "checkpointing": checkpointing, "device": "cpu", "threads": 1, "notes": []}


def cells(table):
    return {line.split(" | ")[0].strip("| "): line.strip("|").split(" | ") for line in table.splitlines()
            if line.startswith("| ") and not line.startswith("| trainer ")}


def test_table_gives_ratios_to_the_first_trainer_and_names_failures():
    table = render([row("nnUNetTrainer", 2.0, 4.0, 10.0, 100.0), row("ESUNetTrainer", 3.0, 10.0, 50.0, 300.0, True),
                    {"trainer": "Broken", "error": "exit -9 (killed: out of memory?): Killed"}], "cmd", "T")
    lines = {line.split(" | ")[0].strip("| "): line for line in table.splitlines() if line.startswith("| ")}
    es = lines["ESUNetTrainer"].split(" | ")
    # columns: trainer, patch, ckpt, params, GFLOPs, FLOPs x, memory, memory x, estimate, s, time x, ms, forward x
    assert es[2] == "yes" and es[5] == "5.00" and es[7] == "1.50" and es[10] == "2.50" and es[12] == "3.00"
    assert "failed: exit -9 (killed: out of memory?)" in lines["Broken"]


def test_estimates_of_a_later_run_replace_the_measured_runs_at_the_same_patch_and_batch():
    old = dict(row("A", 2.0, 4.0, 10.0, 100.0), estimate_gb=1.0)
    sts = dict(row("S", 1.0, 1.0, 1.0, 10.0), notes=["no estimate: KeyError: 'strides'", "kept"])
    other_patch = row("B", 3.0, 5.0, 20.0, 200.0)
    failed = {"trainer": "Broken", "error": "exit 1"}
    estimates = [{"trainer": "A", "patch_size": [16, 32, 32], "batch_size": 2, "estimate_gb": 1.5},
                 {"trainer": "S", "patch_size": [16, 32, 32], "batch_size": 2, "estimate_gb": 0.75},
                 {"trainer": "B", "patch_size": [8, 32, 32], "batch_size": 2, "estimate_gb": 9.0},
                 {"trainer": "Broken", "error": "exit 1"}]
    merged = merge_estimates([old, sts, other_patch, failed], estimates)
    assert [r.get("estimate_gb") for r in merged] == [1.5, 0.75, None, None]
    assert merged[1]["notes"] == ["kept"] and merged[3] == failed and old["estimate_gb"] == 1.0  # input untouched
    table = render(merged, "measure", "T", estimate_command="estimate")
    assert "\n`measure`\n\n\"estimate GB\" is the current estimator's, written into this table from the measured " \
           "run's results.json by `estimate` (no training step)" in table
    cells = {line.split(" | ")[0].strip("| "): line.split(" | ")
             for line in table.splitlines() if line.startswith("| ")}
    assert cells["A"][8] == "1.50" and cells["S"][8] == "0.75" and cells["B"][8] == "-"
    assert "- S: kept" in table and "no estimate" not in table


def test_cpu_time_puts_cpu_seconds_per_step_and_their_ratio_beside_the_wall_clock():
    results = [row("nnUNetTrainer", 2.0, 4.0, 10.0, 100.0, cpu=0.30), row("ELAN", 3.0, 10.0, 9.0, 300.0, cpu=1.05),
               row("Old", 3.0, 8.0, 9.0, 300.0), {"trainer": "Broken", "error": "ValueError: bad patch"}]
    table = render(results, "cmd", "T", cpu_time=True)
    header = next(line for line in table.splitlines() if line.startswith("| trainer "))
    assert " | s / train step | time x | CPU s / train step | CPU time x | forward ms | " in header
    rows = cells(table)
    assert rows["ELAN"][9:13] == ["10.0", "2.50", "1.05", "3.50"] and rows["nnUNetTrainer"][11:13] == ["0.30", "1.00"]
    assert rows["Old"][11:13] == ["-", "-"]  # a results.json from before --cpu-time
    assert {line.count("|") for line in table.splitlines() if line.startswith("|")} == {len(rows["ELAN"]) + 1}
    assert "CPU s" not in render(results, "cmd", "T")


def test_a_failed_trainer_is_a_row_saying_why_and_the_run_exits_1(tmp_path, monkeypatch, capsys):
    # issue 10: the console line read a failed result's memory (KeyError: 'train_memory_gb'), hiding the error
    outcomes = {"nnUNetTrainer": row("nnUNetTrainer", 2.0, 4.0, 10.0, 100.0),
                "DLKUNetLTrainer": {"trainer": "DLKUNetLTrainer", "log": "Traceback ...",
                                    "error": "ValueError: patch 12x24x24 is not divisible by 16"},
                "ESUNetTrainer": row("ESUNetTrainer", 3.0, 10.0, 50.0, 300.0)}
    monkeypatch.setattr(real_scale, "measure_in_subprocess", lambda spec: dict(outcomes[spec["trainer_name"]]))
    monkeypatch.setattr("nnunet_ext.planning.arch_plans.preprocessed_dataset_folder", lambda dataset: tmp_path)
    out = tmp_path / "out"
    code = main(["-tr", *outcomes, "--patch", "12", "24", "24", "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 1
    assert "[real-scale] DLKUNetLTrainer: failed: ValueError: patch 12x24x24 is not divisible by 16" in captured.out
    assert "failed: DLKUNetLTrainer" in captured.err
    rows = cells((out / "table.md").read_text())
    assert rows["DLKUNetLTrainer"][1] == "failed: ValueError: patch 12x24x24 is not divisible by 16"
    assert rows["ESUNetTrainer"][5] == "5.00" and rows["ESUNetTrainer"][10] == "2.50"  # ratios to vanilla kept
    saved = json.loads((out / "results.json").read_text())
    assert [r["trainer"] for r in saved] == list(outcomes) and saved[1]["log"] == "Traceback ..."


def test_the_child_reports_its_exception_on_one_json_line(monkeypatch, capsys):
    def fail(**spec):
        raise ValueError("patch 12x24x24:\n  not divisible")

    monkeypatch.setattr(real_scale, "measure_trainer", fail)
    assert main(["--child", json.dumps({"trainer_name": "T", "steps": 1})]) == 1
    captured = capsys.readouterr()
    assert json.loads(captured.out.strip()) == {"trainer": "T", "error": "ValueError: patch 12x24x24: not divisible"}
    assert "Traceback" in captured.err


@pytest.mark.parametrize("code, stdout, stderr, error", [
    (1, '{"trainer": "T", "error": "ValueError: bad patch"}\n', "Traceback\nValueError: bad patch\n",
     "ValueError: bad patch"),
    (-9, "", "loading\nKilled\n", "exit -9 (killed: out of memory?): Killed"),
])
def test_a_failed_child_comes_back_as_one_error_line_and_its_log(monkeypatch, code, stdout, stderr, error):
    monkeypatch.setattr(real_scale.subprocess, "run",
                        lambda cmd, **kw: subprocess.CompletedProcess(cmd, code, stdout, stderr))
    result = real_scale.measure_in_subprocess({"trainer_name": "T", "threads": 1})
    assert result["trainer"] == "T" and result["error"] == error and stderr in result["log"]


def test_generate_plans_a_study_tasks_grid(monkeypatch):
    def not_planned(dataset):
        raise ValueError("not planned")

    commands = []
    monkeypatch.setattr("nnunet_ext.planning.arch_plans.preprocessed_dataset_folder", not_planned)
    monkeypatch.setattr(real_scale.subprocess, "run", lambda cmd, **kw: commands.append([Path(cmd[0]).name, *cmd[1:]]))
    real_scale._generate_and_plan(978, "organ_lesion", [16, 32, 32], [8.0, 3.0, 3.0])
    real_scale._generate_and_plan(979, "organ_lesion")
    real_scale._generate_and_plan(990)
    assert commands[0][-10:] == ["--task", "organ_lesion", "--shape", "16", "32", "32",
                                 "--spacing", "8.0", "3.0", "3.0"]
    assert commands[2][-2:] == ["--task", "organ_lesion"]  # the task's own grid
    assert commands[4][-10:] == ["--task", "phantom", "--shape", "120", "200", "200", "--spacing", "1.0", "1.0", "1.0"]
    assert commands[1][:3] == ["nnUNetv2_plan_and_preprocess", "-d", "978"]


@pytest.mark.parametrize("argv, message", [
    (["--estimate-only", "--cpu-time"], "--cpu-time times training steps, which --estimate-only does not run"),
    (["--task", "organ_lesion"], "--task, --shape and --spacing go with --generate"),
    (["--shape", "16", "32", "32"], "--task, --shape and --spacing go with --generate"),
    (["--generate", "--shape", "0", "32", "32"], "must be >= 1, got 0"),
    (["--generate", "--spacing", "8", "3"], "expected 3 arguments"),
    (["--generate", "--task", "nope"], "invalid choice: 'nope'"),
    (["--measured", "x.json"], "--measured goes with --estimate-only"),
    (["--estimate-only", "--measured-command", "m"], "--measured-command goes with --measured and --out"),
    (["--estimate-only", "--measured", "/nonexistent/results.json"], "cannot read a results.json"),
])
def test_bad_options_are_refused_with_a_sentence(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


TIME_V = """\tCommand being timed: "nnUNetv2_train 990 3d_fullres 0"
\tUser time (seconds): {user}
\tSystem time (seconds): 10.50
\tElapsed (wall clock) time (h:mm:ss or m:ss): {wall}
\tMaximum resident set size (kbytes): {rss}
\tExit status: 0
"""


def test_e2e_script_tabulates_peak_rss_and_times_from_time_v_reports(tmp_path):
    (tmp_path / "time_train_A.txt").write_text(TIME_V.format(user="100.00", wall="1:02:03", rss=2 * 1048576))
    (tmp_path / "time_predict_A.txt").write_text(TIME_V.format(user="19.50", wall="2:30.40", rss=1048576 // 2))
    script = Path(__file__).parents[1] / "docs" / "benchmarks" / "real_scale" / "e2e.sh"
    table = subprocess.run(["bash", str(script), "--table", str(tmp_path)], capture_output=True, text=True,
                           check=True).stdout.splitlines()
    # 1:02:03 = 3723 s; 2:30.40 = 150.4 s; CPU = user + system; 2 GiB and 0.5 GiB of RSS
    assert table[2:] == ["| A | nnUNetv2_train | 0 | 2.00 | 3723 | 110 |",
                         "| A | nnUNetv2_predict | 0 | 0.50 | 150 | 30 |"]


def test_e2e_script_says_when_the_kernel_killed_a_command(tmp_path):
    # /usr/bin/time -v writes "Exit status: 0" after a signal; the first line says what happened
    report = "Command terminated by signal 9\n" + TIME_V.format(user="700.00", wall="11:27.97", rss=19347780)
    (tmp_path / "time_train_ES.txt").write_text(report)
    script = Path(__file__).parents[1] / "docs" / "benchmarks" / "real_scale" / "e2e.sh"
    table = subprocess.run(["bash", str(script), "--table", str(tmp_path)], capture_output=True, text=True,
                           check=True).stdout.splitlines()
    assert table[2:] == ["| ES | nnUNetv2_train | killed by signal 9 | 18.45 | 688 | 710 |"]


@pytest.mark.e2e
def test_tiny_run_measures_vanilla_and_es_unet_at_the_stock_plans(tmp_path):
    env = dict(os.environ, nnUNet_raw=str(tmp_path / "raw"), nnUNet_preprocessed=str(tmp_path / "pre"),
               nnUNet_results=str(tmp_path / "res"), nnUNet_def_n_proc="1", OMP_NUM_THREADS="1")
    generate_dataset(tmp_path / "raw", DATASET_ID, num_cases=4, shape=(16, 32, 32))
    proc = subprocess.run([str(Path(sys.executable).parent / "nnUNetv2_plan_and_preprocess"), "-d", str(DATASET_ID),
                           "-c", "3d_fullres", "-np", "1"],
                          env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "nnunet_ext.benchmark.real_scale", "-d", str(DATASET_ID),
                           "--steps", "2", "--threads", "1", "-tr", "nnUNetTrainer", "ESUNetTrainer",
                           "--out", str(out)], env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    plans = json.loads((tmp_path / "pre" / f"Dataset{DATASET_ID}_Phantom" / "nnUNetPlans.json").read_text())
    planned = plans["configurations"]["3d_fullres"]
    vanilla, es = json.loads((out / "results.json").read_text())
    for r in (vanilla, es):
        assert r["patch_size"] == planned["patch_size"] and r["batch_size"] == planned["batch_size"]
        assert r["train_memory_gb"] > 0 and r["train_step_s"] > 0 and r["loss"] == r["loss"]  # finite, not NaN
        assert 0 < r["train_step_cpu_s"] and len(r["train_step_cpu_all_s"]) == 1
    assert es["checkpointing"] and not vanilla["checkpointing"]
    assert es["gflops_per_patch"] > vanilla["gflops_per_patch"]  # the full-scale decoder's arithmetic
    assert "| ESUNetTrainer |" in (out / "table.md").read_text()
