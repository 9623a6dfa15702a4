"""What the server shows, as plain data: the labs with their config fields, and the runs folder's runs.

The pages (`pages.py`) and their JSON twins (`app.py`'s /api/...) both read from here, so a page and its
API always say the same thing.

A run directory is recognised by its files: `dlc run LAB` writes config.json with `"lab"`, `dlc train`
writes config.json with `"command": "train"`, and `dlc run all` writes a folder of lab run directories with
a report.md index (and, once finished, a metrics.json listing the labs). Its status comes from
`runs.run_status` (a run whose process is gone without a word reads as interrupted).
"""

from __future__ import annotations

import json
import posixpath
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from dlconcepts.runs import run_status
from dlconcepts.serve.security import safe_path

LOG_TAIL_LINES = 400
SERVED_SUFFIXES = (".png", ".json", ".md", ".txt", ".csv", ".gif")


# ------------------------------------------------------------------------------------------ labs

def lab_summary(lab: Any) -> dict[str, str]:
    steps = [text for _, text in lab.three_steps()]
    return {"id": lab.id, "title": lab.title, "function": steps[0], "loss": steps[1], "minimizer": steps[2],
            "data": lab.data, "typical_time": lab.typical_time}


def lab_fields(lab: Any) -> list[dict[str, Any]]:
    """The fields `dlc config LAB` prints: name, type, default (as text for --set), quick value, help, accepted
    values; `variants`: defaults that depend on the config itself ({case: text}, ppo-gym's)."""
    from dlconcepts.config import fields_of

    rows = []
    for f in fields_of(lab.config):
        variants = {case: shown(values[f.name]) for case, values in lab.variant_defaults.items() if f.name in values}
        rows.append({
            "name": f.name, "type": type_name(f.type), "default": shown(f.default),
            "quick": shown(lab.quick[f.name]) if f.name in lab.quick else None,
            "help": f.help, "accepted": f.accepted(),
            "choices": [shown(c) for c in f.choices] if f.choices is not None else
            (["true", "false"] if f.type is bool else None),
            "variants": variants,
        })
    return rows


def shown(value: Any) -> str:
    """A value as `dlc config` shows it and `--set` takes it: 30,15 · true · none."""
    if isinstance(value, (tuple, list)):
        return ",".join(map(str, value))
    if value is None:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def type_name(tp: Any) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_name(a) for a in args)
    if origin is tuple:
        return "tuple[" + ", ".join("..." if a is Ellipsis else type_name(a) for a in args) + "]"
    if tp is type(None):
        return "None"
    return getattr(tp, "__name__", str(tp))


# ------------------------------------------------------------------------------------------ runs

@dataclass
class RunEntry:
    name: str          # the path inside the runs folder, '/'-separated: 20260101-120000-all/mlp-regression
    kind: str          # lab, train or all
    lab: str           # the lab id; 'train' for dlc train; 'all' for a course run
    status: str        # running, completed, failed, interrupted
    headline: str
    children: list[RunEntry] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "lab": self.lab, "status": self.status,
                "headline": self.headline, "url": f"/runs/{quote(self.name)}",
                "children": [c.as_dict() for c in self.children]}


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def list_runs(root: Path) -> list[RunEntry]:
    """Every run directory in the runs folder, newest first (names start with their time stamp)."""
    if not root.is_dir():
        return []
    entries = []
    for child in sorted(root.iterdir(), key=lambda p: p.name, reverse=True):
        if child.name.startswith(".") or safe_path(root, child.name) is None:
            continue
        entry = describe(root, child.name)
        if entry is not None:
            entries.append(entry)
    return entries


def describe(root: Path, name: str, nested: bool = False) -> RunEntry | None:
    """The run directory `name` inside `root`, or None when it is not one (or not inside). A course run's
    labs are looked for one level down only (`nested`: this is one of them), never deeper."""
    path = safe_path(root, name)
    if path is None or not path.is_dir():
        return None
    name = path.relative_to(root.resolve()).as_posix()
    config, metrics = _read_json(path / "config.json"), _read_json(path / "metrics.json")
    if config.get("command") == "train":
        status = run_status(path) if (path / "metrics.json").is_file() else "interrupted"
        return RunEntry(name, "train", "train", status, str(metrics.get("verdict", "")))
    if "lab" in config or "lab" in metrics:
        lab = str(config.get("lab") or metrics.get("lab"))
        status = run_status(path)
        return RunEntry(name, "lab", lab, status, _headline(path, lab, status, metrics))
    if nested:
        return None
    children = [c for c in (describe(root, f"{name}/{d.name}", nested=True) for d in sorted(path.iterdir())
                            if d.is_dir() and not d.name.startswith(".")) if c is not None and c.kind == "lab"]
    if not children and not isinstance(metrics.get("labs"), list):
        return None
    return RunEntry(name, "all", "all", _course_status(metrics, children), _course_headline(metrics, children),
                    children)


def _headline(path: Path, lab: str, status: str, metrics: dict[str, Any]) -> str:
    if status == "failed":
        return str(metrics.get("error", ""))
    if status == "interrupted":
        return str(metrics.get("message", ""))
    try:
        lines = (path / "log.txt").read_text(encoding="utf-8").splitlines()
    except OSError:
        return ""
    done = re.compile(rf"^{re.escape(lab)}: done in [\d.]+ s: (?P<headline>.*)$")
    for line in reversed(lines):
        match = done.match(line)
        if match:
            return match["headline"]
    return ""


def _course_status(metrics: dict[str, Any], children: list[RunEntry]) -> str:
    labs = metrics.get("labs")
    if not isinstance(labs, list):  # still running, or stopped before its index was final
        return "running" if any(c.status == "running" for c in children) else "interrupted"
    statuses = {e.get("status") for e in labs if isinstance(e, dict)}
    return "interrupted" if "interrupted" in statuses else "failed" if "failed" in statuses else "completed"


def _course_headline(metrics: dict[str, Any], children: list[RunEntry]) -> str:
    labs = metrics.get("labs")
    if isinstance(labs, list):
        ok = sum(1 for e in labs if isinstance(e, dict) and e.get("status") == "ok")
        return f"{ok} of {len(labs)} labs completed"
    return f"{len(children)} labs so far"


@dataclass
class RunDetail:
    entry: RunEntry
    report_html: str
    metrics: dict[str, Any]
    config: dict[str, Any]
    log: str
    files: list[str]

    def as_dict(self) -> dict[str, Any]:
        return {**self.entry.as_dict(), "report_html": self.report_html, "metrics": self.metrics,
                "config": self.config, "log": self.log, "files": [f"/files/{quote(f)}" for f in self.files]}


def run_detail(root: Path, name: str) -> RunDetail | None:
    entry = describe(root, name)
    if entry is None:
        return None
    path = root.resolve() / entry.name
    try:
        report = (path / "report.md").read_text(encoding="utf-8")
    except OSError:
        report = ""
    try:
        log = "\n".join((path / "log.txt").read_text(encoding="utf-8", errors="replace").splitlines()[-LOG_TAIL_LINES:])
    except OSError:
        log = ""
    files = sorted(p.relative_to(root.resolve()).as_posix() for p in path.rglob("*")
                   if p.is_file() and p.suffix in SERVED_SUFFIXES and not any(s.startswith(".") for s in p.parts[-2:])
                   and safe_path(root, p.relative_to(root.resolve()).as_posix()) is not None
                   and (entry.kind != "all" or p.parent == path))
    return RunDetail(entry, render_markdown(report, entry.name) if report else "",
                     _read_json(path / "metrics.json"), _read_json(path / "config.json"), log, files)


# ------------------------------------------------------------------------------------------ Markdown

def _markdown() -> Any:
    from markdown_it import MarkdownIt

    # html off: a report's raw HTML is shown as text, never run (a runs folder may come from anyone).
    return MarkdownIt("commonmark", {"html": False}).enable("table")


def render_markdown(text: str, run_name: str) -> str:
    """A report.md as HTML, its relative links made to work from the server: figures → /files/RUN/figures/x.png,
    a lab's report.md in a course index → /runs/RUN/LAB, other files → /files/..."""
    md = _markdown()
    tokens = md.parse(text)
    for token in tokens:
        for child in token.children or []:
            if child.type == "image":
                child.attrSet("src", _rewrite(str(child.attrGet("src") or ""), run_name, image=True))
            elif child.type == "link_open":
                child.attrSet("href", _rewrite(str(child.attrGet("href") or ""), run_name, image=False))
    return md.renderer.render(tokens, md.options, {})


def _rewrite(url: str, run_name: str, image: bool) -> str:
    parts = urlsplit(url)
    if parts.scheme or parts.netloc or url.startswith(("/", "#")) or not parts.path:
        return url  # absolute, external or an anchor: as it is
    target = posixpath.normpath(posixpath.join(run_name, parts.path))
    if target.startswith("..") or target.startswith("/"):
        return "#"
    if not image and posixpath.basename(target) == "report.md":
        folder = posixpath.dirname(target)
        return f"/runs/{quote(folder)}" if folder else "/runs"
    return f"/files/{quote(target)}"


def flatten(value: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """[("a.b", 1), ...] of nested dicts, for a two-column table; lists stay whole."""
    if isinstance(value, dict):
        rows: list[tuple[str, Any]] = []
        for key, inner in value.items():
            rows += flatten(inner, f"{prefix}.{key}" if prefix else str(key))
        return rows
    return [(prefix, value)]
