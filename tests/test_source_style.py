"""The project's Python stays within 120 characters a line (the width of its code and of nnU-Net's), so a diff
reads side by side; a test keeps it so, as the project configures no linter."""
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("nnunet_ext", "architectures", "trainers", "tests", "scripts")
MAX_WIDTH = 120


def long_lines(paths, root: Path = ROOT) -> list:
    return [f"{p.relative_to(root)}:{n}: {len(line)} characters"
            for p in paths for n, line in enumerate(p.read_text().splitlines(), start=1) if len(line) > MAX_WIDTH]


def test_python_lines_fit_120_characters():
    paths = sorted(p for folder in FOLDERS for p in (ROOT / folder).rglob("*.py"))
    assert len(paths) > 100  # the folders were found
    assert long_lines(paths) == []


def test_a_long_line_is_named(tmp_path):
    (tmp_path / "m.py").write_text("x = 1\n" + "y = '" + "a" * 114 + "'\n" + "z = '" + "a" * 115 + "'\n")
    assert long_lines([tmp_path / "m.py"], tmp_path) == ["m.py:3: 121 characters"]
