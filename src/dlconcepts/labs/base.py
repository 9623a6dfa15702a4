"""What every lab is: its three steps, a config dataclass, a quick mode, and `run(config, ctx) -> Result`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from dlconcepts.checkpoints import Checkpoints
from dlconcepts.runs import Run
from dlconcepts.runtime import Runtime


@dataclass(frozen=True)
class LabContext:
    """What a lab receives besides its config: where to write, how to compute, how much to show."""

    run: Run
    runtime: Runtime
    quick: bool
    progress: bool
    # The run's checkpoints: hand them to every training loop (Trainer, train_gan, ...) so that the run
    # can stop and resume; without them a loop saves nothing.
    checkpoints: Checkpoints = field(default_factory=Checkpoints.disabled)

    def log(self, message: str) -> None:
        self.run.log(message)


@dataclass
class Result:
    """What a lab found. `table` rows go into the report (first row is the header); `findings` are
    sentences computed from the numbers; `headline` is the lab's line in the course index."""

    metrics: dict[str, Any]
    table: list[tuple[str, ...]] = field(default_factory=list)
    findings: list[str] = field(default_factory=list)
    headline: str = ""


@dataclass(frozen=True)
class Lab:
    """A registry entry. `quick` overrides the config for a seconds-long run (used by tests);
    `prefers_cpu` is the reason a lab stays on the CPU under --device auto ('' = use a GPU);
    `path_options` names the keys the --weights / --mnist flags of `dlc run` may set; `multiprocess` says
    whether `dlc run --nproc N` may run it; `defaults_for` gives defaults that depend on the config itself
    (`ppo-gym`: on its environment's action space)."""

    id: str
    title: str
    function: str
    loss: str
    minimizer: str
    data: str
    typical_time: str
    config: type
    run: Callable[[Any, LabContext], Result]
    quick: dict[str, Any] = field(default_factory=dict)
    prefers_cpu: str = ""
    # Config keys that `dlc run --weights FILE` / `--mnist DIR` set: a key of that name means a file here
    # (elsewhere `weights` may be the slides' weights or a mixture's).
    path_options: tuple[str, ...] = ()
    # True where the lab trains through `Trainer` (data parallel: each process a share of every batch) or
    # `train_many` (each process a share of the models), and so gains from torchrun / `dlc run --nproc N`;
    # other labs refuse --nproc rather than repeat their work N times.
    multiprocess: bool = False
    # Defaults that depend on the config itself: given a first resolution of the config (every layer, its
    # own check() not yet run), the values that replace the dataclass's defaults — a layer between the
    # defaults and quick mode, so quick mode, a TOML file and --set still override it (labs.runner.resolve_config).
    # May raise a UserError (one line, before any run directory). `variant_defaults` describes those
    # defaults for `dlc config`: {case: {key: default}}, e.g. {"Discrete actions": {...}, "Box actions": {...}}.
    defaults_for: Callable[[Any], Mapping[str, Any]] | None = None
    variant_defaults: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def three_steps(self, config: Any = None) -> list[tuple[str, str]]:
        """The three steps in words, filled in from `config` (the defaults when None).

        `function`, `loss` and `minimizer` may name config fields in braces, e.g. "{optimizer}, full
        batch", so a report never says Adam when the run used SGD.
        """
        values = {}
        for k, v in vars(config if config is not None else self.config()).items():
            values[k] = "→".join(map(str, v)) if isinstance(v, tuple) else str(v)
        steps = [("1. function", self.function), ("2. loss", self.loss), ("3. minimizer", self.minimizer)]
        return [(name, text.format(**values)) for name, text in steps]
