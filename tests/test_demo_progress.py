"""The demo streams each trainer's nnU-Net output to WORKDIR/logs/<trainer>.log; off a terminal it prints only
its stage lines (CI logs stay readable), on a terminal a bar over the epochs."""
import io

from nnunet_ext import progress
from nnunet_ext.benchmark import demo


def test_demo_training_writes_the_log_and_is_quiet_off_a_terminal(tmp_path, capsys):
    log = tmp_path / "logs" / "ESUNetTrainer.log"
    with demo.Progress().training("ESUNetTrainer", log, epochs=2) as on_line:
        for line in ("2026-01-01 10:00:00.000000: Epoch 0", "train_loss -0.2", "x: Epoch time: 2.0 s"):
            on_line(line)
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 1 and printed[0].endswith(f"nnU-Net's output: {log}")
    assert log.read_text().splitlines() == ["2026-01-01 10:00:00.000000: Epoch 0", "train_loss -0.2",
                                            "x: Epoch time: 2.0 s"]


def test_demo_bar_on_a_terminal_counts_epochs(tmp_path, monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self):
            return True
    screen = Terminal()
    bars = []
    real = progress.RunProgress

    def on_screen(*args, **kw):
        bars.append(real(*args, **{**kw, "stream": screen}))
        return bars[-1]
    monkeypatch.setattr(demo, "RunProgress", on_screen)
    with demo.Progress().training("T", tmp_path / "T.log", epochs=4) as on_line:
        on_line("x: Epoch 0")
        on_line("x: Epoch time: 1 s")
        on_line("x: Epoch 1")
        assert bars[0].bar.n == 1 and bars[0].bar.total == 4
    assert "T epoch 2/4" in screen.getvalue() and bars[0].bar is None  # closed after training
