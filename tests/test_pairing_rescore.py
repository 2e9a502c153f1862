"""docs/benchmarks/pairing_rescore.md is what scripts/rescore_dice_pairing.py prints from the committed per-case files,
and the paired Dice still counts the false positives that the old pairing hid."""
import contextlib
import io
import runpy
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_committed_rescore_table_is_the_script_s_output(monkeypatch):
    monkeypatch.chdir(ROOT)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        runpy.run_path(str(ROOT / "scripts" / "rescore_dice_pairing.py"), run_name="__main__")
    doc = (ROOT / "docs" / "benchmarks" / "pairing_rescore.md").read_text()
    table = doc[doc.index("| per-case file"):]
    assert out.getvalue() == table
    verdicts = table[:table.index("| held-out check")]
    changed = [line for line in verdicts.splitlines() if "-> **" in line]
    assert [line.split(" | ")[1] for line in changed] == ["nnUNetTrainerBatchDice", "nnUNetTrainerAmplify"]
