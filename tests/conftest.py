import pytest
import torch

# Two cores on CI: keep torch from oversubscribing them when several test processes run.
torch.set_num_threads(1)


@pytest.fixture(scope="module")
def ws(request, tmp_path_factory):
    """The end-to-end workspace of a test module: its ``PHANTOM`` (an ``e2e_utils.Phantom``), generated and
    planned by nnU-Net once per module."""
    phantom = getattr(request.module, "PHANTOM", None)
    if phantom is None:
        raise RuntimeError(f"{request.module.__name__} uses the ws fixture but defines no module-level "
                           f"PHANTOM = e2e_utils.Phantom(...)")
    return phantom.plan(tmp_path_factory)
