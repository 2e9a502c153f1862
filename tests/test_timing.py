"""The timed training steps: how many run, which are timed, and the time budget's cut (on a fake clock)."""
import pytest
import torch

from nnunet_ext.benchmark import timing
from nnunet_ext.benchmark.timing import timed_train_steps

CPU = torch.device("cpu")


class Clock:
    """Stands in for the time module: a step moves the wall clock by its seconds and the CPU clock by half that."""

    def __init__(self):
        self.wall = self.cpu = 0.0

    def perf_counter(self):
        return self.wall

    def process_time(self):
        return self.cpu


class FakeTrainer:
    """Steps of known length on the fake clock; the loss is the step's number."""

    def __init__(self, clock, seconds):
        self.network = torch.nn.Identity()
        self.clock, self.seconds, self.steps = clock, list(seconds), 0

    def train_step(self, batch):
        self.clock.wall += self.seconds[self.steps]
        self.clock.cpu += self.seconds[self.steps] / 2
        self.steps += 1
        return {"loss": float(self.steps)}


@pytest.fixture
def clock(monkeypatch):
    fake = Clock()
    monkeypatch.setattr(timing, "time", fake)
    return fake


def test_warmup_is_run_but_not_timed(clock):
    trainer = FakeTrainer(clock, [9.0, 8.0, 1.0, 2.0, 3.0])
    times, cpu_times, loss = timed_train_steps(trainer, {}, timed=3, device=CPU, warmup=2)
    assert trainer.steps == 5 and loss == 5.0
    assert times == [1.0, 2.0, 3.0] and cpu_times == [0.5, 1.0, 1.5]


def test_budget_stops_the_timed_steps_once_passed(clock):
    # warm-up 50 s (not counted), then 40 + 40 = 80 < 100, + 40 = 120 >= 100: three timed steps of ten
    trainer = FakeTrainer(clock, [50.0] + [40.0] * 10)
    times, _, loss = timed_train_steps(trainer, {}, timed=10, device=CPU, warmup=1, budget_s=100.0)
    assert times == [40.0, 40.0, 40.0] and trainer.steps == 4 and loss == 4.0


def test_a_step_longer_than_the_budget_is_still_timed_once(clock):
    trainer = FakeTrainer(clock, [600.0, 600.0, 600.0])
    times, _, _ = timed_train_steps(trainer, {}, timed=2, device=CPU, warmup=1, budget_s=120.0)
    assert times == [600.0] and trainer.steps == 2


def test_without_a_budget_every_timed_step_runs(clock):
    trainer = FakeTrainer(clock, [600.0] * 4)
    times, _, _ = timed_train_steps(trainer, {}, timed=3, device=CPU, warmup=1)
    assert times == [600.0] * 3


def test_timed_forwards_in_milliseconds_after_the_warmup(clock):
    calls = []

    def net(x):  # each call lasts 0.25 s more than the one before: 0.25, 0.5, 0.75, 1.0 s
        calls.append(x)
        clock.wall += 0.25 * len(calls)

    times = timing.timed_forwards(net, "x", CPU, repeats=3, warmup=1)
    assert calls == ["x"] * 4 and times == [500.0, 750.0, 1000.0]
    assert timing.timed_forwards(net, "x", CPU, repeats=1, warmup=0) == [1250.0]


def test_sync_device_waits_for_cuda_only(monkeypatch):
    """CUDA queues kernels, so the clock is read after torch.cuda.synchronize; a CPU has nothing to wait for."""
    import torch

    from nnunet_ext.device_sync import sync_device

    waited = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: waited.append(device))
    sync_device(torch.device("cpu"))
    assert waited == []
    sync_device(torch.device("cuda", 1))
    assert waited == [torch.device("cuda", 1)]
