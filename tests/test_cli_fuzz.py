"""Every ``nnunet-ext`` sub-command with bad ids, names, paths, sizes and numbers (issue 15 item 9).

Each case must end with exit code 1 and one line on stderr naming the problem: no traceback, nothing on
stdout, and nothing written anywhere in the test's folders (nnU-Net's three folders, the working directory,
the checkpoint folder). The cases run in-process through ``main()``; two also run as real processes.
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nnunet_ext.cli import main

BAD_CHECKPOINT = "garbage.pt"
CRAFTED_CHECKPOINT = "crafted.pt"
MARKER = "code_ran"


class _Payload:
    def __reduce__(self):  # loading with weights_only=False would create the marker file in the working directory
        return open, (MARKER, "w")


CASES = [
    # (argv, pattern the one stderr line must contain)
    ([], "the following arguments are required: COMMAND"),
    (["nope"], "argument COMMAND: invalid choice: 'nope'"),
    (["trainers-dir", "extra"], "unrecognized arguments: extra"),
    (["list", "trainerz"], "argument kind: invalid choice: 'trainerz'"),
    (["generate", "--id", "0"], "argument --id: dataset id must be in 1..999"),
    (["generate", "--id", "1500"], "argument --id: dataset id must be in 1..999 (nnU-Net pads it to three digits), "
                                   "got 1500"),
    (["generate", "--id", "abc"], "argument --id: dataset id must be an integer in 1..999, got 'abc'"),
    (["generate", "--id", "5", "--name", "../evil"], "argument --name: dataset name must be letters"),
    (["generate", "--id", "5", "--cases", "0"], "argument --cases: must be >= 1, got 0"),
    (["generate", "--id", "5", "--shape", "4", "64", "64"], "every axis needs at least 8 voxels"),
    (["generate", "--id", "5", "--spacing", "-1", "1", "1"], "argument --spacing: must be > 0.0, got -1"),
    (["generate", "--id", "5", "--spacing", "nan", "1", "1"], "argument --spacing: expected a finite number"),
    (["generate", "--id", "5", "--spacing", "1", "1"], "must have one entry per shape axis"),
    (["plans", "-d", "1", "-a", "ESUNet", "--optimizer-states", "0"], "argument --optimizer-states: must be >= 1"),
    (["plans", "-d", "1", "-a", "ESUNet", "--optimizer-states", "-2"], "argument --optimizer-states: must be >= 1"),
    (["plans", "-d", "1", "-a", "ESUNet", "--memory-gb", "-2"], "argument --memory-gb: must be > 0.0"),
    (["plans", "-d", "Dataset1_x", "-a", "ESUNet"], "a dataset name looks like Dataset001_Name"),
    (["plans", "-d", "77", "-a", "ESUNet"], "found no preprocessed folder for dataset 77"),
    (["lesion-stats", "-d", "1500", "-c", "3d_fullres"], "argument -d/--dataset: dataset id must be in 1..999"),
    (["lesion-stats", "-d", "44", "-c", "3d_fullres"], "no folder has dataset id 44"),
    (["lesion-stats", "-d", "5", "-c", "3d_fullres"], "no plans file"),
    (["lesion-stats", "-d", "Dataset005_Other", "-c", "2d"], "no dataset Dataset005_Other; dataset id 5 is "
                                                             "Dataset005_Empty"),
    (["demo", "--epochs", "0"], "argument --epochs: must be >= 1, got 0"),
    (["demo", "--test-cases", "-3"], "argument --test-cases: must be >= 0, got -3"),
    (["benchmark", "-d", "0"], "argument -d/--dataset: dataset id must be in 1..999"),
    (["benchmark", "-d", "5", "--epochs", "0"], "argument --epochs: must be >= 1"),
    (["benchmark", "-d", "5", "-f", "-1"], "argument -f/--folds: fold must be >= 0, got -1"),
    (["benchmark", "-d", "5", "--pipeline-ids", "1000", "7"], "argument --pipeline-ids: dataset id must be in"),
    (["benchmark", "-d", "5", "--nsd-tolerance", "inf"], "argument --nsd-tolerance: expected a finite number"),
    (["benchmark", "-d", "5", "--device", "gpu"], "argument --device: invalid choice: 'gpu'"),
    (["benchmark", "-d", "5", "--device", "cpu", "--resenc-dataset-cap"],
     "--resenc-dataset-cap caps the ResEnc arm's batch; it needs --resenc M|L|XL|nearest"),
    (["cascade", "prepare", "--source", "4", "--target-id", "6", "--name", "x/../../y"],
     "argument --name: dataset name must be"),
    (["cascade", "prepare", "--source", "4", "--target-id", "1500"], "argument --target-id: dataset id must be in"),
    (["cascade", "prepare", "--source", "4", "--target-id", "6", "--copies", "0"], "argument --copies: must be >= 1"),
    (["cascade", "prepare", "--source", "4", "--target-id", "6", "--margin", "-1"], "argument --margin: must be >= 0"),
    (["cascade", "prepare", "--source", "44", "--target-id", "45"], "expected one raw folder Dataset044_*"),
    (["cascade", "prepare", "--source", "44", "--target-id", "45", "--target", "all", "--no-organ-channel",
      "--region-source", "detector", "--detector", "missing.pt"], "detector checkpoint missing.pt does not exist"),
    (["cascade", "predict", "-i", "missing", "-o", "out", "--stage2", "6", "3d_fullres", "T", "--detector", "d.pt",
      "--device", "cpu"], "input folder missing does not exist"),
    (["cascade", "predict", "-i", ".", "-o", "out", "--stage2", "abc", "3d_fullres", "T", "--detector", "d.pt",
      "--device", "cpu"], "dataset id must be an integer in 1..999, got 'abc'"),
    (["cascade", "predict", "-i", ".", "-o", "out", "--stage2", "6", "3d", "T", "--detector", "d.pt", "-f", "-1"],
     "argument -f/--folds: must be >= 0, got -1"),
    (["cascade", "compare", "-d", "1000", "--cascade-id", "6", "--detector-stage2-id", "7", "--workspace", "w"],
     "argument -d: dataset id must be in 1..999"),
    (["cascade", "compare", "-d", "4", "--cascade-id", "0", "--detector-stage2-id", "7", "--workspace", "w"],
     "argument --cascade-id: dataset id must be in 1..999"),
    (["detector", "train", "-d", "5", "--steps", "0"], "argument --steps: must be >= 1, got 0"),
    (["detector", "train", "-d", "5", "-f", "-2"], "argument -f: must be >= 0, got -2"),
    (["detector", "train", "-d", "44"], "no (unique) preprocessed folder for dataset 44"),
    (["detector", "predict", "-i", ".", "--checkpoint", "missing.pt"], "detector checkpoint missing.pt does not exist"),
    (["detector", "predict", "-i", ".", "--checkpoint", BAD_CHECKPOINT],
     "not a detector checkpoint: garbage.pt does not load as tensors and plain data"),
    (["detector", "predict", "-i", ".", "--checkpoint", CRAFTED_CHECKPOINT],
     "Unsupported global: GLOBAL io.open was not an allowed global by default"),
    (["detector", "predict", "-i", "missing", "--checkpoint", BAD_CHECKPOINT], "input folder missing does not exist"),
    (["cost", "--input-size", "0"], "argument --input-size: must be >= 1, got 0"),
    (["cost", "--input-size", "12"], "input size must be a positive multiple of 8"),
    (["cost", "--device", "gpu"], "argument --device: invalid choice: 'gpu'"),
]


def _tree(root: Path) -> dict:
    return {str(p.relative_to(root)): p.stat().st_size for p in sorted(root.rglob("*"))}


@pytest.fixture
def world(tmp_path, monkeypatch):
    """nnU-Net's three folders (one empty preprocessed dataset 5, one raw dataset 4) and a working directory."""
    for var in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        (tmp_path / var).mkdir()
        monkeypatch.setenv(var, str(tmp_path / var))
    monkeypatch.delenv("NNUNET_EXT_DEBUG", raising=False)
    (tmp_path / "nnUNet_preprocessed" / "Dataset005_Empty").mkdir()
    (tmp_path / "nnUNet_raw" / "Dataset004_Src" / "imagesTr").mkdir(parents=True)
    work = tmp_path / "work"
    work.mkdir()
    (work / BAD_CHECKPOINT).write_bytes(b"\x80\x02not a torch file")
    torch.save({"state_dict": {}, "config": _Payload()}, work / CRAFTED_CHECKPOINT)
    monkeypatch.chdir(work)
    return tmp_path


def _run_in_process(argv, capsys):
    try:
        code = main(argv)
    except SystemExit as stop:  # a command's own `raise SystemExit("message")`: Python prints it, exit code 1
        code = 1 if isinstance(stop.code, str) else stop.code
        if isinstance(stop.code, str):
            print(stop.code, file=sys.stderr)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("argv, problem", CASES, ids=[" ".join(a[:3]) + f" #{i}" for i, (a, _) in enumerate(CASES)])
def test_bad_input_fails_in_one_line(world, capsys, argv, problem):
    before = _tree(world)
    code, out, err = _run_in_process(argv, capsys)
    assert code == 1, (code, err)
    assert out == ""
    assert "Traceback" not in err and err.endswith("\n") and err.count("\n") == 1, err
    assert err.startswith("nnunet-ext"), err
    assert problem in err, err
    assert _tree(world) == before  # nothing written, not even in the given folders
    assert not (world / "work" / MARKER).exists()


def test_every_sub_command_is_fuzzed():
    from nnunet_ext.cli import COMMANDS

    fuzzed = {argv[0] for argv, _ in CASES if argv}
    assert fuzzed >= set(COMMANDS) - {"export"}  # export: its own tests (issue 13 item 4)
    actions = {tuple(argv[:2]) for argv, _ in CASES if argv and argv[0] in ("cascade", "detector")}
    assert actions == {("cascade", "prepare"), ("cascade", "predict"), ("cascade", "compare"),
                       ("detector", "train"), ("detector", "predict")}


@pytest.mark.parametrize("argv, problem", [
    (["cascade", "prepare", "--source", "4", "--target-id", "6", "--name", "x/../../y"],
     "nnunet-ext cascade prepare: error: argument --name: dataset name must be"),
    (["detector", "predict", "-i", ".", "--checkpoint", CRAFTED_CHECKPOINT],
     "nnunet-ext detector predict: error: not a detector checkpoint: crafted.pt does not load"),
])
def test_a_real_process_prints_one_line_and_exits_1(world, argv, problem):
    before = _tree(world)
    env = {k: v for k, v in os.environ.items() if k != "NNUNET_EXT_DEBUG"}
    env["PYTHONWARNINGS"] = "ignore"  # torch's own import-time deprecation notes are not ours to test
    proc = subprocess.run([sys.executable, "-m", "nnunet_ext.cli", *argv], capture_output=True, text=True, env=env,
                          timeout=120)
    assert proc.returncode == 1
    assert proc.stdout == "" and proc.stderr.count("\n") == 1 and proc.stderr.startswith(problem), proc.stderr
    assert _tree(world) == before and not (world / "work" / MARKER).exists()
    debug = subprocess.run([sys.executable, "-m", "nnunet_ext.cli", "--debug", *argv], capture_output=True, text=True,
                           env=env, timeout=120)
    if argv[0] == "detector":  # a run-time error: --debug shows where it came from
        assert debug.returncode == 1 and "Traceback" in debug.stderr and "DetectorCheckpointError" in debug.stderr
