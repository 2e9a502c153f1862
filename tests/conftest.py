import shutil

import pytest
import torch

# Two cores on CI: keep torch from oversubscribing them when several test processes run.
torch.set_num_threads(1)


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
