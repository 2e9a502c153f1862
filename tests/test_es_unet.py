"""ES-UNet / 3D UNet 3+ networks, their nnU-Net mixins and the cost counter (hand-computed numbers)."""
import json

import numpy as np
import pytest
import torch
from torch import nn

from hand_plans import configuration_manager
from nnunet_ext.network_cost import conv_flops, count_flops, count_parameters, measure
from nnunet_ext.registry import entries
from nnunet_ext.training.base import ExtTrainer
from nnunet_ext.training.es_unet import ESUNetArchitecture, UNet3PlusArchitecture
from nnunet_ext_architectures.es_unet import (
    ESUNet, UNet3Plus, build_paper_network, es_unet_kwargs_from_configuration, paper_preset_kwargs)

# Table 9 (ES-UNet paper): params in M; "FLOPs" in G (they are multiply-adds, see docs/es_unet.md)
PAPER = {"es_unet": (9.01, 3020.38), "unet3plus": (6.14, 3286.40)}
PARAMS_TOLERANCE = 0.005  # both presets land within 0.5 % of Table 9
MACS_TOLERANCE = {"es_unet": 0.02, "unet3plus": 0.005}  # ES-UNet: +1.7 %, see docs


def conv_p(ci, co, k):
    """conv weight + bias + BN (weight, bias)"""
    return k * ci * co + co + 2 * co


def se_p(c):
    h = max(1, round(c * 0.25))
    return c * h + h + h * c + c


def tiny(cls=ESUNet, conv_op=nn.Conv3d, ds=True, **kw):
    dim = 3 if conv_op is nn.Conv3d else 2
    kwargs = dict(n_stages=3, features_per_stage=[4, 8, 16], conv_op=conv_op, kernel_sizes=3,
                  strides=[[1] * dim, [2] * dim, [2] * dim], skip_channels=2)
    kwargs.update(kw)
    torch.manual_seed(0)
    return cls(1, 3, ds, **kwargs)


# ------------------------------------------------------------------------------------------ forward
@pytest.mark.parametrize("cls, n_out", [(ESUNet, 4), (UNet3Plus, 3)])
@pytest.mark.parametrize("conv_op, size", [(nn.Conv2d, (8, 12)), (nn.Conv3d, (4, 8, 4))])
def test_deep_supervision_outputs_are_full_resolution(cls, n_out, conv_op, size):
    net = tiny(cls, conv_op).eval()
    x = torch.randn(2, 1, *size)
    out = net(x)
    assert isinstance(out, list) and len(out) == n_out == net.num_outputs
    assert all(o.shape == (2, 3, *size) for o in out)
    net.decoder.deep_supervision = False  # what nnU-Net's set_deep_supervision_enabled does
    single = net(x)
    assert torch.is_tensor(single) and torch.allclose(single, out[0])


def test_es_unet_prediction_is_the_mean_of_the_head_logits():
    out = tiny().eval()(torch.randn(1, 1, 4, 4, 4))
    assert torch.allclose(out[0], (out[1] + out[2] + out[3]) / 3, atol=1e-6)


def test_unet3plus_prediction_is_its_finest_head():
    net = tiny(UNet3Plus).eval()
    x = torch.randn(1, 1, 4, 4, 4)
    skips = net.encoder(x)
    finest = net.decoder.heads[0](net.decoder.stages["0"](skips, {2: skips[2], 1: net.decoder.stages["1"](
        skips, {2: skips[2]})}))
    assert torch.allclose(net(x)[0], finest, atol=1e-6)


@pytest.mark.parametrize("cls", [ESUNet, UNet3Plus])
def test_state_dict_keys_do_not_depend_on_deep_supervision(cls):
    assert tiny(cls, ds=True).state_dict().keys() == tiny(cls, ds=False).state_dict().keys()


def test_anisotropic_strides_pool_and_upsample_by_the_stage_strides():
    strides = [[1, 1, 1], [1, 2, 2], [2, 2, 2]]
    net = tiny(strides=strides, kernel_sizes=[[1, 3, 3], [3, 3, 3], [3, 3, 3]]).eval()
    stage2 = net.decoder.stages["2"]
    assert list(stage2.encoder_paths["0"].pool.kernel_size) == [2, 4, 4]  # cumulative stride 0 -> 2
    assert list(stage2.encoder_paths["1"].pool.kernel_size) == [2, 2, 2]
    assert list(net.decoder.stages["1"].decoder_paths["2"].upsample.kernel_size) == [2, 2, 2]
    assert list(net.decoder.stages["0"].decoder_paths["1"].upsample.kernel_size) == [1, 2, 2]
    assert list(net.decoder.stages["0"].fuse.conv.kernel_size) == [1, 3, 3]
    out = net(torch.randn(1, 1, 2, 8, 8))
    assert [tuple(o.shape) for o in out] == [(1, 3, 2, 8, 8)] * 4
    with pytest.raises(ValueError, match="not divisible by the total stride"):
        net(torch.randn(1, 1, 3, 8, 8))


def test_bad_inputs_raise_named_errors():
    with pytest.raises(ValueError, match="n_stages >= 2"):
        tiny(n_stages=1, features_per_stage=[4], strides=[[1, 1, 1]])
    with pytest.raises(ValueError, match="skip_connections"):
        tiny(skip_connections="all")
    with pytest.raises(ValueError, match="strides has 2 entries"):
        tiny(strides=[[1, 1, 1], [2, 2, 2]])
    with pytest.raises(ValueError, match="input channels"):
        tiny()(torch.randn(1, 2, 4, 4, 4))
    with pytest.raises(ValueError, match="UNet3Plus has no SE"):
        tiny(UNet3Plus, se_reduction=0.5)


# ------------------------------------------------------------------------------------------ parameters
def test_tiny_es_unet_parameter_count_by_hand():
    # 2D, 2 stages (2, 4 channels), C = 2, N*C = 4, 1 input, 1 class; 3x3 convs = 9 taps
    encoder = conv_p(1, 2, 9) + conv_p(2, 2, 9) + conv_p(2, 4, 9) + conv_p(4, 4, 9)  # 24 + 42 + 84 + 156
    # bottleneck stage j=1: e0 (SE, pool, conv 2->2) + e1 same level (SE, wide conv 4->4, 4->2, 1x1 2->2) + fuse 4->4
    stage1 = (se_p(2) + conv_p(2, 2, 9)) + (se_p(4) + conv_p(4, 4, 9) + conv_p(4, 2, 9) + conv_p(2, 2, 1)) \
        + conv_p(4, 4, 9)
    # stage j=0: e0 same level (SE, 2->2, 2->2, 1x1) + d1 (transposed 4->4 k=2x2 + bias, conv 4->2) + fuse 4->4
    stage0 = (se_p(2) + conv_p(2, 2, 9) + conv_p(2, 2, 9) + conv_p(2, 2, 1)) + (4 * 4 * 4 + 4 + conv_p(4, 2, 9)) \
        + conv_p(4, 4, 9)
    heads = 2 * (4 + 1)
    assert encoder + stage1 + stage0 + heads == 1181
    net = ESUNet(1, 1, True, n_stages=2, features_per_stage=[2, 4], conv_op=nn.Conv2d, kernel_sizes=3,
                 strides=[1, 2], skip_channels=2)
    assert count_parameters(net) == 1181


def _paper_delta(variant, extra):
    """Parameters a Table 4 path family adds to the 'base' paper preset (3D, C=32, N*C=128)."""
    enc, cc, nc, n = [32, 64, 128, 256], 32, 128, 4
    levels = range(n) if variant == "es_unet" else range(n - 1)
    total = 0
    for j in levels:
        if extra == "enc":
            for i in range(j):
                total += (se_p(enc[i]) if variant == "es_unet" else 0) + conv_p(enc[i], cc, 27) + 27 * cc * nc
        else:
            for i in range(j + 2, n):
                src = nc if (i in levels) else enc[i]
                total += conv_p(src, cc, 27) + 27 * cc * nc
    return total


@pytest.mark.parametrize("variant", ["es_unet", "unet3plus"])
def test_table4_switches_add_exactly_their_paths(variant):
    counts = {s: count_parameters(build_paper_network(variant, skip_connections=s))
              for s in ("base", "enc_only", "dec_only", "both")}
    enc, dec = _paper_delta(variant, "enc"), _paper_delta(variant, "dec")
    assert counts["enc_only"] - counts["base"] == enc
    assert counts["dec_only"] - counts["base"] == dec
    assert counts["both"] - counts["base"] == enc + dec
    if variant == "es_unet":  # by hand: 6 encoder paths, 3 far decoder paths
        assert enc == 6 * 27 * 32 * 128 + sum(se_p(c) + conv_p(c, 32, 27) for c in (32, 32, 64, 32, 64, 128))
        assert dec == 3 * (conv_p(128, 32, 27) + 27 * 32 * 128)


def test_base_keeps_same_level_and_adjacent_decoder_paths():
    net = build_paper_network("es_unet", skip_connections="base")
    stage1 = net.decoder.stages["1"]
    assert list(stage1.encoder_paths) == ["1"] and list(stage1.decoder_paths) == ["2"]
    assert list(net.decoder.stages["3"].encoder_paths) == ["3"] and len(net.decoder.stages["3"].decoder_paths) == 0


@pytest.mark.parametrize("variant", ["es_unet", "unet3plus"])
def test_paper_presets_match_table9_parameters(variant):
    params = count_parameters(build_paper_network(variant)) / 1e6
    assert abs(params / PAPER[variant][0] - 1) < PARAMS_TOLERANCE, params


def test_literal_same_level_reading_undershoots_table9_by_a_bottleneck_conv():
    literal = count_parameters(ESUNet(2, 1, False, **dict(paper_preset_kwargs(), wide_same_level_stages=0)))
    preset = count_parameters(build_paper_network("es_unet"))
    # bottleneck same-level path: convs 256->256->32 instead of 256->32->32
    assert preset - literal == conv_p(256, 256, 27) - conv_p(32, 32, 27) == 1742496
    assert abs(literal / 1e6 / 9.01 - 1) > 0.15


# ------------------------------------------------------------------------------------------ FLOPs
def test_flop_counter_matches_the_hand_formula_on_tiny_convs():
    conv = nn.Conv3d(2, 3, 3, padding=1)
    assert count_flops(conv, (1, 2, 4, 5, 6), device="cpu") == 2 * 2 * 3 * 27 * 120 == conv_flops(2, 3, (3, 3, 3),
                                                                                                    (4, 5, 6))
    up = nn.ConvTranspose3d(4, 2, 2, stride=2)
    assert count_flops(up, (1, 4, 2, 2, 2), device="cpu") == 2 * 4 * 2 * 8 * 8 == conv_flops(
        4, 2, (2, 2, 2), (4, 4, 4), transposed_input_size=(2, 2, 2))


def test_meta_and_real_flop_counts_agree():
    def build():
        return tiny(ds=False)
    real = count_flops(build(), (1, 1, 8, 8, 8), device="cpu")
    assert measure(build, (1, 1, 8, 8, 8)).flops == real > 0


@pytest.mark.parametrize("variant", ["es_unet", "unet3plus"])
def test_paper_presets_macs_match_table9(variant):
    # convs are same-padded, so MACs scale with the voxel count: 144^3 = 27 x 48^3 (SE FCs are negligible)
    macs = measure(lambda: build_paper_network(variant), (1, 2, 48, 48, 48)).macs * 27 / 1e9
    assert abs(macs / PAPER[variant][1] - 1) < MACS_TOLERANCE[variant], macs


# ------------------------------------------------------------------------------------------ nnU-Net glue
STOCK = dict(patch_size=[4, 8, 8], strides=[[1, 1, 1], [1, 2, 2], [2, 2, 2]], kernels=[[1, 3, 3], [3, 3, 3], [3, 3, 3]],
             features=[4, 8, 16])


class ESTrainer(ESUNetArchitecture, ExtTrainer):
    pass


class U3Trainer(UNet3PlusArchitecture, ExtTrainer):
    pass


class ESBaseTrainer(ESTrainer):
    skip_connections = "base"


def test_kwargs_from_stock_configuration_are_json_and_follow_the_stage_layout():
    arch = es_unet_kwargs_from_configuration(configuration_manager(**STOCK))
    json.dumps(arch)
    assert arch["network_class_name"] == "nnunet_ext_architectures.es_unet.ESUNet"
    kw = arch["arch_kwargs"]
    assert kw["strides"] == STOCK["strides"] and kw["kernel_sizes"] == STOCK["kernels"]
    assert kw["features_per_stage"] == [4, 8, 16] and kw["skip_channels"] == 4
    assert kw["norm_op"] == "torch.nn.modules.instancenorm.InstanceNorm3d"
    assert set(arch["_kw_requires_import"]) == {"conv_op", "norm_op"}


def test_kwargs_from_configuration_reject_bad_layouts():
    with pytest.raises(ValueError, match="not divisible by the total stride"):
        es_unet_kwargs_from_configuration(configuration_manager(**dict(STOCK, patch_size=[4, 8, 10])))
    with pytest.raises(ValueError, match="n_stages >= 2"):
        es_unet_kwargs_from_configuration(configuration_manager([8, 8, 8], [[1, 1, 1]], [[3, 3, 3]], [4]))
    with pytest.raises(ValueError, match="variant"):
        es_unet_kwargs_from_configuration(configuration_manager(**STOCK), variant="unet4")


@pytest.mark.parametrize("trainer, cls, n_out", [(ESTrainer, ESUNet, 4), (U3Trainer, UNet3Plus, 3)])
def test_mixins_build_from_stock_plans(trainer, cls, n_out):
    net = trainer.build_network_architecture(None, configuration_manager(**STOCK), 2, 3, True)
    assert type(net) is cls and isinstance(net.decoder.stages["0"].fuse.norm, nn.InstanceNorm3d)
    out = net(torch.randn(1, 2, 4, 8, 8))
    assert len(out) == n_out and all(o.shape == (1, 3, 4, 8, 8) for o in out)


def test_mixin_builds_from_our_plans_kwargs_and_its_skip_attribute_wins():
    arch = es_unet_kwargs_from_configuration(configuration_manager(**STOCK))
    arch["arch_kwargs"]["wide_same_level_stages"] = 0
    cm = configuration_manager(STOCK["patch_size"], architecture=arch)
    net = ESBaseTrainer.build_network_architecture(None, cm, 1, 2, False)
    assert net.config.wide_same_level_stages == 0 and net.config.skip_connections == "base"
    with pytest.raises(ValueError, match="names nnunet_ext_architectures.es_unet.ESUNet"):
        U3Trainer.build_network_architecture(None, cm, 1, 2, False)


@pytest.mark.parametrize("trainer, n_out", [(ESTrainer, 4), (U3Trainer, 3)])
def test_deep_supervision_targets_are_full_resolution_and_equally_weighted(trainer, n_out):
    t = trainer.__new__(trainer)  # only the attributes the hooks read
    t.configuration_manager = configuration_manager(**STOCK)
    t.enable_deep_supervision = True
    assert t._get_deep_supervision_scales() == [[1.0, 1.0, 1.0]] * n_out
    np.testing.assert_allclose(t.deep_supervision_weights(), [1 / n_out] * n_out)
    t.enable_deep_supervision = False
    assert t._get_deep_supervision_scales() is None


def test_networks_are_in_the_catalogue():
    names = {e.name: e.summary for e in entries("architecture")}
    assert names["ESUNet"].startswith("ES-UNet") and names["UNet3Plus"].startswith("3D UNet 3+")


def test_max_stages_keeps_the_finest_stages_of_the_plans():
    arch = es_unet_kwargs_from_configuration(configuration_manager(**STOCK), max_stages=2)["arch_kwargs"]
    assert arch["n_stages"] == 2 and arch["features_per_stage"] == [4, 8]
    assert arch["strides"] == [[1, 1, 1], [1, 2, 2]] and arch["kernel_sizes"] == [[1, 3, 3], [3, 3, 3]]

    class TwoLevelES(ESTrainer):
        max_stages = 2

    net = TwoLevelES.build_network_architecture(None, configuration_manager(**STOCK), 1, 3, True)
    assert net.config.n_stages == 2 and net.num_outputs == 3  # mean + two heads
    with pytest.raises(ValueError, match="max_stages must be >= 2"):
        es_unet_kwargs_from_configuration(configuration_manager(**STOCK), max_stages=1)
    with pytest.raises(ValueError, match="ES-UNet only"):
        es_unet_kwargs_from_configuration(configuration_manager(**STOCK), variant="unet3plus", head_fusion="softmax")
