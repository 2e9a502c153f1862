import shutil

import pytest
import torch

# Two cores on CI: keep torch from oversubscribing them when several test processes run.
torch.set_num_threads(1)

# The slowest modules first, longest first (seconds per module from `--durations` of a fresh-clone CI run,
# 2026-12-06: 680 ... 126). scripts/test.sh runs one module per worker at a time (--dist loadfile) in collection
# order (--no-loadscope-reorder); xdist's own order (modules with the most tests first) left the toy studies, a
# 7-min module, for the end, with the other worker idle.
SLOWEST_FIRST = ("test_e2e_foundation", "test_e2e_loss_schedules", "test_study_b_toy", "test_study_a_toy",
                 "test_e2e_cascade", "test_e2e_gpu_check", "test_e2e_dlkunet_elanres", "test_compile",
                 "test_e2e_amplification", "test_e2e_sts_net", "test_e2e_export", "test_benchmark_e2e")


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(SLOWEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.stem, len(rank)))  # stable


@pytest.fixture(scope="module", autouse=True)
def free_module_scratch(request, tmp_path_factory):
    """Removes what a test module wrote under pytest's temporary folder once the module is done, unless one of its
    tests failed. nnU-Net's datasets, preprocessed data and checkpoints of all modules together came to over 5 GB
    by the end of a run; with one module at a time per worker the peak is about that of the two largest."""
    basetemp = tmp_path_factory.getbasetemp()
    before = set(basetemp.iterdir())
    failed_before = request.session.testsfailed
    yield
    if request.session.testsfailed == failed_before:
        for path in set(basetemp.iterdir()) - before:
            shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def ws(request, tmp_path_factory):
    """The end-to-end workspace of a test module: its ``PHANTOM`` (an ``e2e_utils.Phantom``), generated and
    planned by nnU-Net once per module."""
    phantom = getattr(request.module, "PHANTOM", None)
    if phantom is None:
        raise RuntimeError(f"{request.module.__name__} uses the ws fixture but defines no module-level "
                           f"PHANTOM = e2e_utils.Phantom(...)")
    return phantom.plan(tmp_path_factory)
