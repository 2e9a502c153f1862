"""The one "do the plans name my network" check of every architecture mixin, and PLANNABLE from the registry."""
import pydoc
from types import SimpleNamespace

import pytest

from nnunet_ext.planning.arch_plans import PLANNABLE, plannable
from nnunet_ext.registry import entries
from nnunet_ext.training.dlkunet import DLKUNetArchitecture
from nnunet_ext.training.elanres import ELANResMSCAUNetArchitecture
from nnunet_ext.training.es_unet import ESUNetArchitecture, UNet3PlusArchitecture
from nnunet_ext.training.stage_skipping import StageSkippingArchitecture
from nnunet_ext.training.sts_net import SliceStack25D, STSNetArchitecture

MIXINS = (ESUNetArchitecture, UNet3PlusArchitecture, DLKUNetArchitecture, ELANResMSCAUNetArchitecture,
          STSNetArchitecture, SliceStack25D, StageSkippingArchitecture)
PLAIN = "dynamic_network_architectures.architectures.unet.PlainConvUNet"


def configuration(class_name, arch_kwargs=None, patch_size=(16, 32, 32)):
    return SimpleNamespace(patch_size=list(patch_size), network_arch_class_name=class_name,
                           network_arch_init_kwargs=dict(arch_kwargs or {}), network_arch_init_kwargs_req_import=[],
                           pool_op_kernel_sizes=[[1, 1, 1], [1, 2, 2], [2, 2, 2]],
                           conv_kernel_sizes=[[1, 3, 3], [3, 3, 3], [3, 3, 3]])


def dotted(cls):
    return f"{cls.__module__}.{cls.__name__}"


@pytest.mark.parametrize("mixin", MIXINS, ids=lambda m: m.__name__)
def test_each_mixin_knows_its_network_and_refuses_another_of_ours(mixin):
    assert mixin.plans_name_this_network(configuration(dotted(mixin.network_class)))
    assert not mixin.plans_name_this_network(configuration(PLAIN))
    ours = [pydoc.locate(e.dotted_path) for e in entries("architecture")]
    other = next(c for c in ours if c is not mixin.network_class)
    with pytest.raises(ValueError, match=f"{mixin.__name__} builds {mixin.network_class.__name__}, but the plans"):
        mixin.plans_name_this_network(configuration(dotted(other)))


def test_plans_kwargs_win_unless_the_trainer_name_promises_otherwise():
    planned = {"n_stages": 2, "features_per_stage": [8, 16], "strides": [[1, 1, 1], [2, 2, 2]], "msca_axes": "all"}
    elanres = configuration(dotted(ELANResMSCAUNetArchitecture.network_class), planned)
    assert ELANResMSCAUNetArchitecture.elanres_kwargs(elanres) == planned

    class Inplane(ELANResMSCAUNetArchitecture):
        elanres_msca_axes = "inplane"

    assert Inplane.elanres_kwargs(elanres) == {**planned, "msca_axes": "inplane"}  # the trainer's name wins
    dlk_planned = {"n_stages": 4, "features_per_stage": [8, 16, 32, 64], "kernel_sizes": [[3, 3, 3]] * 4,
                   "strides": [[1, 1, 1]] + [[2, 2, 2]] * 3, "conv_op": "torch.nn.modules.conv.Conv3d"}
    dlkunet = configuration(dotted(DLKUNetArchitecture.network_class), dlk_planned)
    assert DLKUNetArchitecture.dlkunet_kwargs(dlkunet) == dlk_planned

    class Small(DLKUNetArchitecture):
        dlkunet_preset = "S"

    small = Small.dlkunet_kwargs(dlkunet)  # the preset's depth (3 stages), cut from the planned stages
    assert small["n_stages"] == 3 and small["features_per_stage"] == [8, 16, 32]


def test_plannable_is_every_registered_network_that_says_how_it_is_planned():
    assert PLANNABLE is plannable()
    registered = {e.name: e for e in entries("architecture")}
    assert set(PLANNABLE) == {"ESUNet", "UNet3Plus", "STSNet", "StageSkippingSegmentor", "DLKUNet", "ELANResMSCAUNet"}
    for name, plan in PLANNABLE.items():
        assert plan.network_class_name == registered[name].dotted_path
        assert callable(plan._builder())
    assert "STSNet25D" in registered and "STSNet25D" not in PLANNABLE  # written by its trainer, not planned
    assert PLANNABLE["STSNet"].total_stride == 8
    assert {n for n, p in PLANNABLE.items() if p.checkpointed} == {"ESUNet", "UNet3Plus", "DLKUNet", "ELANResMSCAUNet"}


def test_only_architectures_say_how_they_are_planned():
    from nnunet_ext.registry import register

    with pytest.raises(ValueError, match="only an architecture"):
        register("loss", plans={"kwargs_builder": "f"})
