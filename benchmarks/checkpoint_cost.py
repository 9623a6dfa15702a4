"""What does checkpointing cost a full `cnn-digits` run? (issue 14: at most 3 %)

Three ways to run the same lab, seed and threads, as real `dlc run cnn-digits` processes:
1. `--checkpoint-every off`: a checkpoint only where every run writes one (the end of each training loop),
2. the default (at an epoch's end once 49× the last save's time has passed: at most 2 % of the run),
3. `--checkpoint-every 1`: after every epoch, the most a user can ask for.
The time compared is the lab's own `seconds` in metrics.json (from the first line of the lab to its report;
Python's start-up is the same for all three and left out). The contenders take turns, round after round, so
the machine's noise falls on them alike; the table gives each one's median over `--repeats` rounds, its
ratio to `off`, and the number and time of the saves from the run's log.

Run it with `.venv/bin/python benchmarks/checkpoint_cost.py [--repeats 3] [--lab cnn-digits] [--json out.json]`.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

CONTENDERS = {"off": ["--checkpoint-every", "off"], "default": [], "every epoch": ["--checkpoint-every", "1"]}


def one_run(lab: str, options: list[str], out: Path, extra: list[str]) -> tuple[float, int, float]:
    """The lab's seconds, and the saves and their seconds that its log reports."""
    before = set(out.glob("*"))
    subprocess.run([sys.executable, "-m", "dlconcepts", "run", lab, "--quiet", "--out", str(out), *options, *extra],
                   check=True, timeout=3600)
    (run_dir,) = set(out.glob("*")) - before
    seconds = json.loads((run_dir / "metrics.json").read_text())["seconds"]
    saved = re.search(r"checkpoints: (\d+) saved in ([\d.]+) s", (run_dir / "log.txt").read_text())
    return seconds, int(saved.group(1)) if saved else 0, float(saved.group(2)) if saved else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lab", default="cnn-digits")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="the lab's quick mode (a smoke test of this script)")
    parser.add_argument("--json", help="also write the numbers here")
    args = parser.parse_args()
    extra = ["--quick"] if args.quick else []
    results: dict[str, list[tuple[float, int, float]]] = {name: [] for name in CONTENDERS}
    with tempfile.TemporaryDirectory() as folder:
        for round_ in range(args.repeats):
            for name, options in CONTENDERS.items():
                results[name].append(one_run(args.lab, options, Path(folder) / name.split()[0], extra))
                print(f"round {round_ + 1}: {name}: {results[name][-1][0]:.2f} s", file=sys.stderr, flush=True)
    base = statistics.median(r[0] for r in results["off"])
    print(f"{args.lab}{' (quick)' if args.quick else ''}: checkpoint cost, median of {args.repeats} rounds; "
          f"{platform.processor() or platform.machine()}, Python {platform.python_version()}")
    print(f"{'contender':<16} {'seconds':>9} {'vs off':>8} {'saves':>6} {'saving s':>9}")
    table = {}
    for name, runs in results.items():
        median = statistics.median(r[0] for r in runs)
        saves, saving = statistics.median(r[1] for r in runs), statistics.median(r[2] for r in runs)
        table[name] = {"seconds": median, "ratio": median / base, "saves": saves, "saving_seconds": saving,
                       "all_seconds": [r[0] for r in runs]}
        print(f"{name:<16} {median:>9.2f} {median / base:>8.3f} {saves:>6.0f} {saving:>9.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"lab": args.lab, "repeats": args.repeats, "results": table}, indent=2))


if __name__ == "__main__":
    main()
