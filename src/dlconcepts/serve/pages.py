"""The HTML pages of `dlc serve`, as strings: one small function per page, every value escaped.

No template engine: the pages are few and plain, and a function per page keeps each one readable top to
bottom. The element ids are a contract with the browser tests (tests/serve/test_browser.py) and the
script (static/app.js): #labs, #runs, #report, #metrics, #config, #lab-form, #start, #error, #log,
#progress, #live-metrics. Every page links one stylesheet and one script, both served by the package.
"""

from __future__ import annotations

import json
from html import escape
from typing import Any
from urllib.parse import quote

from dlconcepts.serve.catalog import RunDetail, RunEntry, flatten

# Scripts and styles come from this server only; nothing inline, nothing from elsewhere (see app.py, which
# sends it with every page of this module). img-src allows data: for the Playground's frames.
CONTENT_SECURITY_POLICY = ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                           "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
                           "frame-ancestors 'none'")
CURRENT = ' aria-current="page"'
STATUSES = ("running", "completed", "failed", "interrupted")


def layout(title: str, body: str, *, active: str = "") -> str:
    nav = "".join(
        f'<a href="{href}"{CURRENT if key == active else ""}>{label}</a>'
        for key, href, label in (("course", "/", "Course"), ("runs", "/runs", "Runs"),
                                 ("playground", "/playground", "Playground"))
    )
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)} · dlc</title>
<link rel="stylesheet" href="/static/app.css">
<script src="/static/app.js" defer></script>
</head>
<body>
<header class="top"><a class="brand" href="/">dlconcepts</a><nav>{nav}</nav></header>
<main>
{body}
</main>
<footer>Served by <code>dlc serve</code> from this machine; everything on these pages comes from the package
and your runs folder.</footer>
</body>
</html>
"""


def status_badge(status: str) -> str:
    kind = status if status in STATUSES else "unknown"
    return f'<span class="status status-{kind}" data-status="{escape(status)}">{escape(status)}</span>'


def run_link(name: str, text: str | None = None) -> str:
    return f'<a href="/runs/{escape(quote(name))}">{escape(text if text is not None else name)}</a>'


# ------------------------------------------------------------------------------------------ index

def index_page(labs: list[dict[str, str]], runs: list[RunEntry], runs_dir: str) -> str:
    latest: dict[str, RunEntry] = {}
    for entry in runs:
        for run in [entry, *entry.children]:
            latest.setdefault(run.lab, run)
    rows = []
    for lab in labs:
        last = latest.get(lab["id"])
        last_cell = f"{status_badge(last.status)} {run_link(last.name, _short(last.name))}" if last else ""
        rows.append(
            f'<tr data-lab="{escape(lab["id"])}"><td><a href="/labs/{escape(quote(lab["id"]))}"><code>'
            f'{escape(lab["id"])}</code></a><div class="title">{escape(lab["title"])}</div></td>'
            f'<td>{escape(lab["function"])}</td><td>{escape(lab["loss"])}</td><td>{escape(lab["minimizer"])}</td>'
            f"<td>{last_cell}</td></tr>"
        )
    recent = "".join(f"<li>{status_badge(e.status)} {run_link(e.name)} <span class=\"muted\">{escape(e.lab)}"
                     f"{' · ' + escape(e.headline) if e.headline else ''}</span></li>" for e in runs[:8])
    body = f"""<h1>Deep Learning – Concepts and PyTorch Development</h1>
<p class="lead">Every lab is three steps: a function, a loss, and a minimizer that makes the loss small.
Open a lab to set its config and start it: its log, progress and numbers appear here as it trains, then its
report. The <a href="/playground">Playground</a> trains a small network on a 2-D problem while you change it;
<a href="/runs">Runs</a> lists everything in <code>{escape(runs_dir)}</code>.</p>
<table id="labs" class="labs">
<thead><tr><th>lab</th><th>1. function</th><th>2. loss</th><th>3. minimizer</th><th>latest run</th></tr></thead>
<tbody>
{"".join(rows)}
</tbody>
</table>
<section id="recent-runs">
<h2>Recent runs</h2>
{f'<ul class="runs-list">{recent}</ul>' if recent else '<p class="muted">No runs yet: start a lab above.</p>'}
<p><a href="/runs">All runs</a></p>
</section>"""
    return layout("The course", body, active="course")


def _short(name: str) -> str:
    return name.rsplit("/", 1)[-1]


# ------------------------------------------------------------------------------------------ runs

def runs_page(runs: list[RunEntry], runs_dir: str) -> str:
    rows = []
    for entry in runs:
        rows.append(_run_row(entry, nested=False))
        rows += [_run_row(child, nested=True) for child in entry.children]
    table = (f"""<table id="runs" class="runs">
<thead><tr><th>run</th><th>lab</th><th>status</th><th>headline</th></tr></thead>
<tbody>
{"".join(rows)}
</tbody>
</table>""" if rows else '<table id="runs" class="runs"><tbody></tbody></table>'
             f'<p class="muted">No runs in <code>{escape(runs_dir)}</code> yet.</p>')
    body = f"""<h1>Runs</h1>
<p class="lead">Every run directory in <code>{escape(runs_dir)}</code>, newest first: the labs' runs, the
course runs of <code>dlc run all</code> (their labs below them) and the runs of <code>dlc train</code>.</p>
{table}"""
    return layout("Runs", body, active="runs")


def _run_row(entry: RunEntry, nested: bool) -> str:
    nested_class = ' class="nested"' if nested else ""
    lab = (f'<a href="/labs/{escape(quote(entry.lab))}"><code>{escape(entry.lab)}</code></a>'
           if entry.kind == "lab" else f"<code>{escape('dlc train' if entry.kind == 'train' else 'dlc run all')}</code>")
    return (f'<tr data-run="{escape(entry.name)}" data-kind="{escape(entry.kind)}"'
            f'{nested_class}><td>{run_link(entry.name, _short(entry.name) if nested else None)}</td>'
            f"<td>{lab}</td><td>{status_badge(entry.status)}</td><td>{escape(entry.headline)}</td></tr>")


def run_page(detail: RunDetail, live_job: str | None = None) -> str:
    entry = detail.entry
    crumbs = [run_link(entry.name.rsplit("/", 1)[0])] if "/" in entry.name else []
    live = (f'<p class="notice">This run is in progress: <a href="/labs/{escape(quote(entry.lab))}">watch it live</a>.</p>'
            if live_job else "")
    report = detail.report_html or (f'<p class="muted">No report yet: the run is {escape(entry.status)}.</p>')
    body = f"""<p class="crumbs"><a href="/runs">Runs</a> / {' / '.join(crumbs + [escape(_short(entry.name))])}</p>
<h1>{escape(_short(entry.name))}</h1>
<p>{status_badge(entry.status)} <code>{escape(entry.lab)}</code> {escape(entry.headline)}</p>
{live}
<article id="report" class="report">
{report}
</article>
<section id="metrics">
<h2>Metrics</h2>
{key_value_table(detail.metrics)}
</section>
<section id="config">
<h2>Config</h2>
{key_value_table(detail.config)}
</section>
<section id="log-file">
<h2>Log</h2>
<pre class="log">{escape(detail.log)}</pre>
</section>
<section id="files">
<h2>Files</h2>
<ul>{"".join(f'<li><a href="/files/{escape(quote(f))}">{escape(f)}</a></li>' for f in detail.files)}</ul>
</section>"""
    return layout(entry.name, body, active="runs")


def key_value_table(values: dict[str, Any]) -> str:
    if not values:
        return '<p class="muted">none</p>'
    rows = "".join(f"<tr><th>{escape(key)}</th><td>{escape(_value_text(value))}</td></tr>"
                   for key, value in flatten(values))
    return f'<table class="kv"><tbody>{rows}</tbody></table>'


def _value_text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, str):
        return value
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 400 else text[:400] + " …"


# ------------------------------------------------------------------------------------------ a lab

def lab_page(lab: dict[str, str], fields: list[dict[str, Any]], runs: list[RunEntry], running_job: str | None) -> str:
    rows = []
    for f in fields:
        name = escape(f["name"])
        meaning = f"{f['help']} — accepted: {f['accepted']}"
        if f["variants"]:
            meaning += "; default by case: " + ", ".join(f"{v} ({case})" for case, v in f["variants"].items())
        choices = ""
        if f["choices"]:
            choices = (f'<datalist id="choices-{name}">'
                       + "".join(f'<option value="{escape(c)}"></option>' for c in f["choices"]) + "</datalist>")
        quick = escape(f["quick"]) if f["quick"] is not None else ""
        datalist = f' list="choices-{name}"' if choices else ""
        rows.append(
            f'<tr><th><label for="field-{name}">{name}</label></th>'
            f'<td><input id="field-{name}" name="{name}" value="{escape(f["default"])}" data-field '
            f'data-default="{escape(f["default"])}" title="{escape(meaning)}" autocomplete="off" spellcheck="false"'
            f'{datalist}>{choices}</td>'
            f'<td class="quick">{quick}</td><td class="accepted">{escape(f["accepted"])}</td>'
            f'<td class="meaning">{escape(f["help"])}</td></tr>'
        )
    recent = "".join(f"<li>{status_badge(e.status)} {run_link(e.name)} <span class=\"muted\">{escape(e.headline)}</span></li>"
                     for e in runs[:10])
    lab_id = escape(lab["id"])
    body = f"""<p class="crumbs"><a href="/">Course</a> / <code>{lab_id}</code></p>
<h1>{escape(lab["title"])} <code>{lab_id}</code></h1>
<dl class="steps">
<dt>1. function</dt><dd>{escape(lab["function"])}</dd>
<dt>2. loss</dt><dd>{escape(lab["loss"])}</dd>
<dt>3. minimizer</dt><dd>{escape(lab["minimizer"])}</dd>
<dt>data</dt><dd>{escape(lab["data"])}</dd>
<dt>typical time</dt><dd>{escape(lab["typical_time"])}</dd>
</dl>
<form id="lab-form" data-lab="{lab_id}" data-job="{escape(running_job or '')}" autocomplete="off">
<p class="muted">The same keys as <code>dlc config {lab_id}</code>. A value you change is passed as
<code>--set key=value</code> and checked as <code>dlc run</code> checks it; the others keep their defaults, or
their quick values in quick mode.</p>
<table class="fields">
<thead><tr><th>key</th><th>value</th><th>quick</th><th>accepted</th><th>meaning</th></tr></thead>
<tbody>
{"".join(rows)}
</tbody>
</table>
<div class="run-options">
<label><input id="quick" name="quick" type="checkbox"> quick mode (seconds; the same code paths)</label>
<label for="seed">seed</label> <input id="seed" name="seed" inputmode="numeric" placeholder="0" size="8" autocomplete="off">
<button id="start" type="submit">Start</button>
<button id="stop" type="button" disabled>Stop</button>
<span id="job-status" class="status" data-status=""></span>
</div>
<p id="error" class="error" role="alert"></p>
</form>
<section id="live" class="live">
<h2>Live</h2>
<div class="progress-line"><progress id="progress" max="1" value="0"></progress> <span id="progress-text"></span></div>
<div id="live-metrics" class="live-metrics"></div>
<pre id="log" class="log" aria-live="polite"></pre>
</section>
<article id="report" class="report"></article>
<section id="lab-runs">
<h2>Runs of this lab</h2>
{f'<ul class="runs-list">{recent}</ul>' if recent else '<p class="muted">None yet.</p>'}
</section>"""
    return layout(lab["title"], body, active="course")


# ------------------------------------------------------------------------------------------ errors

def not_found_page(message: str) -> str:
    return layout("Not found", f'<h1>Not found</h1><p class="error">{escape(message)}</p><p><a href="/">The course</a></p>')
