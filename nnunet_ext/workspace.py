"""nnU-Net's folders: where it finds our trainers, its three data folders, and its commands run in them.

``trainers_dir`` / ``env_with_trainers``: the ``nnUNet_extTrainer`` folder. ``NnUNetFolders``: raw /
preprocessed / results and the environment for nnU-Net's commands (the cascade takes them from
``$nnUNet_*``). ``NnUNetWorkspace``: one isolated set of them that drives the real command-line tools,
used by the demo, the benchmark and the end-to-end tests, so all three run exactly the commands a user
would type.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence

BIN = Path(sys.executable).parent
# what nnUNetv2_train / nnUNetv2_predict accept for -device (a GPU id is chosen with CUDA_VISIBLE_DEVICES)
DEVICES = ("cpu", "cuda", "mps")


def check_device(device: str) -> str:
    if device not in DEVICES:
        raise ValueError(f"device {device!r} is not one nnU-Net accepts; expected one of {DEVICES} "
                         f"(pick a GPU with CUDA_VISIBLE_DEVICES, not 'cuda:1')")
    return device


def predict_workers(device: str) -> list:
    """nnUNetv2_predict's worker processes (-npp, -nps). On a CPU none: nnU-Net then predicts sequentially in
    its own process, where the workers would take cores from the network and each spawn re-imports torch (3 tiny 2D
    cases: 9.5 s instead of 15.7 s, 8.7 instead of 18.5 CPU seconds). On a GPU one of each keeps reading and
    writing beside the inference."""
    n = "0" if check_device(device) == "cpu" else "1"
    return ["-npp", n, "-nps", n]


def trainers_dir() -> str:
    """The folder to put in ``nnUNet_extTrainer``: the installed ``nnunet_ext_trainers`` package."""
    import nnunet_ext_trainers

    return os.path.abspath(list(nnunet_ext_trainers.__path__)[0])


def env_with_trainers(env: dict | None = None) -> dict:
    """A copy of ``env`` (default: os.environ) whose nnUNet_extTrainer includes our trainers folder."""
    env = dict(os.environ if env is None else env)
    ours = trainers_dir()
    existing = [p for p in env.get("nnUNet_extTrainer", "").split(os.pathsep) if p]
    if ours not in existing:
        existing.insert(0, ours)
    env["nnUNet_extTrainer"] = os.pathsep.join(existing)
    return env


class CommandFailed(RuntimeError):
    """An nnU-Net command exited non-zero; the message carries the end of its output."""


class NnUNetFolders:
    """nnU-Net's three folders and the environment its commands run with."""

    def __init__(self, raw, preprocessed, results, env: dict):
        self.raw, self.preprocessed, self.results = Path(raw), Path(preprocessed), Path(results)
        self.env = env

    @classmethod
    def from_environment(cls) -> "NnUNetFolders":
        """The user's folders from ``$nnUNet_raw`` / ``$nnUNet_preprocessed`` / ``$nnUNet_results``, as they are;
        our trainers folder only where ``nnUNet_extTrainer`` is unset."""
        missing = [k for k in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results") if not os.environ.get(k)]
        if missing:
            raise RuntimeError(f"set {', '.join(missing)} (nnU-Net's folders) first")
        env = dict(os.environ)
        env.setdefault("nnUNet_extTrainer", trainers_dir())
        return cls(env["nnUNet_raw"], env["nnUNet_preprocessed"], env["nnUNet_results"], env)

    def dataset_name(self, dataset_id: int) -> str:
        for folder in (self.raw, self.preprocessed):
            matches = sorted(folder.glob(f"Dataset{int(dataset_id):03d}_*"))
            if matches:
                return matches[0].name
        raise FileNotFoundError(f"no dataset with id {dataset_id} in {self.raw} or {self.preprocessed}")


class NnUNetWorkspace(NnUNetFolders):
    """One nnU-Net installation's worth of folders, and the environment that points at them."""

    def __init__(self, root=None, extra_trainer_dirs: Iterable[str] = (), num_da_processes: int = 0,
                 folders: Optional[Sequence] = None):
        """``root``: make ``root/nnUNet_{raw,preprocessed,results}``; or ``folders``: the three the user named
        (raw, preprocessed, results), used as they are. Nothing is made anywhere else.

        ``nnUNet_extTrainer`` gets our trainers folder first, then ``extra_trainer_dirs``, then the folders the
        user already had in it (nnU-Net searches them in that order)."""
        if (root is None) == (folders is None):
            raise ValueError("give either a workspace root or the three nnU-Net folders, not both or neither")
        if folders is None:
            self.root = Path(root).resolve()
            self.raw, self.preprocessed, self.results = (self.root / n for n in
                                                         ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"))
            for p in (self.raw, self.preprocessed, self.results):
                p.mkdir(parents=True, exist_ok=True)
        else:
            if len(folders) != 3:
                raise ValueError(f"folders must be (raw, preprocessed, results), got {len(folders)} paths")
            self.raw, self.preprocessed, self.results = (Path(f).resolve() for f in folders)
            self.root = self.results  # a default output folder of a command goes inside a folder the user named
        self.env = env_with_trainers()
        users = [p for p in self.env["nnUNet_extTrainer"].split(os.pathsep) if p and p != trainers_dir()]
        extra = [str(Path(d).resolve()) for d in extra_trainer_dirs]
        self.env.update({
            "nnUNet_raw": str(self.raw), "nnUNet_preprocessed": str(self.preprocessed),
            "nnUNet_results": str(self.results),
            "nnUNet_extTrainer": os.pathsep.join(dict.fromkeys([trainers_dir(), *extra, *users])),
            "nnUNet_n_proc_DA": str(num_da_processes), "nnUNet_compile": "false", "nnUNet_def_n_proc": "1",
            "PYTHONUNBUFFERED": "1",
        })

    # -- running commands ------------------------------------------------------------------------
    def run(self, *cmd, timeout: int = 3600, on_line: Optional[Callable[[str], None]] = None,
            env: Optional[dict] = None) -> str:
        """Run one command in this workspace; return its output, raise CommandFailed on a non-zero exit.

        ``env`` entries override the workspace's environment for this command only."""
        exe = BIN / str(cmd[0])
        args = [str(exe) if exe.exists() else str(cmd[0]), *map(str, cmd[1:])]
        env = {**self.env, **(env or {})}
        if on_line is None:
            proc = subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout)
            output, code = proc.stdout + proc.stderr, proc.returncode
        else:
            lines = []
            with subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  text=True, bufsize=1) as proc:
                deadline = time.monotonic() + timeout
                for line in proc.stdout:
                    lines.append(line)
                    on_line(line.rstrip("\n"))
                    if time.monotonic() > deadline:
                        proc.kill()
                        raise CommandFailed(f"{' '.join(args)} ran past {timeout} s")
                code = proc.wait()
            output = "".join(lines)
        if code != 0:
            raise CommandFailed(f"{' '.join(args)} exited {code}:\n{output[-6000:]}")
        return output

    # -- dataset ---------------------------------------------------------------------------------
    def generate(self, dataset_id: int, **kwargs) -> Path:
        from nnunet_ext.data.phantoms import generate_dataset

        return Path(generate_dataset(self.raw, dataset_id, **kwargs))

    def plan_and_preprocess(self, dataset_id: int, configurations=("2d", "3d_fullres"), **kw) -> str:
        # nnU-Net's planner calls torch.set_num_threads(nnUNet_n_proc_DA), which must be >= 1 there
        env = {"nnUNet_n_proc_DA": str(max(1, int(self.env["nnUNet_n_proc_DA"])))}
        return self.run("nnUNetv2_plan_and_preprocess", "-d", dataset_id, "-c", *configurations,
                        "--verify_dataset_integrity", "-np", *([1] * len(configurations)), "-npfp", 1,
                        env=env, **kw)

    # -- training and inference ------------------------------------------------------------------
    def train(self, dataset_id: int, configuration: str, fold, trainer: str, *extra: str,
              plans: str = "nnUNetPlans", device: str = "cpu", **kw) -> str:
        """nnUNetv2_train on ``device`` ("cpu", "cuda" or "mps"); a "-device" in ``extra`` comes later and wins."""
        return self.run("nnUNetv2_train", dataset_id, configuration, fold, "-tr", trainer, "-p", plans,
                        "-device", check_device(device), *extra, **kw)

    def model_folder(self, dataset_id: int, configuration: str, trainer: str, plans: str = "nnUNetPlans") -> Path:
        return self.results / self.dataset_name(dataset_id) / f"{trainer}__{plans}__{configuration}"

    def predict(self, dataset_id: int, configuration: str, trainer: str, input_dir, output_dir,
                *extra: str, folds=(0,), plans: str = "nnUNetPlans", device: str = "cpu", **kw) -> str:
        """nnUNetv2_predict on ``device`` (as :meth:`train`); its worker processes: :func:`predict_workers`."""
        return self.run("nnUNetv2_predict", "-i", input_dir, "-o", output_dir, "-d", dataset_id, "-c",
                        configuration, "-tr", trainer, "-p", plans, "-f", *folds, "-device", check_device(device),
                        *predict_workers(device), "--disable_progress_bar", *extra, **kw)

    def evaluate(self, dataset_id: int, gt_dir, pred_dir, plans: str = "nnUNetPlans") -> dict:
        """nnU-Net's own evaluation (nnUNetv2_evaluate_folder); returns its summary.json."""
        pre = self.preprocessed / self.dataset_name(dataset_id)
        output = Path(pred_dir) / "summary.json"
        self.run("nnUNetv2_evaluate_folder", gt_dir, pred_dir, "-djfile", pre / "dataset.json",
                 "-pfile", pre / f"{plans}.json", "-o", output, "-np", 1)
        return json.loads(output.read_text())
