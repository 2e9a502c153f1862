"""Region Specific Scaling (RSS) from ES-UNet (Park et al., BMC Medical Imaging 2025).

Along a spatial axis, the band between the first and last foreground index (over the whole sample) is
stretched or squeezed by a ratio r; the parts before and after the band are re-attached unscaled. A
squeezed band leaves gaps at both ends that are mirror padded (paper Fig. 6g); a stretched band pushes
the outer parts past the borders and the excess is cropped (Fig. 7g). The band keeps its centre, so the
padding / cropping is split between both ends. Axes are drawn independently and applied in sequence.

Every axis operation is a 1-D resampling map (output index -> input coordinate): the image reads it
with linear interpolation, the segmentation with nearest neighbour, from the same map, so both stay
aligned and label values (nnU-Net's -1, an ignore label) are copied, never mixed. See docs/rss.md.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch

from batchgeneratorsv2.transforms.base.basic_transform import BasicTransform

from nnunet_ext.registry import register

PAPER_RATIO_RANGE = (2 / 3, 3 / 2)
# The paper fixes P(RSS on at least one of three axes) = 0.5 and splits it evenly.
PAPER_P_PER_AXIS = 1 - 0.5 ** (1 / 3)
RATIO_SAMPLING_MODES = ("split", "uniform")


@dataclass(frozen=True)
class AxisScaling:
    """One drawn RSS step: scale ``band`` (inclusive indices) of spatial ``axis`` by ``ratio``."""

    axis: int
    ratio: float
    band: Tuple[int, int]
    source: torch.Tensor  # float64, one input coordinate per output index along ``axis``


def foreground_band(mask: torch.Tensor, axis: int) -> Optional[Tuple[int, int]]:
    """First and last index along ``axis`` holding any foreground voxel, or None if there is none."""
    along_axis = mask.movedim(axis, 0).reshape(mask.shape[axis], -1).any(dim=1)
    hits = torch.nonzero(along_axis).flatten()
    if hits.numel() == 0:
        return None
    return int(hits[0]), int(hits[-1])


def scaled_band_length(band_length: int, ratio: float) -> int:
    return max(1, int(round(band_length * ratio)))


def _reflect(positions: torch.Tensor, length: int) -> torch.Tensor:
    """Mirror positions outside [0, length) back inside (numpy 'reflect': the edge voxel is not repeated)."""
    if length == 1:
        return torch.zeros_like(positions)
    period = 2 * (length - 1)
    folded = torch.remainder(positions, period)
    return torch.where(folded >= length, period - folded, folded)


def rss_source_coordinates(length: int, band: Tuple[int, int], ratio: float) -> torch.Tensor:
    """For each output index along one axis, the input coordinate it reads (float64, within [0, length-1]).

    The intermediate line is ``input[:lo] + band scaled to round(L*r) + input[hi+1:]``; it is placed so
    the band keeps its centre (an odd voxel of growth / shrinkage goes to the far side), then cut or
    mirror-padded back to ``length``.
    """
    lo, hi = band
    if not 0 <= lo <= hi < length:
        raise ValueError(f"RSS band {band} does not lie inside an axis of length {length}")
    if not ratio > 0:
        raise ValueError(f"RSS ratio must be positive, got {ratio}")
    band_length = hi - lo + 1
    new_length = scaled_band_length(band_length, ratio)
    growth = new_length - band_length
    start = -int(growth / 2)  # output index of the intermediate's first voxel
    u = _reflect(torch.arange(length, dtype=torch.float64) - start, length + growth)
    source = u.clone()
    in_band = (u >= lo) & (u < lo + new_length)
    # pixel-centre convention of F.interpolate(align_corners=False), clamped so the band never reads outside itself
    source[in_band] = ((u[in_band] - lo + 0.5) * (band_length / new_length) - 0.5 + lo).clamp(lo, hi)
    beyond = u >= lo + new_length
    source[beyond] = u[beyond] - growth
    return source


def nearest_indices(source: torch.Tensor) -> torch.Tensor:
    return torch.floor(source + 0.5).long()


def take(x: torch.Tensor, dim: int, indices: torch.Tensor) -> torch.Tensor:
    """``x.index_select(dim, indices)``; on CPU through numpy, whose gather along the last axis is ~10x faster."""
    if x.device.type != "cpu" or x.dtype == torch.bfloat16:  # numpy has no bfloat16
        return x.index_select(dim, indices.to(x.device))
    return torch.from_numpy(np.take(x.numpy(), indices.numpy(), axis=dim))


def resample_linear(x: torch.Tensor, dim: int, source: torch.Tensor) -> torch.Tensor:
    """``x`` read at fractional ``source`` positions along ``dim`` (linear; integer positions are exact copies)."""
    below = torch.floor(source).long().clamp(0, x.shape[dim] - 1)
    out = take(x, dim, below)
    fractional = torch.nonzero(source > below).flatten()  # only (part of) the band needs blending
    if fractional.numel() > 0:
        above = (below[fractional] + 1).clamp(max=x.shape[dim] - 1)
        weight_shape = [1] * x.ndim
        weight_shape[dim] = -1
        weight = (source[fractional] - below[fractional]).to(x.dtype).reshape(weight_shape).to(x.device)
        blended = torch.lerp(take(out, dim, fractional), take(x, dim, above), weight)
        out.index_copy_(dim, fractional.to(x.device), blended)
    return out


def resample_nearest(x: torch.Tensor, dim: int, source: torch.Tensor) -> torch.Tensor:
    return take(x, dim, nearest_indices(source))


@register("transform")
class RegionSpecificScaling(BasicTransform):
    """Region Specific Scaling (ES-UNet): rescale the foreground band along random axes, outside kept as is."""

    def __init__(self,
                 ratio_range: Tuple[float, float] = PAPER_RATIO_RANGE,
                 p_per_axis: float = PAPER_P_PER_AXIS,
                 ratio_sampling: str = "split",
                 axes: Optional[Sequence[int]] = None,
                 foreground_labels: Optional[Sequence[int]] = None,
                 ignore_label: Optional[int] = None,
                 segmentation_channel: int = 0):
        """
        ratio_range: (r1, r2). ``ratio_sampling='split'`` (paper Figs. 6/7) shrinks with r ~ U[r1, 1] or
            enlarges with r ~ U[1, r2], each half the time; ``'uniform'`` draws r ~ U[r1, r2].
        p_per_axis: probability of RSS on each axis (default: at least one of three axes with p 0.5).
        axes: spatial axes to consider (default: all), processed in this order.
        foreground_labels: labels that define the band (default: every label > 0 except ``ignore_label``).
        segmentation_channel: the segmentation channel that holds the labels (others are only resampled).
        """
        super().__init__()
        if len(ratio_range) != 2 or not 0 < ratio_range[0] <= ratio_range[1]:
            raise ValueError(f"RSS ratio_range must be (r1, r2) with 0 < r1 <= r2, got {ratio_range}")
        if ratio_sampling not in RATIO_SAMPLING_MODES:
            raise ValueError(f"RSS ratio_sampling must be one of {RATIO_SAMPLING_MODES}, got {ratio_sampling!r}")
        if ratio_sampling == "split" and not ratio_range[0] <= 1 <= ratio_range[1]:
            raise ValueError(f"RSS ratio_sampling='split' needs r1 <= 1 <= r2, got ratio_range={ratio_range}")
        if not 0 <= p_per_axis <= 1:
            raise ValueError(f"RSS p_per_axis must be a probability in [0, 1], got {p_per_axis}")
        if axes is not None and (len(axes) == 0 or len(set(axes)) != len(axes)
                                 or any(int(a) != a or a < 0 for a in axes)):
            raise ValueError(f"RSS axes must be a non-empty list of distinct spatial axis indices >= 0, got {axes}")
        if foreground_labels is not None:
            if len(foreground_labels) == 0 or any(int(lab) != lab or lab <= 0 for lab in foreground_labels):
                raise ValueError(f"RSS foreground_labels must be a non-empty list of labels > 0, "
                                 f"got {foreground_labels}")
        self.ratio_range = (float(ratio_range[0]), float(ratio_range[1]))
        self.p_per_axis = float(p_per_axis)
        self.ratio_sampling = ratio_sampling
        self.axes = None if axes is None else tuple(int(a) for a in axes)
        self.foreground_labels = None if foreground_labels is None else tuple(int(lab) for lab in foreground_labels)
        self.ignore_label = None if ignore_label is None else int(ignore_label)
        self.segmentation_channel = int(segmentation_channel)

    def draw_ratio(self) -> float:
        r1, r2 = self.ratio_range
        if self.ratio_sampling == "uniform":
            return float(np.random.uniform(r1, r2))
        if np.random.uniform() < 0.5:
            return float(np.random.uniform(r1, 1.0))
        return float(np.random.uniform(1.0, r2))

    def foreground_mask(self, labels: torch.Tensor) -> torch.Tensor:
        if self.foreground_labels is not None:
            return torch.isin(labels, torch.tensor(self.foreground_labels, dtype=labels.dtype))
        mask = labels > 0
        if self.ignore_label is not None:
            mask &= labels != self.ignore_label
        return mask

    def _check_inputs(self, data_dict: dict) -> torch.Tensor:
        seg = data_dict.get("segmentation")
        if seg is None:
            raise ValueError("RSS needs data_dict['segmentation']: the foreground defines the band to scale")
        if seg.ndim not in (3, 4):
            raise ValueError(f"RSS expects a segmentation of shape (C, X, Y) or (C, X, Y, Z), got {tuple(seg.shape)}")
        if not 0 <= self.segmentation_channel < seg.shape[0]:
            raise ValueError(f"RSS segmentation_channel {self.segmentation_channel} does not exist in a "
                             f"segmentation with {seg.shape[0]} channel(s)")
        for key in ("image", "regression_target"):
            x = data_dict.get(key)
            if x is None:
                continue
            if x.shape[1:] != seg.shape[1:]:
                raise ValueError(f"RSS: {key} spatial shape {tuple(x.shape[1:])} differs from the segmentation's "
                                 f"{tuple(seg.shape[1:])}")
            if not torch.is_floating_point(x):
                raise ValueError(f"RSS interpolates the {key} linearly and needs a floating-point tensor, "
                                 f"got {x.dtype}")
        for key in ("keypoints", "bbox"):
            if data_dict.get(key) is not None:
                raise ValueError(f"RSS does not support data_dict[{key!r}]")
        n_spatial = seg.ndim - 1
        if self.axes is not None and max(self.axes) >= n_spatial:
            raise ValueError(f"RSS axes {self.axes} do not exist in {n_spatial}D data")
        return seg

    def get_parameters(self, **data_dict) -> dict:
        seg = self._check_inputs(data_dict)
        axes = self.axes if self.axes is not None else tuple(range(seg.ndim - 1))
        # draw first, look at the data only if some axis is chosen: most samples are left alone
        draws = [(axis, self.draw_ratio()) for axis in axes if np.random.uniform() < self.p_per_axis]
        steps: List[AxisScaling] = []
        if not draws:
            return {"steps": steps}
        mask = self.foreground_mask(seg[self.segmentation_channel])
        for axis, ratio in draws:
            band = foreground_band(mask, axis)
            if band is None:
                continue
            source = rss_source_coordinates(mask.shape[axis], band, ratio)
            # later axes see the foreground as this step left it (sequential, as in the paper)
            mask = resample_nearest(mask, axis, source)
            steps.append(AxisScaling(axis, ratio, band, source))
        return {"steps": steps}

    def _apply_to_image(self, img: torch.Tensor, steps: List[AxisScaling] = (), **params) -> torch.Tensor:
        for step in steps:
            img = resample_linear(img, step.axis + 1, step.source)
        return img

    def _apply_to_regr_target(self, regression_target: torch.Tensor, steps: List[AxisScaling] = (),
                              **params) -> torch.Tensor:
        return self._apply_to_image(regression_target, steps)

    def _apply_to_segmentation(self, segmentation: torch.Tensor, steps: List[AxisScaling] = (),
                               **params) -> torch.Tensor:
        for step in steps:
            segmentation = resample_nearest(segmentation, step.axis + 1, step.source)
        return segmentation

    def __repr__(self):
        return (f"{type(self).__name__}(ratio_range={self.ratio_range}, p_per_axis={self.p_per_axis:.4f}, "
                f"ratio_sampling={self.ratio_sampling!r}, axes={self.axes}, "
                f"foreground_labels={self.foreground_labels}, ignore_label={self.ignore_label})")
