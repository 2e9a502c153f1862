"""Lesion-size statistics of a preprocessed nnU-Net dataset: STS-Net's A, S, N1, N2 (Eq. 1-2).

STS-Net decides which training images count as "small lesion" from the dataset itself: A images
contain lesion, S is their total lesion area, N1 = ceil(sqrt(S/A))^2 is the smallest perfect square
not below the mean lesion area and N2 = ceil(sqrt(N1/2))^2 the one for half of it. Here an "image" is
one slice along the first spatial axis of a preprocessed case (nnU-Net's 2D unit) or one whole case
(3D); in 3D the perfect square becomes a perfect cube, ceil(cbrt(.))^3, so N1 is still "the side of a
typical lesion, rounded up". With ``unit="component"`` each connected lesion (scipy.ndimage.label,
full connectivity, never across slices in 2D) is one unit instead of each image.

Statistics come from the preprocessed segmentations (what the network sees, in preprocessed voxels),
are computed once and cached as JSON next to the preprocessed folder; the cache is recomputed when
its settings or the segmentation files it was computed from change.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
from scipy import ndimage

STATS_VERSION = 1
UNITS = ("image", "component")
# Box = per spatial axis of the preprocessed case (first axis = slicing axis), half-open [lo, hi).
Box = Tuple[Tuple[int, int], ...]
SEG_SUFFIXES = ("_seg.b2nd", "_seg.npy", ".npz")


def perfect_power_ceil(value: float, ndim: int) -> int:
    """The smallest perfect square (ndim=2) or cube (ndim=3) that is >= ``value``."""
    if value <= 0:
        raise ValueError(f"perfect_power_ceil needs a positive value, got {value}")
    side = max(1, math.ceil(value ** (1.0 / ndim)))
    # value ** (1/ndim) can land a hair off an exact root; settle it on integers.
    while (side - 1) ** ndim >= value and side > 1:
        side -= 1
    while side ** ndim < value:
        side += 1
    return side ** ndim


def size_thresholds(total_size: int, num_units: int, ndim: int) -> Tuple[int, int]:
    """(N1, N2) of STS-Net Eq. 1-2, generalised to cubes for ndim=3."""
    if num_units <= 0 or total_size <= 0:
        raise ValueError("no lesion voxels: N1/N2 need at least one unit containing the lesion label")
    n1 = perfect_power_ceil(total_size / num_units, ndim)
    return n1, perfect_power_ceil(n1 / 2, ndim)


@dataclass(frozen=True)
class LesionUnit:
    """One image (slice or case) or one connected lesion, with its lesion size and component boxes."""
    case: str
    slice: Optional[int]
    size: int
    boxes: Tuple[Box, ...]
    component_sizes: Tuple[int, ...]


@dataclass
class LesionStats:
    """Per-unit lesion sizes of a preprocessed dataset, and STS-Net's A, S, N1, N2 over them."""
    lesion_label: int
    ndim: int
    unit: str
    images_per_case: Dict[str, int]
    units: List[LesionUnit] = field(default_factory=list)

    @property
    def num_images(self) -> int:
        """All images (slices in 2D, cases in 3D), with or without lesion."""
        return int(sum(self.images_per_case.values()))

    @property
    def A(self) -> int:  # noqa: N802 (paper's symbol)
        return len(self.units)

    @property
    def S(self) -> int:  # noqa: N802
        return int(sum(u.size for u in self.units))

    @property
    def thresholds(self) -> Tuple[int, int]:
        return size_thresholds(self.S, self.A, self.ndim)

    @property
    def N1(self) -> int:  # noqa: N802
        return self.thresholds[0]

    @property
    def N2(self) -> int:  # noqa: N802
        return self.thresholds[1]

    def qualifying(self, threshold: int, min_size: int = 5) -> List[LesionUnit]:
        """Units with ``min_size < size < threshold`` (the authors' script skips lesions of <= 5 pixels)."""
        return [u for u in self.units if min_size < u.size < threshold]

    def subset(self, cases: Iterable[str]) -> "LesionStats":
        """The statistics restricted to some cases (e.g. a fold's training cases)."""
        cases = set(cases)
        missing = cases - set(self.images_per_case)
        if missing:
            raise ValueError(f"lesion statistics have no entry for case(s) {sorted(missing)[:5]}; recompute them")
        return LesionStats(self.lesion_label, self.ndim, self.unit,
                           {c: n for c, n in self.images_per_case.items() if c in cases},
                           [u for u in self.units if u.case in cases])

    def summary(self) -> dict:
        out = {"lesion_label": self.lesion_label, "ndim": self.ndim, "unit": self.unit,
               "num_cases": len(self.images_per_case), "num_images": self.num_images, "A": self.A, "S": self.S}
        if self.A:
            n1, n2 = self.thresholds
            out.update({"mean_size": self.S / self.A, "N1": n1, "N2": n2,
                        "below_N1": len(self.qualifying(n1)), "below_N2": len(self.qualifying(n2))})
        return out

    def to_json(self) -> dict:
        return {"lesion_label": self.lesion_label, "ndim": self.ndim, "unit": self.unit,
                "images_per_case": self.images_per_case, "units": [asdict(u) for u in self.units]}

    @classmethod
    def from_json(cls, d: dict) -> "LesionStats":
        units = [LesionUnit(u["case"], u["slice"], int(u["size"]),
                            tuple(tuple(tuple(int(v) for v in ax) for ax in box) for box in u["boxes"]),
                            tuple(int(s) for s in u["component_sizes"])) for u in d["units"]]
        return cls(int(d["lesion_label"]), int(d["ndim"]), d["unit"],
                   {k: int(v) for k, v in d["images_per_case"].items()}, units)


def _check_settings(ndim: int, unit: str) -> None:
    if ndim not in (2, 3):
        raise ValueError(f"lesion statistics are defined for 2D slices or 3D cases, got ndim={ndim}")
    if unit not in UNITS:
        raise ValueError(f"unknown lesion unit {unit!r}; expected one of {UNITS}")


def lesion_units_of_case(case: str, seg: np.ndarray, lesion_label: int, ndim: int,
                         unit: str = "image") -> List[LesionUnit]:
    """Lesion units of one preprocessed case; ``seg`` is (1, X, Y, Z) or (X, Y, Z), slices along axis 0."""
    _check_settings(ndim, unit)
    seg = np.asarray(seg)
    if seg.ndim == 4:
        seg = seg[0]
    if seg.ndim != 3:
        raise ValueError(f"case {case!r}: expected a (1, X, Y, Z) preprocessed segmentation, got shape {seg.shape}")
    mask = seg == lesion_label
    structure = ndimage.generate_binary_structure(3, 3)
    if ndim == 2:
        structure[0] = structure[2] = False  # components never cross slices
    components, n = ndimage.label(mask, structure=structure)
    if n == 0:
        return []
    sizes = np.bincount(components.ravel(), minlength=n + 1)[1:]
    boxes = [tuple((int(s.start), int(s.stop)) for s in sl) for sl in ndimage.find_objects(components)]
    if unit == "component":
        return [LesionUnit(case, box[0][0] if ndim == 2 else None, int(size), (box,), (int(size),))
                for box, size in zip(boxes, sizes)]
    groups: Dict[Optional[int], List[int]] = {}
    for i, box in enumerate(boxes):
        groups.setdefault(box[0][0] if ndim == 2 else None, []).append(i)
    return [LesionUnit(case, key, int(sum(sizes[i] for i in idx)), tuple(boxes[i] for i in idx),
                       tuple(int(sizes[i]) for i in idx))
            for key, idx in sorted(groups.items(), key=lambda kv: kv[0] or 0)]


def _open_dataset(data_folder: Path):
    from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class

    if not data_folder.is_dir():
        raise FileNotFoundError(f"preprocessed data folder {data_folder} does not exist; "
                                "run nnUNetv2_plan_and_preprocess")
    return infer_dataset_class(str(data_folder))(str(data_folder))


def compute_lesion_stats(data_folder: str | Path, lesion_label: int, ndim: int, unit: str = "image") -> LesionStats:
    """Read every preprocessed segmentation once (nnU-Net's dataset class) and collect the lesion units."""
    _check_settings(ndim, unit)
    dataset = _open_dataset(Path(data_folder))
    images_per_case, units = {}, []
    for identifier in dataset.identifiers:
        _, seg, _, _ = dataset.load_case(identifier)
        seg = np.asarray(seg[:])
        images_per_case[identifier] = int(seg.shape[1]) if ndim == 2 else 1
        units.extend(lesion_units_of_case(identifier, seg, lesion_label, ndim, unit))
    if not images_per_case:
        raise ValueError(f"no preprocessed cases in {data_folder}")
    return LesionStats(int(lesion_label), ndim, unit, images_per_case, units)


def segmentation_fingerprint(data_folder: str | Path) -> str:
    """Hash of the segmentation files' names, sizes and modification times: changes when preprocessing reruns."""
    folder = Path(data_folder)
    entries = sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in folder.iterdir()
                     if p.name.endswith(SEG_SUFFIXES))
    return hashlib.sha256(json.dumps(entries).encode()).hexdigest()


def default_cache_path(data_folder: str | Path, lesion_label: int, unit: str = "image") -> Path:
    """``<preprocessed>/<Dataset>/<data_identifier>_lesion_stats_label<L>_<unit>.json``."""
    folder = Path(data_folder)
    return folder.parent / f"{folder.name}_lesion_stats_label{int(lesion_label)}_{unit}.json"


def load_or_compute_lesion_stats(data_folder: str | Path, lesion_label: int, ndim: int, unit: str = "image",
                                 cache_path: str | Path | None = None, force: bool = False) -> LesionStats:
    """Cached :func:`compute_lesion_stats`; recomputes when the cache is missing, for other settings, or stale."""
    _check_settings(ndim, unit)
    folder = Path(data_folder)
    cache = Path(cache_path) if cache_path is not None else default_cache_path(folder, lesion_label, unit)
    settings = {"version": STATS_VERSION, "lesion_label": int(lesion_label), "ndim": ndim, "unit": unit,
                "fingerprint": segmentation_fingerprint(folder) if folder.is_dir() else None}
    if not force and cache.is_file():
        try:
            cached = json.loads(cache.read_text())
        except json.JSONDecodeError:
            cached = None
        if cached is not None and cached.get("settings") == settings:
            return LesionStats.from_json(cached["stats"])
    stats = compute_lesion_stats(folder, lesion_label, ndim, unit)
    payload = {"settings": settings, "summary": stats.summary(), "stats": stats.to_json()}
    write_cache(cache, payload)
    return stats


def write_cache(cache: Path, payload: dict) -> bool:
    """Write ``payload`` atomically (a unique temporary file in the cache's folder, then a rename), so parallel
    processes and threads never read half a file. A folder we may not write to costs the cache, not the run:
    warn and return False."""
    try:
        handle, tmp = tempfile.mkstemp(prefix=f".{cache.name}.", suffix=".tmp", dir=cache.parent)
    except OSError as error:
        warnings.warn(f"lesion statistics are not cached: cannot write in {cache.parent} ({error.strerror})")
        return False
    try:
        with os.fdopen(handle, "w") as f:
            json.dump(payload, f)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; the cache is as readable as the preprocessed data
        os.replace(tmp, cache)
    except OSError as error:
        Path(tmp).unlink(missing_ok=True)
        warnings.warn(f"lesion statistics are not cached: cannot write {cache} ({error.strerror})")
        return False
    return True


def dataset_foreground_labels(labels: dict) -> List[int]:
    """Foreground label values of a dataset.json ``labels`` dict (ignore label excluded, regions flattened)."""
    values = set()
    for name, value in labels.items():
        if name != "ignore":
            values.update(int(v) for v in (value if isinstance(value, (list, tuple)) else [value]))
    return sorted(values - {0})


def default_lesion_label(labels: dict) -> int:
    """The highest foreground label of a dataset.json ``labels`` dict."""
    return resolve_lesion_label(None, dataset_foreground_labels(labels))


def resolve_lesion_label(requested: Optional[int], foreground_labels: Sequence[int]) -> int:
    """``requested`` if it is one of the foreground labels, the highest foreground label if None."""
    foreground = [int(l) for l in foreground_labels]
    if not foreground:
        raise ValueError("dataset has no foreground label to treat as lesion")
    if requested is None:
        return max(foreground)
    if int(requested) not in foreground:
        raise ValueError(f"lesion label {requested} is not a foreground label of this dataset (labels: {foreground})")
    return int(requested)
