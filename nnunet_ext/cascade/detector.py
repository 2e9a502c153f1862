"""The light region detector of the multi-stage paper: 2D boxes on three orthogonal views -> one 3D box.

Paper (CMC 2025, Sec. 3.1): one 2D detector per view (xy, yz, xz), separate weights, boxes combined into
the 3D ROI. Decisions (docs/cascade.md):

- View input: the mean projection along the view's axis (default) or the centre slice (``view="centre"``).
  A centre slice can miss a small or off-centre organ altogether and only shows a cross-section; the paper's
  own best detector row (Table 8, "Our (Average)") is the average projection.
- View target: the box of the projected foreground, i.e. the 3D ground-truth box seen from that side, so
  the three 2D boxes are consistent and the 3D box is recoverable.
- Combination: every axis appears in two views; ``union`` (default) takes the outer extent of the two,
  ``mean`` their average. The paper reports its ROIs "smaller than the ground truth"; a too-small ROI cuts
  the organ, which stage 2 cannot undo, so the union errs on the safe side.
- Network: a small CNN per view (three dilated conv blocks + coordinate channels) instead of the paper's
  193 M-parameter DETR variant, so it trains on a CPU in seconds. The box is predicted as two 1D interval
  masks (is row i / column j inside the box?), trained with binary cross-entropy; the box is the span of
  the positions scored inside.

Coordinates: views of a (C, Z, Y, X) volume; view ``a`` projects along axis ``a`` and sees the other two
axes in order; a 2D box is ``(lo_0, lo_1, hi_0, hi_1)`` as fractions of those two axes.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from nnunet_ext.cascade.roi import Box, bounding_box, box_iou
from nnunet_ext.network_cost import count_parameters
from nnunet_ext.safe_load import UnsafeCheckpointError, load_checkpoint, short_reason

VIEW_MODES = ("mean", "centre")
COMBINE_RULES = ("union", "mean")
VIEW_AXES = ((1, 2), (0, 2), (0, 1))  # view a (projection along axis a) sees these volume axes


@dataclass
class DetectorConfig:
    """Detector size and training schedule (small defaults: it should train on a CPU in seconds)."""

    view: str = "mean"
    combine: str = "union"
    view_size: int = 64  # every view is resized to view_size x view_size
    width: int = 16  # channels of the first conv block; doubled up to 4x
    steps: int = 200
    batch_size: int = 8
    learning_rate: float = 3e-3
    seed: int = 0

    def validate(self) -> "DetectorConfig":
        if self.view not in VIEW_MODES:
            raise ValueError(f"view must be one of {VIEW_MODES}, got {self.view!r}")
        if self.combine not in COMBINE_RULES:
            raise ValueError(f"combine must be one of {COMBINE_RULES}, got {self.combine!r}")
        if self.view_size < 8:
            raise ValueError(f"view_size must be >= 8 pixels, got {self.view_size}")
        if self.width < 1 or self.steps < 1 or self.batch_size < 1 or self.learning_rate <= 0:
            raise ValueError("width, steps, batch_size must be >= 1 and learning_rate > 0")
        return self


# ------------------------------------------------------------------------------------------- geometry
def volume_views(volume: np.ndarray, mode: str = "mean") -> List[np.ndarray]:
    """The three 2D views (C, H, W) of a (C, Z, Y, X) volume."""
    if volume.ndim != 4:
        raise ValueError(f"the detector needs a (C, Z, Y, X) volume, got shape {volume.shape}")
    if mode not in VIEW_MODES:
        raise ValueError(f"view must be one of {VIEW_MODES}, got {mode!r}")
    volume = np.asarray(volume, dtype=np.float32)
    if mode == "mean":
        return [volume.mean(axis=a + 1) for a in range(3)]
    return [np.take(volume, volume.shape[a + 1] // 2, axis=a + 1) for a in range(3)]


def view_boxes_from_box(box: Box, shape: Sequence[int]) -> np.ndarray:
    """The (3, 4) fractional 2D boxes each view sees of a 3D box in a volume of ``shape`` (Z, Y, X)."""
    if box.ndim != 3 or len(shape) != 3:
        raise ValueError(f"need a 3D box and a 3D shape, got {box.ndim} and {tuple(shape)}")
    out = np.zeros((3, 4), dtype=np.float64)
    for view, (p, q) in enumerate(VIEW_AXES):
        out[view] = [box.start[p] / shape[p], box.start[q] / shape[q], box.stop[p] / shape[p], box.stop[q] / shape[q]]
    return out


def combine_view_boxes(view_boxes: np.ndarray, shape: Sequence[int], rule: str = "union") -> Box:
    """One 3D voxel box from three fractional 2D boxes; each axis's extent comes from the two views seeing it.

    ``union``: the outer of the two extents; ``mean``: their average. Fractions are turned into voxels
    outward (floor of the start, ceil of the stop) and the box is clipped to the volume, at least one voxel.
    """
    view_boxes = np.asarray(view_boxes, dtype=np.float64)
    if view_boxes.shape != (3, 4):
        raise ValueError(f"need one (lo, lo, hi, hi) box per view, shape (3, 4); got {view_boxes.shape}")
    if rule not in COMBINE_RULES:
        raise ValueError(f"combine rule must be one of {COMBINE_RULES}, got {rule!r}")
    if len(shape) != 3:
        raise ValueError(f"shape must be (Z, Y, X), got {tuple(shape)}")
    starts, stops = [], []
    for axis in range(3):
        seen = [(view, VIEW_AXES[view].index(axis)) for view in range(3) if axis in VIEW_AXES[view]]
        lows = [view_boxes[v, k] for v, k in seen]
        highs = [view_boxes[v, k + 2] for v, k in seen]
        lo, hi = (min(lows), max(highs)) if rule == "union" else (float(np.mean(lows)), float(np.mean(highs)))
        n = int(shape[axis])
        start = int(np.clip(math.floor(lo * n + 1e-6), 0, n - 1))
        stop = int(np.clip(math.ceil(hi * n - 1e-6), start + 1, n))
        starts.append(start)
        stops.append(stop)
    return Box(tuple(starts), tuple(stops))


# ------------------------------------------------------------------------------------------- network
class ViewBoxNet(nn.Module):
    """Small 2D CNN giving one box on one view, as two 1D interval masks (one per axis of the view).

    A box is the product of two intervals; each row (column) of the view is inside the box's interval iff the
    projected organ touches it. So the convolutional features are max-pooled over the other axis and a 1D
    conv head scores every row (column): a per-position decision that a few hundred CPU steps learn,
    where regressing four numbers from a flattened feature map did not (docs/cascade.md).
    """

    def __init__(self, input_channels: int, width: int = 16):
        super().__init__()
        channels = [input_channels + 2, width, width, 2 * width]
        blocks = []
        for i, (c_in, c_out) in enumerate(zip(channels[:-1], channels[1:])):
            blocks += [nn.Conv2d(c_in, c_out, 3, padding=2 ** i, dilation=2 ** i),
                       nn.InstanceNorm2d(c_out, affine=True), nn.LeakyReLU(0.01, inplace=True)]
        self.features = nn.Sequential(*blocks)
        self.heads = nn.ModuleList([nn.Sequential(nn.Conv1d(channels[-1], width, 3, padding=1),
                                                  nn.LeakyReLU(0.01, inplace=True), nn.Conv1d(width, 1, 1))
                                    for _ in range(2)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, S, S) -> interval logits (B, 2, S): row 0 for the view's first axis, row 1 for its second."""
        size = x.shape[-1]
        ramp = torch.linspace(-1, 1, size, device=x.device, dtype=x.dtype)
        coords = torch.stack(torch.meshgrid(ramp, ramp, indexing="ij"))[None].expand(x.shape[0], -1, -1, -1)
        f = self.features(torch.cat([x, coords], dim=1))
        rows = self.heads[0](f.amax(dim=3))  # (B, 1, S) over the first axis
        cols = self.heads[1](f.amax(dim=2))
        return torch.cat([rows, cols], dim=1)


def intervals_from_logits(logits: torch.Tensor) -> np.ndarray:
    """(..., 2, S) interval logits -> (..., 4) fractional boxes (lo0, lo1, hi0, hi1); never empty.

    The interval spans the first to the last position scored inside (> 0); with none, the best-scoring one.
    """
    probs = logits.detach().float().cpu().numpy()
    size = probs.shape[-1]
    flat = probs.reshape(-1, 2, size)
    out = np.zeros((flat.shape[0], 4))
    for n, pair in enumerate(flat):
        for axis, scores in enumerate(pair):
            inside = np.flatnonzero(scores > 0)
            lo, hi = (inside[0], inside[-1] + 1) if inside.size else (int(scores.argmax()), int(scores.argmax()) + 1)
            out[n, axis], out[n, axis + 2] = lo / size, hi / size
    return out.reshape(*probs.shape[:-2], 4)


def interval_targets(view_boxes: torch.Tensor, size: int) -> torch.Tensor:
    """(..., 4) fractional boxes -> (..., 2, S) 0/1 masks: position i is inside iff its centre is in [lo, hi)."""
    centres = (torch.arange(size, dtype=torch.float32) + 0.5) / size
    lo, hi = view_boxes[..., :2, None], view_boxes[..., 2:, None]
    return ((centres >= lo) & (centres < hi)).float()


class SliceBoxDetector(nn.Module):
    """Three ViewBoxNets, one per orthogonal view, with separate weights (as the paper)."""

    def __init__(self, input_channels: int, config: Optional[DetectorConfig] = None):
        super().__init__()
        self.config = (config or DetectorConfig()).validate()
        self.input_channels = int(input_channels)
        self.views = nn.ModuleList([ViewBoxNet(input_channels, self.config.width) for _ in range(3)])

    def prepare_views(self, volume: np.ndarray) -> torch.Tensor:
        """(3, C, S, S) float tensor: the views of one volume, resized and standardised."""
        if volume.shape[0] != self.input_channels:
            raise ValueError(f"detector expects {self.input_channels} channels, got a volume of shape {volume.shape}")
        size = self.config.view_size
        out = []
        for view in volume_views(volume, self.config.view):
            t = torch.from_numpy(np.ascontiguousarray(view))[None]
            t = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False)[0]
            mean = t.mean(dim=(1, 2), keepdim=True)
            std = t.std(dim=(1, 2), keepdim=True).clamp_min(1e-6)
            out.append((t - mean) / std)
        return torch.stack(out)

    def forward(self, views: torch.Tensor) -> torch.Tensor:
        """views (B, 3, C, S, S) -> interval logits (B, 3, 2, S)."""
        if views.ndim != 5 or views.shape[1] != 3:
            raise ValueError(f"expected views of shape (B, 3, C, S, S), got {tuple(views.shape)}")
        return torch.stack([net(views[:, v]) for v, net in enumerate(self.views)], dim=1)

    @torch.no_grad()
    def predict_box(self, volume: np.ndarray) -> Box:
        """3D box (voxels of ``volume``) for one (C, Z, Y, X) volume."""
        self.eval()
        boxes = intervals_from_logits(self(self.prepare_views(volume)[None])[0])
        return combine_view_boxes(boxes, volume.shape[1:], self.config.combine)


# ------------------------------------------------------------------------------------------- training
@dataclass
class DetectorSample:
    """One training volume (C, Z, Y, X) and its ground-truth 3D box."""
    volume: np.ndarray
    box: Box


def box_loss(logits: torch.Tensor, view_boxes: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of the interval logits (B, 3, 2, S) against the target boxes (B, 3, 4)."""
    return F.binary_cross_entropy_with_logits(logits, interval_targets(view_boxes, logits.shape[-1]))


def train_detector(samples: Sequence[DetectorSample], input_channels: int,
                   config: Optional[DetectorConfig] = None, log=None) -> SliceBoxDetector:
    """Fit a SliceBoxDetector on in-memory samples (Adam, fixed number of steps, random mini-batches)."""
    config = (config or DetectorConfig()).validate()
    if not samples:
        raise ValueError("train_detector needs at least one sample")
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    detector = SliceBoxDetector(input_channels, config)
    views = torch.stack([detector.prepare_views(s.volume) for s in samples])
    targets = torch.stack([torch.from_numpy(view_boxes_from_box(s.box, s.volume.shape[1:])).float() for s in samples])
    optimizer = torch.optim.Adam(detector.parameters(), lr=config.learning_rate)
    detector.train()
    for step in range(config.steps):
        index = torch.from_numpy(rng.integers(0, len(samples), min(config.batch_size, len(samples))))
        loss = box_loss(detector(views[index]), targets[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if log is not None and (step % 50 == 0 or step == config.steps - 1):
            log(f"detector step {step}: loss {loss.item():.4f}")
    return detector.eval()


def mean_box_iou(detector: SliceBoxDetector, samples: Sequence[DetectorSample]) -> float:
    if not samples:
        return float("nan")
    return float(np.mean([box_iou(detector.predict_box(s.volume), s.box) for s in samples]))


# ------------------------------------------------------------------------------- nnU-Net preprocessed data
def _label_settings(dataset_json: dict) -> List[int]:
    """Foreground label values of a dataset (everything but background and ignore)."""
    values = set()
    for name, value in dataset_json["labels"].items():
        if name in ("background", "ignore"):
            continue
        values.update(int(v) for v in np.atleast_1d(value))
    return sorted(values)


def load_preprocessed_samples(preprocessed_dataset: str | Path, data_identifier: str,
                              region_labels: Optional[Sequence[int]] = None,
                              identifiers: Optional[Sequence[str]] = None) -> Dict[str, DetectorSample]:
    """Samples from nnU-Net's preprocessed folder (data + seg per case, as nnU-Net's dataloader reads them)."""
    from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class

    root = Path(preprocessed_dataset)
    folder = root / data_identifier
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} does not exist; run nnUNetv2_plan_and_preprocess for this configuration")
    if region_labels is None:
        region_labels = _label_settings(json.loads((root / "dataset.json").read_text()))
    dataset = infer_dataset_class(str(folder))(str(folder), list(identifiers) if identifiers else None)
    samples = {}
    for identifier in dataset.identifiers:
        data, seg, _, _ = dataset.load_case(identifier)
        data, seg = np.asarray(data[:]), np.asarray(seg[:])
        if data.ndim != 4:
            raise ValueError(f"the detector needs 3D data; {identifier} in {folder} has shape {data.shape}")
        box = bounding_box(np.isin(seg[0], list(region_labels)))
        if box is not None:  # cases without foreground teach no box
            samples[identifier] = DetectorSample(data.astype(np.float32), box)
    return samples


def held_out_split(preprocessed_dataset: Path, identifiers: Sequence[str], fold: int = 0,
                   val_fraction: float = 0.25) -> Tuple[List[str], List[str]]:
    """nnU-Net's splits_final.json fold when present (same held-out cases as nnUNetv2_train), else the last cases."""
    ids = sorted(identifiers)
    splits_file = Path(preprocessed_dataset) / "splits_final.json"
    if splits_file.is_file():
        splits = json.loads(splits_file.read_text())
        if not 0 <= fold < len(splits):
            raise ValueError(f"fold {fold} is not in {splits_file} (folds 0..{len(splits) - 1})")
        split = splits[fold]
        train = [i for i in split["train"] if i in ids]
        val = [i for i in split["val"] if i in ids]
        if train and val:
            return train, val
    n_val = max(1, int(round(len(ids) * val_fraction))) if len(ids) > 1 else 0
    return ids[:len(ids) - n_val], ids[len(ids) - n_val:]


DETECTOR_FILE = "detector.pt"


def detector_folder(results_root: str | Path, dataset_name: str, configuration: str,
                    plans: str = "nnUNetPlans") -> Path:
    return Path(results_root) / dataset_name / f"SliceBoxDetector__{plans}__{configuration}"


def train_detector_from_preprocessed(preprocessed_root: str | Path, results_root: str | Path, dataset_id: int,
                                     configuration: str = "3d_fullres", plans: str = "nnUNetPlans",
                                     config: Optional[DetectorConfig] = None,
                                     region_labels: Optional[Sequence[int]] = None, fold: int = 0,
                                     log=print) -> Tuple[Path, dict]:
    """Train on nnU-Net's preprocessed training cases of ``fold``, report box IoU on its held-out cases, save.

    Returns the checkpoint path and a summary (IoU per held-out case, mean IoU, training seconds).
    """
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    config = (config or DetectorConfig()).validate()
    matches = sorted(Path(preprocessed_root).glob(f"Dataset{int(dataset_id):03d}_*"))
    if len(matches) != 1:
        raise FileNotFoundError(f"no (unique) preprocessed folder for dataset {dataset_id} in {preprocessed_root}")
    root = matches[0]
    plans_manager = PlansManager(str(root / f"{plans}.json"))
    configuration_manager = plans_manager.get_configuration(configuration)
    dataset_json = json.loads((root / "dataset.json").read_text())
    region_labels = list(region_labels) if region_labels is not None else _label_settings(dataset_json)
    samples = load_preprocessed_samples(root, configuration_manager.data_identifier, region_labels)
    if not samples:
        raise ValueError(f"no preprocessed case of {root.name} has foreground labels {region_labels}")
    train_ids, val_ids = held_out_split(root, list(samples), fold)
    channels = len(dataset_json["channel_names"])
    start = time.perf_counter()
    detector = train_detector([samples[i] for i in train_ids], channels, config, log)
    seconds = time.perf_counter() - start
    per_case = {i: box_iou(detector.predict_box(samples[i].volume), samples[i].box) for i in val_ids}
    summary = {"held_out_iou": per_case, "mean_held_out_iou": float(np.mean(list(per_case.values())))
               if per_case else float("nan"), "train_cases": train_ids, "train_seconds": seconds,
               "parameters": count_parameters(detector)}
    folder = detector_folder(results_root, root.name, configuration, plans)
    folder.mkdir(parents=True, exist_ok=True)
    checkpoint = save_detector(folder / DETECTOR_FILE, detector, dataset_name=root.name, plans=plans,
                               configuration=configuration, region_labels=region_labels, summary=summary)
    (folder / "summary.json").write_text(json.dumps(summary, indent=2))
    log(f"detector: mean box IoU on {len(val_ids)} held-out case(s): {summary['mean_held_out_iou']:.3f}")
    return checkpoint, summary


class DetectorCheckpointError(UnsafeCheckpointError):
    """A --checkpoint that is missing, not a detector checkpoint, or holds more than plain data."""


CHECKPOINT_KEYS = ("state_dict", "config", "input_channels", "dataset_name", "plans", "configuration")


def save_detector(path: str | Path, detector: SliceBoxDetector, *, dataset_name: str, plans: str,
                  configuration: str, region_labels: Sequence[int], summary: dict) -> Path:
    """Tensors and plain Python data only (the summary goes through JSON), so :func:`load_detector` can load
    it with ``weights_only=True``."""
    path = Path(path)
    torch.save({"state_dict": detector.state_dict(), "config": asdict(detector.config),
                "input_channels": detector.input_channels, "dataset_name": dataset_name, "plans": plans,
                "configuration": configuration, "region_labels": [int(v) for v in region_labels],
                "summary": json.loads(json.dumps(summary))}, path)
    return path


def load_detector(checkpoint: str | Path) -> Tuple[SliceBoxDetector, dict]:
    """Load with ``weights_only=True``: a crafted pickle cannot run code here; every failure is a
    :class:`DetectorCheckpointError` naming the file."""
    from nnunet_ext.dataset_names import DatasetNameError, split_dataset_folder_name

    path = Path(checkpoint)
    if not path.is_file():
        raise DetectorCheckpointError(f"detector checkpoint {path} does not exist (`nnunet-ext detector train` "
                                      f"writes one)")
    try:
        meta = load_checkpoint(path)
    except UnsafeCheckpointError as error:
        raise DetectorCheckpointError(f"not a detector checkpoint: {error}") from None
    missing = [k for k in CHECKPOINT_KEYS if not isinstance(meta, dict) or k not in meta]
    if missing:
        raise DetectorCheckpointError(f"{path} is not a detector checkpoint: it lacks {', '.join(missing)}")
    try:
        split_dataset_folder_name(str(meta["dataset_name"]))
        detector = SliceBoxDetector(int(meta["input_channels"]), DetectorConfig(**meta["config"]))
        detector.load_state_dict(meta["state_dict"])
    except (DatasetNameError, TypeError, ValueError, RuntimeError) as error:
        raise DetectorCheckpointError(f"{path} does not hold a valid detector: {short_reason(error)}") from None
    return detector.eval(), meta


def preprocessed_box_to_raw(box: Box, resampled_shape: Sequence[int], properties: dict,
                            transpose_backward: Sequence[int]) -> Box:
    """A box in nnU-Net's preprocessed array (transposed, cropped to non-zero, resampled to ``resampled_shape``)
    -> raw array indices: undo the resampling (scale), the crop (offset), the transpose (axis order)."""
    cropped_shape = properties["shape_after_cropping_and_before_resampling"]
    bbox = properties["bbox_used_for_cropping"]
    if len(resampled_shape) != 3 or box.ndim != 3:
        raise ValueError(f"need a 3D box and a 3D resampled shape, got {box.ndim} and {tuple(resampled_shape)}")
    starts, stops = [], []
    for axis in range(3):
        scale = cropped_shape[axis] / resampled_shape[axis]
        starts.append(int(math.floor(box.start[axis] * scale + 1e-6)) + int(bbox[axis][0]))
        stops.append(int(math.ceil(box.stop[axis] * scale - 1e-6)) + int(bbox[axis][0]))
    start = [starts[a] for a in transpose_backward]
    stop = [stops[a] for a in transpose_backward]
    shape = [properties["shape_before_cropping"][a] for a in transpose_backward]
    return Box(tuple(start), tuple(stop)).clip(shape)


def detect_raw_case(detector: SliceBoxDetector, meta: dict, image_files: Sequence[str], preprocessed_root: str | Path,
                    ) -> Box:
    """Run nnU-Net's preprocessing on one raw case, detect, and return the box in raw array indices."""
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    root = Path(preprocessed_root) / meta["dataset_name"]
    plans_manager = PlansManager(str(root / f"{meta['plans']}.json"))
    configuration_manager = plans_manager.get_configuration(meta["configuration"])
    preprocessor = configuration_manager.preprocessor_class(verbose=False)
    data, _, properties = preprocessor.run_case(list(map(str, image_files)), None, plans_manager,
                                                configuration_manager, str(root / "dataset.json"))
    box = detector.predict_box(np.asarray(data, dtype=np.float32))
    return preprocessed_box_to_raw(box, data.shape[1:], properties, plans_manager.transpose_backward)
