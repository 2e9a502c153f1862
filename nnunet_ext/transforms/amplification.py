"""STS-Net's amplification operations (Sci Rep 2025, "Amplification blocks") as batchgeneratorsv2 transforms.

The paper writes 5 extra copies of every small-lesion training image to disk: 4 "standard" copies
(vertical flip, horizontal flip, border crop + resize, horizontal flip + border crop + resize) and one
"centre expansion" copy (crop around the lesion centre, resize back). In nnU-Net the data loader
draws such images more often instead (nnunet_ext/data/amplified_loader.py) and marks each extra draw
with ``data_dict[AMPLIFY_KEY]``; :class:`SmallLesionAmplificationTransform` then applies one of the
copies' operations to it. Unmarked samples pass through untouched.

Sizes are fractions of the patch the transform receives, so 50 px of a 480 px image becomes
50/480 of each patch axis. Images are resized linearly, segmentations by nearest neighbour
('nearest-exact': same half-pixel grid as the linear resize, so both stay aligned). Crops never cut
into the lesion's bounding box, so an operation cannot remove the lesion. See docs/amplification.md.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from batchgeneratorsv2.transforms.base.basic_transform import BasicTransform
from batchgeneratorsv2.transforms.utils.compose import ComposeTransforms

from nnunet_ext.registry import register

AMPLIFY_KEY = "amplify"  # set by the amplified data loader: the size threshold the sample was drawn under
PAPER_IMAGE_SIZE = 480
PAPER_BORDER_FRACTION = 50 / PAPER_IMAGE_SIZE
PAPER_CENTRE_HALF_SIZE_FRACTION = (150 / PAPER_IMAGE_SIZE, 160 / PAPER_IMAGE_SIZE)
PAPER_CENTRE_DILATION = 1  # the authors dilate the label with a 2x2 kernel before taking its box

Window = List[Tuple[int, int]]


def lesion_box(segmentation: torch.Tensor, lesion_label: int) -> Optional[Window]:
    """Half-open bounding box of ``lesion_label`` in channel 0, per spatial axis; None if absent."""
    mask = segmentation[0] == lesion_label
    if not bool(mask.any()):
        return None
    box = []
    for axis in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != axis)
        hits = torch.nonzero(mask.any(dim=other) if other else mask).flatten()
        box.append((int(hits[0]), int(hits[-1]) + 1))
    return box


def lesion_size(segmentation: torch.Tensor, lesion_label: int) -> int:
    return int((segmentation[0] == lesion_label).sum())


def _contain(window: Window, box: Optional[Window]) -> Window:
    """Grow ``window`` so that it holds ``box`` (crops must not cut the lesion)."""
    if box is None:
        return window
    return [(min(lo, blo), max(hi, bhi)) for (lo, hi), (blo, bhi) in zip(window, box)]


def crop_and_resize(x: torch.Tensor, window: Window, is_segmentation: bool) -> torch.Tensor:
    """Cut ``window`` out of a (C, *spatial) tensor and resize it back to the original spatial shape."""
    size = tuple(x.shape[1:])
    cropped = x[(slice(None), *[slice(lo, hi) for lo, hi in window])]
    if is_segmentation:
        out = F.interpolate(cropped[None].float(), size=size, mode="nearest-exact")[0]
        return out.round().to(x.dtype)
    mode = "bilinear" if len(size) == 2 else "trilinear"
    return F.interpolate(cropped[None].float(), size=size, mode=mode, align_corners=False)[0].to(x.dtype)


class _WindowResizeTransform(BasicTransform):
    """Base: pick a window from the sample (``choose_window``), crop image and segmentation to it, resize back."""

    def __init__(self, lesion_label: int, axes: Optional[Sequence[int]] = None):
        super().__init__()
        self.lesion_label = int(lesion_label)
        self.axes = None if axes is None else tuple(int(a) for a in axes)

    def croppable_axes(self, ndim: int) -> Tuple[int, ...]:
        """Spatial axes this transform may crop (``axes``, negative counted from the end; None: all)."""
        if self.axes is None:
            return tuple(range(ndim))
        if any(not -ndim <= a < ndim for a in self.axes):
            raise ValueError(f"{type(self).__name__}: axes {self.axes} do not exist in a {ndim}D patch")
        return tuple(sorted({a % ndim for a in self.axes}))

    def choose_window(self, shape: Sequence[int], box: Optional[Window]) -> Optional[Window]:
        raise NotImplementedError

    def get_parameters(self, **data_dict) -> dict:
        image = data_dict["image"]
        seg = data_dict.get("segmentation")
        box = lesion_box(seg, self.lesion_label) if seg is not None else None
        window = self.choose_window(tuple(image.shape[1:]), box)
        if window is not None and all(lo == 0 and hi == s for (lo, hi), s in zip(window, image.shape[1:])):
            window = None
        return {"window": window}

    def _apply_to_image(self, img: torch.Tensor, window=None, **params) -> torch.Tensor:
        return img if window is None else crop_and_resize(img, window, is_segmentation=False)

    def _apply_to_segmentation(self, segmentation: torch.Tensor, window=None, **params) -> torch.Tensor:
        return segmentation if window is None else crop_and_resize(segmentation, window, is_segmentation=True)

    def _apply_to_regr_target(self, regression_target, window=None, **params) -> torch.Tensor:
        return regression_target if window is None else crop_and_resize(regression_target, window, False)


@register("transform")
class BorderCropResizeTransform(_WindowResizeTransform):
    """STS-Net standard crop: cut a border off all axes or off one axis, resize back (lesion box kept)."""

    def __init__(self, lesion_label: int, border_fraction: float = PAPER_BORDER_FRACTION,
                 axes: Optional[Sequence[int]] = None):
        super().__init__(lesion_label, axes)
        if not 0 < border_fraction < 0.5:
            raise ValueError(f"border_fraction must be in (0, 0.5), got {border_fraction}")
        self.border_fraction = float(border_fraction)

    def variants(self, shape: Sequence[int]) -> List[Tuple[int, ...]]:
        """The paper's "all four sides / top+bottom / left+right", generalised: all axes, or one axis."""
        axes = tuple(a for a in self.croppable_axes(len(shape)) if round(self.border_fraction * shape[a]) > 0)
        if not axes:
            return []
        return [axes] + ([(a,) for a in axes] if len(axes) > 1 else [])

    def choose_window(self, shape, box):
        variants = self.variants(shape)
        if not variants:
            return None
        axes = variants[np.random.randint(len(variants))]
        window = []
        for a, s in enumerate(shape):
            border = round(self.border_fraction * s) if a in axes else 0
            window.append((border, s - border))
        return _contain(window, box)


@register("transform")
class CentreExpansionCropTransform(_WindowResizeTransform):
    """STS-Net method 4: crop a random-size window centred on the lesion's box, resize back."""

    def __init__(self, lesion_label: int, half_size_fraction: Tuple[float, float] = PAPER_CENTRE_HALF_SIZE_FRACTION,
                 dilation: int = PAPER_CENTRE_DILATION, axes: Optional[Sequence[int]] = None):
        super().__init__(lesion_label, axes)
        lo, hi = half_size_fraction
        if not 0 < lo <= hi <= 0.5:
            raise ValueError(f"half_size_fraction must satisfy 0 < low <= high <= 0.5, got {half_size_fraction}")
        if dilation < 0:
            raise ValueError(f"dilation must be >= 0, got {dilation}")
        self.half_size_fraction = (float(lo), float(hi))
        self.dilation = int(dilation)

    def choose_window(self, shape, box):
        if box is None:
            return None  # nothing to centre on (the lesion lies outside this patch)
        window, croppable = [], self.croppable_axes(len(shape))
        for axis, (s, (blo, bhi)) in enumerate(zip(shape, box)):
            if axis not in croppable:
                window.append((0, s))
                continue
            blo, bhi = max(0, blo - self.dilation), min(s, bhi + self.dilation)
            centre = (blo + bhi) // 2
            half = int(round(np.random.uniform(*self.half_size_fraction) * s))
            half = min(half, centre, s - centre)  # the authors' clipping: keep the window centred, inside
            half = max(half, centre - blo, bhi - centre, 1)  # but never narrower than the (dilated) lesion
            window.append((max(0, centre - half), min(s, centre + half)))
        return _contain(window, box)


@register("transform")
class LesionFlipTransform(BasicTransform):
    """STS-Net standard flip: mirror image and segmentation along one fixed spatial axis."""

    def __init__(self, axis: int):
        super().__init__()
        if axis >= 0:
            raise ValueError(f"give the flip axis counted from the end (-1: horizontal, -2: vertical), got {axis}")
        self.axis = int(axis)

    def _flip(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim - 1 < -self.axis:
            raise ValueError(f"cannot flip spatial axis {self.axis} of a tensor with shape {tuple(x.shape)}")
        return torch.flip(x, dims=(self.axis,))

    def _apply_to_image(self, img, **params):
        return self._flip(img)

    def _apply_to_segmentation(self, segmentation, **params):
        return self._flip(segmentation)

    def _apply_to_regr_target(self, regression_target, **params):
        return self._flip(regression_target)


@register("transform")
class RefineIfStillSmallTransform(BasicTransform):
    """STS-Net method 3: after an operation, crop once more if the lesion is still below the sample's threshold."""

    def __init__(self, operation: BasicTransform, refinement: BasicTransform, lesion_label: int):
        super().__init__()
        self.operation, self.refinement, self.lesion_label = operation, refinement, int(lesion_label)

    def apply(self, data_dict, **params):
        data_dict = self.operation(**data_dict)
        threshold = data_dict.get(AMPLIFY_KEY)
        seg = data_dict.get("segmentation")
        if seg is not None and isinstance(threshold, (int, float)) and not isinstance(threshold, bool):
            if 0 < lesion_size(seg, self.lesion_label) < threshold:
                data_dict = self.refinement(**data_dict)
        return data_dict


@register("transform")
class SmallLesionAmplificationTransform(BasicTransform):
    """STS-Net amplification: apply one of the paper's copy operations to samples the loader marked as small-lesion.

    With ``lesion_label``, a marked sample whose patch holds no lesion voxel any more (nnU-Net's rotation or
    scaling moved the lesion out) is passed through unchanged and counted in ``counts["lesion_outside_patch"]``
    instead of ``counts["amplified"]`` (per process: the loader's workers each keep their own), with a
    warning the first time: a copy without its lesion is not a small-lesion copy, and the centre crop would
    have nothing to centre on.
    """

    def __init__(self, operations: Sequence[BasicTransform], lesion_label: Optional[int] = None):
        super().__init__()
        if not operations:
            raise ValueError("SmallLesionAmplificationTransform needs at least one operation")
        self.operations = list(operations)
        self.lesion_label = None if lesion_label is None else int(lesion_label)
        self.counts = {"amplified": 0, "lesion_outside_patch": 0}

    def lesion_lost(self, data_dict) -> bool:
        seg = data_dict.get("segmentation")
        return self.lesion_label is not None and seg is not None and lesion_size(seg, self.lesion_label) == 0

    def get_parameters(self, **data_dict) -> dict:
        marked = data_dict.get(AMPLIFY_KEY)
        if not marked:
            return {"operation": None}
        if self.lesion_lost(data_dict):
            return {"operation": None, "lesion_outside_patch": True}
        return {"operation": np.random.randint(len(self.operations))}

    def apply(self, data_dict, operation=None, lesion_outside_patch=False, **params):
        if operation is not None:
            data_dict = self.operations[operation](**data_dict)
            self.counts["amplified"] += 1
        elif lesion_outside_patch:
            self.counts["lesion_outside_patch"] += 1
            if self.counts["lesion_outside_patch"] == 1:
                warnings.warn(f"amplification: a sample drawn as a small-lesion copy has no voxel of label "
                              f"{self.lesion_label} left in its patch after the spatial augmentation; it is "
                              f"trained unamplified (counted in SmallLesionAmplificationTransform.counts)")
        data_dict.pop(AMPLIFY_KEY, None)
        return data_dict


@dataclass(frozen=True)
class AmplificationMethod:
    """One row of the paper's Table 7: which threshold, how many copies of which kind."""
    name: str
    threshold: str  # "N1" or "N2"
    standard_rounds: int = 1  # 1: the 4 standard copies; 2: method 3's "double quantity"
    centre_copies: int = 0

    @property
    def copies(self) -> int:
        """Extra training images per qualifying image (the paper writes these to disk)."""
        return 4 * self.standard_rounds + self.centre_copies


PAPER_METHODS = {
    1: AmplificationMethod("method 1", "N1"),
    2: AmplificationMethod("method 2", "N2"),
    3: AmplificationMethod("method 3", "N2", standard_rounds=2),
    4: AmplificationMethod("method 4", "N2", centre_copies=1),
}


def standard_operations(lesion_label: int, border_fraction: float = PAPER_BORDER_FRACTION,
                        axes: Optional[Sequence[int]] = None) -> List[BasicTransform]:
    """The 4 standard copies: vertical flip, horizontal flip, border crop, horizontal flip + border crop."""
    def crop():
        return BorderCropResizeTransform(lesion_label, border_fraction, axes)
    return [LesionFlipTransform(-2), LesionFlipTransform(-1), crop(),
            ComposeTransforms([LesionFlipTransform(-1), crop()])]


def build_amplification_transform(method: AmplificationMethod | int, lesion_label: int,
                                  border_fraction: float = PAPER_BORDER_FRACTION,
                                  centre_half_size_fraction: Tuple[float, float] = PAPER_CENTRE_HALF_SIZE_FRACTION,
                                  centre_dilation: int = PAPER_CENTRE_DILATION,
                                  axes: Optional[Sequence[int]] = None) -> SmallLesionAmplificationTransform:
    """One operation per paper copy, drawn uniformly: a marked sample is one of the method's copies.

    ``axes``: the spatial axes crops may cut (None: all; (-2, -1): in-plane only, for 2.5D slice stacks).
    """
    if isinstance(method, int):
        if method not in PAPER_METHODS:
            raise ValueError(f"unknown STS-Net amplification method {method}; Table 7 has {sorted(PAPER_METHODS)}")
        method = PAPER_METHODS[method]
    operations = standard_operations(lesion_label, border_fraction, axes)
    if method.standard_rounds == 2:
        operations += [RefineIfStillSmallTransform(op, BorderCropResizeTransform(lesion_label, border_fraction, axes),
                                                   lesion_label)
                       for op in standard_operations(lesion_label, border_fraction, axes)]
    elif method.standard_rounds != 1:
        raise ValueError(f"{method.name}: standard_rounds must be 1 or 2, got {method.standard_rounds}")
    operations += [CentreExpansionCropTransform(lesion_label, centre_half_size_fraction, centre_dilation, axes)
                   for _ in range(method.centre_copies)]
    assert len(operations) == method.copies
    return SmallLesionAmplificationTransform(operations, lesion_label)
