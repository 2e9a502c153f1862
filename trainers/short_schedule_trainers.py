"""Short-schedule variants of any trainer, by name: ``<Trainer>_ep<E>it<I>[val<V>]``.

``nnUNetv2_train 1 2d 0 -tr ESUNetDWDTrainer_ep5it20`` trains ESUNetDWDTrainer for 5 epochs of 20
iterations; ``nnUNetv2_predict ... -tr ESUNetDWDTrainer_ep5it20`` finds the same class again. The
benchmark and the demo use this so that vanilla nnU-Net and our trainers get the same schedule
without anyone writing subclasses. nnU-Net looks classes up with ``hasattr(module, name)``, which a
module-level ``__getattr__`` (PEP 562) answers.
"""
import importlib
import inspect
import pkgutil
from os.path import join

from nnunet_ext.training.schedule import SHORT_NAME, make_short_schedule_trainer

_made = {}


def _find_base_trainer(name):
    import nnunetv2
    from nnunetv2.utilities.find_class_by_name import recursive_find_python_class

    cls = recursive_find_python_class(join(nnunetv2.__path__[0], "training", "nnUNetTrainer"), name,
                                      "nnunetv2.training.nnUNetTrainer")
    if cls is not None:
        return cls
    import nnunet_ext_trainers

    for info in pkgutil.iter_modules(nnunet_ext_trainers.__path__):
        if info.name == "short_schedule_trainers":
            continue
        module = importlib.import_module(f"nnunet_ext_trainers.{info.name}")
        candidate = getattr(module, name, None)
        if inspect.isclass(candidate):
            return candidate
    return None


def __getattr__(name):
    match = SHORT_NAME.match(name)
    if match is None:
        raise AttributeError(name)
    if name not in _made:
        base = _find_base_trainer(match["base"])
        if base is None:
            raise AttributeError(f"{name}: no trainer named {match['base']!r} in nnU-Net or nnunet-ext")
        val = int(match["val"]) if match["val"] else None
        _made[name] = make_short_schedule_trainer(base, int(match["epochs"]), int(match["iters"]), val, name,
                                                  __name__)
    return _made[name]
