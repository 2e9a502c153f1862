"""nnU-Net's training data loader, drawing STS-Net's small-lesion images more often.

The paper turns each qualifying image into ``1 + copies`` training images on disk (6 for method 4).
nnU-Net samples online, so the same proportion becomes a probability: each batch slot is, with
probability ``p = copies * Q / (U + copies * Q)`` (U images in the training cases, Q of them
qualifying), one of the extra copies: a qualifying unit drawn uniformly, a patch centred on a random
voxel of its lesion, marked for :class:`~nnunet_ext.transforms.amplification.SmallLesionAmplificationTransform`.
Otherwise the slot is nnU-Net's own draw (which also yields the paper's unmodified original).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np

from nnunetv2.training.dataloading.data_loader import nnUNetDataLoader

from nnunet_ext.data.lesion_stats import LesionUnit
from nnunet_ext.transforms.amplification import AMPLIFY_KEY


def amplified_probability(num_images: int, num_qualifying: int, copies: int) -> float:
    """Share of draws that are extra copies when each of ``num_qualifying`` images gets ``copies`` more."""
    if num_images <= 0 or num_qualifying < 0 or copies < 0:
        raise ValueError(f"need num_images > 0 and non-negative counts, got {num_images}, {num_qualifying}, {copies}")
    if num_qualifying > num_images:
        raise ValueError(f"{num_qualifying} qualifying images cannot exceed the {num_images} images")
    extra = copies * num_qualifying
    return extra / (num_images + extra)


@dataclass(frozen=True)
class AmplificationPlan:
    """What the loader amplifies: the qualifying units, how often, and the size threshold they fell under."""
    units: Tuple[LesionUnit, ...]
    probability: float
    threshold: int

    def __post_init__(self):
        if not 0.0 <= self.probability < 1.0:
            raise ValueError(f"amplification probability must be in [0, 1), got {self.probability}")
        if self.probability > 0 and not self.units:
            raise ValueError("amplification probability > 0 but no qualifying lesion units to draw")


def lesion_centred_bbox(unit: LesionUnit, patch_size: Sequence[int]) -> Tuple[List[int], List[int]]:
    """Patch bounds centred on a voxel drawn uniformly from the unit's lesion boxes (box weight = its lesion size).

    Like nnU-Net's foreground oversampling (centre on a foreground voxel), so the lesion stays near the
    centre that nnU-Net's SpatialTransform cuts the final patch from.
    """
    weights = np.asarray(unit.component_sizes, dtype=float)
    box = unit.boxes[np.random.choice(len(unit.boxes), p=weights / weights.sum())]
    centre = [np.random.randint(lo, hi) for lo, hi in box]
    lbs = [int(c - p // 2) for c, p in zip(centre, patch_size)]
    return lbs, [lb + int(p) for lb, p in zip(lbs, patch_size)]


class AmplifiedDataLoader(nnUNetDataLoader):
    """nnUNetDataLoader whose batch slots are, with ``plan.probability``, lesion-centred amplified copies.

    Hooks into nnU-Net's ``generate_train_batch`` through the methods it calls per slot, in order:
    ``get_indices`` (we decide each slot), ``get_bbox`` (lesion-centred for amplified slots) and
    ``transforms`` (the amplified slots carry ``AMPLIFY_KEY``).
    """

    def __init__(self, data, batch_size, patch_size, final_patch_size, label_manager, plan: AmplificationPlan,
                 **kwargs):
        super().__init__(data, batch_size, patch_size, final_patch_size, label_manager, **kwargs)
        known = set(self.indices)
        foreign = sorted({u.case for u in plan.units} - known)
        if foreign:
            raise ValueError(f"amplification plan names cases that are not in this loader's data: {foreign[:5]}")
        self.plan = plan
        self.pipeline = self.transforms
        self.transforms = self._transform_slot
        self._slots: List[Optional[LesionUnit]] = []
        self._slot = 0
        self._current: Optional[LesionUnit] = None

    def draw_slot(self) -> Tuple[str, Optional[LesionUnit]]:
        """One batch slot: (case, qualifying unit) for an amplified copy, (case, None) for nnU-Net's own draw."""
        if self.plan.probability > 0 and np.random.uniform() < self.plan.probability:
            unit = self.plan.units[np.random.randint(len(self.plan.units))]
            return unit.case, unit
        return np.random.choice(self.indices, p=self.sampling_probabilities), None

    def get_indices(self):
        slots = [self.draw_slot() for _ in range(self.batch_size)]
        self._slots, self._slot = [u for _, u in slots], 0
        return [case for case, _ in slots]

    def get_bbox(self, data_shape, force_fg, class_locations, overwrite_class=None, verbose=False):
        self._current = self._slots[self._slot] if self._slot < len(self._slots) else None
        self._slot += 1
        if self._current is None:
            return super().get_bbox(data_shape, force_fg, class_locations, overwrite_class, verbose)
        return lesion_centred_bbox(self._current, self.patch_size)

    def _transform_slot(self, **data_dict):
        if self._current is not None:
            data_dict[AMPLIFY_KEY] = self.plan.threshold
        return self.pipeline(**data_dict) if self.pipeline is not None else data_dict
