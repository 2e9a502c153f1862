"""Progress of long nnU-Net runs: a tqdm bar counted in epochs, read from each run's log file.

Each run streams nnU-Net's output to its own log file (``WORKDIR/logs/<run>.log``), so the progress works
the same for a run in this process, in a submitit subprocess or on a Slurm node with a shared file system.
The bar is drawn only when stdout is a terminal; CI logs get the plain status lines only.
"""
from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Optional, TextIO

# nnU-Net logs "<timestamp>: Epoch 3" when epoch 3 (0-based) starts and "<timestamp>: Epoch time: 1.2 s" when it ends
EPOCH_START = re.compile(r"(?:^|: )Epoch (\d+)\s*$")
EPOCH_END = re.compile(r"(?:^|: )Epoch time: ")


def log_name(label: str) -> str:
    """A file-name-safe run name (arm labels hold spaces and brackets)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", label).strip("_")


@dataclass
class EpochCounter:
    """Epochs finished according to nnU-Net's log lines (a resumed run starts at its checkpoint's epoch)."""
    started: int = -1
    ended: bool = False

    def feed(self, line: str) -> None:
        match = EPOCH_START.search(line)
        if match:
            self.started, self.ended = int(match.group(1)), False
        elif EPOCH_END.search(line):
            self.ended = True

    @property
    def finished(self) -> int:
        return self.started + 1 if self.ended else max(self.started, 0)


class LogTail:
    """Reads what was appended to a log file since the last call (the file may not exist yet)."""

    def __init__(self, path: Path):
        self.path, self.offset, self.partial = Path(path), 0, ""

    def new_lines(self):
        if not self.path.is_file():
            return []
        with open(self.path, "r", errors="replace") as f:
            f.seek(self.offset)
            text = f.read()
            self.offset = f.tell()
        text = self.partial + text
        lines = text.split("\n")
        self.partial = lines.pop()
        return lines


def line_writer(path: Path) -> Callable[[str], None]:
    """An ``on_line`` for NnUNetWorkspace.run that appends each line to ``path`` (flushed: others read it live)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a", buffering=1)

    def write(line: str) -> None:
        handle.write(line + "\n")
        handle.flush()
    write.close = handle.close  # type: ignore[attr-defined]
    return write


class RunProgress:
    """A bar over the epochs of several runs; ``poll`` reads their logs, ``done`` marks a run finished."""

    def __init__(self, runs: Dict[str, int], logs: Dict[str, Path], log: Callable[[str], None] = print,
                 stream: Optional[TextIO] = None, enabled: Optional[bool] = None, unit: str = "epoch"):
        """``runs``: run name -> epochs it trains (only runs still to train); ``logs``: run name -> its log file."""
        stream = sys.stdout if stream is None else stream
        self.enabled = stream.isatty() if enabled is None else enabled
        self.runs, self.log, self.stream = dict(runs), log, stream
        self.tails = {name: LogTail(logs[name]) for name in runs}
        self.counters = {name: EpochCounter() for name in runs}
        self.finished_runs = 0
        self.bar = None
        if self.enabled and self.runs:
            from tqdm import tqdm

            self.bar = tqdm(total=sum(self.runs.values()), unit=unit, file=stream, dynamic_ncols=True,
                            desc=self._desc())

    def _desc(self) -> str:
        return f"runs {self.finished_runs}/{len(self.runs)}"

    def _epochs_done(self) -> int:
        return sum(min(self.counters[n].finished, e) for n, e in self.runs.items())

    def poll(self) -> None:
        """Read new log lines; the bar moves by finished epochs, its postfix names the running runs' epochs."""
        active = []
        for name, tail in self.tails.items():
            lines = tail.new_lines()
            for line in lines:
                self.counters[name].feed(line)
            counter = self.counters[name]
            if counter.started >= 0 and counter.finished < self.runs[name]:
                active.append(f"{name} epoch {counter.started + 1}/{self.runs[name]}")
        if self.bar is not None:
            self.bar.update(self._epochs_done() - self.bar.n)
            self.bar.set_description(self._desc(), refresh=False)
            self.bar.set_postfix_str("; ".join(active), refresh=True)

    def done(self, name: Optional[str], message: str) -> None:
        """A run ended (``name`` None: a run that trained nothing); ``message`` is printed above the bar."""
        if name in self.runs:
            self.poll()
            self.counters[name].started, self.counters[name].ended = self.runs[name] - 1, True
            self.finished_runs += 1
        self.write(message)
        self.poll()

    def write(self, message: str) -> None:
        if self.bar is not None:
            self.bar.write(message, file=self.stream)
        else:
            self.log(message)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
