"""ELANRes-MSCA-UNet: re-parameterization (BN folding, fused == branches), MSCA, shapes, state_dict rules."""
import pytest
import torch
from torch import nn

from hand_plans import configuration_manager
from nnunet_ext_architectures.elanres_msca_unet import (MSCA, ELANResMSCAUNet, MSCABlock, RepConvBN, clip_length,
                                                        elanres_kwargs_from_configuration, fold_batchnorm,
                                                        pad_kernel_to)
from nnunet_ext.network_cost import count_parameters


def randomise_batchnorm(module, seed=0):
    """Non-trivial eval statistics, so that folding BN is actually exercised."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                n = m.num_features
                m.running_mean.copy_(torch.rand(n, generator=g) * 2 - 1)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.rand(n, generator=g) - 0.5)
    return module


def small_3d_net(deep_supervision=True, seed=0):
    torch.manual_seed(seed)
    return ELANResMSCAUNet(1, 3, deep_supervision, n_stages=3, features_per_stage=[4, 8, 8], conv_op=nn.Conv3d,
                           kernel_sizes=[[1, 3, 3], [3, 3, 3], [3, 3, 3]],
                           strides=[[1, 1, 1], [1, 2, 2], [2, 2, 2]], patch_size=[4, 16, 16])


def test_fold_batchnorm_by_hand():
    bn = nn.BatchNorm2d(1, eps=1.0)
    with torch.no_grad():
        bn.running_mean.fill_(1.0)
        bn.running_var.fill_(3.0)   # std = sqrt(3 + 1) = 2
        bn.weight.fill_(4.0)
        bn.bias.fill_(5.0)
    kernel, bias = fold_batchnorm(torch.full((1, 1, 1, 1), 2.0), bn)
    assert kernel.item() == 2.0 * 4.0 / 2.0 and bias.item() == 5.0 - 1.0 * 4.0 / 2.0


def test_pad_kernel_to_centres():
    k = pad_kernel_to(torch.ones(1, 1, 1, 1, 1), (1, 3, 3))
    assert k.shape == (1, 1, 1, 3, 3) and k[0, 0, 0, 1, 1] == 1 and k.sum() == 1


def test_repconv_parameter_count_by_hand():
    # dense 2*2*3*3 + BN 2*2 | pointwise 2*2 + BN 4 | identity BN 4
    assert count_parameters(RepConvBN(nn.Conv2d, 2, 2, (3, 3))) == 36 + 4 + 4 + 4 + 4 == 52
    # stride 2 or a channel change: no identity branch
    assert count_parameters(RepConvBN(nn.Conv2d, 2, 3, (3, 3))) == 54 + 6 + 6 + 6
    assert RepConvBN(nn.Conv2d, 2, 2, (3, 3), (2, 2)).identity is None


@pytest.mark.parametrize("conv_op, kernel, stride, shape", [
    (nn.Conv2d, (3, 3), (1, 1), (2, 4, 9, 9)),
    (nn.Conv2d, (3, 3), (2, 2), (2, 4, 9, 9)),
    (nn.Conv3d, (1, 3, 3), (1, 1, 1), (2, 4, 3, 8, 8)),
    (nn.Conv3d, (3, 3, 3), (1, 2, 2), (2, 4, 5, 8, 8)),
])
def test_fused_repconv_equals_branches(conv_op, kernel, stride, shape):
    torch.manual_seed(1)
    block = randomise_batchnorm(RepConvBN(conv_op, 4, 4, kernel, stride)).eval()
    x = torch.randn(*shape)
    with torch.no_grad():
        block.fuse_for_inference = False
        branches = block(x)
        block.fuse_for_inference = True
        fused = block(x)
    assert (fused - branches).abs().max().item() < 1e-4


@pytest.mark.parametrize("dim", [2, 3])
def test_fused_network_equals_multibranch_network(dim):
    torch.manual_seed(0)
    conv_op = nn.Conv2d if dim == 2 else nn.Conv3d
    net = ELANResMSCAUNet(1, 2, True, n_stages=3, features_per_stage=[4, 8, 16], conv_op=conv_op,
                          patch_size=[16] * dim)
    randomise_batchnorm(net).eval()
    x = torch.randn(2, 1, *([16] * dim))
    with torch.no_grad():
        multi = net.set_fused_inference(False)(x)
        fused = net.set_fused_inference(True)(x)
    assert len(fused) == 2
    for a, b in zip(multi, fused):
        assert (a - b).abs().max().item() < 1e-4


def test_state_dict_keys_unchanged_by_fusing_and_by_deep_supervision():
    net = small_3d_net(True)
    keys = list(net.state_dict().keys())
    net.eval()
    with torch.no_grad():
        net(torch.randn(1, 1, 4, 16, 16))
    assert list(net.state_dict().keys()) == keys
    assert list(small_3d_net(False).state_dict().keys()) == keys


def test_weights_loaded_after_fusing_are_used():
    x = torch.randn(1, 1, 4, 16, 16)
    a, b = randomise_batchnorm(small_3d_net(seed=0), 0).eval(), randomise_batchnorm(small_3d_net(seed=1), 1).eval()
    with torch.no_grad():
        a(x)  # fuses and caches a's kernels
        expected = b(x)
        a.load_state_dict(b.state_dict())  # what nnU-Net's predictor does for the next fold
        assert torch.equal(a(x)[0], expected[0])


def test_train_mode_uses_the_branches_again():
    net = randomise_batchnorm(small_3d_net())
    net.eval()
    with torch.no_grad():
        net(torch.randn(1, 1, 4, 16, 16))
    net.train()
    net(torch.randn(2, 1, 4, 16, 16))[0].sum().backward()
    rep = net.rep_convs()[0]
    assert rep.pointwise[0].weight.grad is not None and rep.identity is None
    assert rep._fused_cache is None


def test_eval_with_gradients_reaches_the_branch_parameters():
    net = randomise_batchnorm(small_3d_net()).eval()
    net(torch.randn(1, 1, 4, 16, 16))[0].sum().backward()
    assert all(m.dense[0].weight.grad is not None for m in net.rep_convs())


def test_clip_length_is_lossless():
    assert [clip_length(21, n) for n in (1, 2, 4, 11, 40)] == [1, 3, 7, 21, 21]
    torch.manual_seed(0)
    full = MSCA(nn.Conv3d, 2, axes=[0, 1, 2])
    clipped = MSCA(nn.Conv3d, 2, axes=[0, 1, 2], feature_size=[2, 4, 6])
    with torch.no_grad():  # the clipped kernels are the centres of the full ones
        for f, c in zip(full.modules(), clipped.modules()):
            if isinstance(f, nn.Conv3d):
                crop = [slice((fk - ck) // 2, (fk - ck) // 2 + ck) for fk, ck in zip(f.kernel_size, c.kernel_size)]
                c.weight.copy_(f.weight[(slice(None), slice(None), *crop)])
                c.bias.copy_(f.bias)
    x = torch.randn(1, 2, 2, 4, 6)
    assert clipped.strips[2][0].kernel_size == (3, 1, 1) and clipped.strips[2][2].kernel_size == (1, 1, 11)
    torch.testing.assert_close(clipped(x), full(x), atol=1e-5, rtol=1e-5)


def test_msca_parameter_count_by_hand_and_inplane_axes():
    # C=2, 2D: dw 5x5 2*25+2 | strips (7: 2*(2*7+2)) (11: 2*(2*11+2)) (21: 2*(2*21+2)) | pw 2*2+2
    expected = 52 + 32 + 48 + 88 + 6
    assert count_parameters(MSCA(nn.Conv2d, 2, axes=[0, 1])) == expected
    inplane = MSCA(nn.Conv3d, 2, axes=[1, 2])  # the paper's 3D-to-2D: no kernel along depth
    assert count_parameters(inplane) == expected and inplane.depthwise.kernel_size == (1, 5, 5)


def test_msca_gates_its_input():
    msca = MSCA(nn.Conv2d, 3, axes=[0, 1])
    with torch.no_grad():
        msca.pointwise.weight.zero_()
        msca.pointwise.bias.fill_(2.0)
    x = torch.randn(1, 3, 8, 8)
    torch.testing.assert_close(msca(x), 2.0 * x)


def test_msca_block_adds_the_normalised_input_back_inside_the_attention_branch():
    # SegNeXt's SpatialAttention: proj_2(MSCA(GELU(proj_1(n)))) + n with n = norm1(x). With the last 1x1 conv
    # of the attention branch and of the MLP zeroed, both branches reduce to their shortcuts:
    # out = x + n, and in eval mode with fresh BN statistics n = x / sqrt(1 + 1e-5).
    block = MSCABlock(nn.Conv2d, 3, axes=[0, 1]).eval()
    with torch.no_grad():
        for conv in (block.attention[-1], block.mlp[-1]):
            conv.weight.zero_()
            conv.bias.zero_()
    x = torch.randn(2, 3, 8, 8)
    torch.testing.assert_close(block(x), x * (1 + 1 / (1 + 1e-5) ** 0.5))


def test_forward_shapes_3d_anisotropic_with_deep_supervision():
    outs = small_3d_net(True)(torch.randn(2, 1, 4, 16, 16))
    assert [tuple(o.shape) for o in outs] == [(2, 3, 4, 16, 16), (2, 3, 4, 8, 8)]
    net = small_3d_net(False)
    assert net(torch.randn(1, 1, 4, 16, 16)).shape == (1, 3, 4, 16, 16)
    net.decoder.deep_supervision = True  # nnU-Net's switch
    assert len(net(torch.randn(1, 1, 4, 16, 16))) == 2


def test_kwargs_from_configuration_and_bad_input():
    cm = configuration_manager([16, 48, 48], [[1, 1, 1], [1, 2, 2], [2, 2, 2]], [[1, 3, 3]] + [[3] * 3] * 2,
                               [8, 16, 32])
    kw = elanres_kwargs_from_configuration(cm, msca_axes="inplane")
    assert kw["patch_size"] == [16, 48, 48] and kw["strides"][1] == [1, 2, 2]
    net = ELANResMSCAUNet(1, 2, True, **kw)
    # stage 2 sees 8 x 12 x 12 voxels: the 21-strips are clipped to 2*12-1 = 21 in-plane, none along depth
    assert net.encoder.stages[2][1].attention[2].strips[2][0].kernel_size == (1, 21, 1)
    with pytest.raises(ValueError, match="msca_axes"):
        ELANResMSCAUNet(1, 2, True, **{**kw, "msca_axes": "diagonal"})
    with pytest.raises(ValueError, match="msca_stages"):
        ELANResMSCAUNet(1, 2, True, **{**kw, "msca_stages": [5]})
    with pytest.raises(ValueError, match="odd kernel"):
        RepConvBN(nn.Conv2d, 2, 2, (2, 2))
    with pytest.raises(ValueError, match="spatial axes"):
        net(torch.randn(1, 1, 16, 16))
