"""A stand-in for `python -m dlconcepts` in the jobs tests: it prints and writes what a lab run does, in a
second instead of several, and can be told (FAKE_DLC_MODE) to hang until stopped or to leave a child behind.

    fake_dlc.py run LAB --out=DIR [...]
    FAKE_DLC_MODE=quick    the run's first line, log lines, a tqdm bar on stderr, a run directory; exit 0
    FAKE_DLC_MODE=hang     the first line and a 'running' metrics.json; on SIGTERM: 'interrupted', exit 143
    FAKE_DLC_MODE=stubborn starts a grandchild (sleep) and ignores SIGTERM: only SIGKILL ends them
    FAKE_DLC_MODE=fail     prints the CLI's one-line error on stderr and exits 2 before any run directory
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c4890000000d49444154789c6360f8cf"
    "c0f01f0005000201e2b2a3b10000000049454e44ae426082"
)


def main() -> int:
    mode = os.environ.get("FAKE_DLC_MODE", "quick")
    lab = sys.argv[2]
    out = Path(next(a.split("=", 1)[1] for a in sys.argv if a.startswith("--out=")))
    if mode == "fail":
        print("dlc: error: a refusal the CLI makes after starting", file=sys.stderr, flush=True)
        return 2
    run = out / f"{time.strftime('%Y%m%d-%H%M%S')}-{lab}"
    (run / "figures").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"lab": lab, "quick": "--quick" in sys.argv, "argv": sys.argv[1:]}))
    (run / "metrics.json").write_text(json.dumps({"lab": lab, "status": "running", "pid": os.getpid(),
                                                  "host": socket.gethostname()}))
    print(f"{lab}: a fake run  ->  {run}", flush=True)
    print("  1. function: f", flush=True)
    if mode == "hang":
        def stop(signum, frame):
            (run / "metrics.json").write_text(json.dumps({"lab": lab, "status": "interrupted", "message": "stopped"}))
            print("dlc: interrupted: stopped by SIGTERM", file=sys.stderr, flush=True)
            sys.exit(128 + signum)
        signal.signal(signal.SIGTERM, stop)
        while True:
            time.sleep(0.1)
    if mode == "stubborn":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        child = subprocess.Popen(["sleep", "300"])
        print(f"grandchild {child.pid}", flush=True)
        while True:
            time.sleep(0.1)
    for n in (0, 5, 10):  # what tqdm writes on a terminal: '\r' before each state of the bar
        bar = "#" * n + " " * (10 - n)
        sys.stderr.write(f"\rtrain: {n * 10:3d}%|{bar}| {n}/10 [00:0{n // 5}<00:01, 9.87epoch/s, loss=0.{9 - n // 2}]")
        sys.stderr.flush()
        time.sleep(0.05)
    sys.stderr.write("\r" + " " * 60 + "\r")
    sys.stderr.flush()
    (run / "figures" / "curve.png").write_bytes(PNG)
    (run / "report.md").write_text("# A fake run\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n![the curve](figures/curve.png)\n")
    (run / "metrics.json").write_text(json.dumps({"lab": lab, "status": "completed", "seconds": 0.2, "loss": 0.25}))
    (run / "log.txt").write_text(f"{lab}: a fake run  ->  {run}\n{lab}: done in 0.2 s: loss 0.25\n")
    print(f"{lab}: done in 0.2 s: loss 0.25", flush=True)
    print(f"report: {run / 'report.md'}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
