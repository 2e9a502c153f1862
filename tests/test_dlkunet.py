"""DLKUNet: Table 1 parameter counts, hand-counted blocks, forward shapes (2D/3D, anisotropic), plans kwargs."""
import pytest
import torch
from torch import nn

from hand_plans import configuration_manager
from nnunet_ext.network_cost import count_parameters
from nnunet_ext.training.dlkunet import DLKUNetArchitecture, check_patch_divisible, output_scales
from nnunet_ext_architectures.dlkunet import (PAPER_PARAMS_M, DLKUNet, EBlock, LargeKernelAttention,
                                              LargeKernelConfig, dlkunet_kwargs_from_configuration,
                                              paper_preset_kwargs, pad_to)

# Relative tolerance against Table 1 (documented in docs/dlkunet.md): our count includes the 1x1
# deep-supervision heads (< 0.3 %), the paper rounds to 0.01 M.
TABLE1_TOLERANCE = 0.05


@pytest.mark.parametrize("preset", ["S", "M", "L"])
def test_paper_preset_parameter_counts_match_table1(preset):
    net = DLKUNet(1, 9, False, **paper_preset_kwargs(preset))  # Synapse: 1 channel, 8 organs + background
    count = count_parameters(net) / 1e6
    assert abs(count - PAPER_PARAMS_M[preset]) / PAPER_PARAMS_M[preset] < TABLE1_TOLERANCE, (preset, count)


def test_preset_without_ds_heads_is_the_table1_network_to_the_digit():
    # Without the extra deep-supervision heads the count rounds to exactly Table 1's 4.49 M (M preset).
    net = DLKUNet(1, 9, False, **paper_preset_kwargs("M"))
    heads = sum(count_parameters(h) for h in net.decoder.seg_layers[:-1])
    assert round((count_parameters(net) - heads) / 1e6, 2) == 4.49


def test_eblock_parameter_count_by_hand_2d():
    # dw3 2*9+2 | pw 2*4+4 | bn 8 | dw3 4*9+4 | pw 4*4+4 | bn 8 | lka dw5 4*25+4 | dw7 4*49+4 | pw 4*4+4
    expected = 20 + 12 + 8 + 40 + 20 + 8 + 104 + 200 + 20
    assert count_parameters(EBlock(nn.Conv2d, 2, 4, (3, 3), LargeKernelConfig())) == expected == 432


def test_eblock_parameter_count_by_hand_3d_anisotropic_and_isotropic():
    # an axis with plans kernel 1 gets no large kernel: (1,3,3) counts like 2D
    assert count_parameters(EBlock(nn.Conv3d, 2, 4, (1, 3, 3), LargeKernelConfig())) == 432
    expected = (2 * 27 + 2) + 12 + 8 + (4 * 27 + 4) + 20 + 8 + (4 * 125 + 4) + (4 * 343 + 4) + 20
    assert count_parameters(EBlock(nn.Conv3d, 2, 4, (3, 3, 3), LargeKernelConfig())) == expected


@pytest.mark.parametrize("residual, factor", [(True, 1.0 + 0.5), (False, 0.5)])
def test_large_kernel_attention_gates_its_input(residual, factor):
    lka = LargeKernelAttention(nn.Conv2d, 3, (3, 3), LargeKernelConfig(residual=residual))
    with torch.no_grad():
        lka.pointwise.weight.zero_()
        lka.pointwise.bias.fill_(0.5)  # attention map == 0.5 everywhere
    x = torch.randn(2, 3, 9, 9)
    torch.testing.assert_close(lka(x), x * factor)


def test_large_kernel_attention_dilated_receptive_field():
    # depthwise 5 then 7-tap dilation 3: reach 2 + 9 = 11 voxels each side, so 23 in total
    lka = LargeKernelAttention(nn.Conv2d, 1, (3, 3), LargeKernelConfig(residual=False))
    x = torch.zeros(1, 1, 41, 41, requires_grad=True)
    out = lka.pointwise(lka.spatial(lka.depthwise(x)))
    out[0, 0, 20, 20].backward()
    rows = torch.nonzero(x.grad[0, 0].abs().sum(1)).flatten()
    assert (rows.min().item(), rows.max().item()) == (20 - 11, 20 + 11)


def test_pad_to_centres_the_map():
    x = torch.ones(1, 1, 3, 4)
    y = pad_to(x, (6, 5))
    assert y.shape == (1, 1, 6, 5)
    assert y[0, 0].sum().item() == 12
    assert y[0, 0, 1:4, 0:4].sum().item() == 12  # rows padded 1 before / 2 after, columns 0 / 1
    with pytest.raises(RuntimeError, match="larger than its skip"):
        pad_to(x, (2, 4))


def test_forward_shapes_2d_with_and_without_deep_supervision():
    torch.manual_seed(0)
    net = DLKUNet(1, 3, True, **paper_preset_kwargs("S"))
    outs = net(torch.randn(2, 1, 32, 32))
    assert [tuple(o.shape) for o in outs] == [(2, 3, 32, 32), (2, 3, 16, 16)]
    net.decoder.deep_supervision = False
    assert net(torch.randn(1, 1, 30, 30)).shape == (1, 3, 30, 30)  # odd sizes: auto-resize pads


def test_forward_shapes_3d_anisotropic_strides():
    net = DLKUNet(2, 4, True, n_stages=3, features_per_stage=[4, 8, 16], conv_op=nn.Conv3d,
                  kernel_sizes=[[1, 3, 3], [3, 3, 3], [3, 3, 3]], strides=[[1, 1, 1], [1, 2, 2], [2, 2, 2]])
    outs = net(torch.randn(1, 2, 8, 16, 16))
    assert [tuple(o.shape) for o in outs] == [(1, 4, 8, 16, 16), (1, 4, 8, 8, 8)]
    assert net.deep_supervision_scales() == [[1.0, 1.0, 1.0], [1.0, 0.5, 0.5]]
    # the first stage's (1,3,3) kernel is honoured all the way down to the large kernel
    assert net.encoder.stages[0][0].attention.spatial.kernel_size == (1, 7, 7)


def test_state_dict_keys_do_not_depend_on_deep_supervision():
    kwargs = paper_preset_kwargs("M")
    assert DLKUNet(1, 3, True, **kwargs).state_dict().keys() == DLKUNet(1, 3, False, **kwargs).state_dict().keys()


def test_bad_input_raises_named_errors():
    with pytest.raises(ValueError, match="unknown DLKUNet preset"):
        paper_preset_kwargs("XL")
    with pytest.raises(ValueError, match="conv_op"):
        DLKUNet(1, 2, False, n_stages=2, features_per_stage=[4, 8], conv_op="torch.nn.Linear")
    with pytest.raises(ValueError, match="odd"):
        DLKUNet(1, 2, False, n_stages=2, features_per_stage=[4, 8], kernel_sizes=4)
    with pytest.raises(ValueError, match="one entry per stage"):
        DLKUNet(1, 2, False, n_stages=3, features_per_stage=[4, 8, 16], strides=[1, 2])
    net = DLKUNet(1, 2, False, n_stages=2, features_per_stage=[4, 8])
    with pytest.raises(ValueError, match="spatial axes"):
        net(torch.randn(1, 1, 4, 8, 8))


def test_kwargs_from_configuration_follow_the_plans_and_presets():
    cm = configuration_manager([16, 48, 48], [[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2]],
                               [[1, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3]], [32, 64, 128, 256])
    kw = dlkunet_kwargs_from_configuration(cm, max_stages=3)
    assert kw["n_stages"] == 3 and kw["features_per_stage"] == [32, 64, 128]
    assert kw["strides"] == [[1, 1, 1], [1, 2, 2], [2, 2, 2]] and kw["conv_op"] == "torch.nn.modules.conv.Conv3d"
    preset = dlkunet_kwargs_from_configuration(cm, preset="L")
    assert preset["features_per_stage"] == [96, 192, 384, 768, 1536] and preset["kernel_sizes"][0] == [3, 3, 3]
    net = DLKUNet(1, 2, True, **kw)  # JSON-style kwargs (conv_op as a dotted name) build directly
    assert isinstance(net.encoder.stages[0][0].conv1.depthwise, nn.Conv3d)


def test_trainer_mixin_uses_preset_on_2d_and_capped_plans_on_3d():
    class Mixin(DLKUNetArchitecture):
        dlkunet_preset = "M"

    cm2d = configuration_manager([64, 64], [[1, 1]] + [[2, 2]] * 4, [[3, 3]] * 5, [32, 64, 128, 256, 512])
    assert Mixin.dlkunet_kwargs(cm2d)["features_per_stage"] == [96, 192, 384, 768]
    cm3d = configuration_manager([16, 48, 48], [[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2], [1, 2, 2]],
                                 [[1, 3, 3]] + [[3, 3, 3]] * 4, [32, 64, 128, 256, 320])
    kw = Mixin.dlkunet_kwargs(cm3d)
    assert kw["n_stages"] == 4 and kw["features_per_stage"] == [32, 64, 128, 256]
    assert output_scales(kw["strides"]) == [[1.0, 1.0, 1.0], [1.0, 0.5, 0.5], [0.5, 0.25, 0.25]]
    with pytest.raises(ValueError, match="not divisible"):
        check_patch_divisible([18, 48, 48], kw["strides"], "DLKUNetMTrainer")
