"""A run directory and its artifacts, every one written atomically.

Layout (DESIGN.md): config.json, metrics.json, figures/*.png, model.pt, log.txt, report.md.
Each file is written to a temporary name in the same directory and renamed over the target,
so a run killed at any moment leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import io
import json
import math
import os
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from dlconcepts.errors import UserError


def _new_file_mode() -> int:
    """The mode open() would give a new file: 0o666 less the umask (mkstemp's own 0o600 would hide
    every report, figure and GIF from the user's group)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, _new_file_mode())
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def _json_ready(obj: Any) -> Any:
    """Plain JSON: numpy and torch scalars become numbers, NaN/inf become null (JSON has neither)."""
    if isinstance(obj, dict):
        return {str(k): _json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_ready(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item) and getattr(obj, "ndim", 0) == 0:
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    if hasattr(obj, "tolist"):
        return _json_ready(obj.tolist())
    return str(obj)


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(_json_ready(obj), indent=2) + "\n")


def atomic_torch_save(path: str | Path, obj: Any) -> Path:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return atomic_write_bytes(path, buffer.getvalue())


def run_status(path: str | Path) -> str:
    """How a run directory stands: 'completed', 'failed', 'interrupted' or 'running'. A run whose metrics.json
    says 'running' but whose process is gone (killed without a word) is 'interrupted'; a run from before
    runs had a status, with metrics, is 'completed'."""
    try:
        metrics = json.loads((Path(path) / "metrics.json").read_text())
    except (OSError, ValueError):
        return "interrupted"  # killed before its first metrics.json
    status = metrics.get("status", "completed" if "seconds" in metrics else "interrupted")
    if status == "running":
        if metrics.get("host") != socket.gethostname():
            return "running"  # another machine's process: it cannot be checked from here
        return "running" if _process_alive(int(metrics.get("pid", 0))) else "interrupted"
    return status


def _process_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def timestamp() -> str:
    return time.strftime("%Y%m%d-%H%M%S")


class Run:
    """One run's directory. `log()` prints (unless quiet) and appends to log.txt."""

    def __init__(self, path: str | Path, quiet: bool = False):
        self.path = Path(path)
        self.quiet = quiet
        self.figures: list[tuple[str, str]] = []
        try:
            (self.path / "figures").mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"cannot create run directory {str(self.path)!r}: {exc.strerror}; choose another --out") from None
        self._log_lines: list[str] = []

    @classmethod
    def reopen(cls, path: str | Path, quiet: bool = False) -> "Run":
        """An existing run directory, its log kept (a resumed run appends to it)."""
        run = cls(path, quiet=quiet)
        log = run.path / "log.txt"
        if log.exists():
            run._log_lines = log.read_text(encoding="utf-8").splitlines()
        return run

    @classmethod
    def create(cls, out_dir: str | Path, name: str, quiet: bool = False) -> "Run":
        """A new directory `<out_dir>/<yyyymmdd-hhmmss>-<name>`, never one that exists already."""
        base = Path(out_dir) / f"{timestamp()}-{name}"
        path, n = base, 1
        while path.exists():
            n += 1
            path = base.with_name(f"{base.name}-{n}")
        return cls(path, quiet=quiet)

    def log(self, message: str, echo: bool = True) -> None:
        if echo and not self.quiet:
            print(message, file=sys.stdout, flush=True)
        self._log_lines.append(message)
        atomic_write_text(self.path / "log.txt", "\n".join(self._log_lines) + "\n")

    def write_json(self, name: str, obj: Any) -> Path:
        return atomic_write_json(self.path / name, obj)

    def write_text(self, name: str, text: str) -> Path:
        return atomic_write_text(self.path / name, text)

    def save_figure(self, fig: Any, name: str, caption: str = "") -> str:
        """Save a matplotlib figure as figures/<name>.png and close it; returns the relative path."""
        import matplotlib.pyplot as plt

        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
        plt.close(fig)
        rel = f"figures/{name}.png"
        atomic_write_bytes(self.path / rel, buffer.getvalue())
        self.figures.append((rel, caption))
        return rel

    def save_model(self, state: dict, name: str = "model.pt") -> Path:
        return atomic_torch_save(self.path / name, state)
