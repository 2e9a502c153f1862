"""`nnunet-ext demo`: the short vanilla-vs-ours comparison on a generated dataset."""
from pathlib import Path

from nnunet_ext.commands.arguments import non_negative_int, positive_int
from nnunet_ext.benchmark.demo import DemoConfig, run_demo


def add_parser(subparsers):
    d = DemoConfig()
    p = subparsers.add_parser("demo", help="train vanilla nnU-Net and our trainers on a generated dataset and compare",
                              description=__doc__)
    p.add_argument("--workdir", type=Path, default=d.workdir, help="where everything is written")
    p.add_argument("--trainers", nargs="+", default=list(d.trainers), help="trainers to compare")
    p.add_argument("--configuration", default=d.configuration, help="nnU-Net configuration")
    p.add_argument("--epochs", type=positive_int, default=d.epochs, help="training epochs per trainer")
    p.add_argument("--iterations", type=positive_int, default=d.iterations, help="training iterations per epoch")
    p.add_argument("--cases", type=positive_int, default=d.num_train_cases, help="training cases to generate")
    p.add_argument("--test-cases", type=non_negative_int, default=d.num_test_cases, help="held-out cases to generate")
    p.add_argument("--seed", type=non_negative_int, default=d.seed, help="seed of the generated dataset")
    p.set_defaults(func=run)


def run(args):
    cfg = DemoConfig(workdir=args.workdir, trainers=tuple(args.trainers), configuration=args.configuration,
                     epochs=args.epochs, iterations=args.iterations, num_train_cases=args.cases,
                     num_test_cases=args.test_cases, seed=args.seed)
    run_demo(cfg)
