"""nnunet-ext: five 2025 segmentation papers as nnU-Net v2 trainers, architectures, losses and transforms."""

__version__ = "0.1.0"

from nnunet_ext import _moved

_moved.install()  # old module paths stay importable (nnunet_ext/_moved.py)
