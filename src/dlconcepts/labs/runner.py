"""Running a lab: resolve settings, make the run directory, run, write metrics and the report.

Everything that can be refused (config, device, seed) is checked before the run directory is
created, so a mistake on the command line leaves nothing behind.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from dlconcepts import __version__, distributed
from dlconcepts.config import resolve, to_dict
from dlconcepts.errors import ConfigError, UserError
from dlconcepts.labs import Lab, LabContext, Result, all_labs
from dlconcepts.report.markdown import course_index, lab_report
from dlconcepts.runs import Run, atomic_write_json, atomic_write_text, timestamp
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


def resolve_config(
    lab: Lab, quick: bool, file_values: Mapping[str, Any], set_pairs: Sequence[tuple[str, str]]
) -> Any:
    """defaults -> quick overrides -> TOML values -> --set pairs."""
    return resolve(lab.config, lab.quick if quick else {}, file_values, set_pairs=set_pairs, owner=lab.id)


def run_lab(lab: Lab, config: Any, settings: RunSettings, run_dir: Path | None = None) -> tuple[Run, Result]:
    """Run one lab into a run directory. Under torchrun every process runs it (the Trainer shares out the
    batches) and only rank 0 writes the run directory; the others write into a scratch folder, removed
    when they finish."""
    runtime = make_runtime(settings.device, settings.seed, settings.threads, settings.deterministic, lab.prefers_cpu)
    group = distributed.join(runtime.device)
    scratch = None if group.is_main else Path(tempfile.mkdtemp(prefix=f"dlc-rank{group.rank}-"))
    finished = False
    try:
        if scratch is not None:
            run = Run(scratch, quiet=True)
        else:
            run = Run(run_dir, quiet=settings.quiet) if run_dir else Run.create(settings.out, lab.id, quiet=settings.quiet)
        outcome = _run_lab(lab, config, settings, runtime, group, run)
        finished = True
        return outcome
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
        distributed.leave(group, wait_for_peers=finished)


def _run_lab(lab: Lab, config: Any, settings: RunSettings, runtime: Any, group: distributed.Group,
             run: Run) -> tuple[Run, Result]:
    config_dict = to_dict(config)
    run.write_json(
        "config.json",
        {
            "lab": lab.id,
            "quick": settings.quick,
            "config": config_dict,
            "runtime": {**runtime.as_dict(), "processes": group.world_size, "backend": group.backend or None},
            "seeds": {"python": runtime.seed, "numpy": runtime.seed, "torch": runtime.seed},
            "versions": {"dlconcepts": __version__, "torch": torch.__version__},
        },
    )
    run.log(f"{lab.id}: {lab.title}  ->  {run.path}")
    for step, what in lab.three_steps(config):
        run.log(f"  {step}: {what}")
    threads = f"{runtime.threads} thread{'s' if runtime.threads != 1 else ''}"
    processes = f"; {group.world_size} processes ({group.backend})" if group.distributed else ""
    run.log(f"  device: {runtime.device_name} ({runtime.device_note}); seed {runtime.seed}; {threads}{processes}")
    ctx = LabContext(run=run, runtime=runtime, quick=settings.quick, progress=not settings.quiet)
    start = time.perf_counter()
    try:
        result = lab.run(config, ctx)
    except UserError as exc:
        run.log(f"error: {exc}", echo=False)  # the CLI prints it once, on stderr
        raise
    seconds = time.perf_counter() - start
    run.write_json("metrics.json", {"lab": lab.id, "seconds": seconds, **result.metrics})
    run.write_text(
        "report.md",
        lab_report(lab, config, result, run.figures, config_dict, runtime.as_dict(), settings.quick, seconds),
    )
    run.log(f"{lab.id}: done in {seconds:.1f} s: {result.headline}")
    return run, result


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
        try:
            _, result = run_lab(lab, configs[lab_id], settings, run_dir=root / lab_id)
            entry.update(status="ok", headline=result.headline)
        except UserError as exc:
            entry.update(status="failed", headline=str(exc))
        entries.append(entry)
        atomic_write_text(root / "report.md", course_index(entries, settings.quick, time.perf_counter() - start))
    atomic_write_json(root / "metrics.json", {"labs": entries, "seconds": time.perf_counter() - start})
    return root, entries
