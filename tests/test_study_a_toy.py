"""Study A's command (issue 11, docs/benchmarks/study_a_es_unet) at toy size: the script that wrote the report.
A module of its own so that the two toy studies run on different test workers."""
import pytest

from e2e_utils import check_study_at_toy_size

pytestmark = pytest.mark.e2e


def test_study_a_command_runs_at_toy_size(tmp_path):
    # vanilla + five trainers + the ResEnc arm (5% dataset cap on its batch)
    check_study_at_toy_size(tmp_path, "study_a_es_unet.sh", arms=7)
