"""OMP_NUM_THREADS wins over nnU-Net's torch.set_num_threads(cpu_count) for our trainers on a CPU."""
import torch

from nnunet_ext.benchmark.runner import thread_env
from nnunet_ext.training.cpu_threads import CpuThreadsFromEnvironment, requested_cpu_threads


class _Base:
    def __init__(self, plans, configuration, fold, dataset_json, device=torch.device("cuda")):
        self.device = device


class _Trainer(CpuThreadsFromEnvironment, _Base):
    pass


def test_requested_threads_parse_only_positive_ints(monkeypatch):
    for value, expected in (("3", 3), ("0", 0), ("-1", 0), ("two", 0), ("", 0)):
        monkeypatch.setenv("OMP_NUM_THREADS", value)
        assert requested_cpu_threads() == expected


def test_cpu_trainer_takes_the_environments_thread_count(monkeypatch):
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        _Trainer({}, "2d", 0, {}, torch.device("cpu"))
        assert torch.get_num_threads() == 1
        torch.set_num_threads(2)
        _Trainer({}, "2d", 0, {}, torch.device("meta"))  # not a CPU run: left alone
        assert torch.get_num_threads() == 2
        monkeypatch.delenv("OMP_NUM_THREADS")
        _Trainer({}, "2d", 0, {}, torch.device("cpu"))  # unset: nnU-Net's choice stays
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_short_schedule_trainers_carry_the_mixin():
    from nnunet_ext.trainer_lookup import find_trainer

    assert issubclass(find_trainer("nnUNetTrainer_ep2it3"), CpuThreadsFromEnvironment)


def test_benchmark_pins_cpu_runs_only():
    class Spec:
        device, cpu_threads = "cpu", 1
    assert thread_env(Spec()) == {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    Spec.device = "cuda"
    assert thread_env(Spec()) == {}
