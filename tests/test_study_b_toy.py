"""Study B's command (issue 11, docs/benchmarks/study_b_small_targets) at toy size: the script that wrote the report."""
import os
import subprocess

import pytest

from e2e_utils import ROOT, check_study_at_toy_size


@pytest.mark.e2e
def test_study_b_command_runs_at_toy_size(tmp_path):
    check_study_at_toy_size(tmp_path, "study_b_small_targets.sh", arms=9)


def test_unknown_study_size_is_refused(tmp_path):
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "studies" / "study_b_small_targets.sh"), str(tmp_path)],
                          env=dict(os.environ, STUDY_SIZE="huge"), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "STUDY_SIZE must be full or tiny, got 'huge'" in proc.stderr
