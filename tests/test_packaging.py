"""pyproject.toml declares every third-party package the code imports, and nothing it never imports; no module
imports the optional export packages at load (nnU-Net's trainer lookup imports every trainer module)."""
import ast
import importlib.metadata as metadata
import re
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


def test_no_module_imports_an_optional_package_at_load():
    """Only module-level imports run when nnU-Net's lookup imports the trainers (and what they import), so an
    optional package imported inside functions only can never break the lookup."""
    at_load = set()
    for folder in ("nnunet_ext", "architectures", "trainers"):
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.parse(path.read_text()).body:  # top-level statements only
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                    [node.module] if isinstance(node, ast.ImportFrom) and node.module else []
                at_load.update(f"{path.relative_to(ROOT)}: {n}" for n in names if n.split(".")[0] in OPTIONAL)
    assert at_load == set()
