"""The study commands of issue 11 at toy size: the same scripts that wrote docs/benchmarks/study_*."""
import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("script, arms", [
    ("study_b_small_targets.sh", 9),
    ("study_a_es_unet.sh", 7),       # vanilla + five trainers + the ResEnc arm (5% dataset cap on its batch)
])
def test_study_command_runs_at_toy_size(tmp_path, script, arms):
    env = dict(os.environ, STUDY_SIZE="tiny", BIN=str(Path(sys.executable).parent), STUDY_PARALLEL="1")
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "studies" / script), str(tmp_path / "work")], env=env,
                          capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = (tmp_path / "work" / "report" / "report.md").read_text()
    for section in ("## Verdicts", "## Convergence", "## Accuracy"):
        assert section in report
    with open(tmp_path / "work" / "report" / "cases.csv") as f:
        trainers = {row["trainer"] for row in csv.DictReader(f)}
    assert len(trainers) == arms
    # two iterations cannot meet the convergence criterion: the report must say so, not hide it
    assert "too short" in report or "**Not converged by this criterion:**" in report
    assert "--report-only" not in report
    # STUDY_REPORT_ONLY=1: the same script rewrites the report from the finished runs, training nothing
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "work").rglob("checkpoint_final.pth")}
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "studies" / script), str(tmp_path / "work")],
                          env=dict(env, STUDY_REPORT_ONLY="1"), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "--report-only" in (tmp_path / "work" / "report" / "report.md").read_text()
    assert before and before == {p: p.stat().st_mtime_ns for p in (tmp_path / "work").rglob("checkpoint_final.pth")}


def test_unknown_study_size_is_refused(tmp_path):
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "studies" / "study_b_small_targets.sh"), str(tmp_path)],
                          env=dict(os.environ, STUDY_SIZE="huge"), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "STUDY_SIZE must be full or tiny, got 'huge'" in proc.stderr
