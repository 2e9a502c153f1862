"""Test-only DLKUNet / ELANRes-MSCA-UNet trainers: 2 epochs x 2 iterations, deep supervision on or off,
and narrow networks (widths / 4, at least 4 channels) so CPU CI stays fast. The full-width presets are
covered by the unit tests; here the point is the nnU-Net pipeline around them."""
from nnunet_ext.training.short_schedule import ShortSchedule
from nnunet_ext_test_mixins import NarrowDLKUNet, NarrowELANRes, NoDeepSupervision
from nnunet_ext_trainers.dlkunet_trainers import DLKUNetLTrainer, DLKUNetMTrainer, DLKUNetSTrainer
from nnunet_ext_trainers.elanres_trainers import ELANResMSCAUNetTrainer


class DLKUNetSTrainer_test(ShortSchedule, NarrowDLKUNet, DLKUNetSTrainer):
    pass


class DLKUNetMTrainer_test(ShortSchedule, NarrowDLKUNet, DLKUNetMTrainer):
    pass


class DLKUNetLTrainerNoDS_test(NoDeepSupervision, ShortSchedule, NarrowDLKUNet, DLKUNetLTrainer):
    pass


class ELANResMSCAUNetTrainer_test(ShortSchedule, NarrowELANRes, ELANResMSCAUNetTrainer):
    pass


class ELANResMSCAUNetTrainerNoDS_test(NoDeepSupervision, ShortSchedule, NarrowELANRes, ELANResMSCAUNetTrainer):
    pass
