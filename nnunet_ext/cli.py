"""``nnunet-ext`` command line. Each sub-command lives in its own module exposing ``add_parser(subparsers)``;
the parser it adds sets ``func`` to the callable that runs it."""
from __future__ import annotations

import argparse
import importlib
import sys

# name -> module; modules are imported lazily so that `nnunet-ext trainers-dir` stays instant.
COMMAND_MODULES = {
    "trainers-dir": "nnunet_ext.commands.trainers_dir",
    "list": "nnunet_ext.commands.list_components",
    "cost": "nnunet_ext.commands.model_cost",
    "demo": "nnunet_ext.commands.demo",
    "generate": "nnunet_ext.commands.generate",
    "plans": "nnunet_ext.commands.plans",
    "lesion-stats": "nnunet_ext.commands.lesion_stats",
    "benchmark": "nnunet_ext.commands.benchmark",
    "cascade": "nnunet_ext.commands.cascade",
    "detector": "nnunet_ext.commands.detector",
}


def build_parser(argv_command: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nnunet-ext", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module_name in COMMAND_MODULES.items():
        if argv_command is not None and argv_command != name:
            # register a stub so --help lists every command without importing heavy modules
            subparsers.add_parser(name, help=f"see `nnunet-ext {name} --help`")
            continue
        importlib.import_module(module_name).add_parser(subparsers)
    return parser


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv[0] if argv and argv[0] in COMMAND_MODULES else None
    args = build_parser(command).parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
