"""Drive the real nnU-Net command-line tools in an isolated workspace (raw / preprocessed / results)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from nnunet_ext.paths import trainers_dir

TEST_TRAINERS = Path(__file__).resolve().parent / "trainers"
BIN = Path(sys.executable).parent


class NnUNetWorkspace:
    """One nnU-Net installation's worth of folders, and the environment that points at them."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.raw = self.root / "nnUNet_raw"
        self.preprocessed = self.root / "nnUNet_preprocessed"
        self.results = self.root / "nnUNet_results"
        for p in (self.raw, self.preprocessed, self.results):
            p.mkdir(parents=True, exist_ok=True)
        self.env = dict(os.environ)
        self.env.update({
            "nnUNet_raw": str(self.raw), "nnUNet_preprocessed": str(self.preprocessed),
            "nnUNet_results": str(self.results),
            "nnUNet_extTrainer": os.pathsep.join([trainers_dir(), str(TEST_TRAINERS)]),
            "nnUNet_n_proc_DA": "0", "nnUNet_compile": "false", "nnUNet_def_n_proc": "1",
            "OMP_NUM_THREADS": "2", "PYTHONUNBUFFERED": "1",
        })

    def run(self, *cmd, timeout: int = 1200) -> str:
        exe = BIN / cmd[0]
        args = [str(exe) if exe.exists() else cmd[0], *map(str, cmd[1:])]
        proc = subprocess.run(args, env=self.env, capture_output=True, text=True, timeout=timeout)
        output = proc.stdout + proc.stderr
        if proc.returncode != 0:
            raise AssertionError(f"{' '.join(args)} exited {proc.returncode}:\n{output[-6000:]}")
        return output

    def dataset_name(self, dataset_id: int) -> str:
        matches = sorted(self.raw.glob(f"Dataset{dataset_id:03d}_*"))
        assert matches, f"no raw dataset {dataset_id} in {self.raw}"
        return matches[0].name

    def generate(self, dataset_id: int, **kwargs) -> Path:
        from nnunet_ext.data.phantoms import generate_dataset

        return Path(generate_dataset(self.raw, dataset_id, **kwargs))

    def plan_and_preprocess(self, dataset_id: int, configurations=("2d", "3d_fullres")) -> str:
        return self.run("nnUNetv2_plan_and_preprocess", "-d", dataset_id, "-c", *configurations,
                        "--verify_dataset_integrity", "-np", 1, "-npfp", 1)

    def train(self, dataset_id: int, configuration: str, fold, trainer: str, *extra: str,
              plans: str = "nnUNetPlans") -> str:
        return self.run("nnUNetv2_train", dataset_id, configuration, fold, "-tr", trainer, "-p", plans,
                        "-device", "cpu", *extra)

    def model_folder(self, dataset_id: int, configuration: str, trainer: str, plans: str = "nnUNetPlans") -> Path:
        return self.results / self.dataset_name(dataset_id) / f"{trainer}__{plans}__{configuration}"

    def predict(self, dataset_id: int, configuration: str, trainer: str, input_dir: Path, output_dir: Path,
                *extra: str, folds=(0,), plans: str = "nnUNetPlans") -> str:
        return self.run("nnUNetv2_predict", "-i", input_dir, "-o", output_dir, "-d", dataset_id, "-c",
                        configuration, "-tr", trainer, "-p", plans, "-f", *folds, "-device", "cpu",
                        "-npp", 1, "-nps", 1, "--disable_progress_bar", *extra)

    def evaluate(self, dataset_id: int, gt_dir: Path, pred_dir: Path, plans: str = "nnUNetPlans") -> dict:
        pre = self.preprocessed / self.dataset_name(dataset_id)
        output = pred_dir / "summary.json"
        self.run("nnUNetv2_evaluate_folder", gt_dir, pred_dir, "-djfile", pre / "dataset.json",
                 "-pfile", pre / f"{plans}.json", "-o", output, "-np", 1)
        return json.loads(output.read_text())
