"""Run a two-stage pipeline on raw images: region (stage-1 nnU-Net or the detector) -> crop -> stage 2 -> paste back.

Both stages run through ``nnUNetv2_predict`` (one call per stage for all cases), so nnU-Net's own
preprocessing, sliding window and export apply. Stage 1's organ is cleaned with nnU-Net's largest-connected-
component post-processing (``remove_all_but_largest_component_from_segmentation``), as the ELANRes paper
does for the liver. A case where stage 1 (or the detector) finds nothing gets an empty lesion prediction and
a warning; the pipeline never crashes on it.

Final label map (source dataset's label values):
- target ``lesion``: organ = stage 1's region after LCC (``organ_label``), lesions = stage 2's lesion voxels
  pasted back (``lesion_label``), confined to the organ region unless ``confine_lesions=False``.
- target ``all``: stage 2's labels pasted back, background outside the box, LCC of the region labels.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import SimpleITK as sitk

from nnunet_ext.cascade.prepare import CascadeSettings, case_identifiers, region_box, write_stage2_case
from nnunet_ext.cascade.roi import Box, box_of_crop, expand_box, margin_in_voxels, paste_array
from nnunet_ext.process_memory import MIB, peak_rss_bytes, run_with_peak_rss
from nnunet_ext.workspace import NnUNetFolders


@dataclass(frozen=True)
class NnUNetModel:
    """A trained nnU-Net model as nnUNetv2_predict names it."""
    dataset_id: int
    configuration: str
    trainer: str
    plans: str = "nnUNetPlans"
    folds: Tuple[int, ...] = (0,)
    device: str = "cpu"  # nnUNetv2_predict -device


NnUNetPaths = NnUNetFolders  # its name before it moved to nnunet_ext/workspace.py


@dataclass
class StepCost:
    """Wall seconds and peak resident memory (MiB, of the process that ran the step) of one pipeline step."""
    seconds: float = 0.0
    peak_rss_mib: float = 0.0

    def add(self, seconds: float, rss_mib: float) -> None:
        self.seconds += seconds
        self.peak_rss_mib = max(self.peak_rss_mib, rss_mib)


@dataclass
class CascadeResult:
    output_dir: Path
    boxes: Dict[str, Optional[Box]]
    empty_cases: List[str]
    cost: Dict[str, StepCost] = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        return sum(c.seconds for c in self.cost.values())

    @property
    def peak_rss_mib(self) -> float:
        return max((c.peak_rss_mib for c in self.cost.values()), default=0.0)


def measured_run(env: dict, args: Sequence[str]) -> Tuple[str, float, float]:
    """Run a command; return (output, wall seconds, peak RSS in MiB of it and its waited-for children)."""
    start = time.perf_counter()
    proc, peak_mib = run_with_peak_rss(args, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                       stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - start
    text = proc.stdout.decode(errors="replace")
    if proc.returncode != 0:
        from nnunet_ext.workspace import CommandFailed

        raise CommandFailed(f"{' '.join(map(str, args))} exited {proc.returncode}:\n{text[-6000:]}")
    return text, seconds, peak_mib


def predict_args(workspace, model: NnUNetModel, input_dir, output_dir) -> List[str]:
    """The nnUNetv2_predict call of ``workspace.predict`` (on the model's device, its worker processes)."""
    from nnunet_ext.workspace import BIN, predict_workers

    exe = BIN / "nnUNetv2_predict"
    return [str(exe) if exe.exists() else "nnUNetv2_predict", "-i", str(input_dir), "-o", str(output_dir),
            "-d", str(model.dataset_id), "-c", model.configuration, "-tr", model.trainer, "-p", model.plans,
            "-f", *map(str, model.folds), "-device", model.device, *predict_workers(model.device),
            "--disable_progress_bar"]


def run_nnunet_predict(workspace, model: NnUNetModel, input_dir, output_dir, cost: StepCost) -> None:
    _, seconds, rss = measured_run(workspace.env, predict_args(workspace, model, input_dir, output_dir))
    cost.add(seconds, rss)


def _self_peak_rss_mib() -> float:
    return peak_rss_bytes() / MIB


def stage2_settings(workspace, stage2: NnUNetModel) -> Tuple[CascadeSettings, dict]:
    """The crop settings stored by ``cascade prepare`` in the stage-2 dataset.json (raw or preprocessed copy)."""
    name = workspace.dataset_name(stage2.dataset_id)
    for folder in (workspace.raw / name, workspace.preprocessed / name):
        if (folder / "dataset.json").is_file():
            dataset_json = json.loads((folder / "dataset.json").read_text())
            return CascadeSettings.from_dataset_json(dataset_json), dataset_json
    raise FileNotFoundError(f"no dataset.json for stage-2 dataset {name}")


def largest_region_component(segmentation: np.ndarray, region_labels: Sequence[int]) -> np.ndarray:
    """nnU-Net's LCC post-processing on the union of ``region_labels`` (other voxels of it -> background)."""
    from nnunetv2.postprocessing.remove_connected_components import remove_all_but_largest_component_from_segmentation

    if not np.isin(segmentation, list(region_labels)).any():
        return segmentation
    return remove_all_but_largest_component_from_segmentation(segmentation, [tuple(int(v) for v in region_labels)], 0)


def _organ_label(settings: CascadeSettings) -> int:
    rest = [v for v in settings.region_labels if v not in settings.lesion_labels]
    return rest[0] if rest else settings.region_labels[0]


def predict_cascade(workspace, input_dir, output_dir, stage2: NnUNetModel, stage1: Optional[NnUNetModel] = None,
                    detector_checkpoint=None, lcc: bool = True, confine_lesions: bool = True,
                    work_dir=None, keep_work: bool = False, stage1_predictions=None) -> CascadeResult:
    """The whole two-stage pipeline on the raw cases in ``input_dir``; one label map per case in ``output_dir``.

    Exactly one region source: ``stage1`` (an nnU-Net model whose segmentation gives the organ region) or
    ``detector_checkpoint`` (``nnunet-ext detector train``). Target ``lesion`` needs ``stage1`` (the organ
    of the final map comes from it). ``stage1_predictions``: a folder with stage 1's segmentations of these
    cases, used instead of running stage 1 again.
    """
    if (stage1 is None) == (detector_checkpoint is None):
        raise ValueError("give exactly one region source: stage1 (an nnU-Net model) or detector_checkpoint")
    settings, stage2_json = stage2_settings(workspace, stage2)
    if settings.target == "lesion" and stage1 is None:
        raise ValueError("stage-2 target 'lesion' needs stage 1's organ segmentation; the detector only gives a box "
                         "(prepare stage 2 with --target all for the detector pipeline)")
    source_json = json.loads((workspace.raw / settings.source_dataset / "dataset.json").read_text())
    ending = source_json["file_ending"]
    input_dir, output_dir = Path(input_dir), Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    work = Path(work_dir) if work_dir else output_dir / "_cascade_work"
    if work.exists():
        shutil.rmtree(work)
    crops_in, crops_out, stage1_out = work / "stage2_input", work / "stage2_output", work / "stage1_output"
    crops_in.mkdir(parents=True)
    cases = case_identifiers(input_dir, ending, settings.num_source_channels)
    cost = {"region": StepCost(), "crop_paste": StepCost(), "stage2": StepCost()}

    if stage1_predictions is not None:
        stage1_out = Path(stage1_predictions)
    elif stage1 is not None:
        run_nnunet_predict(workspace, stage1, input_dir, stage1_out, cost["region"])
    else:
        from nnunet_ext.cascade.detector import detect_raw_case, load_detector

        start = time.perf_counter()
        detector, detector_meta = load_detector(detector_checkpoint)
        cost["region"].add(time.perf_counter() - start, _self_peak_rss_mib())

    boxes: Dict[str, Optional[Box]] = {}
    organs: Dict[str, Optional[np.ndarray]] = {}
    for case in cases:
        image_files = [input_dir / f"{case}_{c:04d}{ending}" for c in range(settings.num_source_channels)]
        images = [sitk.ReadImage(str(f)) for f in image_files]
        shape = tuple(reversed(images[0].GetSize()))
        spacing = tuple(reversed(images[0].GetSpacing()))
        if stage1 is not None:
            start = time.perf_counter()
            if not (stage1_out / f"{case}{ending}").is_file():
                raise FileNotFoundError(f"stage 1 wrote no segmentation for {case} in {stage1_out}")
            seg = sitk.GetArrayFromImage(sitk.ReadImage(str(stage1_out / f"{case}{ending}")))
            if lcc:
                seg = largest_region_component(seg, settings.region_labels)
            region = np.isin(seg, settings.region_labels)
            organs[case] = region
            box = region_box(region, spacing, settings)
            cost["crop_paste"].add(time.perf_counter() - start, 0.0)
        else:
            start = time.perf_counter()
            box = detect_raw_case(detector, detector_meta, image_files, workspace.preprocessed)
            box = expand_box(box, margin_in_voxels(settings.margin, spacing, settings.margin_unit), shape)
            organs[case] = None
            cost["region"].add(time.perf_counter() - start, _self_peak_rss_mib())
        boxes[case] = box
        if box is None:
            warnings.warn(f"{case}: stage 1 found no region (labels {settings.region_labels}); writing an empty "
                          f"lesion prediction for this case")
            continue
        start = time.perf_counter()
        write_stage2_case(images, organs[case] if settings.organ_channel else None, box, crops_in, case)
        cost["crop_paste"].add(time.perf_counter() - start, 0.0)

    non_empty = [c for c in cases if boxes[c] is not None]
    if non_empty:
        run_nnunet_predict(workspace, stage2, crops_in, crops_out, cost["stage2"])

    start = time.perf_counter()
    for case in cases:
        reference = sitk.ReadImage(str(input_dir / f"{case}_0000{ending}"))
        shape = tuple(reversed(reference.GetSize()))
        final = np.zeros(shape, dtype=np.uint8)
        box = boxes[case]
        if box is not None:
            crop_image = sitk.ReadImage(str(crops_out / f"{case}{stage2_json['file_ending']}"))
            found = box_of_crop(reference, crop_image)
            if found != box:
                raise RuntimeError(f"{case}: stage 2's prediction lies at {found.as_list()}, expected {box.as_list()}")
            pasted = paste_array(sitk.GetArrayFromImage(crop_image).astype(np.uint8), box, shape)
            if settings.target == "lesion":
                organ = organs[case]
                lesion = pasted == 1
                if confine_lesions:
                    lesion &= organ
                final[organ] = _organ_label(settings)
                final[lesion] = settings.lesion_labels[0]
            else:
                final = largest_region_component(pasted, settings.region_labels) if lcc else pasted
        out = sitk.GetImageFromArray(final)
        out.CopyInformation(reference)
        sitk.WriteImage(out, str(output_dir / f"{case}{ending}"), True)
    cost["crop_paste"].add(time.perf_counter() - start, _self_peak_rss_mib())
    if not keep_work:
        shutil.rmtree(work)
    return CascadeResult(output_dir, boxes, [c for c in cases if boxes[c] is None], cost)
