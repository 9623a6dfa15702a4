"""Running a lab: resolve settings, make the run directory, run, write metrics and the report.

Everything that can be refused (config, device, seed) is checked before the run directory is
created, so a mistake on the command line leaves nothing behind.

A run says how it stands in its metrics.json from its first second: `status` is "running" (with the
process id and host, so that a run killed without a word — SIGKILL, a lost machine — reads as
"interrupted" once its process is gone), then "completed", "failed" or "interrupted". An interrupted run
continues with `dlc run --resume RUN_DIR` from its checkpoint (`dlconcepts.checkpoints`); under
`torchrun --max-restarts K` a restarted worker finds its job's run by the job's id and resumes it itself.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from dlconcepts import __version__, distributed
from dlconcepts.checkpoints import CHECKPOINT_FILE, Checkpoints, RunInterrupted, StopOnSignals, load_file, parse_every
from dlconcepts.config import resolve, to_dict
from dlconcepts.errors import ConfigError, UserError
from dlconcepts.labs import Lab, LabContext, Result, all_labs, get_lab
from dlconcepts.report.markdown import course_index, lab_report
from dlconcepts.runs import Run, atomic_write_json, atomic_write_text, run_status, timestamp
from dlconcepts.runtime import make_runtime


@dataclass(frozen=True)
class RunSettings:
    """The run-level options of `dlc run` (not part of any lab's config)."""

    quick: bool = False
    device: str = "auto"
    seed: int = 0
    threads: int | None = None
    deterministic: bool = False
    quiet: bool = False
    out: str = "runs"
    checkpoint_every: str | None = None  # '5': every 5 epochs / updates; '30s': every 30 s (default)
    handle_signals: bool = False  # the CLI's runs: SIGTERM / SIGINT stop at the next checkpoint


def resolve_config(
    lab: Lab, quick: bool, file_values: Mapping[str, Any], set_pairs: Sequence[tuple[str, str]]
) -> Any:
    """defaults -> the lab's defaults for this config (`Lab.defaults_for`) -> quick overrides -> TOML values
    -> --set pairs. The second layer needs a first resolution to know what it depends on (ppo-gym: the
    environment, and so its action space); explicit values still win over it."""
    layers = [lab.quick if quick else {}, file_values]
    if lab.defaults_for is not None:
        first = resolve(lab.config, *layers, set_pairs=set_pairs, owner=lab.id, check=False)
        layers.insert(0, lab.defaults_for(first))
    return resolve(lab.config, *layers, set_pairs=set_pairs, owner=lab.id)


def run_lab(lab: Lab, config: Any, settings: RunSettings, run_dir: Path | None = None,
            resume: Path | None = None) -> tuple[Run, Result]:
    """Run one lab into a run directory (`resume`: continue the interrupted run there). Under torchrun every
    process runs it (the Trainer shares out the batches) and only rank 0 writes the run directory; the
    others write into a scratch folder, removed when they finish."""
    runtime = make_runtime(settings.device, settings.seed, settings.threads, settings.deterministic, lab.prefers_cpu)
    every_epochs, every_seconds = parse_every(settings.checkpoint_every)
    group = distributed.join(runtime.device)
    scratch = None if group.is_main else Path(tempfile.mkdtemp(prefix=f"dlc-rank{group.rank}-"))
    finished = False
    try:
        if scratch is not None:
            run, saved = Run(scratch, quiet=True), None
        else:
            run, saved = _open_run(lab, settings, run_dir, resume)
        if group.distributed:  # every rank resumes from rank 0's file (nodes need not share a disk)
            saved = distributed.broadcast_from_main(saved, group)
        resuming = saved is not None
        checkpoints = Checkpoints(run.path / CHECKPOINT_FILE, every_epochs, every_seconds,
                                  saved=saved if saved else None, group=group, lab=lab.id)
        outcome = _run_lab(lab, config, settings, runtime, group, run, checkpoints, resuming)
        finished = True
        return outcome
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
        distributed.leave(group, wait_for_peers=finished)


def _open_run(lab: Lab, settings: RunSettings, run_dir: Path | None, resume: Path | None) -> tuple[Run, dict | None]:
    """Rank 0's run directory and the checkpoint to resume from ({} for a resumed run that had saved none)."""
    if resume is None:
        resume = _elastic_run_to_resume(settings.out, lab.id)
    if resume is not None:
        run = Run.reopen(resume, quiet=settings.quiet)
        checkpoint = run.path / CHECKPOINT_FILE
        return run, load_file(checkpoint) if checkpoint.exists() else {}
    run = Run(run_dir, quiet=settings.quiet) if run_dir else Run.create(settings.out, lab.id, quiet=settings.quiet)
    return run, None


def _elastic_run_to_resume(out: str, lab_id: str) -> Path | None:
    """Under `torchrun --max-restarts K`, a restarted worker's run: the newest in `out` made by this job."""
    job, restarts = os.environ.get("TORCHELASTIC_RUN_ID"), int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))
    if not job or restarts == 0:
        return None
    for path in sorted(Path(out).glob(f"*-{lab_id}*"), reverse=True):
        try:
            config = json.loads((path / "config.json").read_text())
        except (OSError, ValueError):
            continue
        if config.get("runtime", {}).get("job") == job:
            return path
    return None


def _run_lab(lab: Lab, config: Any, settings: RunSettings, runtime: Any, group: distributed.Group,
             run: Run, checkpoints: Checkpoints, resuming: bool) -> tuple[Run, Result]:
    config_dict = to_dict(config)
    if not resuming:
        run.write_json(
            "config.json",
            {
                "lab": lab.id,
                "quick": settings.quick,
                "config": config_dict,
                "runtime": {**runtime.as_dict(), "processes": group.world_size, "backend": group.backend or None,
                            "job": os.environ.get("TORCHELASTIC_RUN_ID") if distributed.launched_by_torchrun() else None},
                "seeds": {"python": runtime.seed, "numpy": runtime.seed, "torch": runtime.seed},
                "versions": {"dlconcepts": __version__, "torch": torch.__version__},
            },
        )
        run.log(f"{lab.id}: {lab.title}  ->  {run.path}")
        for step, what in lab.three_steps(config):
            run.log(f"  {step}: {what}")
    else:
        run.log(f"{lab.id}: resumed {checkpoints.where_resumed()}  ->  {run.path}")
    threads = f"{runtime.threads} thread{'s' if runtime.threads != 1 else ''}"
    processes = f"; {group.world_size} processes ({group.backend})" if group.distributed else ""
    run.log(f"  device: {runtime.device_name} ({runtime.device_note}); seed {runtime.seed}; {threads}{processes}")
    resumes = _previous_resumes(run) + (1 if resuming else 0)
    run.write_json("metrics.json", {"lab": lab.id, "status": "running", "pid": os.getpid(),
                                    "host": socket.gethostname(), **({"resumes": resumes} if resumes else {})})
    ctx = LabContext(run=run, runtime=runtime, quick=settings.quick, progress=not settings.quiet,
                     checkpoints=checkpoints)
    start = time.perf_counter()
    try:
        with StopOnSignals(checkpoints) if settings.handle_signals else contextlib.nullcontext():
            result = lab.run(config, ctx)
    except RunInterrupted as exc:
        message = f"{exc}; continue with: dlc run --resume {run.path}"
        _write_interrupted(lab, run, message, resumes)
        raise RunInterrupted(message, exc.signum) from None
    except UserError as exc:
        run.log(f"error: {exc}", echo=False)  # the CLI prints it once, on stderr
        run.write_json("metrics.json", {"lab": lab.id, "status": "failed", "error": str(exc)})
        raise
    except Exception as exc:  # a bug, or under torchrun a peer's failure: not finished either way
        first_line = (str(exc).splitlines() or [""])[0][:300]
        run.write_json("metrics.json", {"lab": lab.id, "status": "failed", "error": f"{type(exc).__name__}: {first_line}"})
        raise
    seconds = time.perf_counter() - start
    run.write_json("metrics.json", {"lab": lab.id, "status": "completed", "seconds": seconds,
                                    **({"resumes": resumes} if resumes else {}), **result.metrics})
    run.write_text(
        "report.md",
        lab_report(lab, config, result, run.figures, config_dict, runtime.as_dict(), settings.quick, seconds),
    )
    if checkpoints.saves and group.is_main:
        run.log(f"  checkpoints: {checkpoints.saves} saved in {checkpoints.save_seconds:.2f} s; removed now the run is complete",
                echo=False)
    (run.path / CHECKPOINT_FILE).unlink(missing_ok=True)  # the run is whole: model.pt and metrics.json say the rest
    run.log(f"{lab.id}: done in {seconds:.1f} s: {result.headline}")
    return run, result


def _previous_resumes(run: Run) -> int:
    try:
        return int(json.loads((run.path / "metrics.json").read_text()).get("resumes", 0))
    except (OSError, ValueError):
        return 0


def _write_interrupted(lab: Lab, run: Run, message: str, resumes: int) -> None:
    """An interrupted run says so in its metrics.json, its log and its report."""
    run.log(f"interrupted: {message}", echo=False)
    run.write_json("metrics.json", {"lab": lab.id, "status": "interrupted", "message": message,
                                    **({"resumes": resumes} if resumes else {})})
    run.write_text("report.md", f"# {lab.title}\n\n**Interrupted**: {message}.\n\n"
                                "Everything up to its last checkpoint is kept in `checkpoint.pt`; the figures "
                                "and numbers of the finished run will replace this page.\n")


def resume_request(run_dir: str | Path, check_status: bool = True) -> tuple[Lab, Any, RunSettings]:
    """What `dlc run --resume RUN_DIR` runs: the run's lab, its own config and runtime settings, all
    read back from its config.json; refused with one line when there is nothing to resume."""
    path = Path(run_dir)
    try:
        saved = json.loads((path / "config.json").read_text())
        lab_id, values, runtime = saved["lab"], saved["config"], saved["runtime"]
    except FileNotFoundError:
        raise UserError(f"{str(path)!r} is not a run directory (no config.json); give the folder a run printed") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"cannot read {path / 'config.json'}: {exc}") from None
    status = run_status(path) if check_status else "interrupted"
    if status == "completed":
        raise UserError(f"the run in {path} is complete; nothing to resume")
    if status == "running":
        raise UserError(f"the run in {path} is still running (its process is alive); stop it first")
    lab = get_lab(lab_id)
    config = resolve(lab.config, values, owner=lab.id)
    settings = RunSettings(quick=bool(saved.get("quick")), device=runtime["device"].split(":")[0], seed=int(runtime["seed"]),
                           threads=int(runtime["threads"]), deterministic=bool(runtime.get("deterministic")))
    return lab, config, settings


def split_set_pairs_for_all(
    labs: Mapping[str, Lab], set_pairs: Sequence[tuple[str, str]]
) -> dict[str, list[tuple[str, str]]]:
    """For `run all`: `lab.key=value` goes to that lab, plain `key=value` to every lab that has the key."""
    from dlconcepts.config import fields_of

    per_lab: dict[str, list[tuple[str, str]]] = {lab_id: [] for lab_id in labs}
    for key, text in set_pairs:
        lab_id, dot, field_name = key.rpartition(".")
        if dot:
            if lab_id not in labs:
                raise ConfigError(f"--set {key}: unknown lab '{lab_id}'; available: {', '.join(labs)}")
            per_lab[lab_id].append((field_name, text))
            continue
        owners = [i for i, lab in labs.items() if key in {f.name for f in fields_of(lab.config)}]
        if not owners:
            raise ConfigError(f"--set {key}: no lab has a config key '{key}'; write LAB.{key}=... for one lab")
        for i in owners:
            per_lab[i].append((key, text))
    return per_lab


def run_all(
    settings: RunSettings, file_values: Mapping[str, Any], set_pairs: Sequence[tuple[str, str]]
) -> tuple[Path, list[dict[str, Any]]]:
    """Every lab in course order into `<out>/<timestamp>-all/<lab>/`, then the course index there."""
    labs = all_labs()
    per_lab_pairs = split_set_pairs_for_all(labs, set_pairs)
    configs = {}
    for lab_id, lab in labs.items():  # resolve every config before anything runs
        section = file_values.get(lab_id, {})
        configs[lab_id] = resolve_config(lab, settings.quick, section, per_lab_pairs[lab_id])
    root = Path(settings.out) / f"{timestamp()}-all"
    n = 1
    while root.exists():
        n += 1
        root = root.with_name(f"{timestamp()}-all-{n}")
    start = time.perf_counter()
    entries = []
    for lab_id, lab in labs.items():
        steps = dict(lab.three_steps(configs[lab_id]))
        entry = {"id": lab_id, "function": steps["1. function"], "loss": steps["2. loss"],
                 "minimizer": steps["3. minimizer"]}
        # The index names the lab running now: a course run killed without a word shows where it stopped.
        atomic_write_text(root / "report.md", course_index(
            [*entries, {**entry, "status": "running", "headline": ""}], settings.quick, time.perf_counter() - start))
        try:
            _, result = run_lab(lab, configs[lab_id], settings, run_dir=root / lab_id)
            entry.update(status="ok", headline=result.headline)
        except RunInterrupted as exc:
            entry.update(status="interrupted", headline=str(exc))
            entries.append(entry)
            atomic_write_text(root / "report.md", course_index(entries, settings.quick, time.perf_counter() - start))
            atomic_write_json(root / "metrics.json", {"labs": entries, "seconds": time.perf_counter() - start})
            raise
        except UserError as exc:
            entry.update(status="failed", headline=str(exc))
        entries.append(entry)
        atomic_write_text(root / "report.md", course_index(entries, settings.quick, time.perf_counter() - start))
    atomic_write_json(root / "metrics.json", {"labs": entries, "seconds": time.perf_counter() - start})
    return root, entries
