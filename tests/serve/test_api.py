"""`dlc serve`'s HTTP API and pages, in-process (Starlette's TestClient), and the `dlc serve` command itself
with a real uvicorn in a subprocess: every endpoint, the config form against `dlc config`, validation with
the CLI's own messages, one run per lab, the event stream, and the security cases — path traversal (404),
a foreign Origin (403), a foreign Host (403), the warning for another --host, a port in use (exit 2).

Most job tests run a stand-in for `python -m dlconcepts` (fake_dlc.py: a second, not several); one runs the
real `mlp-classification --quick` from start to report.
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import time
import warnings
from html import escape
from html.parser import HTMLParser
from pathlib import Path

import pytest

pytest.importorskip("httpx")
with warnings.catch_warnings():  # Starlette 1.x would rather have httpx2 behind its TestClient; httpx works
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient  # noqa: E402

from dlconcepts.cli import main  # noqa: E402
from dlconcepts.config import fields_of  # noqa: E402
from dlconcepts.labs import all_labs  # noqa: E402
from dlconcepts.serve import create_app  # noqa: E402
from dlconcepts.serve.catalog import shown  # noqa: E402
from dlconcepts.serve.jobs import JobManager, parse_progress  # noqa: E402
from dlconcepts.serve.security import LOOPBACK_NAMES, safe_path  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")

FAKE_DLC = Path(__file__).with_name("fake_dlc.py")
LABS = all_labs()
REAL_RUN_S = 180    # a real quick mlp-classification from the request to its report (seconds on an idle machine)
SERVER_START_S = 90  # `dlc serve` imports torch and every lab
SERVER_STOP_S = 30


# ------------------------------------------------------------------------------------------ fixtures

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 16


def write_run(root: Path, name: str, lab: str, status: str = "completed", headline: str = "a headline",
              report: str | None = None, **metrics) -> Path:
    """A run directory as labs.runner writes it."""
    path = root / name
    (path / "figures").mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"lab": lab, "quick": True, "config": {"lr": 0.01, "hidden": [3, 2]}}))
    body = {"lab": lab, "status": status, **metrics}
    if status == "running":
        body.update(pid=os.getpid(), host=socket.gethostname())
    (path / "metrics.json").write_text(json.dumps(body))
    (path / "log.txt").write_text(f"{lab}: title  ->  {path}\n{lab}: done in 1.0 s: {headline}\n")
    (path / "figures" / "curves.png").write_bytes(PNG)
    (path / "report.md").write_text(report if report is not None else
                                    f"# {lab}\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n![curves](figures/curves.png)\n")
    return path


@pytest.fixture
def runs(tmp_path):
    """A runs folder with one run of each kind and state, and things that are not runs."""
    root = tmp_path / "runs"
    root.mkdir()
    write_run(root, "20260101-100000-mlp-regression", "mlp-regression", headline="RMSE 0.5%", seconds=1.0, rmse=0.5)
    write_run(root, "20260101-110000-linear-gd", "linear-gd", status="failed", error="the loss became NaN at epoch 3")
    write_run(root, "20260101-120000-backprop", "backprop", status="running")
    dead = write_run(root, "20260101-130000-matrix", "matrix", status="running")
    (dead / "metrics.json").write_text(json.dumps({"lab": "matrix", "status": "running", "pid": 2**22 + 12345,
                                                   "host": socket.gethostname()}))
    course = root / "20260101-140000-all"
    write_run(course, "mlp-regression", "mlp-regression", headline="fine")
    write_run(course, "overfitting", "overfitting", headline="too wiggly")
    (course / "report.md").write_text("# The course\n\n| lab | status |\n|---|---|\n"
                                      "| [mlp-regression](mlp-regression/report.md) | ok |\n"
                                      "| [overfitting](overfitting/report.md) | ok |\n")
    (course / "metrics.json").write_text(json.dumps({"labs": [{"id": "mlp-regression", "status": "ok"},
                                                              {"id": "overfitting", "status": "ok"}], "seconds": 3}))
    train = root / "20260101-150000-train"
    (train / "figures").mkdir(parents=True)
    (train / "config.json").write_text(json.dumps({"command": "train", "data": "table.csv", "target": "y"}))
    (train / "metrics.json").write_text(json.dumps({"task": "regression", "verdict": "the MLP beats linear",
                                                    "seconds": 2.0}))
    (train / "report.md").write_text("# dlc train\n\nThe MLP beats linear.\n")
    (root / "notes").mkdir()  # not a run
    (root / "notes" / "todo.txt").write_text("not a run")
    (root / "loose.txt").write_text("a file")
    return root


@pytest.fixture
def fake_jobs(runs):
    return JobManager(runs, command=[sys.executable, str(FAKE_DLC)], stop_timeout=5)


@pytest.fixture
def client(runs, fake_jobs):
    with TestClient(create_app(runs, jobs=fake_jobs)) as test_client:
        yield test_client


class Elements(HTMLParser):
    """Every start tag with its attributes, and the text inside elements with an id."""

    def __init__(self, text: str):
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, {k: v or "" for k, v in attrs}))

    def find(self, tag: str, **attrs) -> list[dict[str, str]]:
        return [a for t, a in self.tags if t == tag and all(a.get(k.replace("_", "-")) == v for k, v in attrs.items())]


def section(page: str, element_id: str) -> str:
    """The HTML from the element with that id to its closing tag (sections here are not nested in themselves)."""
    match = re.search(rf'<(\w+)[^>]*\bid="{element_id}"', page)
    assert match, f"no #{element_id}"
    end = page.index(f"</{match[1]}>", match.end())
    return page[match.start():end]


def cli_error(capsys, *args: str) -> str:
    """The one line `dlc ARGS` prints on stderr for a refused command, without its 'dlc: error: '."""
    capsys.readouterr()
    assert main(list(args)) == 2
    line = capsys.readouterr().err.strip()
    assert "\n" not in line and line.startswith("dlc: error: ")
    return line.removeprefix("dlc: error: ")


def events_of(text: str) -> list[tuple[int, str, str]]:
    """(id, event, data) of a server-sent-events body."""
    out = []
    for block in text.strip().split("\n\n"):
        fields = {"data": []}
        for line in block.splitlines():
            if line.startswith(":"):
                continue
            key, _, value = line.partition(": ")
            if key == "data":
                fields["data"].append(value)
            else:
                fields[key] = value
        if "event" in fields:
            out.append((int(fields["id"]), fields["event"], "\n".join(fields["data"])))
    return out


def wait_for_job(client: TestClient, job: str, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        state = client.get(f"/api/jobs/{job}").json()
        if state["status"] != "running":
            return state
        assert time.monotonic() < deadline, f"job {job} still running after {timeout} s: {state}"
        time.sleep(0.1)


# ------------------------------------------------------------------------------------------ the course

def test_index_lists_every_lab_with_its_three_steps_and_links(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    html = Elements(page.text)
    assert [a["data-lab"] for a in html.find("tr") if "data-lab" in a] == list(LABS)
    labs_table = section(page.text, "labs")
    for lab in LABS.values():
        assert f'href="/labs/{lab.id}"' in labs_table
        for _, step in lab.three_steps():
            assert escape(step) in labs_table
    assert html.find("a", href="/playground") and html.find("a", href="/runs")
    assert html.find("link", href="/static/app.css") and html.find("script", src="/static/app.js")
    assert "20260101-100000-mlp-regression" in page.text  # a recent run


def test_api_labs_is_the_registry(client):
    answer = client.get("/api/labs").json()
    assert [a["id"] for a in answer] == list(LABS)
    for entry, lab in zip(answer, LABS.values()):
        steps = [text for _, text in lab.three_steps()]
        assert entry == {"id": lab.id, "title": lab.title, "function": steps[0], "loss": steps[1],
                         "minimizer": steps[2]}


@pytest.mark.parametrize("lab_id", list(LABS))
def test_the_form_has_the_fields_dlc_config_prints(client, lab_id, capsys):
    lab = LABS[lab_id]
    infos = fields_of(lab.config)
    api = client.get(f"/api/labs/{lab_id}/config").json()
    assert [f["name"] for f in api] == [i.name for i in infos]
    for row, info in zip(api, infos):
        assert set(row) >= {"name", "type", "default", "quick", "help", "accepted"}
        assert row["help"] == info.help and row["accepted"] == info.accepted()
    # The same rows `dlc config LAB` prints: key, default (per case where the lab has variants), quick, accepted.
    capsys.readouterr()
    assert main(["config", lab_id]) == 0
    printed = capsys.readouterr().out
    for row in api:
        line = next(l for l in printed.splitlines() if l.split() and l.split()[0] == row["name"])
        assert row["accepted"] in line and (row["default"] in line or row["variants"])
        if row["name"] in lab.quick:
            assert row["quick"] == shown(lab.quick[row["name"]]) and str(lab.quick[row["name"]]) in line

    page = client.get(f"/labs/{lab_id}")
    assert page.status_code == 200
    form = Elements(section(page.text, "lab-form"))
    inputs = {a["name"]: a for a in form.find("input") if "data-field" in a}
    assert list(inputs) == [row["name"] for row in api]
    for row in api:
        assert inputs[row["name"]]["value"] == row["default"]
        assert row["help"] in inputs[row["name"]]["title"] and row["accepted"] in inputs[row["name"]]["title"]
    assert form.find("input", name="quick", type="checkbox") and form.find("input", name="seed")
    assert form.find("button", id="start")
    html = Elements(page.text)
    for element_id in ("error", "log", "progress", "live-metrics", "report"):
        assert any(a.get("id") == element_id for _, a in html.tags), element_id


def test_a_lab_page_with_variant_defaults_shows_them(client):
    fields = {f["name"]: f for f in client.get("/api/labs/ppo-gym/config").json()}
    lab = LABS["ppo-gym"]
    for case, values in lab.variant_defaults.items():
        for key in values:
            assert case in fields[key]["variants"]


@pytest.mark.parametrize("method, url", [
    ("GET", "/labs/no-such-lab"), ("GET", "/api/labs/no-such-lab/config"), ("POST", "/api/labs/no-such-lab/runs"),
    ("POST", "/api/labs/all/runs"), ("GET", "/api/jobs/nope"), ("GET", "/api/jobs/nope/events"),
    ("POST", "/api/jobs/nope/stop"), ("GET", "/no/such/page"), ("GET", "/api/no-such-endpoint"),
])
def test_unknown_labs_jobs_and_pages_are_404(client, method, url):
    answer = client.request(method, url, json={} if method == "POST" else None)
    assert answer.status_code == 404
    if url.startswith("/api/"):
        assert answer.json()["error"]
    else:
        assert "Not found" in answer.text


def test_static_files_are_the_packages_own(client):
    for name, kind in (("app.js", "javascript"), ("app.css", "text/css")):
        answer = client.get(f"/static/{name}")
        assert answer.status_code == 200 and kind in answer.headers["content-type"]
    assert client.get("/static/../security.py").status_code == 404
    assert client.get("/static/%2e%2e/security.py").status_code == 404
    # Nothing is loaded from elsewhere: every src/href of a page is local.
    for url in ("/", "/runs", "/labs/mlp-classification", "/runs/20260101-100000-mlp-regression"):
        page = client.get(url).text
        for ref in re.findall(r'(?:src|href)="([^"]*)"', page):
            assert ref.startswith("/") and not ref.startswith("//"), (url, ref)


# ------------------------------------------------------------------------------------------ starting a run

@pytest.mark.parametrize("values, seed, cli_args", [
    ({"lr": "-1"}, None, ["--set", "lr=-1"]),
    ({"lrr": "0.1"}, None, ["--set", "lrr=0.1"]),
    ({"hidden": "30,x"}, None, ["--set", "hidden=30,x"]),
    ({"epochs": "0"}, None, ["--set", "epochs=0"]),
    ({"activation": "relux"}, None, ["--set", "activation=relux"]),
    ({}, "abc", ["--seed", "abc"]),
    ({"lr": -1}, None, ["--set", "lr=-1"]),  # a JSON number is the text --set would get
])
def test_a_bad_value_is_refused_with_the_clis_own_message(client, runs, capsys, values, seed, cli_args):
    before = sorted(p.name for p in runs.iterdir())
    answer = client.post("/api/labs/mlp-classification/runs", json={"quick": True, "seed": seed, "values": values})
    assert answer.status_code == 400
    assert answer.json() == {"error": cli_error(capsys, "run", "mlp-classification", "--quick", *cli_args)}
    assert client.get("/api/jobs").json() == []  # nothing started
    assert sorted(p.name for p in runs.iterdir()) == before  # nothing written


@pytest.mark.parametrize("body", [
    b"not json", b"[1, 2]", b'{"quick": "yes"}', b'{"seed": 1.5}', b'{"values": [1]}', b'{"values": {"lr": {}}}',
    b'{"quick": true, "epochs": 3}',
])
def test_a_malformed_start_request_is_400(client, body):
    answer = client.post("/api/labs/mlp-classification/runs", content=body, headers={"content-type": "application/json"})
    assert answer.status_code == 400 and answer.json()["error"]
    assert client.get("/api/jobs").json() == []


def test_a_run_streams_its_log_progress_metrics_and_report(client, runs):
    answer = client.post("/api/labs/mlp-classification/runs", json={"quick": True, "seed": 4, "values": {"lr": "0.01"}})
    assert answer.status_code == 201
    job = answer.json()["job"]
    assert answer.json()["events"] == f"/api/jobs/{job}/events"
    stream = client.get(f"/api/jobs/{job}/events")  # the stream ends with the run's `done`
    assert stream.headers["content-type"].startswith("text/event-stream")
    events = events_of(stream.text)
    kinds = [kind for _, kind, _ in events]
    assert kinds[0] == "status" and kinds[-1] == "done" and "metrics" in kinds
    logs = [data for _, kind, data in events if kind == "log"]
    assert logs[0].startswith("mlp-classification: a fake run  ->  ") and "  1. function: f" in logs
    progress = [json.loads(data) for _, kind, data in events if kind == "progress"]
    assert progress and progress[-1]["desc"] == "train" and progress[-1]["total"] == 10
    assert progress[-1]["n"] == 10 and progress[-1]["postfix"] == {"loss": "0.4"}
    done = json.loads(events[-1][2])
    run = done["run"]
    assert done == {"status": "completed", "run": run, "report": f"/runs/{run}", "returncode": 0, "error": None}
    assert (runs / run / "report.md").is_file()
    # What the job ran: the CLI's arguments, checked as the CLI checks them.
    config = json.loads((runs / run / "config.json").read_text())
    assert config["argv"] == ["run", "mlp-classification", f"--out={runs.resolve()}", "--quick", "--seed=4",
                              "--set=lr=0.01"]
    state = client.get(f"/api/jobs/{job}").json()
    assert state["status"] == "completed" and state["run"] == run and state["returncode"] == 0
    assert [j["job"] for j in client.get("/api/jobs").json()] == [job]
    # A late subscriber gets the whole run again (a bar's states folded into its newest); Last-Event-ID resumes
    # after an event; after the last one there is nothing new: 204, which ends an EventSource's reconnecting.
    replay = events_of(client.get(f"/api/jobs/{job}/events").text)
    assert set(replay) <= set(events)
    assert [e for e in replay if e[1] != "progress"] == [e for e in events if e[1] != "progress"]
    middle = replay[len(replay) // 2][0]
    assert events_of(client.get(f"/api/jobs/{job}/events", headers={"Last-Event-ID": str(middle)}).text) == \
        [e for e in replay if e[0] > middle]
    assert client.get(f"/api/jobs/{job}/events", headers={"Last-Event-ID": str(events[-1][0])}).status_code == 204
    page = client.get(done["report"])
    assert page.status_code == 200 and f'src="/files/{run}/figures/curve.png"' in section(page.text, "report")
    assert client.get(f"/files/{run}/figures/curve.png").headers["content-type"] == "image/png"
    assert client.get(f"/api/runs/{run}").json()["report_html"].startswith("<h1>A fake run</h1>")
    assert client.post(f"/api/jobs/{job}/stop").status_code == 409  # not running any more


def test_one_run_per_lab_a_second_start_is_409_and_stop_interrupts(client, monkeypatch):
    monkeypatch.setenv("FAKE_DLC_MODE", "hang")
    first = client.post("/api/labs/mlp-classification/runs", json={"quick": True})
    assert first.status_code == 201
    job = first.json()["job"]
    second = client.post("/api/labs/mlp-classification/runs", json={"quick": True})
    assert second.status_code == 409
    message = second.json()["error"]
    assert "\n" not in message and f"lab 'mlp-classification' is already running as job {job}" in message
    other = client.post("/api/labs/mlp-regression/runs", json={"quick": True})  # another lab may run meanwhile
    assert other.status_code == 201
    lab_page = client.get("/labs/mlp-classification").text
    assert f'data-job="{job}"' in lab_page  # the page re-attaches to the running job
    deadline = time.monotonic() + 30
    while client.get(f"/api/jobs/{job}").json()["run"] is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    stopped = client.post(f"/api/jobs/{job}/stop")
    assert stopped.status_code == 202 and stopped.json()["job"] == job
    state = wait_for_job(client, job, 30)
    assert state["status"] == "interrupted" and state["returncode"] == 143
    assert state["error"] == "stopped by SIGTERM"
    done = events_of(client.get(f"/api/jobs/{job}/events").text)[-1]
    assert done[1] == "done" and json.loads(done[2])["status"] == "interrupted"
    # Now that it has ended, the lab can start again.
    monkeypatch.setenv("FAKE_DLC_MODE", "quick")
    again = client.post("/api/labs/mlp-classification/runs", json={"quick": True})
    assert again.status_code == 201
    wait_for_job(client, again.json()["job"], 30)


def test_a_run_that_fails_before_its_directory_says_why(client, monkeypatch):
    monkeypatch.setenv("FAKE_DLC_MODE", "fail")
    job = client.post("/api/labs/mlp-classification/runs", json={}).json()["job"]
    state = wait_for_job(client, job, 30)
    assert state == {**state, "status": "failed", "run": None, "returncode": 2,
                     "error": "a refusal the CLI makes after starting"}


def test_shutdown_ends_every_job_and_what_it_started(runs, monkeypatch):
    """SIGTERM to the job's process group, SIGKILL after the timeout: nothing is left running."""
    monkeypatch.setenv("FAKE_DLC_MODE", "stubborn")
    jobs = JobManager(runs, command=[sys.executable, str(FAKE_DLC)], stop_timeout=1)
    job = jobs.start("mlp-classification", ["run", "mlp-classification", f"--out={runs}"])
    deadline = time.monotonic() + 30
    while not any(e.data.startswith("grandchild ") for e in job.events):
        assert time.monotonic() < deadline, [e.data for e in job.events]
        time.sleep(0.05)
    grandchild = int(next(e.data for e in job.events if e.data.startswith("grandchild ")).split()[1])
    started = time.monotonic()
    jobs.shutdown()
    assert time.monotonic() - started < 15
    assert job.process.poll() is not None and job.status == "interrupted"
    deadline = time.monotonic() + 5
    while _alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(grandchild)
    with pytest.raises(Exception, match="stopping"):
        jobs.start("mlp-classification", ["run", "mlp-classification", f"--out={runs}"])


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def test_tqdm_lines_become_progress():
    assert parse_progress("epochs:  40%|████      | 4/10 [00:01<00:02,  3.21epoch/s, train_loss=0.5, valid_loss=0.6]") == {
        "desc": "epochs", "n": 4, "total": 10, "percent": 40, "elapsed": "00:01", "remaining": "00:02",
        "rate": "3.21epoch/s", "postfix": {"train_loss": "0.5", "valid_loss": "0.6"}}
    assert parse_progress("100%|##########| 2.05k/2.05k [00:03<00:00, 650step/s]")["n"] == 2050
    assert parse_progress("  device: cpu (auto: no GPU found); seed 0") is None


def test_a_real_quick_lab_runs_from_the_api_to_its_report(runs):
    """`python -m dlconcepts run mlp-classification --quick` as the server starts it: log lines, then the report."""
    with TestClient(create_app(runs)) as client:
        answer = client.post("/api/labs/mlp-classification/runs", json={"quick": True, "seed": 7})
        assert answer.status_code == 201, answer.text
        job = answer.json()["job"]
        state = wait_for_job(client, job, REAL_RUN_S)
        events = events_of(client.get(f"/api/jobs/{job}/events").text)
        assert state["status"] == "completed", [d for _, k, d in events if k == "log"][-5:]
        logs = [data for _, kind, data in events if kind == "log"]
        assert logs[0].startswith("mlp-classification: ") and any("device: cpu" in line for line in logs)
        assert any(line.startswith("mlp-classification: done in ") for line in logs)
        assert json.loads(events[-1][2])["status"] == "completed"
        metrics = json.loads(next(d for _, k, d in events if k == "metrics"))
        assert metrics["status"] == "completed" and "fresh_accuracy" in metrics
        config = json.loads((runs / state["run"] / "config.json").read_text())
        assert config["quick"] is True and config["seeds"]["torch"] == 7
        report = section(client.get(f"/runs/{state['run']}").text, "report")
        figures = re.findall(r'<img src="([^"]+)"', report)
        assert len(figures) >= 3
        for src in figures:
            image = client.get(src)
            assert image.status_code == 200 and image.content[:8] == b"\x89PNG\r\n\x1a\n"


# ------------------------------------------------------------------------------------------ runs

def test_the_runs_page_lists_every_kind_of_run_newest_first(client):
    page = client.get("/runs")
    rows = [(a["data-run"], a.get("data-kind")) for a in Elements(section(page.text, "runs")).find("tr") if "data-run" in a]
    assert rows == [
        ("20260101-150000-train", "train"),
        ("20260101-140000-all", "all"),
        ("20260101-140000-all/mlp-regression", "lab"),
        ("20260101-140000-all/overfitting", "lab"),
        ("20260101-130000-matrix", "lab"),
        ("20260101-120000-backprop", "lab"),
        ("20260101-110000-linear-gd", "lab"),
        ("20260101-100000-mlp-regression", "lab"),
    ]
    listed = {e["name"]: e for e in client.get("/api/runs").json()}
    assert {name: e["status"] for name, e in listed.items()} == {
        "20260101-150000-train": "completed", "20260101-140000-all": "completed",
        "20260101-130000-matrix": "interrupted",  # says running, but its process is gone
        "20260101-120000-backprop": "running", "20260101-110000-linear-gd": "failed",
        "20260101-100000-mlp-regression": "completed"}
    assert listed["20260101-100000-mlp-regression"]["headline"] == "RMSE 0.5%"
    assert listed["20260101-110000-linear-gd"]["headline"] == "the loss became NaN at epoch 3"
    assert listed["20260101-150000-train"]["headline"] == "the MLP beats linear"
    assert [c["name"] for c in listed["20260101-140000-all"]["children"]] == [
        "20260101-140000-all/mlp-regression", "20260101-140000-all/overfitting"]
    for status in ("completed", "failed", "running", "interrupted"):
        assert f'data-status="{status}"' in page.text


def test_a_run_page_shows_its_report_metrics_and_config(client):
    name = "20260101-100000-mlp-regression"
    page = client.get(f"/runs/{name}")
    assert page.status_code == 200
    report = section(page.text, "report")
    assert "<table>" in report and f'<img src="/files/{name}/figures/curves.png" alt="curves"' in report
    metrics, config = section(page.text, "metrics"), section(page.text, "config")
    assert "<th>rmse</th><td>0.5</td>" in metrics and "<th>status</th><td>completed</td>" in metrics
    assert "<th>config.lr</th><td>0.01</td>" in config and "<th>config.hidden</th><td>[3, 2]</td>" in config
    detail = client.get(f"/api/runs/{name}").json()
    assert detail["status"] == "completed" and detail["metrics"]["rmse"] == 0.5
    assert f"/files/{name}/figures/curves.png" in detail["files"]


def test_a_course_index_links_to_its_labs_and_a_train_run_shows_its_report(client):
    page = client.get("/runs/20260101-140000-all")
    report = section(page.text, "report")
    assert 'href="/runs/20260101-140000-all/mlp-regression"' in report
    nested = client.get("/runs/20260101-140000-all/overfitting")
    assert nested.status_code == 200 and 'src="/files/20260101-140000-all/overfitting/figures/curves.png"' in nested.text
    train = client.get("/runs/20260101-150000-train")
    assert train.status_code == 200 and "The MLP beats linear." in section(train.text, "report")


def test_raw_html_in_a_report_is_shown_not_run(client, runs):
    write_run(runs, "20260102-000000-backprop", "backprop",
              report="# x\n\n<script>alert(1)</script>\n\n[a](javascript:alert(1))\n")
    report = section(client.get("/runs/20260102-000000-backprop").text, "report")
    assert "<script>" not in report and "&lt;script&gt;" in report
    assert 'href="javascript:' not in report  # markdown-it refuses the link; its text stays text


def test_files_inside_the_runs_folder_are_served_by_kind(client):
    name = "20260101-100000-mlp-regression"
    assert client.get(f"/files/{name}/figures/curves.png").content == PNG
    assert client.get(f"/files/{name}/metrics.json").json()["rmse"] == 0.5
    assert client.get(f"/files/{name}/report.md").headers["content-type"].startswith("text/markdown")
    assert client.get(f"/files/{name}/log.txt").status_code == 200
    assert client.get(f"/files/{name}/nothing.png").status_code == 404


@pytest.mark.parametrize("url", ["/runs/20260101-100000-mlp-regression/figures", "/runs/notes", "/runs/loose.txt",
                                 "/runs/no-such-run", "/api/runs/notes", "/runs/"])
def test_what_is_not_a_run_directory_is_404(client, url):
    assert client.get(url).status_code == 404


# ------------------------------------------------------------------------------------------ security

@pytest.fixture
def outside(tmp_path, runs):
    """A secret next to the runs folder, and symlinks inside the runs folder that point at it."""
    secret = tmp_path / "secret.txt"
    secret.write_text("the student's secret")
    run = runs / "20260101-100000-mlp-regression"
    (run / "leak.txt").symlink_to(secret)
    (run / "outside").symlink_to(tmp_path, target_is_directory=True)
    (runs / "20260103-000000-linked").symlink_to(tmp_path, target_is_directory=True)
    return secret


@pytest.mark.parametrize("url", [
    "/files/../../etc/passwd",                      # httpx normalizes this one to /etc/passwd: 404 by routing
    "/files/%2e%2e/%2e%2e/etc/passwd",              # percent-encoded dots reach the handler as '..'
    "/files/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "/files/..%2f..%2fsecret.txt",
    "/files/%2e%2e/secret.txt",
    "/files//etc/passwd",                           # absolute
    "/files/%2fetc%2fpasswd",
    "/files/20260101-100000-mlp-regression/..%2f..%2fsecret.txt",
    "/files/20260101-100000-mlp-regression/leak.txt",          # a symlink to a file outside
    "/files/20260101-100000-mlp-regression/outside/secret.txt",  # a symlink to a folder outside
    "/files/20260103-000000-linked/secret.txt",
    "/files/20260101-100000-mlp-regression/model.pt",           # not a kind of file that is served
    "/files/20260101-100000-mlp-regression/..%5c..%5csecret.txt",
    "/files/20260101-100000-mlp-regression/%00.png",
    "/runs/%2e%2e", "/runs/%2e%2e/%2e%2e/etc", "/api/runs/%2e%2e", "/runs/20260103-000000-linked",
    "/api/runs/20260101-100000-mlp-regression/outside",
])
def test_no_path_outside_the_runs_folder_can_be_read(client, outside, url):
    answer = client.get(url)
    assert answer.status_code == 404
    assert "secret" not in answer.text.replace("secret.txt", "")


def test_the_listing_ignores_a_symlink_out_of_the_runs_folder(client, outside):
    assert "20260103-000000-linked" not in {e["name"] for e in client.get("/api/runs").json()}


def test_safe_path(tmp_path, outside):
    root = tmp_path / "runs"
    inside = root / "20260101-100000-mlp-regression" / "metrics.json"
    assert safe_path(root, "20260101-100000-mlp-regression/metrics.json") == inside.resolve()
    assert safe_path(root, "20260101-100000-mlp-regression/./figures/../metrics.json") is None  # '..' refused
    for bad in ("", "../secret.txt", str(outside), "/etc/passwd", "a/../../secret.txt", "..", ".",
                "20260101-100000-mlp-regression/leak.txt", "20260101-100000-mlp-regression/outside/secret.txt",
                "x\x00y", "..\\secret.txt", ".hidden", "missing.png"):
        assert safe_path(root, bad) is None, bad


def test_a_raw_dot_dot_path_is_404(runs, outside):
    """What curl --path-as-is sends: the raw path reaches the app unnormalized."""
    app = create_app(runs, jobs=JobManager(runs))
    sent = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    import asyncio
    for path in ("/files/../secret.txt", "/files/../../etc/passwd", "/runs/../runs"):
        sent.clear()
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
                 "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
                 "headers": [(b"host", b"testserver")], "client": ("127.0.0.1", 1), "server": ("testserver", 80)}
        asyncio.run(app(scope, receive, send))
        assert sent[0]["status"] == 404, path


@pytest.mark.parametrize("headers", [
    {"Origin": "http://evil.example"},
    {"Origin": "http://testserver:8080"},   # another port is another origin
    {"Origin": "https://testserver"},       # another scheme too
    {"Origin": "null"},                     # a sandboxed frame or a file:// page
    {"Referer": "http://evil.example/page.html"},
])
@pytest.mark.parametrize("url", ["/api/labs/mlp-classification/runs", "/api/jobs/nope/stop",
                                 "/api/playground/sessions"])
def test_a_state_changing_request_from_another_origin_is_403(client, headers, url):
    answer = client.post(url, json={"quick": True}, headers=headers)
    assert answer.status_code == 403 and "another site" in answer.json()["error"]
    assert client.get("/api/jobs").json() == []


def test_the_pages_own_origin_and_plain_clients_are_allowed(client):
    body = {"quick": True, "values": {"lr": "-1"}}  # refused by validation, so nothing starts: 400, not 403
    for headers in ({"Origin": "http://testserver"}, {"Referer": "http://testserver/labs/mlp-classification"}, {}):
        assert client.post("/api/labs/mlp-classification/runs", json=body, headers=headers).status_code == 400
    assert client.get("/api/labs", headers={"Origin": "http://evil.example"}).status_code == 200  # reads are fine


def test_on_the_loopback_only_its_own_names_are_answered(runs, fake_jobs):
    """DNS rebinding: evil.example resolving to 127.0.0.1 must not read runs or start jobs."""
    app = create_app(runs, jobs=fake_jobs, allowed_hosts=set(LOOPBACK_NAMES))
    with TestClient(app, base_url="http://127.0.0.1:8000") as local:
        assert local.get("/").status_code == 200
        assert local.get("/", headers={"Host": "localhost:8000"}).status_code == 200
        assert local.get("/", headers={"Host": "evil.example:8000"}).status_code == 403
        assert local.post("/api/labs/mlp-classification/runs", json={"quick": True},
                          headers={"Host": "evil.example:8000", "Origin": "http://evil.example:8000"}).status_code == 403


def test_pages_cannot_be_framed_and_load_only_their_own_scripts(client):
    page = client.get("/labs/mlp-classification")
    assert page.headers["x-frame-options"] == "DENY" and page.headers["x-content-type-options"] == "nosniff"
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert client.get("/api/labs").headers["x-frame-options"] == "DENY"


# ------------------------------------------------------------------------------------------ dlc serve

def _start_server(runs: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "dlconcepts", "serve", "--runs", str(runs), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)


def _read_line(stream, timeout: float) -> str:
    ready, _, _ = select.select([stream], [], [], timeout)
    assert ready, f"nothing printed within {timeout} s"
    return stream.readline()


def _stop(server: subprocess.Popen, sig: int = signal.SIGINT) -> tuple[int, str, str]:
    if server.poll() is None:
        server.send_signal(sig)
    try:
        out, err = server.communicate(timeout=SERVER_STOP_S)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        out, err = server.communicate()
        pytest.fail(f"dlc serve did not stop within {SERVER_STOP_S} s of {signal.Signals(sig).name}: {err}")
    return server.returncode, out, err


def _raw_get(port: int, path: str, host: str = "127.0.0.1") -> tuple[int, bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        conn.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    return int(data.split(b" ", 2)[1]), data


def test_dlc_serve_answers_on_the_loopback_and_ctrl_c_stops_it_and_its_runs(tmp_path, outside):
    runs = tmp_path / "runs"
    server = _start_server(runs, "--port", "0")
    try:
        line = _read_line(server.stdout, SERVER_START_S)
        match = re.match(r"dlc serve: http://127\.0\.0\.1:(\d+)/", line)
        assert match, line
        port = int(match[1])
        deadline = time.monotonic() + SERVER_START_S
        while True:
            try:
                status, body = _raw_get(port, "/")
                break
            except OSError:
                assert time.monotonic() < deadline and server.poll() is None
                time.sleep(0.2)
        assert status == 200 and b'id="labs"' in body
        assert _raw_get(port, "/files/../secret.txt")[0] == 404          # the raw path, as curl --path-as-is sends it
        assert _raw_get(port, "/files/../../../../etc/passwd")[0] == 404
        assert _raw_get(port, "/", host="evil.example")[0] == 403        # DNS rebinding
        # A long run, then Ctrl-C: the server ends it (SIGTERM: it checkpoints) and exits 0.
        import httpx
        answer = httpx.post(f"http://127.0.0.1:{port}/api/labs/mlp-classification/runs", timeout=60,
                            json={"values": {"epochs": "100000", "patience": "0"}})
        assert answer.status_code == 201, answer.text
        job = answer.json()["job"]
        deadline = time.monotonic() + SERVER_START_S
        while (state := httpx.get(f"http://127.0.0.1:{port}/api/jobs/{job}").json())["run"] is None or \
                not (runs / state["run"] / "metrics.json").exists():
            assert time.monotonic() < deadline, state
            time.sleep(0.2)
        run_pid = json.loads((runs / state["run"] / "metrics.json").read_text())["pid"]
    except BaseException:
        _stop(server, signal.SIGKILL)
        raise
    code, out, err = _stop(server, signal.SIGINT)
    assert code == 0, err
    assert out.strip().endswith("dlc serve: stopped")
    assert not _alive(run_pid)
    metrics = json.loads((runs / state["run"] / "metrics.json").read_text())
    assert metrics["status"] == "interrupted"


def test_dlc_serve_on_another_host_warns(tmp_path):
    server = _start_server(tmp_path / "runs", "--host", "0.0.0.0", "--port", "0")
    try:
        warning = _read_line(server.stderr, SERVER_START_S)
    finally:
        code, _, _ = _stop(server, signal.SIGTERM)
    assert warning.startswith("dlc serve: warning: listening on 0.0.0.0") and "anyone" in warning
    assert code in (0, -signal.SIGTERM)


def test_dlc_serve_on_a_port_in_use_is_one_line_and_exit_2(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = _start_server(tmp_path / "runs", "--port", str(port))
        try:
            out, err = server.communicate(timeout=SERVER_START_S)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.communicate()
            pytest.fail("dlc serve kept running on a port in use")
    assert server.returncode == 2 and out == ""
    assert err.strip() == f"dlc: error: port {port} on 127.0.0.1 is already in use; stop what uses it or choose " \
                          "another with --port"


def test_dlc_serve_refuses_a_runs_file_and_a_bad_port(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    assert cli_error(capsys, "serve", "--runs", str(tmp_path / "file")).startswith("--runs ")
    assert cli_error(capsys, "serve", "--port", "70000").startswith("--port 70000 is not a port")
    assert "invalid int value" in cli_error(capsys, "serve", "--port", "http")
