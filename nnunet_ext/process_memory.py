"""Resident memory of this process and of a command, measured so that the parent's memory is not counted.

Linux keeps ``getrusage``'s ``ru_maxrss`` across ``exec``: a process started from a large one (a pytest worker
after many tests, a benchmark driver) reports the parent's peak if it is the larger, and so does ``wait4`` for a
child. Here the own peak is /proc's ``VmHWM``, and a command's peak comes from a small launcher process."""
import json
import os
import resource
import subprocess
import sys
from typing import Sequence, Tuple

MIB = 2 ** 20


def current_rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def peak_rss_bytes() -> int:
    """This process's own peak RSS (VmHWM), since it started or since ``reset_peak_rss``."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024  # reported in kB
    raise RuntimeError("/proc/self/status has no VmHWM line: peak RSS cannot be measured on this system")


def reset_peak_rss() -> bool:
    """Start the peak mark afresh at the current RSS (Linux >= 4.0); False where the kernel does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class RssGrowth:
    """This process's peak RSS above its RSS at the start: what the code run since allocated, without what was
    already resident or an earlier peak (``exact`` False where the kernel could not reset the peak mark, so an
    earlier, larger peak may show)."""

    def __init__(self):
        self.baseline = current_rss_bytes()
        self.exact = reset_peak_rss()

    def peak_bytes(self) -> int:
        return peak_rss_bytes() - self.baseline


def run_with_peak_rss(args: Sequence[str], **popen_kwargs) -> Tuple[subprocess.CompletedProcess, float]:
    """Run ``args`` through this module's launcher; return (the completed process, the command's peak RSS in MiB).

    The launcher is a bare Python (a few MiB), so the command's ``ru_maxrss`` carries the launcher's peak, not
    ours; it counts the command and the children it waited for. ``popen_kwargs`` go to ``subprocess.run``
    (stdout/stderr/env...); the launcher reports on a pipe of its own, so the command's output is untouched."""
    read_fd, write_fd = os.pipe()
    try:
        # run as a file, not ``-m``: importing the package would import what its __init__ imports
        launcher = [sys.executable, "-S", os.path.abspath(__file__), str(write_fd), "--", *map(str, args)]
        completed = subprocess.run(launcher, pass_fds=(write_fd,), **popen_kwargs)
        os.close(write_fd)
        write_fd = -1
        with os.fdopen(read_fd) as report:
            read_fd = -1
            text = report.read()
    finally:
        for fd in (read_fd, write_fd):
            if fd >= 0:
                os.close(fd)
    if not text:
        raise RuntimeError(f"the peak-RSS launcher reported nothing for {' '.join(map(str, args))} "
                           f"(exit {completed.returncode})")
    report = json.loads(text)
    completed.returncode = report["returncode"]
    return completed, report["maxrss_kib"] / 1024.0


def _launch(argv: Sequence[str]) -> int:
    """Launcher: run the command, wait for it, write its exit code and peak RSS to the given descriptor."""
    write_fd, separator, *command = argv
    if separator != "--" or not command:
        raise SystemExit("usage: python process_memory.py FD -- COMMAND [ARGS...]")
    try:
        pid = os.fork()
    except OSError as error:
        raise SystemExit(f"cannot start {command[0]}: {error}")
    if pid == 0:
        try:
            os.close(int(write_fd))
            os.execvp(command[0], command)
        except OSError as error:
            print(f"cannot run {command[0]}: {error}", file=sys.stderr)
        os._exit(127)
    _, status, usage = os.wait4(pid, 0)
    returncode = os.waitstatus_to_exitcode(status)
    with os.fdopen(int(write_fd), "w") as report:
        report.write(json.dumps({"returncode": returncode, "maxrss_kib": usage.ru_maxrss}))
    return 0


if __name__ == "__main__":
    sys.exit(_launch(sys.argv[1:]))
