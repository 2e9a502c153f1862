"""nnunet-ext export: ELANRes exported fused and matching the trained (multi-branch) network under onnxruntime;
a model folder's trainer checked against nnUNet_extTrainer; checkpoints loaded without running code."""
import json
import os

import numpy as np
import pytest
import torch
from torch import nn

from nnunet_ext.export import ExportError, check_model_folder, export_network, fuse_reparameterized
from nnunet_ext.workspace import trainers_dir
from nnunet_ext_architectures.elanres_msca_unet import ELANResMSCAUNet, RepConvBN

onnxruntime = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")


def elanres_2d():
    torch.manual_seed(0)
    net = ELANResMSCAUNet(1, 3, False, n_stages=3, features_per_stage=[4, 8, 16], conv_op=nn.Conv2d,
                          patch_size=[16, 16])
    for m in net.modules():  # trained-looking BN statistics, so fusing is not the identity
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            nn.init.uniform_(m.weight, 0.5, 1.5)
            nn.init.uniform_(m.bias, -0.2, 0.2)
    return net.eval()


def test_elanres_onnx_is_fused_and_matches_the_multibranch_network(tmp_path):
    net = elanres_2d()
    x = torch.randn(2, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        branches = net.set_fused_inference(False)(x).numpy()  # the network as it trained (every branch run)
    result = export_network(net.set_fused_inference(True), x[:1], tmp_path, formats=("onnx",))
    session = onnxruntime.InferenceSession(str(tmp_path / "network.onnx"), providers=["CPUExecutionProvider"])
    exported = session.run(None, {"image": x.numpy()})[0]  # batch 2 through a batch-1 example: dynamic batch
    assert exported.shape == (2, 3, 16, 16)
    np.testing.assert_allclose(exported, branches, atol=1e-4, rtol=1e-4)
    assert result.max_abs_difference["onnx"] < 1e-4
    # fused: one Conv per RepConvBN instead of its dense + 1x1 convs (+ identity BN)
    convs = sum(isinstance(m, nn.Conv2d) for m in net.modules())
    reps = [m for m in net.modules() if isinstance(m, RepConvBN)]
    branch_convs = sum(1 + (m.pointwise is not None) for m in reps)
    unused_heads = len(net.decoder.seg_layers) - 1  # deep supervision off: only the full-resolution head runs
    graph = onnx.load(str(tmp_path / "network.onnx")).graph
    assert sum(n.op_type == "Conv" for n in graph.node) == convs - branch_convs + len(reps) - unused_heads
    assert not any(isinstance(m, RepConvBN) for m in fuse_reparameterized(net).modules())
    assert any(isinstance(m, RepConvBN) for m in net.modules())  # the trained network itself is left as it was


def test_torchscript_export_matches_pytorch(tmp_path):
    net = elanres_2d()
    x = torch.randn(1, 1, 16, 16)
    result = export_network(net, x, tmp_path, formats=("torchscript",))
    traced = torch.jit.load(str(tmp_path / "network.torchscript.pt"))
    with torch.no_grad():
        np.testing.assert_allclose(traced(x).numpy(), net.set_fused_inference(False)(x).numpy(), atol=1e-4)
    assert result.files == [str(tmp_path / "network.torchscript.pt")] and result.skipped == []
    with pytest.raises(ExportError, match=r"unknown export format\(s\) \['tflite'\]"):
        export_network(net, x, tmp_path, formats=("tflite",))


def test_without_the_onnx_package_onnx_is_skipped_with_the_install_command(tmp_path, monkeypatch):
    import nnunet_ext.export as export

    monkeypatch.setattr(export, "_has_onnx", lambda: False)
    result = export_network(nn.Conv2d(1, 2, 3), torch.randn(1, 1, 8, 8), tmp_path)
    assert result.skipped == ["onnx: torch writes ONNX only with the onnx package installed: "
                              "pip install 'nnunet-ext[export]' (onnx + onnxruntime)"]
    assert result.files == [str(tmp_path / "network.torchscript.pt")] and not (tmp_path / "network.onnx").exists()


def model_folder(tmp_path, trainer_name):
    folder = tmp_path / f"{trainer_name}__nnUNetPlans__2d"
    (folder / "fold_0").mkdir(parents=True)
    torch.save({"trainer_name": trainer_name, "init_args": {"configuration": "2d"}, "network_weights": {}},
               folder / "fold_0" / "checkpoint_final.pth")
    return folder


def test_check_names_the_missing_nnunet_ext_trainer_folder(tmp_path):
    folder = model_folder(tmp_path, "ESUNetTrainer")
    for env in ({}, {"nnUNet_extTrainer": "/lab/trainers"}):
        with pytest.raises(ExportError, match=r"ESUNetTrainer, an nnunet-ext trainer.*pip install nnunet-ext, then "
                                              r"export nnUNet_extTrainer=\$\(nnunet-ext trainers-dir\)"):
            check_model_folder(folder, env=env)
    assert check_model_folder(folder, env={"nnUNet_extTrainer": os.pathsep.join(["/lab", trainers_dir()])}) == \
        "ESUNetTrainer"
    assert check_model_folder(model_folder(tmp_path, "nnUNetTrainer"), env={}) == "nnUNetTrainer"  # nnU-Net's own
    with pytest.raises(ExportError, match="cannot use trainer 'LabTrainer'.*install that plugin"):
        check_model_folder(model_folder(tmp_path, "LabTrainer"), env={"nnUNet_extTrainer": trainers_dir()})
    with pytest.raises(ExportError, match=r"no checkpoint .*fold_3.checkpoint_final.pth"):
        check_model_folder(folder, fold=3)


class _Payload:
    def __reduce__(self):
        return (os.mkdir, (os.environ["NNUNET_EXT_TEST_MARKER"],))


def test_a_crafted_checkpoint_runs_no_code(tmp_path, monkeypatch):
    marker = tmp_path / "code_ran"
    monkeypatch.setenv("NNUNET_EXT_TEST_MARKER", str(marker))
    folder = tmp_path / "model"
    (folder / "fold_0").mkdir(parents=True)
    torch.save({"trainer_name": "x", "payload": _Payload()}, folder / "fold_0" / "checkpoint_final.pth")
    (folder / "plans.json").write_text(json.dumps({}))
    (folder / "dataset.json").write_text(json.dumps({}))
    with pytest.raises(ExportError, match=r"not a checkpoint that loads without running code: "
                                          r".*does not load as tensors and plain data"):
        check_model_folder(folder, env={})
    assert not marker.exists()
