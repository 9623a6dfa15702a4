"""The labs from Python: `run_lab` and `labs_table`, for Jupyter and Colab.

A third face beside `dlc` and the web app, and as thin: it resolves a config through the same
`resolve` the CLI uses (a string value is read exactly like `--set key=text`, any other value like a
`--config` TOML value), runs the lab with the same runner, and wraps what the run wrote in a `LabRun`
that draws itself in a notebook. The figures are embedded in that HTML (base64 PNG), because Colab
cannot show an image by a relative path on the kernel's disk.
"""

from __future__ import annotations

import base64
import html
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dlconcepts.errors import UserError


@dataclass(frozen=True)
class Figure:
    """One PNG of a run; a notebook shows it when it is the value of a cell."""

    path: Path
    caption: str = ""

    @property
    def name(self) -> str:
        return self.path.stem

    def png(self) -> bytes:
        return self.path.read_bytes()

    def _repr_png_(self) -> bytes:
        return self.png()

    def html(self) -> str:
        data = base64.b64encode(self.png()).decode("ascii")
        caption = f"<figcaption>{html.escape(self.caption)}</figcaption>" if self.caption else ""
        return (f'<figure style="margin:0.5em 0"><img style="max-width:100%" alt="{html.escape(self.name)}" '
                f'src="data:image/png;base64,{data}"/>{caption}</figure>')


@dataclass
class LabRun:
    """A finished lab run: what `metrics.json` holds, the findings, the results table and the figures,
    with the run directory they were written to."""

    lab_id: str
    title: str
    three_steps: list[tuple[str, str]]
    config: dict[str, Any]
    metrics: dict[str, Any]
    headline: str
    findings: list[str]
    table: list[tuple[str, ...]]
    figures: list[Figure]
    run_dir: Path
    quick: bool = field(default=False)

    @property
    def report(self) -> str:
        """The run's report.md, as the CLI wrote it."""
        return (self.run_dir / "report.md").read_text(encoding="utf-8")

    def figure(self, name: str) -> Figure:
        """The figure `figures/<name>.png`; a wrong name is one line listing the run's figures."""
        for fig in self.figures:
            if fig.name == name:
                return fig
        names = [f.name for f in self.figures]
        from dlconcepts.errors import did_you_mean

        raise UserError(f"run {self.lab_id} has no figure '{name}'{did_you_mean(name, names)}; its figures: {', '.join(names)}")

    def __repr__(self) -> str:
        return f"LabRun({self.lab_id!r}, {'quick' if self.quick else 'full'} mode: {self.headline}; run_dir={str(self.run_dir)!r})"

    def _repr_html_(self) -> str:
        esc = html.escape
        parts = [f"<h3>{esc(self.title)} (<code>{esc(self.lab_id)}</code>)</h3>", "<ul>"]
        parts += [f"<li><b>{esc(step)}</b>: {esc(what)}</li>" for step, what in self.three_steps]
        parts.append("</ul>")
        if self.headline:
            parts.append(f"<p><b>{esc(self.headline)}</b></p>")
        if self.table:
            head, *body = self.table
            parts.append('<table><tr>' + "".join(f"<th>{esc(str(c))}</th>" for c in head) + "</tr>")
            parts += ["<tr>" + "".join(f"<td>{esc(str(c))}</td>" for c in row) + "</tr>" for row in body]
            parts.append("</table>")
        if self.findings:
            parts.append("<ul>" + "".join(f"<li>{esc(f)}</li>" for f in self.findings) + "</ul>")
        parts += [fig.html() for fig in self.figures]
        mode = "quick" if self.quick else "full"
        parts.append(f"<p><small>{mode} mode, {self.metrics.get('seconds', 0):.1f} s; "
                     f"run directory <code>{esc(str(self.run_dir))}</code></small></p>")
        return "\n".join(parts)


def run_lab(
    lab_id: str,
    quick: bool = False,
    seed: int = 0,
    device: str = "auto",
    *,
    out: str | Path = "runs",
    threads: int | None = None,
    deterministic: bool = False,
    quiet: bool = False,
    **config: Any,
) -> LabRun:
    """Run one lab as `dlc run LAB` does and return what it found.

    `config` holds the lab's keys (`dlc config LAB` lists them): `run_lab("mlp-regression", epochs=200)`.
    A string is read as the text of `--set` (`hidden="30,15"`), anything else must already have the
    key's type. A bad lab id, key or value raises the CLI's one-line `UserError` before anything is
    written.
    """
    from dlconcepts.labs import get_lab
    from dlconcepts.labs.runner import RunSettings, resolve_config
    from dlconcepts.labs.runner import run_lab as run_with_runner

    if lab_id == "all":
        raise UserError("run_lab runs one lab; run the whole course with 'dlc run all' in a terminal (or !dlc run all)")
    lab = get_lab(lab_id)
    typed = {k: v for k, v in config.items() if not isinstance(v, str)}
    texts = [(k, v) for k, v in config.items() if isinstance(v, str)]
    resolved = resolve_config(lab, quick, typed, texts)
    settings = RunSettings(quick=quick, device=device, seed=seed, threads=threads, deterministic=deterministic,
                           quiet=quiet, out=str(out))
    run, result = run_with_runner(lab, resolved, settings)
    return _lab_run(lab, resolved, run, result, quick)


def resume_lab(run_dir: str | Path, quiet: bool = False) -> LabRun:
    """Continue an interrupted run (a kernel restarted, a job stopped) from its checkpoint, as
    `dlc run --resume RUN_DIR` does: with the run's own lab, config and seed."""
    import dataclasses

    from dlconcepts.labs.runner import resume_request
    from dlconcepts.labs.runner import run_lab as run_with_runner

    lab, resolved, settings = resume_request(run_dir)
    run, result = run_with_runner(lab, resolved, dataclasses.replace(settings, quiet=quiet), resume=Path(run_dir))
    return _lab_run(lab, resolved, run, result, settings.quick)


def _lab_run(lab: Any, resolved: Any, run: Any, result: Any, quick: bool) -> LabRun:
    from dlconcepts.config import to_dict

    return LabRun(
        lab_id=lab.id,
        title=lab.title,
        three_steps=lab.three_steps(resolved),
        config=to_dict(resolved),
        metrics=json.loads((run.path / "metrics.json").read_text(encoding="utf-8")),
        headline=result.headline,
        findings=list(result.findings),
        table=[tuple(row) for row in result.table],
        figures=[Figure(run.path / rel, caption) for rel, caption in run.figures],
        run_dir=run.path,
        quick=quick,
    )


def labs_table() -> Any:
    """The labs in course order with their three steps, as a pandas DataFrame (`dlc labs` as a table)."""
    import pandas as pd

    from dlconcepts.labs import all_labs

    rows = []
    for lab in all_labs().values():
        steps = dict(lab.three_steps())
        rows.append({"lab": lab.id, "title": lab.title, "function": steps["1. function"], "loss": steps["2. loss"],
                     "minimizer": steps["3. minimizer"], "data": lab.data, "typical time": lab.typical_time})
    return pd.DataFrame(rows).set_index("lab")
