"""Build the stage-2 nnU-Net raw dataset: crops of the source dataset around the ground-truth region.

Stage 2 is an ordinary nnU-Net dataset (own id, own plans, ``nnUNetv2_train``), so every nnU-Net trainer,
and ours, trains on it unchanged. Training regions are the ground-truth region's box, each face jittered
by a few voxels (stage 1's boxes at inference are never exact), plus the margin. The settings are stored in
the new dataset.json under ``"cascade"`` so that prediction crops exactly like training did.

Two region sources for the training crops: ``ground_truth`` (default, as above) and ``detector``: the boxes a
trained slice-box detector finds on each raw training case (plus the margin, no jitter), so that stage 2
of the detector pipeline trains on the regions it will see at inference (the multi-stage paper fine-tunes
its segmentor on detector ROIs). Needs target ``all``.

Two targets:
- ``lesion`` (ELANRes paper, organ -> lesion): labels background / lesion, optional extra input channel
  with the organ mask (ground truth here, stage 1's prediction at inference; channel name ``noNorm`` so
  nnU-Net leaves the 0/1 values alone).
- ``all`` (multi-stage paper, detector -> segmentor): the source labels unchanged inside the crop.
"""
from __future__ import annotations

import json
import shutil
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import SimpleITK as sitk

from nnunet_ext.cascade.roi import MARGIN_UNITS, Box, bounding_box, crop_image, expand_box, jitter_box, margin_in_voxels
from nnunet_ext.dataset_names import check_dataset_id, check_dataset_name, dataset_folder_name

PREPARE_TAG = "nnunet_ext.cascade.prepare"
TARGETS = ("lesion", "all")
REGION_SOURCES = ("ground_truth", "detector")
ORGAN_CHANNEL_NAME = "noNorm"
FILE_ENDING = ".nii.gz"


@dataclass
class CascadeSettings:
    """How regions are made and what stage 2 learns; stored in the stage-2 dataset.json under ``cascade``."""

    region_labels: List[int] = field(default_factory=lambda: [1, 2])  # voxels that make up the region (organ)
    lesion_labels: List[int] = field(default_factory=lambda: [2])  # stage-2 foreground for target 'lesion'
    target: str = "lesion"
    margin: float = 10.0
    margin_unit: str = "mm"
    jitter_voxels: int = 2
    copies: int = 1
    organ_channel: bool = True
    source_dataset: str = ""
    num_source_channels: int = 1
    region_source: str = "ground_truth"  # where the training crops' boxes come from (REGION_SOURCES)

    def validate(self) -> "CascadeSettings":
        if self.target not in TARGETS:
            raise ValueError(f"target must be one of {TARGETS}, got {self.target!r}")
        if self.margin_unit not in MARGIN_UNITS:
            raise ValueError(f"margin unit must be one of {MARGIN_UNITS}, got {self.margin_unit!r}")
        if self.margin < 0 or self.jitter_voxels < 0:
            raise ValueError(f"margin and jitter must be >= 0, got {self.margin} and {self.jitter_voxels}")
        if self.copies < 1:
            raise ValueError(f"copies (jittered crops per training case) must be >= 1, got {self.copies}")
        if not self.region_labels:
            raise ValueError("region_labels must name at least one label")
        if self.target == "lesion" and not self.lesion_labels:
            raise ValueError("target 'lesion' needs lesion_labels")
        if self.target == "all" and self.organ_channel:
            raise ValueError("the organ channel is for target 'lesion' (the detector pipeline has no organ mask)")
        if self.region_source not in REGION_SOURCES:
            raise ValueError(f"region source must be one of {REGION_SOURCES}, got {self.region_source!r}")
        if self.region_source == "detector" and (self.target != "all" or self.copies != 1):
            raise ValueError("detector training crops are for the detector pipeline: target 'all' and one copy per "
                             f"case (detector boxes are not jittered), got target {self.target!r}, "
                             f"{self.copies} copies")
        self.region_labels = [int(v) for v in self.region_labels]
        self.lesion_labels = [int(v) for v in self.lesion_labels]
        return self

    @classmethod
    def from_dataset_json(cls, dataset_json: dict) -> "CascadeSettings":
        if "cascade" not in dataset_json:
            raise ValueError("this dataset.json has no 'cascade' block: it was not written by "
                             "`nnunet-ext cascade prepare`, so the crop settings of stage 2 are unknown")
        return cls(**dataset_json["cascade"]).validate()

    @property
    def num_stage2_channels(self) -> int:
        return self.num_source_channels + (1 if self.organ_channel else 0)


def _raw_folder(raw_root: Path, dataset_id: int) -> Path:
    matches = sorted(p for p in Path(raw_root).glob(f"Dataset{int(dataset_id):03d}_*") if p.is_dir())
    if len(matches) != 1:
        raise FileNotFoundError(f"expected one raw folder Dataset{int(dataset_id):03d}_* in {raw_root}, found "
                                f"{[p.name for p in matches]}")
    return matches[0]


def case_identifiers(images_dir: Path, file_ending: str, num_channels: int) -> List[str]:
    """Case names in an nnU-Net images folder (files ``<case>_<XXXX><ending>``), checked for all channels."""
    suffix = f"_0000{file_ending}"
    cases = sorted(p.name[:-len(suffix)] for p in Path(images_dir).glob(f"*{suffix}"))
    if not cases:
        raise FileNotFoundError(f"no images *{suffix} in {images_dir}")
    for case in cases:
        for c in range(num_channels):
            if not (Path(images_dir) / f"{case}_{c:04d}{file_ending}").is_file():
                raise FileNotFoundError(f"case {case!r} lacks channel {c} in {images_dir}")
    return cases


def stage2_labels(source_json: dict, settings: CascadeSettings) -> Tuple[dict, Optional[list], Optional[int]]:
    """dataset.json labels, regions_class_order and the source ignore value (None without one)."""
    source_labels = source_json["labels"]
    ignore = source_labels.get("ignore")
    if settings.target == "all":
        return dict(source_labels), source_json.get("regions_class_order"), ignore
    labels = {"background": 0, "lesion": 1}
    if ignore is not None:
        labels["ignore"] = 2
    return labels, None, ignore


def stage2_label_map(labels: np.ndarray, settings: CascadeSettings, source_ignore: Optional[int]) -> np.ndarray:
    """Source labels -> stage-2 labels (target 'lesion': 1 = lesion, 0 = rest, 2 = ignore if the source has it)."""
    if settings.target == "all":
        return labels
    out = np.isin(labels, settings.lesion_labels).astype(np.uint8)
    if source_ignore is not None:
        out[labels == source_ignore] = 2
    return out


def write_stage2_case(images: Sequence[sitk.Image], organ_mask: Optional[np.ndarray], box: Box, folder: Path,
                      identifier: str) -> None:
    """Crop every channel (and the organ mask as the last channel, if given) into ``folder``."""
    for c, image in enumerate(images):
        sitk.WriteImage(crop_image(image, box), str(folder / f"{identifier}_{c:04d}{FILE_ENDING}"), True)
    if organ_mask is not None:
        mask_image = sitk.GetImageFromArray(organ_mask.astype(np.float32))
        mask_image.CopyInformation(images[0])
        sitk.WriteImage(crop_image(mask_image, box), str(folder / f"{identifier}_{len(images):04d}{FILE_ENDING}"),
                        True)


def region_box(region: np.ndarray, spacing_zyx: Sequence[float], settings: CascadeSettings,
               rng: Optional[np.random.Generator] = None) -> Optional[Box]:
    """Tight box of the region, jittered (training only, when ``rng`` is given), plus the margin; None if empty."""
    box = bounding_box(region)
    if box is None:
        return None
    if rng is not None and settings.jitter_voxels:
        box = jitter_box(box, rng, settings.jitter_voxels, region.shape)
    margin = margin_in_voxels(settings.margin, spacing_zyx, settings.margin_unit)
    return expand_box(box, margin, region.shape)


def grouped_splits(identifiers_by_case: Dict[str, List[str]], n_splits: int = 5, seed: int = 12345) -> List[dict]:
    """nnU-Net's seeded k-fold split drawn over *source* cases; every copy of a case lands on the same side.

    With jittered copies (``<case>_roiK``) as separate nnU-Net cases, nnU-Net's own split would put copies of
    one patient in training and validation alike. Same seed and fold count as nnU-Net's default split.
    """
    from nnunetv2.utilities.crossval_split import generate_crossval_split

    cases = sorted(identifiers_by_case)
    if len(cases) < 2:
        raise ValueError(f"a grouped split needs at least 2 source cases, got {len(cases)}")
    folds = generate_crossval_split(cases, seed=seed, n_splits=min(n_splits, len(cases)))
    expand = lambda group: sorted(i for case in group for i in identifiers_by_case[case])  # noqa: E731
    return [{"train": expand(f["train"]), "val": expand(f["val"])} for f in folds]


def _prepare_target(raw_root: Path, target_id: int, name: str) -> Path:
    folder_name = dataset_folder_name(target_id, name)  # refuses ids beyond 999 and names holding '/' or '..'
    for other in Path(raw_root).glob(f"Dataset{int(target_id):03d}_*"):
        tagged = (other / "dataset.json").is_file() and \
            json.loads((other / "dataset.json").read_text()).get("generator") == PREPARE_TAG
        if other.name != folder_name or not tagged:
            raise FileExistsError(f"{other} already uses dataset id {target_id} and was not written by "
                                  f"`nnunet-ext cascade prepare` under this name; pick another id")
        shutil.rmtree(other)
    out = Path(raw_root) / folder_name
    (out / "imagesTr").mkdir(parents=True)
    (out / "labelsTr").mkdir(parents=True)
    return out


def prepare_stage2_dataset(raw_root: str | Path, source_id: int, target_id: int, name: Optional[str] = None,
                           settings: Optional[CascadeSettings] = None, seed: int = 0, detector_checkpoint=None,
                           preprocessed_root: str | Path | None = None) -> Path:
    """Write ``Dataset{target_id}_{name}`` with crops of the source's training cases; return its folder.

    ``settings.region_source == "detector"`` needs ``detector_checkpoint`` and nnU-Net's preprocessed folder
    (``preprocessed_root``, default $nnUNet_preprocessed), whose plans the detector preprocesses with.
    """
    settings = settings or CascadeSettings()
    source_id, target_id = check_dataset_id(source_id), check_dataset_id(target_id)
    if name is not None:
        check_dataset_name(name)
    detector = None
    if settings.region_source == "detector":
        import os

        from nnunet_ext.cascade.detector import load_detector

        preprocessed_root = preprocessed_root or os.environ.get("nnUNet_preprocessed")
        if detector_checkpoint is None or not preprocessed_root:
            raise ValueError("region source 'detector' needs the detector checkpoint (--detector) and nnU-Net's "
                             "preprocessed folder (set nnUNet_preprocessed)")
        detector, detector_meta = load_detector(detector_checkpoint)
    elif detector_checkpoint is not None:
        raise ValueError("a detector checkpoint was given but the region source is 'ground_truth'")
    raw_root = Path(raw_root)
    if int(source_id) == int(target_id):
        raise ValueError(f"the stage-2 dataset needs its own id, not the source's ({source_id})")
    source = _raw_folder(raw_root, source_id)
    source_json = json.loads((source / "dataset.json").read_text())
    num_channels = len(source_json["channel_names"])
    settings.source_dataset = source.name
    settings.num_source_channels = num_channels
    settings.validate()
    ending = source_json["file_ending"]
    name = name or f"{source.name.split('_', 1)[1]}Stage2{settings.target.capitalize()}" + \
        ("Detector" if detector is not None else "")
    out = _prepare_target(raw_root, target_id, name)
    labels_json, regions_order, source_ignore = stage2_labels(source_json, settings)

    written, skipped, identifiers_by_case = 0, [], {}
    for case in case_identifiers(source / "imagesTr", ending, num_channels):
        images = [sitk.ReadImage(str(source / "imagesTr" / f"{case}_{c:04d}{ending}")) for c in range(num_channels)]
        label_image = sitk.ReadImage(str(source / "labelsTr" / f"{case}{ending}"))
        labels = sitk.GetArrayFromImage(label_image)
        region = np.isin(labels, settings.region_labels)
        spacing_zyx = tuple(reversed(label_image.GetSpacing()))
        rng = np.random.default_rng([int(seed), written + len(skipped)])
        if not region.any():
            skipped.append(case)
            continue
        if detector is not None:  # the box stage 2 will get at inference (predict_cascade does the same)
            from nnunet_ext.cascade.detector import detect_raw_case

            files = [source / "imagesTr" / f"{case}_{c:04d}{ending}" for c in range(num_channels)]
            boxes = [expand_box(detect_raw_case(detector, detector_meta, files, preprocessed_root),
                                margin_in_voxels(settings.margin, spacing_zyx, settings.margin_unit), labels.shape)]
        else:
            boxes = [region_box(region, spacing_zyx, settings, rng) for _ in range(settings.copies)]
        for copy, box in enumerate(boxes):
            identifier = f"{case}_roi{copy}"
            identifiers_by_case.setdefault(case, []).append(identifier)
            write_stage2_case(images, region if settings.organ_channel else None, box, out / "imagesTr", identifier)
            stage2 = sitk.GetImageFromArray(stage2_label_map(labels, settings, source_ignore).astype(np.uint8))
            stage2.CopyInformation(label_image)
            sitk.WriteImage(crop_image(stage2, box), str(out / "labelsTr" / f"{identifier}{FILE_ENDING}"), True)
            written += 1
    if skipped:
        warnings.warn(f"{len(skipped)} training case(s) have no region voxels (labels {settings.region_labels}) and "
                      f"were left out of the stage-2 dataset: {skipped}")
    if written == 0:
        shutil.rmtree(out)
        raise ValueError(f"no training case of {source.name} contains region labels {settings.region_labels}")

    channel_names = dict(source_json["channel_names"])
    if settings.organ_channel:
        channel_names[str(num_channels)] = ORGAN_CHANNEL_NAME
    dataset_json = {"channel_names": channel_names, "labels": labels_json, "numTraining": written,
                    "file_ending": FILE_ENDING, "name": name,
                    "description": f"stage-2 crops of {source.name} (target {settings.target})",
                    "generator": PREPARE_TAG, "cascade": asdict(settings)}
    if regions_order is not None:
        dataset_json["regions_class_order"] = regions_order
    (out / "dataset.json").write_text(json.dumps(dataset_json, indent=4))
    if settings.copies > 1:  # nnU-Net's planner copies it to the preprocessed folder, where training reads it
        if len(identifiers_by_case) >= 2:
            (out / "splits_final.json").write_text(json.dumps(grouped_splits(identifiers_by_case), indent=4))
        else:
            warnings.warn("only one source case: no grouped splits_final.json written (nothing to hold out)")
    return out
