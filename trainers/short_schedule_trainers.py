"""Short-schedule variants of any trainer, by name: ``<Trainer>_ep<E>it<I>[val<V>]``.

``nnUNetv2_train 1 2d 0 -tr ESUNetDWDTrainer_ep5it20`` trains ESUNetDWDTrainer for 5 epochs of 20
iterations; ``nnUNetv2_predict ... -tr ESUNetDWDTrainer_ep5it20`` finds the same class again. The
benchmark and the demo use this so that vanilla nnU-Net and our trainers get the same schedule
without anyone writing subclasses. The base trainer is looked up in nnU-Net's trainers, then in every
folder of ``nnUNet_extTrainer``. nnU-Net looks classes up with ``hasattr(module, name)``, which a
module-level ``__getattr__`` (PEP 562) answers. The mechanism: ``nnunet_ext.training.short_schedule``.
"""
from nnunet_ext.training.short_schedule import SHORT_NAME, find_base_trainer, make_short_schedule_trainer

_made = {}


def __getattr__(name):
    match = SHORT_NAME.match(name)
    if match is None:
        raise AttributeError(name)
    if name not in _made:
        base = find_base_trainer(match["base"])
        if base is None:
            raise AttributeError(f"{name}: no trainer named {match['base']!r} in nnU-Net or nnUNet_extTrainer")
        val = int(match["val"]) if match["val"] else None
        _made[name] = make_short_schedule_trainer(base, int(match["epochs"]), int(match["iters"]), val, name,
                                                  __name__)
    return _made[name]
