"""One catalogue of everything the plugin adds, so `nnunet-ext list` never goes stale.

Components announce themselves with ``@register(kind)``; trainers are found the way nnU-Net finds
them (scanning the trainers folder), so a trainer that nnU-Net can see is a trainer we list.
"""
from __future__ import annotations

import importlib
import inspect
import pkgutil
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional

KINDS = ("architecture", "loss", "transform", "trainer")

# Packages whose every module is imported before listing: adding a module there is all it takes.
COMPONENT_PACKAGES = ("nnunet_ext_architectures", "nnunet_ext.losses", "nnunet_ext.transforms")


@dataclass(frozen=True)
class Entry:
    kind: str
    name: str
    summary: str
    dotted_path: str
    # architectures: how ``nnunet-ext plans`` writes the network into nnU-Net plans (nnunet_ext.planning.arch_plans)
    plans: Optional[Mapping[str, Any]] = None


_ENTRIES: Dict[str, Dict[str, Entry]] = {k: {} for k in KINDS}


def first_doc_line(obj) -> str:
    doc = inspect.getdoc(obj) or ""
    return doc.strip().splitlines()[0] if doc.strip() else "(no description)"


def register(kind: str, name: str | None = None, plans: Optional[Mapping[str, Any]] = None) -> Callable:
    """Class/function decorator: record the object in the catalogue under ``kind``.

    ``plans`` (architectures only) makes the network plannable by ``nnunet-ext plans``: the fields of
    ``nnunet_ext.planning.arch_plans.ArchitecturePlan`` except the class name, ``kwargs_builder`` given as the
    name of a function in the network's module (or "module:function").

    A name already taken by another object is an error (the catalogue would silently list only one);
    the same ``module.qualname`` registering again (a module re-imported or reloaded) replaces its entry.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown catalogue kind {kind!r}; expected one of {KINDS}")
    if plans is not None and kind != "architecture":
        raise ValueError(f"only an architecture can say how it is planned; got plans= for a {kind}")

    def deco(obj):
        entry_name = name or obj.__name__
        dotted_path = f"{obj.__module__}.{obj.__qualname__}"
        existing = _ENTRIES[kind].get(entry_name)
        if existing is not None and existing.dotted_path != dotted_path:
            raise ValueError(f"{kind} name {entry_name!r} is registered twice: by {existing.dotted_path} and by "
                             f"{dotted_path}; give one of them another name (register({kind!r}, name=...))")
        _ENTRIES[kind][entry_name] = Entry(kind, entry_name, first_doc_line(obj), dotted_path,
                                           None if plans is None else dict(plans))
        return obj

    return deco


def import_component_modules() -> None:
    for package_name in COMPONENT_PACKAGES:
        package = importlib.import_module(package_name)
        for info in pkgutil.iter_modules(package.__path__):
            importlib.import_module(f"{package_name}.{info.name}")


def trainer_entries() -> List[Entry]:
    """Every nnUNetTrainer subclass defined in a module of the trainers folder."""
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    import nnunet_ext_trainers

    found = []
    for info in pkgutil.iter_modules(nnunet_ext_trainers.__path__):
        module = importlib.import_module(f"nnunet_ext_trainers.{info.name}")
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, nnUNetTrainer) and cls.__module__ == module.__name__:
                found.append(Entry("trainer", cls.__name__, first_doc_line(cls), f"{module.__name__}.{cls.__name__}"))
    return sorted(found, key=lambda e: e.name)


def entries(kind: str) -> List[Entry]:
    if kind == "trainer":
        return trainer_entries()
    import_component_modules()
    return sorted(_ENTRIES[kind].values(), key=lambda e: e.name)
