"""``nnunet-ext`` command line. Each sub-command lives in its own module exposing ``add_parser(subparsers)``;
the parser it adds sets ``func`` to the callable that runs it. Errors the tool raises for bad input print one
line and exit 1; ``--debug`` (or NNUNET_EXT_DEBUG=1) shows the traceback instead."""
from __future__ import annotations

import argparse
import importlib
import os
import sys

# name -> (module, one-line summary); modules are imported lazily so that `nnunet-ext trainers-dir` stays instant.
COMMANDS = {
    "trainers-dir": ("nnunet_ext.commands.trainers_dir", "print the folder to export as nnUNet_extTrainer"),
    "list": ("nnunet_ext.commands.list_components", "list the trainers, networks, losses and augmentations"),
    "generate": ("nnunet_ext.commands.generate", "write a synthetic nnU-Net raw dataset to try things on"),
    "plans": ("nnunet_ext.commands.plans", "derive nnUNetPlans_<Arch>.json for one of our networks"),
    "lesion-stats": ("nnunet_ext.commands.lesion_stats", "STS-Net's lesion-size statistics of a dataset"),
    "demo": ("nnunet_ext.commands.demo", "train vanilla nnU-Net and our trainers briefly and compare"),
    "benchmark": ("nnunet_ext.commands.benchmark", "trainers vs vanilla nnU-Net: accuracy, statistics, cost"),
    "cascade": ("nnunet_ext.commands.cascade", "two-stage ROI pipelines: prepare, predict, compare"),
    "detector": ("nnunet_ext.commands.detector", "train / run the slice-box region detector"),
    "cost": ("nnunet_ext.commands.model_cost", "parameters and FLOPs of the ES-UNet paper presets"),
    "export": ("nnunet_ext.commands.export", "a trained model's network as ONNX / TorchScript; --check-only"),
}
COMMAND_MODULES = {name: module for name, (module, _) in COMMANDS.items()}
DEBUG_ENV = "NNUNET_EXT_DEBUG"

DESCRIPTION = """\
Trainers, networks, losses and augmentations from five 2025 segmentation papers, for nnU-Net v2.
You train and predict with nnU-Net's own commands; nnunet-ext adds the trainers and a few helpers."""

EPILOG = """\
getting started:
  export nnUNet_extTrainer=$(nnunet-ext trainers-dir)   # let nnU-Net find our trainers
  nnunet-ext list trainer                                # what there is
  nnUNetv2_train DATASET 3d_fullres 0 -tr <Trainer>      # train one, as any nnU-Net trainer
  nnunet-ext demo                                        # a short vanilla-vs-ours run on generated data

`nnunet-ext COMMAND --help` describes each command. Datasets are given as an id (4) or a name
(Dataset004_Hippocampus), as in nnU-Net. Errors print one line; add --debug for the traceback."""


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends '(default: X)' to an option's help unless the help already states it or there is none to state."""

    def _get_help_string(self, action):
        text = action.help or ""
        if ("default" in text.lower() or action.default is None or action.default is False
                or action.default == argparse.SUPPRESS or action.required):
            return text
        return super()._get_help_string(action)


class TopHelpFormatter(argparse.RawDescriptionHelpFormatter, HelpFormatter):
    """The top-level help keeps the line breaks of its description and getting-started example."""


class Parser(argparse.ArgumentParser):
    """A usage error is one line naming the problem and exit code 1, like every other error of the tool."""

    def error(self, message):
        self.exit(1, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        nnunet = version("nnunetv2")
    except PackageNotFoundError:
        nnunet = "not installed"
    from nnunet_ext import __version__
    return f"nnunet-ext {__version__} (nnU-Net {nnunet})"


def all_parsers(parser: argparse.ArgumentParser):
    """``parser`` and every sub-parser below it."""
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                yield from all_parsers(sub)


def build_parser(argv_command: str | None = None) -> argparse.ArgumentParser:
    """Every command's full parser (``argv_command`` None), or only that one's and stubs ("": stubs only)."""
    parser = Parser(prog="nnunet-ext", description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=TopHelpFormatter)
    parser.add_argument("--version", action="version", version=_version())
    parser.add_argument("--debug", action="store_true",
                        help=f"show the Python traceback of an error (also: {DEBUG_ENV}=1); any position")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, summary) in COMMANDS.items():
        if argv_command is not None and argv_command != name:
            # a stub, so --help lists every command without importing heavy modules
            subparsers.add_parser(name, help=summary)
            continue
        importlib.import_module(module_name).add_parser(subparsers)
    for p in list(all_parsers(parser))[1:]:
        p.formatter_class = HelpFormatter
    return parser


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    if isinstance(error, KeyError) or not text:
        text = f"{type(error).__name__}: {text}"
    return text


# what bad input raises (ValueError covers PlanningError, DatasetNameError, json errors); anything else is a bug
# and keeps its traceback.
USER_ERRORS = (ValueError, OSError, RuntimeError)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get(DEBUG_ENV, "") not in ("", "0")
    argv = [a for a in argv if a != "--debug"]
    command = next((a for a in argv if not a.startswith("-")), None)
    command = command if command in COMMANDS else ""
    try:
        args = build_parser(command).parse_args(argv)
    except SystemExit as stop:  # --help, --version, or a usage error (already printed)
        return stop.code if isinstance(stop.code, int) else 1
    # "nnunet-ext cascade prepare": the command and its action, as the user typed them
    prog = " ".join(["nnunet-ext", args.command, *(str(v) for k, v in vars(args).items() if k.endswith("_command"))])
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except USER_ERRORS as error:
        if debug:
            raise
        print(f"{prog}: error: {_one_line(error)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
