"""CPU seconds of one nnU-Net train_step per trainer on a generated study task, for a study's budget estimate.

Process CPU time (one torch thread), not wall time: on a shared, loaded machine wall time says more about the
load than about the network (`python -m nnunet_ext.benchmark.real_scale` times wall clock). The trainer is built
and ``initialize()``d as nnUNetv2_train does (real_scale's code path), on nnU-Net's own plans for the task.

    python scripts/studies/step_cpu_seconds.py --task organ_lesion --shape 16 32 32 --spacing 8 3 3 \
        --workdir /tmp/stepcpu -tr nnUNetTrainer ELANResMSCAUNetTrainer StageSkippingSegmentorTrainer
"""
import argparse
import json
import os
import statistics
import time

os.environ["OMP_NUM_THREADS"] = "1"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", required=True)
    p.add_argument("--shape", type=int, nargs="+", required=True)
    p.add_argument("--spacing", type=float, nargs="+", required=True)
    p.add_argument("--workdir", required=True)
    p.add_argument("--steps", type=int, default=4, help="timed steps after one untimed (default: 4)")
    p.add_argument("-tr", "--trainers", nargs="+", required=True)
    args = p.parse_args()
    from nnunet_ext.workspace import NnUNetWorkspace

    ws = NnUNetWorkspace(args.workdir)
    os.environ.update({k: str(v) for k, v in ws.env.items() if k.startswith("nnUNet")})
    if not list(ws.raw.glob("Dataset978_*")):
        ws.generate(978, name="StepCPU", num_cases=4, shape=tuple(args.shape), spacing=tuple(args.spacing), seed=0,
                    task=args.task)
    pre = ws.preprocessed / ws.dataset_name(978)
    if not (pre / "nnUNetPlans.json").is_file():
        ws.run("nnUNetv2_plan_and_preprocess", "-d", 978, "-c", "3d_fullres", "-np", 1, "-npfp", 1,
               env={"nnUNet_n_proc_DA": "1"})
    import torch

    from nnunet_ext.benchmark.real_scale import _initialized_trainer, _targets

    torch.set_num_threads(1)
    for name in args.trainers:
        _, trainer = _initialized_trainer(str(pre), "nnUNetPlans", "3d_fullres", name, torch.device("cpu"))
        patch, batch = [int(s) for s in trainer.configuration_manager.patch_size], int(trainer.batch_size)
        data = {"data": torch.randn(batch, trainer.num_input_channels, *patch), "target": _targets(trainer, batch, patch)}
        trainer.network.train()
        seconds = []
        for _ in range(args.steps + 1):
            start = time.process_time()
            trainer.train_step(data)
            seconds.append(time.process_time() - start)
        print(json.dumps({"trainer": name, "patch": patch, "batch": batch,
                          "cpu_seconds_per_step": round(statistics.median(seconds[1:]), 3)}), flush=True)


if __name__ == "__main__":
    main()
