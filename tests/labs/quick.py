"""Running a lab in quick mode through the real CLI entry point, for the lab tests."""

import json

from dlconcepts.cli import main


def run_quick(lab_id, tmp_path, *set_pairs, seed=2):
    """`dlc run LAB --quick --set ...` into tmp_path; returns (metrics, figure names, run directory)."""
    args = ["run", lab_id, "--quick", "--seed", str(seed), "--out", str(tmp_path), "--quiet"]
    for pair in set_pairs:
        args += ["--set", pair]
    assert main(args) == 0
    (run_dir,) = [p for p in tmp_path.iterdir() if p.name.endswith(f"-{lab_id}")]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    figures = sorted(p.stem for p in (run_dir / "figures").glob("*.png"))
    return metrics, figures, run_dir
