"""Checkpoints and resume: a stopped run continues where it was, to the same last bit.

A lab's training loops are its *stages*, numbered in the order the lab reaches them (a lab that trains a
CNN and then an MLP has stages 1 and 2). The run's `checkpoint.pt` holds, for every stage reached, the
state its loop saved: a finished stage its final state, the current one its state after its last saved
epoch (or PPO update). Each entry carries the RNG streams of python, numpy and torch (and CUDA) as they
were at that moment, of every process.

`dlc run --resume RUN_DIR` runs the lab again from its first line with the run's own config and seed.
Every loop opens its stage and asks for what was saved: a finished stage puts its final state back and
returns at once without training; the unfinished one loads its epoch's state and trains on. The work
between the loops (making the data, evaluating, drawing) is deterministic and cheap, so it is simply done
again; putting the RNG streams back where each stage left them makes everything after it draw what the
uninterrupted run drew. On the CPU the result is bit-identical (tests/test_resume.py kills runs with
SIGKILL at random points and compares).

When to save: by default at an epoch's end whenever the time since the last save is at least 49 times what
that save took, so that saving never takes more than 2 % of a run however short its epochs (a 1 ms
full-batch epoch must not write a file each time; a 10 ms save on a 40 ms epoch waits half a second);
every `every_epochs` epochs or `every_seconds` seconds where asked; at the end of every stage; and when
the run is asked to stop: the first SIGTERM or SIGINT inside a stage is held until the epoch ends,
the state is saved and `RunInterrupted` is raised; outside a stage (or at a second signal) the run stops at
once, losing only what came after the last save.

Files are written atomically (temporary name, then rename) by the first process only, and read back with
`torch.load(weights_only=True)`: tensors, numbers, strings and containers of them, nothing that could run
code. Under torchrun every rank contributes its own RNG streams (dropout masks and augmentation draws
differ per rank), and all ranks agree at each epoch end whether to save, so they save at the same step.
"""

from __future__ import annotations

import io
import math
import random
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dlconcepts import distributed
from dlconcepts.errors import UserError

FORMAT = 1
CHECKPOINT_FILE = "checkpoint.pt"
SAVING_SHARE = 0.02  # the default policy's bound on the share of a run's time spent saving


class RunInterrupted(UserError):
    """The run was asked to stop (SIGTERM, SIGINT); what it had done is in its checkpoint."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = signum


# -- RNG streams -----------------------------------------------------------------------------------

def rng_state() -> dict[str, Any]:
    """The global RNG streams of this process, in a form `torch.load(weights_only=True)` accepts."""
    version, internal, gauss = random.getstate()
    np_state = np.random.get_state(legacy=False)
    state = {
        "python": [version, list(internal), gauss],
        "numpy": {"key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)), "pos": np_state["state"]["pos"],
                  "has_gauss": np_state["has_gauss"], "gauss": np_state["gauss"]},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    np_state = state["numpy"]
    np.random.set_state({"bit_generator": "MT19937",
                         "state": {"key": np_state["key"].numpy().astype(np.uint32), "pos": np_state["pos"]},
                         "has_gauss": np_state["has_gauss"], "gauss": np_state["gauss"]})
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def copy_state(obj: Any) -> Any:
    """A deep copy of nested dicts/lists of tensors, so a saved state does not follow later in-place steps."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().clone()
    if isinstance(obj, dict):
        return {k: copy_state(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(copy_state(v) for v in obj)
    return obj


def load_file(path: Path) -> dict[str, Any]:
    """A checkpoint file's contents, or one line saying why it cannot be read."""
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UserError(f"no checkpoint at {path}") from None
    except Exception as exc:  # a truncated or foreign file: say so, never a traceback
        raise UserError(f"cannot read checkpoint {path}: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}") from None
    if not isinstance(saved, dict) or saved.get("format") != FORMAT:
        raise UserError(f"{path} is not a dlconcepts checkpoint (format {FORMAT})")
    return saved


# -- the run's checkpoints ---------------------------------------------------------------------------

@dataclass
class Saved:
    """What a stage saved: its loop's `state`, this process's `local` part, and whether it had finished."""

    state: dict[str, Any]
    local: dict[str, Any]
    finished: bool
    epoch: int


class Checkpoints:
    """The checkpoint file of one run, its saving policy and the stop requests of its signals.

    Args:
        path: the checkpoint file; None keeps nothing (a notebook's run, a test) but stages still work.
        every_epochs: save every this many epochs / updates.
        every_seconds: save when this many seconds have passed since the last save (inf: only at the ends
            of stages and when asked to stop). Neither: the default, at most `SAVING_SHARE` of the time.
        saved: the contents of the file being resumed (`load_file`), None for a fresh run.
        group: the processes of a torchrun job (rank 0 writes; all agree when to save).
    """

    def __init__(self, path: str | Path | None = None, every_epochs: int | None = None,
                 every_seconds: float | None = None, saved: dict[str, Any] | None = None,
                 group: distributed.Group = distributed.SINGLE, lab: str = ""):
        if every_epochs is not None and every_epochs < 1:
            raise UserError(f"--checkpoint-every {every_epochs} is impossible; give 1 or more epochs, or seconds like 30s")
        self.path = None if path is None else Path(path)
        self.every_epochs = every_epochs
        self.every_seconds = every_seconds
        self.group = group
        self.lab = lab
        self.stages: list[dict[str, Any]] = []  # what the file holds, one entry per stage reached
        self.resumed: list[dict[str, Any]] = []
        if saved is not None:
            if saved.get("world_size", 1) != group.world_size:
                raise UserError(f"this run was checkpointed by {saved.get('world_size', 1)} processes; resume it with "
                                f"--nproc {saved.get('world_size', 1)} (now {group.world_size})")
            self.resumed = list(saved["stages"])
        self.opened = 0
        self.last_save = time.monotonic()
        self.last_save_took = 0.0
        self.stop_signal: int | None = None
        self.active: Stage | None = None
        self.saves = 0
        self.save_seconds = 0.0

    @classmethod
    def disabled(cls) -> "Checkpoints":
        return cls(None)

    def stage(self, kind: str, description: str = "") -> "Stage":
        """The next stage of the run, in the order the lab's loops start; `kind` guards against a checkpoint
        of other code (a loop of another kind at the same place)."""
        index = self.opened
        self.opened += 1
        saved = None
        if index < len(self.resumed):
            entry = self.resumed[index]
            if entry["kind"] != kind:
                raise UserError(f"the checkpoint's stage {index + 1} is a '{entry['kind']}' loop but this run's is a "
                                f"'{kind}' loop: the lab's code changed since; start the run again")
            rank = self.group.rank
            saved = Saved(entry["state"], entry["local"][rank], entry["finished"], entry["epoch"])
            self.stages.append(entry)
        return Stage(self, index, kind, description, saved)

    # -- saving ----------------------------------------------------------------------------------
    def _agree(self, epoch: int) -> tuple[bool, int | None]:
        """Whether to save at this epoch's end, and the signal to stop for after saving (None: go on). Under
        torchrun every rank saves at the same step or none does, and a stop asked of any rank (a signal reaches
        them at different moments) stops them all at that step. A signal that arrives after this agreement
        waits for the next epoch's: acting on it now would stop one rank while its peers train on."""
        since = time.monotonic() - self.last_save
        if self.every_epochs is not None:
            due = epoch % self.every_epochs == 0
        elif self.every_seconds is not None:
            due = since >= self.every_seconds
        else:
            due = since * SAVING_SHARE >= self.last_save_took * (1 - SAVING_SHARE)
        stop = self.stop_signal
        if self.group.distributed:
            flags = distributed.max_over_ranks(torch.tensor([1.0 if due else 0.0, float(stop or 0)]), self.group)
            due, stop = flags[0].item() > 0, int(flags[1].item()) or None
        return due or stop is not None, stop

    def _record(self, index: int, kind: str, description: str, state: dict, local: dict, finished: bool,
                epoch: int) -> None:
        start = time.perf_counter()
        local = {**local, "rng": rng_state()}
        everyone = distributed.gather_objects(local, self.group) if self.group.distributed else [local]
        entry = {"kind": kind, "description": description, "finished": finished, "epoch": epoch,
                 "state": copy_state(state), "local": copy_state(everyone)}
        if index < len(self.stages):
            self.stages[index] = entry
        else:
            self.stages.append(entry)
        self._write()
        self.last_save_took = time.perf_counter() - start  # copying and gathering count too
        self.save_seconds += self.last_save_took
        self.last_save = time.monotonic()

    def _write(self) -> None:
        if self.path is None or not self.group.is_main:
            return
        from dlconcepts.runs import atomic_write_bytes

        buffer = io.BytesIO()
        torch.save({"format": FORMAT, "lab": self.lab, "world_size": self.group.world_size, "stages": self.stages},
                   buffer)
        atomic_write_bytes(self.path, buffer.getvalue())
        self.saves += 1

    def where_resumed(self) -> str:
        """Where a resumed run takes up: 'from stage 2 (fit), epoch 14' or 'from the start (no checkpoint)'."""
        return f"from {_last_stage(self.resumed)}" if self.resumed else "from the start (it had saved no checkpoint)"

    def where(self) -> str:
        """Where the run stands, for a log line or a message: 'stage 2 (fit), epoch 14'."""
        return _last_stage(self.stages) if self.stages else "before its first checkpoint"

    # -- signals ---------------------------------------------------------------------------------
    def request_stop(self, signum: int) -> None:
        """A signal arrived: inside a stage, stop after its epoch (saved); elsewhere, or a second time, now."""
        if self.active is None or self.stop_signal is not None:
            self.stop_signal = signum
            raise self.interrupted(signum)
        self.stop_signal = signum

    def interrupted(self, signum: int) -> RunInterrupted:
        name = signal.Signals(signum).name
        return RunInterrupted(f"stopped by {name}; saved {self.where()}", signum)


def _last_stage(stages: list[dict[str, Any]]) -> str:
    last = stages[-1]
    what = "finished" if last["finished"] else f"epoch {last['epoch']}"
    return f"stage {len(stages)} ({last['description'] or last['kind']}), {what}"


@dataclass
class Stage:
    """One training loop's share of the checkpoint. A loop:

        stage = checkpoints.stage("fit")
        if stage.saved: load stage.saved.state (and .local); stage.restore_rng(); if stage.saved.finished: return
        stage.enter()
        try:
            for epoch in ...:
                ...
                stage.epoch_end(epoch, lambda: {...state...}, lambda: {...this rank's state...})
        finally:
            stage.leave()
        stage.finish(epoch, {...final state...}, {...})
    """

    checkpoints: Checkpoints
    index: int
    kind: str
    description: str
    saved: Saved | None

    def restore_rng(self) -> None:
        """Put this process's RNG streams back where they were when the stage's state was saved."""
        if self.saved is not None:
            set_rng_state(self.saved.local["rng"])

    def enter(self) -> None:
        """From here until `leave`, a stop request waits for the next `epoch_end` (and its save)."""
        self.checkpoints.active = self

    def leave(self) -> None:
        self.checkpoints.active = None

    def epoch_end(self, epoch: int, state: Callable[[], dict], local: Callable[[], dict] | None = None) -> None:
        """Save when due (every N epochs, every S seconds, or a stop was asked for); then honour the stop."""
        cp = self.checkpoints
        due, stop = cp._agree(epoch)
        if not due:
            return
        cp._record(self.index, self.kind, self.description, state(), local() if local else {}, False, epoch)
        if stop is not None:
            cp.stop_signal = stop
            raise cp.interrupted(stop)

    def finish(self, epoch: int, state: dict, local: dict | None = None) -> None:
        """The loop ended: its final state is what a resumed run puts back instead of training again."""
        self.checkpoints._record(self.index, self.kind, self.description, state, local or {}, True, epoch)


# -- the signal handlers of a run (the CLI's, in the main thread only) ------------------------------

class StopOnSignals:
    """While active, SIGTERM and SIGINT ask `checkpoints` to stop (see `Checkpoints.request_stop`); the
    previous handlers come back afterwards. Outside the main thread (a notebook's worker) it does nothing."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self, checkpoints: Checkpoints):
        self.checkpoints = checkpoints
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> "StopOnSignals":
        if threading.current_thread() is threading.main_thread():
            for signum in self.SIGNALS:
                self.previous[signum] = signal.signal(signum, lambda s, _frame: self.checkpoints.request_stop(s))
        return self

    def __exit__(self, *exc: Any) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)


def parse_every(text: str | None) -> tuple[int | None, float | None]:
    """`--checkpoint-every`: '5' = every 5 epochs (or PPO updates), '30s' = every 30 seconds, 'off' = only at
    the end of each training loop and when asked to stop (what a benchmark of the saving's cost compares with);
    None = the default (as often as 2 % of the time allows)."""
    if text is None:
        return None, None
    raw = text.strip().lower()
    if raw == "off":
        return None, math.inf
    try:
        if raw.endswith("s"):
            seconds = float(raw[:-1])
            if seconds > 0:
                return None, seconds
        else:
            epochs = int(raw)
            if epochs >= 1:
                return epochs, None
    except ValueError:
        pass
    raise UserError(f"--checkpoint-every {text!r} is not understood; give epochs (e.g. 5), seconds (e.g. 30s) or off")
