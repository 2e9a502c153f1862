"""STS-Net: parameter count vs the paper, ESCA numbers, encoder weights, 2.5D folding, nnU-Net plumbing."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn
from torchvision.models import resnext50_32x4d

from nnunet_ext_architectures.sts_net import (
    ATROUS_RATES, ENCODER_CHANNELS, ESCA, PAPER_PARAMS_M, STSNet, STSNet25D, eca_kernel_size, fold_slices,
    sts_net_kwargs_from_configuration)
from nnunet_ext.network_cost import count_parameters
from nnunet_ext.training.sts_net import SliceStack25D, STSNetArchitecture

torch.manual_seed(0)


@pytest.fixture(scope="module")
def paper_net():
    """The paper's configuration: 3 stacked slices in, 2 classes out, eval mode."""
    return STSNet(3, 2, False).eval()


@pytest.fixture(scope="module")
def resnext_state(tmp_path_factory):
    """A torchvision resnext50_32x4d state_dict (random weights, fc included) saved to a file."""
    state = resnext50_32x4d(weights=None).state_dict()
    path = tmp_path_factory.mktemp("weights") / "resnext50_32x4d.pth"
    torch.save(state, path)
    return path, state


# ---------------------------------------------------------------- parameter count

def test_parameter_count_matches_the_paper_within_two_percent(paper_net):
    # hand count: torchvision's ResNeXt50-32x4d without its 1000-class fc (2048 * 1000 + 1000) ...
    encoder = 25_028_904 - (2048 * 1000 + 1000)
    bn = 2 * 256  # BatchNorm weight + bias on 256 channels
    aspp = (2048 * 256 + bn) + 3 * (2048 * 256 * 9 + bn) + (2048 * 256 + bn) + (5 * 256 * 256 + bn)
    head = aspp + (256 * 256 * 9 + bn) + (256 * 2 + 2)  # DeepLabHead: ASPP, 3x3 conv + BN, 1x1 classifier
    esca = 2 * (3 + 5 + 5 + 5 + 7)  # two bias-free 1D convs per ESCA, kernels for 64/256/512/1024/2048 channels
    assert count_parameters(paper_net) == encoder + head + esca == 39_105_908
    assert abs(count_parameters(paper_net) / 1e6 - PAPER_PARAMS_M) / PAPER_PARAMS_M < 0.02


def test_output_stride_8_dilates_the_last_two_stages(paper_net):
    assert paper_net.decoder[0].convs[1][0].dilation == (12, 12) and ATROUS_RATES[8] == (12, 24, 36)
    x = torch.zeros(1, 3, 64, 64)
    with torch.no_grad():
        assert paper_net.encoder(x).shape == (1, 2048, 8, 8)


# ---------------------------------------------------------------- ESCA

@pytest.mark.parametrize("channels, k", [(64, 3), (256, 5), (512, 5), (1024, 5), (2048, 7), (16, 3), (8, 3)])
def test_eca_kernel_rule(channels, k):
    # |(log2 C + 1) / 2| made odd: 64 -> 3.5 -> 3, 256 -> 4.5 -> 4 -> 5, 2048 -> 6 -> 7
    assert eca_kernel_size(channels) == k


def test_esca_on_a_hand_made_tensor():
    esca = ESCA(4, kernel_size=3)
    assert len(esca.convs) == 2  # the 1D convolution is "repeated twice" (Eq. 6-7)
    with torch.no_grad():
        esca.convs[0].weight.copy_(torch.tensor([[[1., 1., 1.]]]))  # f2[i] = f1[i-1] + f1[i] + f1[i+1]
        esca.convs[1].weight.copy_(torch.tensor([[[0., 0., 1.]]]))  # f3[i] = f2[i+1]
    means = torch.tensor([1., 2., 3., 4.])
    pattern = torch.tensor([[1., -1.], [-1., 1.]])
    x = means.view(1, 4, 1, 1) + pattern * torch.arange(1., 5.).view(1, 4, 1, 1)  # channel means 1, 2, 3, 4
    # f2 = [0+1+2, 1+2+3, 2+3+4, 3+4+0] = [3, 6, 9, 7]; f3 = [6, 9, 7, 0] (zero padding); w = sigmoid(f3)
    w = torch.sigmoid(torch.tensor([6., 9., 7., 0.]))
    torch.testing.assert_close(esca.attention(x), w[None])
    torch.testing.assert_close(esca(x), x * w.view(1, 4, 1, 1))


def test_esca_sits_after_stem_and_every_stage(paper_net):
    assert [m.channels for m in paper_net.encoder.attention] == list(ENCODER_CHANNELS)
    assert [m.kernel_size for m in paper_net.encoder.attention] == [3, 5, 5, 5, 7]
    seen = []
    hooks = [m.register_forward_hook(lambda m, i, o: seen.append(i[0].shape[1])) for m in paper_net.encoder.attention]
    with torch.no_grad():
        paper_net(torch.zeros(1, 3, 32, 32))
    for h in hooks:
        h.remove()
    assert seen == list(ENCODER_CHANNELS)


def test_esca_rejects_even_kernels_and_wrong_channels():
    with pytest.raises(ValueError, match="odd"):
        ESCA(8, kernel_size=4)
    with pytest.raises(ValueError, match="8 channels"):
        ESCA(8)(torch.zeros(1, 4, 2, 2))


# ---------------------------------------------------------------- encoder weights

def test_torchvision_weights_file_loads(resnext_state):
    path, state = resnext_state
    net = STSNet(3, 2, False, encoder_weights=str(path))
    loaded = net.encoder.backbone.state_dict()
    assert set(loaded) == {k for k in state if not k.startswith("fc.")}
    for key, value in loaded.items():
        torch.testing.assert_close(value, state[key], rtol=0, atol=0)


def test_timm_state_dict_has_the_same_names(resnext_state, paper_net):
    timm = pytest.importorskip("timm")
    with torch.device("meta"):
        timm_state = timm.create_model("resnext50_32x4d", pretrained=False).state_dict()
    ours = paper_net.encoder.backbone.state_dict()
    assert {k: tuple(v.shape) for k, v in timm_state.items() if not k.startswith("fc.")} == \
           {k: tuple(v.shape) for k, v in ours.items()}


def test_rgb_stem_is_averaged_for_one_input_channel(resnext_state, paper_net):
    path, state = resnext_state
    encoder = type(paper_net.encoder)(1)
    encoder.load_backbone_weights(path)
    expected = state["conv1.weight"].mean(1, keepdim=True) * 3  # RGB mean, scaled by 3 / C
    torch.testing.assert_close(encoder.backbone.conv1.weight, expected)
    torch.testing.assert_close(encoder.backbone.layer4[2].conv3.weight, state["layer4.2.conv3.weight"])


def test_wrong_weights_files_fail_clearly(resnext_state, paper_net, tmp_path):
    path, state = resnext_state
    encoder = paper_net.encoder
    with pytest.raises(FileNotFoundError, match="does not exist"):
        encoder.load_backbone_weights(tmp_path / "nothing.pth")
    (tmp_path / "notes.txt").write_text("not a checkpoint")
    with pytest.raises(ValueError, match="not a torch state_dict"):
        encoder.load_backbone_weights(tmp_path / "notes.txt")
    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(ValueError, match="not a state_dict"):
        encoder.load_backbone_weights(tmp_path / "list.pth")
    # a ResNet-50 has the same names but ungrouped 3x3 convolutions
    resnet_like = dict(state)
    resnet_like["layer1.0.conv2.weight"] = torch.zeros(128, 128, 3, 3)
    torch.save(resnet_like, tmp_path / "resnet50.pth")
    with pytest.raises(ValueError, match=r"1 wrong shape \(e.g. layer1.0.conv2.weight: file \(128, 128, 3, 3\)"):
        encoder.load_backbone_weights(tmp_path / "resnet50.pth")
    partial = {k: v for k, v in state.items() if not k.startswith("layer4.")}
    torch.save({"state_dict": partial}, tmp_path / "partial.pth")
    with pytest.raises(ValueError, match="missing"):
        encoder.load_backbone_weights(tmp_path / "partial.pth")
    before = encoder.backbone.conv1.weight.clone()
    torch.testing.assert_close(encoder.backbone.conv1.weight, before)  # failed loads change nothing


# ---------------------------------------------------------------- forward

def test_output_is_logits_at_input_resolution_even_when_not_divisible_by_the_stride(paper_net):
    x = torch.randn(2, 3, 37, 45)
    with torch.no_grad():
        out = paper_net(x)
        padded = paper_net(torch.nn.functional.pad(x, (0, 3, 0, 3)))  # 40 x 48: multiples of 8
    assert out.shape == (2, 2, 37, 45)
    torch.testing.assert_close(out, padded[..., :37, :45])  # zero padding at the far sides, then crop
    assert not torch.allclose(out.softmax(1).sum(1), out.sum(1))  # logits, no softmax inside


def test_deep_supervision_returns_one_element_list_and_keeps_state_dict_keys(paper_net):
    ds_net = STSNetArchitecture.build_network_architecture(
        None, fake_configuration([64, 64]), 3, 2, enable_deep_supervision=True).eval()
    assert type(ds_net) is STSNet and ds_net.decoder.deep_supervision
    assert list(ds_net.state_dict()) == list(paper_net.state_dict())
    ds_net.load_state_dict(paper_net.state_dict())
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        out = ds_net(x)
        assert isinstance(out, list) and len(out) == 1
        torch.testing.assert_close(out[0], paper_net(x))


def test_bad_inputs_raise_named_errors(paper_net):
    with pytest.raises(ValueError, match=r"expects \(batch, 3, Y, X\)"):
        paper_net(torch.zeros(1, 1, 32, 32))
    with pytest.raises(ValueError, match=r"expects \(batch, 3, Y, X\)"):
        paper_net(torch.zeros(1, 3, 3, 32, 32))
    paper_net.train()
    try:
        with pytest.raises(ValueError, match="batch of at least 2"):
            paper_net(torch.zeros(1, 3, 32, 32))
    finally:
        paper_net.eval()
    with pytest.raises(ValueError, match="output_stride"):
        STSNet(3, 2, False, output_stride=32)
    with pytest.raises(ValueError, match="unknown arguments"):
        STSNet(3, 2, False, n_stages=5)


# ---------------------------------------------------------------- 2.5D

def test_fold_stacks_neighbours_as_channels_modality_major():
    # two modalities, four slices; value = 10 * modality + slice
    x = (10 * torch.arange(2.).view(1, 2, 1, 1, 1) + torch.arange(4.).view(1, 1, 4, 1, 1)).expand(1, 2, 4, 2, 2)
    stacks = fold_slices(x, context=1, replicate_edges=True)
    assert stacks.shape == (4, 6, 2, 2)
    assert stacks[:, :, 0, 0].tolist() == [[0, 0, 1, 10, 10, 11],     # slice 0: its neighbour below is itself
                                           [0, 1, 2, 10, 11, 12],
                                           [1, 2, 3, 11, 12, 13],
                                           [2, 3, 3, 12, 13, 13]]    # slice 3: its neighbour above is itself
    inner = fold_slices(x, context=1, replicate_edges=False)
    torch.testing.assert_close(inner, stacks[1:3])


def test_2p5d_prediction_equals_the_2d_network_on_stacked_slices(paper_net):
    net25 = STSNet25D(1, 2, False).eval()
    assert count_parameters(net25) == count_parameters(paper_net)
    net25.load_state_dict(paper_net.state_dict())  # same keys: a 2D STS-Net with 3 input channels
    volume = torch.randn(1, 1, 4, 32, 32)
    with torch.no_grad():
        out = net25(volume)
        net25.predict_edge_slices = False
        inner = net25(volume)
        net25.predict_edge_slices = True
        s = volume[0, 0]
        for z, (lo, hi) in enumerate([(0, 1), (0, 2), (1, 3), (2, 3)]):  # replicate at the volume's ends
            stack = torch.stack([s[lo], s[z], s[hi]])[None]
            torch.testing.assert_close(out[:, :, z], paper_net(stack), atol=1e-4, rtol=1e-4)
    assert out.shape == (1, 2, 4, 32, 32) and inner.shape == (1, 2, 2, 32, 32)
    torch.testing.assert_close(inner, out[:, :, 1:3])
    with pytest.raises(ValueError, match=r"expects \(batch, 1, slices, Y, X\)"):
        net25(torch.zeros(1, 3, 32, 32))


def test_sliding_window_prediction_of_nnunet_uses_each_slices_own_stack():
    """nnU-Net's predictor (window 5, step 0.5) on 9 slices: windows start at 0, 2, 4. Slices 1, 3, 5, 7 are
    only ever inner slices and 0, 8 only the volume's ends: exactly their own 2.5D stack. Slices 2, 4, 6 are
    also some window's edge slice (stack with a repeated slice), which enters with the Gaussian's weight g."""
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    from nnunetv2.inference.sliding_window_prediction import compute_gaussian

    net25 = STSNet25D(1, 2, False).eval()
    # a probe in place of encoder + decoder: logits = (1, 10, 100) . stack and (100, 10, 1) . stack
    probe = nn.Conv2d(3, 2, 1, bias=False)
    with torch.no_grad():
        probe.weight.copy_(torch.tensor([[1., 10., 100.], [100., 10., 1.]]).view(2, 3, 1, 1))
    probe.deep_supervision = False
    net25.encoder, net25.decoder = nn.Identity(), probe
    predictor = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=False,
                                perform_everything_on_device=False, device=torch.device("cpu"), allow_tqdm=False)
    predictor.network = net25
    predictor.configuration_manager = SimpleNamespace(patch_size=[5, 32, 32])
    predictor.label_manager = SimpleNamespace(num_segmentation_heads=2)
    values = torch.arange(1., 10.) / 10  # slice z holds (z + 1) / 10 everywhere
    with torch.no_grad():
        slid = predictor.predict_sliding_window_return_logits(values.view(1, 9, 1, 1).expand(1, 9, 32, 32))
    slid = slid.float()[:, :, 16, 16]

    def logits(a, b, c):  # the probe's output for the stack of slices (a, b, c)
        v = values[[a, b, c]]
        return torch.stack([v @ torch.tensor([1., 10., 100.]), v @ torch.tensor([100., 10., 1.])])

    own = {z: logits(max(z - 1, 0), z, min(z + 1, 8)) for z in range(9)}
    gaussian = compute_gaussian((5, 32, 32), 1. / 8, 10, device=torch.device("cpu")).float()
    g = (gaussian[0, 16, 16] / gaussian[2, 16, 16]).item()  # edge slice weight relative to the centre
    assert 0.005 < g < 0.007
    expected = dict(own)
    expected[2] = (own[2] + g * logits(2, 2, 3)) / (1 + g)                      # first slice of window 2..6
    expected[6] = (own[6] + g * logits(5, 6, 6)) / (1 + g)                      # last slice of window 2..6
    expected[4] = (own[4] + g * (logits(3, 4, 4) + logits(4, 4, 5))) / (1 + 2 * g)  # edge of 0..4 and 4..8
    for z in range(9):
        torch.testing.assert_close(slid[:, z], expected[z], atol=0.02, rtol=2e-3)  # float16 accumulation
    assert (slid[:, 4] - own[4]).abs().max() > 0.05  # the mixing is real, and small: < 1 % of the logits
    assert ((slid[:, [2, 4, 6]] - torch.stack([own[2], own[4], own[6]], 1)).abs()
            / slid[:, [2, 4, 6]].abs()).max() < 0.01


# ---------------------------------------------------------------- nnU-Net plumbing (no training)

def fake_configuration(patch_size, class_name="dynamic_network_architectures.architectures.unet.PlainConvUNet",
                       arch_kwargs=None):
    return SimpleNamespace(patch_size=patch_size, network_arch_class_name=class_name,
                           network_arch_init_kwargs=arch_kwargs or {}, network_arch_init_kwargs_req_import=[])


def test_kwargs_from_configuration_check_the_patch():
    assert sts_net_kwargs_from_configuration(fake_configuration([64, 64])) == \
           {"output_stride": 8, "use_esca": True, "encoder_weights": None}
    assert sts_net_kwargs_from_configuration(fake_configuration([5, 64, 64]), context_slices=1)["context_slices"] == 1
    with pytest.raises(ValueError, match="not 2D"):
        sts_net_kwargs_from_configuration(fake_configuration([16, 64, 64]))
    with pytest.raises(ValueError, match="not 3D"):
        sts_net_kwargs_from_configuration(fake_configuration([64, 64]), context_slices=1)
    with pytest.raises(ValueError, match="smaller than its output stride"):
        sts_net_kwargs_from_configuration(fake_configuration([4, 64]))


def test_plans_arch_kwargs_are_used_when_they_name_sts_net():
    config = fake_configuration([64, 64], "nnunet_ext_architectures.sts_net.STSNet",
                                {"output_stride": 16, "encoder_weights": "/elsewhere/w.pth"})
    assert STSNetArchitecture.sts_net_kwargs(config)["output_stride"] == 16


def plans(patch_3d=(12, 80, 96), batch_2d=12):
    return {"configurations": {
        "2d": {"patch_size": [80, 96], "batch_size": batch_2d, "batch_dice": True},
        "3d_fullres": {"patch_size": list(patch_3d), "batch_size": 2, "batch_dice": False},
        "3d_custom": {"inherits_from": "3d_fullres", "batch_size": 3}}}


def test_2p5d_plans_take_the_2d_in_plane_patch_and_a_window_of_five():
    original = plans()
    new = SliceStack25D.plans_for_25d(original, "3d_fullres")["configurations"]["3d_fullres"]
    architecture = new.pop("architecture")
    assert new == {"patch_size": [5, 80, 96], "batch_size": 4, "batch_dice": True}  # 12 slices / 3 inner
    assert architecture["network_class_name"] == "nnunet_ext_architectures.sts_net.STSNet25D"
    assert architecture["arch_kwargs"]["context_slices"] == 1
    assert original["configurations"]["3d_fullres"]["patch_size"] == [12, 80, 96]  # caller's plans untouched
    inherited = SliceStack25D.plans_for_25d(original, "3d_custom")["configurations"]["3d_custom"]
    assert inherited["patch_size"] == [5, 80, 96] and inherited["inherits_from"] == "3d_fullres"
    with pytest.raises(ValueError, match="3D configuration"):
        SliceStack25D.plans_for_25d(original, "2d")


def test_2p5d_window_follows_the_context():
    class Wide(SliceStack25D):
        context_slices = 2

    class Broken(SliceStack25D):
        window_slices = 2

    assert SliceStack25D.window() == 5 and Wide.window() == 9
    with pytest.raises(ValueError, match="leaves no slice"):
        Broken.window()


def test_single_output_is_the_only_deep_supervision_level():
    trainer = SimpleNamespace(enable_deep_supervision=True, configuration_manager=fake_configuration([5, 64, 64]))
    assert STSNetArchitecture._get_deep_supervision_scales(trainer) == [[1.0, 1.0, 1.0]]
    assert STSNetArchitecture.deep_supervision_weights(trainer).tolist() == [1.0]
    trainer.enable_deep_supervision = False
    assert STSNetArchitecture._get_deep_supervision_scales(trainer) is None


def test_2p5d_loss_sees_only_the_inner_slices():
    target = torch.arange(5.).view(1, 1, 5, 1, 1).expand(2, 1, 5, 3, 3)
    cropped = SliceStack25D.inner_slices(SimpleNamespace(context_slices=1), [target])
    assert cropped[0][0, 0, :, 0, 0].tolist() == [1., 2., 3.]


@pytest.mark.parametrize("trainer_name", ["STSNet25DTrainer", "STSNet25DDWDTrainer"])
def test_2p5d_trainer_loss_uses_only_the_inner_slices(trainer_name):
    from nnunet_ext_trainers import sts_net_trainers

    trainer = object.__new__(getattr(sts_net_trainers, trainer_name))  # only the loss hooks are exercised
    trainer.label_manager = SimpleNamespace(has_regions=False, ignore_label=None)
    trainer.configuration_manager = SimpleNamespace(batch_dice=True, patch_size=[5, 4, 4])
    trainer.is_ddp, trainer.enable_deep_supervision, trainer.device = False, True, torch.device("cpu")
    loss = trainer._build_loss()
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 3, 4, 4, generator=generator)  # the inner 3 of a 5-slice window
    target = torch.randint(0, 3, (2, 1, 5, 4, 4), generator=generator).float()
    value = loss([logits], trainer.inner_slices([target]))
    # one output with weight 1: exactly the single-output loss on the inner slices
    torch.testing.assert_close(value, trainer.build_segmentation_loss()(logits, target[:, :, 1:4]))
    changed = target.clone()
    changed[:, :, [0, 4]] = (changed[:, :, [0, 4]] + 1) % 3  # the edge slices' labels do not matter
    torch.testing.assert_close(loss([logits], trainer.inner_slices([changed])), value)
