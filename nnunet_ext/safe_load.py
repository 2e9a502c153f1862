"""Loading checkpoints from a user's folders without running code: ``torch.load(weights_only=True)``.

A pickle can run any code when it is loaded; ``weights_only=True`` only rebuilds tensors and plain Python
data. nnU-Net's own checkpoints also hold numpy scalars (its logged Dice values), so those few numpy types,
which rebuild numbers and nothing else, are allowed here too.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np


class UnsafeCheckpointError(ValueError):
    """A checkpoint that is missing, not a torch file, or needs more than tensors and plain data to load."""


def _numpy_scalar_globals() -> list:
    core = getattr(np, "_core", None) or np.core
    return [core.multiarray.scalar, np.dtype, *{type(np.dtype(t)) for t in np.typecodes["All"]}]


def short_reason(error: Exception) -> str:
    """torch's weights_only message is a page long; keep the line that names the refused global."""
    text = str(error)
    if "Unsupported global" in text:  # "Unsupported global: GLOBAL io.open was not an allowed global by default"
        return text[text.index("Unsupported global"):].split(". ")[0].splitlines()[0]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def load_checkpoint(path: str | Path):
    """``torch.load(path, weights_only=True)`` on the CPU; every failure is one :class:`UnsafeCheckpointError`."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise UnsafeCheckpointError(f"checkpoint {path} does not exist")
    try:
        with torch.serialization.safe_globals(_numpy_scalar_globals()):
            return torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as error:  # UnpicklingError, RuntimeError, EOFError, ... depending on how the file is broken
        raise UnsafeCheckpointError(f"{path} does not load as tensors and plain data (torch.load weights_only): "
                                    f"{short_reason(error)}") from None
