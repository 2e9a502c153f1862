"""pyproject.toml declares every third-party package the code imports, and nothing it never imports; the trainer
lookup (nnU-Net imports every module of the trainers folder) never imports the optional export packages."""
import ast
import importlib.metadata as metadata
import re
import subprocess
import sys
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")

ROOT = Path(__file__).resolve().parents[1]
OURS = {"nnunet_ext", "nnunet_ext_architectures", "nnunet_ext_trainers"}
OPTIONAL = {"onnx", "onnxruntime"}  # imported lazily by `nnunet-ext export` only


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(spec: str) -> str:
    return normalise(re.split(r"[<>=!~\[; ]", spec, maxsplit=1)[0])


def imported_top_level_modules() -> set:
    names = set()
    for folder in ("nnunet_ext", "architectures", "trainers"):
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    names.update(a.name.split(".")[0] for a in node.names)
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names.add(node.module.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n not in OURS}


def test_every_imported_package_is_declared_and_every_declared_one_imported():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {requirement_name(r) for r in project["dependencies"]}
    extras = {requirement_name(r) for r in project["optional-dependencies"]["export"]}
    distributions = metadata.packages_distributions()
    imported = {}
    for module in imported_top_level_modules():
        assert module in distributions, f"{module} is imported but not installed"
        imported[module] = {normalise(d) for d in distributions[module]}
    undeclared = {m for m, dists in imported.items() if not dists & (declared | (extras if m in OPTIONAL else set()))}
    assert undeclared == set(), f"imported but not in pyproject dependencies: {sorted(undeclared)}"
    provided = set().union(*imported.values())
    assert declared - provided == set(), f"declared but never imported: {sorted(declared - provided)}"
    assert project["license"] == "Apache-2.0" and project["authors"] and project["classifiers"]


def test_trainer_lookup_imports_no_optional_export_package():
    code = ("import importlib, pkgutil, sys, nnunet_ext_trainers\n"
            "for m in pkgutil.iter_modules(nnunet_ext_trainers.__path__):\n"
            "    importlib.import_module('nnunet_ext_trainers.' + m.name)\n"
            f"print(sorted(m for m in {sorted(OPTIONAL)!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"
