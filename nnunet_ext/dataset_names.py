"""The one place that checks dataset ids and names a user typed, before a folder is looked up or made from them.

nnU-Net names a dataset's folders ``Dataset{id:03d}_{name}`` and finds them by the prefix ``Dataset{id:03d}``:
an id above 999 (``Dataset1500``) would match id 150's lookup, and a name holding ``/`` or ``..`` would put the
folder outside ``nnUNet_raw``. So ids are 1-999 and names are letters, digits, ``_`` and ``-``.
"""
from __future__ import annotations

import argparse
import re
from typing import Tuple

MAX_DATASET_ID = 999
MAX_NAME_LENGTH = 100
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
_FOLDER = re.compile(r"Dataset(\d{3})_(.+)")


class DatasetNameError(ValueError):
    """A dataset id or name that nnU-Net cannot use, or that names no dataset."""


def check_dataset_id(value) -> int:
    """``value`` as an int in 1..999, else DatasetNameError."""
    try:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError
        dataset_id = int(value)
    except (TypeError, ValueError):
        raise DatasetNameError(f"dataset id must be an integer in 1..{MAX_DATASET_ID}, got {value!r}") from None
    if not 1 <= dataset_id <= MAX_DATASET_ID:
        raise DatasetNameError(f"dataset id must be in 1..{MAX_DATASET_ID} (nnU-Net pads it to three digits), "
                               f"got {dataset_id}")
    return dataset_id


def check_dataset_name(name) -> str:
    """The part after ``DatasetXXX_``: letters, digits, '_' and '-', starting with a letter or digit."""
    if not isinstance(name, str) or not _NAME.fullmatch(name) or len(name) > MAX_NAME_LENGTH:
        raise DatasetNameError(f"dataset name must be letters, digits, '_' or '-' (at most {MAX_NAME_LENGTH}, "
                               f"starting with a letter or digit), got {name!r}")
    return name


def dataset_folder_name(dataset_id, name) -> str:
    """``Dataset{id:03d}_{name}`` after checking both parts."""
    return f"Dataset{check_dataset_id(dataset_id):03d}_{check_dataset_name(name)}"


def split_dataset_folder_name(text: str) -> Tuple[int, str]:
    """``DatasetXXX_Name`` -> (XXX, Name), both checked."""
    match = _FOLDER.fullmatch(text)
    if match is None:
        raise DatasetNameError(f"a dataset name looks like Dataset001_Name (three-digit id), got {text!r}")
    return check_dataset_id(match[1]), check_dataset_name(match[2])


def parse_dataset(value) -> int:
    """A dataset given as id (``12``) or folder name (``Dataset012_Liver``), as nnU-Net's commands take it -> id.

    A name must belong to the id's existing dataset when nnU-Net's folders hold one (no silent switch to
    another dataset of the same id).
    """
    text = str(value).strip()
    if not text.startswith("Dataset"):
        return check_dataset_id(text)
    dataset_id, _ = split_dataset_folder_name(text)
    from nnunetv2.utilities.dataset_name_id_conversion import find_candidate_datasets

    existing = [str(c) for c in find_candidate_datasets(dataset_id)]
    if existing and text not in existing:
        raise DatasetNameError(f"no dataset {text}; dataset id {dataset_id} is {', '.join(existing)}")
    return dataset_id


def resolve_dataset_name(value) -> str:
    """Id or name -> the dataset's folder name, found by nnU-Net's own lookup (raw, preprocessed, results)."""
    from nnunetv2.utilities.dataset_name_id_conversion import convert_id_to_dataset_name

    dataset_id = parse_dataset(value)
    try:
        return str(convert_id_to_dataset_name(dataset_id))
    except RuntimeError as error:
        reason = "more than one folder has" if "More than one" in str(error) else "no folder has"
        raise DatasetNameError(f"{reason} dataset id {dataset_id} in nnUNet_raw, nnUNet_preprocessed or "
                               f"nnUNet_results (check those environment variables)") from None


def _argparse_type(check, label: str):
    def convert(text):
        try:
            return check(text)
        except DatasetNameError as error:
            raise argparse.ArgumentTypeError(str(error)) from None
    convert.__name__ = label  # argparse names the type in its messages
    return convert


# argparse types: ``-d`` takes an id or a name, options that create a dataset take an id or a bare name.
dataset_arg = _argparse_type(parse_dataset, "dataset id or name")
dataset_id_arg = _argparse_type(check_dataset_id, "dataset id")
dataset_name_arg = _argparse_type(check_dataset_name, "dataset name")
