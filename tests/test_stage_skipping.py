"""Stage-skipping segmentor: the threshold rule at chosen sizes (arithmetic in the comments), skipped stages do
not run, outputs match nnU-Net's deep-supervision targets, and the trainer mixin's scales and weights."""
import numpy as np
import pytest
import torch

from hand_plans import configuration_manager
from nnunet_ext_architectures.stage_skipping_segmentor import (
    SEGMENTOR_CLASS, StageSkippingSegmentor, first_active_stage, paper_threshold_index, spacing_based_strides,
    stage_skipping_kwargs_from_configuration)

torch.set_num_threads(1)
ISOTROPIC = [[1, 1, 1]] + [[2, 2, 2]] * 4  # N = 5


@pytest.mark.parametrize("v0, expected", [
    (64, 1),    # log2(64 / 4) = 4 -> r = 5 - 4 = 1 (all stages)
    (63, 2),    # log2(15.75) = 3.98 -> floor 3 -> r = 2
    (32, 2),    # log2(8) = 3 -> r = 2
    (16, 3),    # log2(4) = 2 -> r = 3
    (8, 4),     # log2(2) = 1 -> r = 4
    (4, 5),     # log2(1) = 0 -> r = 5
    (3, 5),     # log2(0.75) = -0.42 -> floor -1 -> r = 6 -> clamped to N = 5
    (1000, 1),  # log2(250) = 7.97 -> floor 7 -> r = -2 -> clamped to 1
])
def test_paper_threshold_index_with_floor_and_clamp(v0, expected):
    assert paper_threshold_index(v0, n_stages=5, s0=4) == expected


def test_per_axis_rule_equals_the_paper_for_isotropic_halving():
    for v0 in range(1, 200):
        assert first_active_stage((v0, v0, v0), ISOTROPIC, 4) == paper_threshold_index(v0, 5, 4), v0
    # a non-cubic input is limited by its smallest edge: (64, 64, 16) -> V0 = 16 -> r = 3
    assert first_active_stage((64, 64, 16), ISOTROPIC, 4) == 3


def test_anisotropic_strides_from_spacing_and_their_threshold():
    # spacing (3, 1, 1): z is halved only once the in-plane spacing has caught up within 2x
    # stage 2: z 3 > 2*1 -> [1, 2, 2], spacing (3, 2, 2); stage 3: z 3 <= 4 -> [2, 2, 2], then [2, 2, 2] twice
    strides = spacing_based_strides((3.0, 1.0, 1.0), 5)
    assert strides == [[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2], [2, 2, 2]]
    # input (16, 48, 48), s0 = 4: k=1 needs z >= 4*8 = 32 (no); k=2 needs z >= 4*8 = 32 (no);
    # k=3 needs z >= 4*4 = 16 and y, x >= 4*4 = 16 (yes) -> r = 3
    assert first_active_stage((16, 48, 48), strides, 4) == 3
    # (32, 64, 64): k=1 needs z >= 32, y, x >= 4*16 = 64 -> r = 1
    assert first_active_stage((32, 64, 64), strides, 4) == 1


def _net(deep_supervision=True, **overrides):
    kwargs = dict(n_stages=5, features_per_stage=[4, 8, 8, 8, 8], conv_op="torch.nn.Conv3d",
                  stage_strides=spacing_based_strides((3.0, 1.0, 1.0), 5), s0=4)
    kwargs.update(overrides)
    return StageSkippingSegmentor(1, 3, deep_supervision, **kwargs)


def test_outputs_follow_the_active_stages_and_nnunet_target_sizes():
    net = _net()
    # r = 3: active decoder levels 3 and 4 -> two outputs at strides 1 and [2, 2, 2]
    out = net(torch.randn(1, 1, 16, 48, 48))
    assert [tuple(o.shape) for o in out] == [(1, 3, 16, 48, 48), (1, 3, 8, 24, 24)]
    assert net.config.output_scales((16, 48, 48)) == [[1.0, 1.0, 1.0], [0.5, 0.5, 0.5]]
    # (8, 16, 16): k=4 needs z >= 4*2 = 8 and y, x >= 8 -> r = 4: a single decoder level
    assert net.active_stages((8, 16, 16)) == (4, 5)
    assert [tuple(o.shape) for o in net(torch.randn(1, 1, 8, 16, 16))] == [(1, 3, 8, 16, 16)]
    # (10, 28, 30) is not a multiple of the active stride 2: padded inside, cropped back
    assert [tuple(o.shape) for o in net(torch.randn(1, 1, 10, 28, 30))] == [(1, 3, 10, 28, 30)]
    net.decoder.deep_supervision = False
    assert tuple(net(torch.randn(1, 1, 16, 48, 48)).shape) == (1, 3, 16, 48, 48)


def test_skipped_stages_do_not_run_and_get_no_gradient():
    net = _net()
    calls = []
    for k in range(5):
        net.encoder_refine[k].register_forward_hook(lambda m, i, o, k=k: calls.append(k + 1))
    out = net(torch.randn(1, 1, 16, 48, 48))
    assert calls == [3, 4, 5]
    sum(o.sum() for o in out).backward()
    assert all(p.grad is None for p in net.gates[0].parameters())
    assert all(p.grad is None for p in net.encoder_refine[1].parameters())
    assert all(p.grad is not None for p in net.gates[2].parameters())


def test_parameters_do_not_depend_on_deep_supervision():
    assert _net(True).state_dict().keys() == _net(False).state_dict().keys()


def test_bad_configuration_is_named():
    with pytest.raises(ValueError, match="stage_strides\\[0\\]"):
        _net(stage_strides=[[2, 2, 2]] * 5)
    with pytest.raises(ValueError, match="features_per_stage"):
        _net(features_per_stage=[4, 8])
    with pytest.raises(ValueError, match="spatial axes"):
        _net()(torch.randn(1, 1, 16, 16))


def test_plans_entry_and_trainer_mixin_scales_and_weights():
    from nnunet_ext_trainers.stage_skipping_trainers import StageSkippingSegmentorTrainer

    entry = stage_skipping_kwargs_from_configuration(configuration_manager([16, 48, 48], spacing=[3.0, 1.0, 1.0]))
    assert entry["network_class_name"] == SEGMENTOR_CLASS
    assert entry["arch_kwargs"]["features_per_stage"] == [16, 32, 64, 128, 256]
    trainer = object.__new__(StageSkippingSegmentorTrainer)
    trainer.enable_deep_supervision, trainer.is_ddp = True, False
    trainer._do_i_compile = lambda: False
    trainer.configuration_manager = configuration_manager([16, 48, 48], spacing=[3.0, 1.0, 1.0])
    assert trainer._get_deep_supervision_scales() == [[1.0, 1.0, 1.0], [0.5, 0.5, 0.5]]
    # nnU-Net's rule for two outputs: [1, 1/2] with the last set to 0 -> [1, 0]
    np.testing.assert_allclose(trainer.deep_supervision_weights(), [1.0, 0.0])
    # patch (32, 64, 64): r = 1 -> four outputs -> [1, 1/2, 1/4, 0] / 1.75
    trainer.configuration_manager = configuration_manager([32, 64, 64], spacing=[3.0, 1.0, 1.0])
    assert len(trainer._get_deep_supervision_scales()) == 4
    np.testing.assert_allclose(trainer.deep_supervision_weights(), np.array([1, 0.5, 0.25, 0]) / 1.75)
    # patch (8, 16, 16): r = 4 -> one output, weight 1 (nnU-Net's rule would give 0 / 0)
    trainer.configuration_manager = configuration_manager([8, 16, 16], spacing=[3.0, 1.0, 1.0])
    np.testing.assert_allclose(trainer.deep_supervision_weights(), [1.0])
    network = StageSkippingSegmentorTrainer.build_network_architecture(
        None, configuration_manager([16, 48, 48], spacing=[3.0, 1.0, 1.0]), 2, 3, True)
    assert isinstance(network, StageSkippingSegmentor) and network.config.n_stages == 5


def test_plans_on_a_tiny_phantom_name_the_memory_budget_that_works():
    # nnU-Net's 3d_fullres plans of a 16x32x32 phantom (3 x 1 x 1 mm): PlainConvUNet, patch = whole image, so
    # its matched budget is tiny and the 5-stage segmentor cannot shrink below it; the error must name the
    # --memory-gb that fits, and planning with exactly that value must succeed.
    import re

    from nnunet_ext.planning.arch_plans import PLANNABLE, BudgetTooSmall, fit_configuration
    from nnunet_ext.planning.memory import GB

    cm = configuration_manager([16, 32, 32], [[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2]],
                               [[1, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3]], [32, 64, 128, 256], batch_size=2,
                               data_identifier="nnUNetPlans_3d_fullres", preprocessor_name="DefaultPreprocessor",
                               median_image_size_in_voxels=[16.0, 32.0, 32.0], spacing=[3.0, 1.0, 1.0],
                               normalization_schemes=["CTNormalization"], use_mask_for_norm=[False])
    plan = PLANNABLE["StageSkippingSegmentor"]
    with pytest.raises(BudgetTooSmall) as error:
        fit_configuration(plan, "3d_fullres", cm, 1, 3)
    suggested = float(re.search(r"pass --memory-gb ([0-9.]+) \(or more\)", str(error.value)).group(1))
    assert suggested == error.value.required_gb
    fit = fit_configuration(plan, "3d_fullres", cm, 1, 3, memory_gb=suggested)
    assert (fit.estimate.batch_size, fit.estimate.patch_size) == (2, (16, 32, 32))
    # rounded up to 1 MB: fits, and 1 MB less would not
    assert suggested - 0.001 < fit.estimate.total_bytes / GB <= suggested
