"""argparse types shared by the sub-commands: numbers with a lower bound and nnU-Net's device default.

A bad number is refused while parsing, naming the option (``argument --copies: must be >= 1, got 0``),
instead of reaching the library as a made-up memory budget or an empty loop.
"""
from __future__ import annotations

import argparse
import sys


def _bounded(kind, minimum, strict: bool, label: str):
    relation = ">" if strict else ">="

    def convert(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {label}, got {text!r}") from None
        if value != value or value in (float("inf"), float("-inf")):  # nan, inf
            raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
        if value < minimum or (strict and value == minimum):
            raise argparse.ArgumentTypeError(f"must be {relation} {minimum}, got {text}")
        return value

    convert.__name__ = label
    return convert


positive_int = _bounded(int, 1, False, "an integer >= 1")
non_negative_int = _bounded(int, 0, False, "an integer >= 0")
positive_float = _bounded(float, 0.0, True, "a number > 0")
non_negative_float = _bounded(float, 0.0, False, "a number >= 0")

DEVICE_HELP = "cpu, cuda or mps (default: cuda when available, else cpu)"


def resolve_device(requested: str | None) -> str:
    """nnU-Net's default: cuda when torch sees a GPU; otherwise cpu, and say so on stderr."""
    if requested is not None:
        return requested
    import torch

    if torch.cuda.is_available():
        return "cuda"
    print("note: no CUDA device found, running on cpu (pass --device to choose)", file=sys.stderr)
    return "cpu"
