"""Ship a trained model: its network as ONNX / TorchScript, and a check that a model folder will load elsewhere.

nnU-Net has no network export. What is exported here is the network alone (logits of one patch, no deep
supervision): resampling, normalisation, sliding-window inference and export to the image's geometry stay
nnU-Net's, so ``plans.json`` and ``dataset.json`` are copied beside the network and ``export.json`` says
what the input must be. Re-parameterizable blocks (ELANRes' RepConvBN) are replaced by their single fused
convolution before export, so the exported graph is the inference form.

The checkpoint is read with ``torch.load(weights_only=True)``: a model file can carry no code.
"""
from __future__ import annotations

import copy
import json
import os
import shutil
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import List, Optional, Sequence

import torch
from torch import nn

FORMATS = ("onnx", "torchscript")
PLUGIN_HINT = ("pip install nnunet-ext, then export nnUNet_extTrainer=$(nnunet-ext trainers-dir) "
               "(nnU-Net finds trainers outside its package only through nnUNet_extTrainer)")


class ExportError(RuntimeError):
    """A model folder that cannot be loaded or exported (the message says why and what to do)."""


@dataclass
class LoadedModel:
    network: nn.Module
    trainer_name: str
    configuration: str
    patch_size: List[int]
    num_input_channels: int
    num_outputs: int
    model_folder: Path
    fold: object


def _checkpoint(model_folder: Path, fold, checkpoint_name: str) -> dict:
    from nnunet_ext.safe_load import UnsafeCheckpointError, load_checkpoint

    path = model_folder / f"fold_{fold}" / checkpoint_name
    if not path.is_file():
        raise ExportError(f"no checkpoint {path} (train fold {fold} first, or pass --checkpoint)")
    try:
        return load_checkpoint(path)
    except UnsafeCheckpointError as error:  # the unpickler refuses anything but tensors and plain data
        raise ExportError(f"not a checkpoint that loads without running code: {error}") from None


def trainer_for_model(trainer_name: str, env: Optional[dict] = None) -> type:
    """The trainer class of a model; a missing plugin or nnUNet_extTrainer is named in the error."""
    from nnunet_ext.trainer_lookup import TrainerNotFound, find_trainer

    try:
        return find_trainer(trainer_name, env)
    except TrainerNotFound as error:
        raise ExportError(f"{error}. If the model was trained with another plugin, install that plugin and add "
                          f"its trainer folder to nnUNet_extTrainer") from None


def check_model_folder(model_folder, fold=0, checkpoint_name: str = "checkpoint_final.pth",
                       env: Optional[dict] = None) -> str:
    """Raise if ``nnUNetv2_predict`` could not find this model's trainer with ``env`` (default: os.environ).

    Returns the trainer name. An nnunet-ext trainer that nnU-Net would miss because nnUNet_extTrainer does
    not name our folder gets that exact instruction."""
    from nnunet_ext.workspace import trainers_dir
    from nnunet_ext.trainer_lookup import TrainerNotFound, find_trainer

    env = dict(os.environ if env is None else env)
    trainer_name = _checkpoint(Path(model_folder), fold, checkpoint_name)["trainer_name"]
    ours = trainers_dir()
    users = [p for p in env.get("nnUNet_extTrainer", "").split(os.pathsep) if p]
    if ours in users:
        trainer_for_model(trainer_name, env)
        return trainer_name
    try:  # where would nnU-Net find it with only what the user has set (ours is added by find_trainer)?
        find_trainer(trainer_name, env, add_ours=False)
    except TrainerNotFound:
        raise ExportError(f"model {model_folder} was trained with {trainer_name}, an nnunet-ext trainer, but "
                          f"nnUNet_extTrainer={env.get('nnUNet_extTrainer', '')!r} does not include "
                          f"{ours}; nnUNetv2_predict will not find it: {PLUGIN_HINT}") from None
    return trainer_name


def load_model(model_folder, fold=0, checkpoint_name: str = "checkpoint_final.pth") -> LoadedModel:
    """The trained network in eval mode, built as nnUNetv2_predict builds it (deep supervision off)."""
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    folder = Path(model_folder)
    for name in ("plans.json", "dataset.json"):
        if not (folder / name).is_file():
            raise ExportError(f"{folder} is not an nnU-Net model folder (no {name})")
    fold = fold if fold == "all" else int(fold)
    checkpoint = _checkpoint(folder, fold, checkpoint_name)
    dataset_json = json.loads((folder / "dataset.json").read_text())
    plans_manager = PlansManager(json.loads((folder / "plans.json").read_text()))
    configuration = checkpoint["init_args"]["configuration"]
    configuration_manager = plans_manager.get_configuration(configuration)
    n_in = determine_num_input_channels(plans_manager, configuration_manager, dataset_json)
    n_out = plans_manager.get_label_manager(dataset_json).num_segmentation_heads
    trainer_class = trainer_for_model(checkpoint["trainer_name"])
    network = trainer_class.build_network_architecture(plans_manager, configuration_manager, n_in, n_out, False)
    network.load_state_dict(checkpoint["network_weights"])
    return LoadedModel(network.eval(), checkpoint["trainer_name"], configuration,
                       list(configuration_manager.patch_size), n_in, n_out, folder, fold)


def fuse_reparameterized(network: nn.Module) -> nn.Module:
    """A copy in which every re-parameterizable block (``fused_kernel_and_bias``) is one plain convolution."""
    network = copy.deepcopy(network).eval()
    for parent in list(network.modules()):
        for name, child in list(parent.named_children()):
            if hasattr(child, "fused_kernel_and_bias"):
                setattr(parent, name, _as_conv(child))
    return network


def _as_conv(block: nn.Module) -> nn.Module:
    with torch.no_grad():
        kernel, bias = block.fused_kernel_and_bias()
    conv_op = type(block.dense[0])
    conv = conv_op(block.in_channels, block.out_channels, block.kernel_size, block.stride, block.padding, bias=True)
    with torch.no_grad():
        conv.weight.copy_(kernel)
        conv.bias.copy_(bias)
    return conv


@dataclass
class ExportResult:
    files: List[str] = field(default_factory=list)
    skipped: List[str] = field(default_factory=list)      # "format: why"
    max_abs_difference: dict = field(default_factory=dict)


def export_network(network: nn.Module, example: torch.Tensor, output_dir, formats: Sequence[str] = FORMATS,
                   opset: int = 17, name: str = "network") -> ExportResult:
    """Write ``network`` (eval, fused) as ONNX and/or TorchScript; each file is checked against PyTorch."""
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        raise ExportError(f"unknown export format(s) {unknown}; choose from {list(FORMATS)}")
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    network = fuse_reparameterized(network)
    with torch.no_grad():
        reference = network(example)
    if isinstance(reference, (list, tuple)):
        raise ExportError("the network returns several outputs (deep supervision is on); export the inference form")
    result = ExportResult()
    if "onnx" in formats and not _has_onnx():
        result.skipped.append("onnx: torch writes ONNX only with the onnx package installed: "
                              "pip install 'nnunet-ext[export]' (onnx + onnxruntime)")
    elif "onnx" in formats:
        path = out / f"{name}.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(network, (example,), str(path), dynamo=False, input_names=["image"],
                              output_names=["logits"], opset_version=opset, dynamic_axes={"image": {0: "batch"},
                                                                                          "logits": {0: "batch"}})
        result.files.append(str(path))
        result.max_abs_difference["onnx"] = _onnx_difference(path, example, reference)
    if "torchscript" in formats:
        path = out / f"{name}.torchscript.pt"
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                traced = torch.jit.trace(network, example, check_trace=False)
                with torch.no_grad():
                    difference = float((traced(example) - reference).abs().max())
            traced.save(str(path))
            result.files.append(str(path))
            result.max_abs_difference["torchscript"] = difference
        except Exception as error:  # some networks do not trace; ONNX is the deployment format anyway
            result.skipped.append(f"torchscript: {type(error).__name__}: {str(error).splitlines()[0]}")
    return result


def _has_onnx() -> bool:
    import importlib.util

    return importlib.util.find_spec("onnx") is not None


def _onnx_difference(path: Path, example: torch.Tensor, reference: torch.Tensor) -> Optional[float]:
    """Max |onnxruntime - PyTorch| on the example (None when onnxruntime is not installed)."""
    try:
        import onnxruntime
    except ImportError:
        return None
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    output = session.run(None, {"image": example.numpy()})[0]
    return float(abs(output - reference.numpy()).max())


def export_model(model_folder, output_dir, fold=0, checkpoint_name: str = "checkpoint_final.pth",
                 formats: Sequence[str] = FORMATS, opset: int = 17, seed: int = 0) -> ExportResult:
    """A trained model folder's network (one fold) as ONNX/TorchScript, with plans.json, dataset.json and
    export.json."""
    model = load_model(model_folder, fold, checkpoint_name)
    generator = torch.Generator().manual_seed(seed)
    example = torch.randn(1, model.num_input_channels, *model.patch_size, generator=generator)
    result = export_network(model.network, example, output_dir, formats, opset)
    out = Path(output_dir)
    for name in ("plans.json", "dataset.json"):
        shutil.copyfile(Path(model_folder) / name, out / name)
    info = {"trainer": model.trainer_name, "configuration": model.configuration, "fold": model.fold,
            "checkpoint": checkpoint_name, "input": {"name": "image", "shape": ["batch", model.num_input_channels,
                                                                               *model.patch_size],
                                                     "dtype": "float32"},
            "output": {"name": "logits", "channels": model.num_outputs},
            "preprocessing": "nnU-Net's (resampling + normalisation of plans.json's configuration); the input is "
                             "one preprocessed patch, the output raw logits (softmax / sigmoid not applied)",
            **asdict(result)}
    (out / "export.json").write_text(json.dumps(info, indent=1))
    return result
