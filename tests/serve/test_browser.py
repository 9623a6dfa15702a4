"""`dlc serve` in a real browser: Debian's Chromium, headless, driven by Playwright.

One server (`python -m dlconcepts serve` in a subprocess, in a session of its own, on a free port of
127.0.0.1, over a temporary runs folder) and one browser for the whole module; a fresh page per test,
whose screenshot is written into test-artifacts/ at the repository root ($DLC_TEST_ARTIFACTS if set),
passed or failed. The server is stopped at the end by its process id (SIGTERM: it ends its lab runs;
SIGKILL to its process group after a timeout), and no process that it started may outlive it.

Chromium missing (or Playwright): a failure in CI (CI=true, where .ci/run installs the package), a skip
elsewhere whose reason names the package to install. Playwright's own browser download needs the
internet, so the tests launch the system's Chromium through `executable_path`.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from dlconcepts.cli import main
from dlconcepts.labs import all_labs

REPO = Path(__file__).resolve().parents[2]
SERVER_START_S = 90      # the server imports torch and every lab; on a busy 2-core machine that takes a while
SERVER_STOP_S = 20       # SIGTERM -> exit, its lab runs ended; then SIGKILL to the group
PAGE_TIMEOUT_MS = 30_000  # any one wait of Playwright (a selector, a navigation, a condition)
QUICK_RUN_S = 90         # a quick mlp-classification from the click to its report (its own ~6 s on 2 cores)
# The Playground's XOR with two hidden layers (width 8, tanh, Adam lr 0.01, batches of 10; seeded): its
# test loss (cross-entropy, nats; 0.69 at the start) must fall below XOR_LOSS within XOR_SECONDS of play.
# Measured: 0.11 at epoch 10, 0.06 at epoch 15, 0.03 at epoch 30 (one epoch a frame, 10 frames/s at most);
# in this test below 0.1 1.3 s after play, on 2 idle cores and on 2 cores at load 6.7 alike. XOR_SECONDS
# leaves a margin of 15x.
XOR_LOSS = 0.1
XOR_SECONDS = 20
PAUSED_S = 1.5           # after pause, the epoch must not move for this long
CHROMIUM_FLAGS = [       # no sandbox as root; no GPU; nothing that dials out of a closed network
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]
CHROMIUM_PACKAGE = "chromium"


def find_chromium() -> str | None:
    """$DLC_CHROMIUM, else `chromium` (Debian's package) or `chromium-browser` on the PATH."""
    explicit = os.environ.get("DLC_CHROMIUM")
    if explicit:
        return explicit if Path(explicit).is_file() else None
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _missing(what: str, install: str, ci_installs: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{what} is missing in CI; {ci_installs}")
    pytest.skip(f"{what} is not installed; {install}")


@pytest.fixture(scope="module")
def chromium_path() -> str:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _missing("Playwright", "pip install -e '.[test]'", "make test installs the test extra")
    path = find_chromium()
    if path is None:
        _missing("Chromium", f"apt-get install {CHROMIUM_PACKAGE}", f".ci/run installs {CHROMIUM_PACKAGE}")
    return path


# -- the server, a subprocess ------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def descendants(pid: int) -> set[int]:
    """Every live process below `pid` (children, grandchildren, ...), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # gone meanwhile
            continue
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])  # after "pid (comm) state"
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def alive(pid: int) -> bool:
    """Running, not a zombie (a zombie whose parent is gone is reaped by init soon)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


class Server:
    def __init__(self, runs: Path, log: Path):
        self.runs, self.log_path = runs, log
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = open(log, "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "dlconcepts", "serve", "--runs", str(runs), "--port", str(self.port)],
            stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True, cwd=runs.parent)

    def log_tail(self, lines: int = 30) -> str:
        self._log.flush()
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def wait_until_it_answers(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dlc serve exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.url + "/", timeout=5) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"dlc serve did not answer within {timeout:.0f} s:\n{self.log_tail()}")
            time.sleep(0.2)

    def get_json(self, path: str):
        with urllib.request.urlopen(self.url + path, timeout=10) as response:
            return json.load(response)

    def stop(self) -> list[str]:
        """SIGTERM to the server (it ends its lab runs), SIGKILL to its group after SERVER_STOP_S, SIGKILL
        to anything it started that is still alive after that; returns what had to be killed."""
        problems = []
        started = descendants(self.proc.pid)
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=SERVER_STOP_S)
            except subprocess.TimeoutExpired:
                problems.append(f"dlc serve did not exit within {SERVER_STOP_S} s of SIGTERM")
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # whatever is left in its group
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=10)
        deadline = time.monotonic() + 5
        while any(alive(pid) for pid in started) and time.monotonic() < deadline:
            time.sleep(0.1)
        for pid in sorted(pid for pid in started if alive(pid)):  # left behind: in a session of their own
            problems.append(f"process {pid} started by dlc serve outlived it")
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self._log.close()
        return problems


@pytest.fixture(scope="module")
def server(chromium_path, tmp_path_factory):
    root = tmp_path_factory.mktemp("serve")
    srv = Server(root / "runs", root / "server.log")
    try:
        srv.wait_until_it_answers(SERVER_START_S)
        yield srv
    finally:
        problems = srv.stop()
    assert not problems, "; ".join(problems) + "\n" + srv.log_tail()


# -- the browser -------------------------------------------------------------------------------------

def artifacts_dir() -> Path:
    folder = Path(os.environ.get("DLC_TEST_ARTIFACTS") or REPO / "test-artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def browser(chromium_path, server):
    """One headless Chromium for the module. It takes `server` so that it closes first: no open event
    stream is left to hold up the server's shutdown."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=chromium_path, headless=True, args=CHROMIUM_FLAGS,
                                              timeout=PAGE_TIMEOUT_MS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser, request):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    tab.set_default_timeout(PAGE_TIMEOUT_MS)
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    tab.js_errors = errors
    try:
        yield tab
    finally:
        try:
            tab.screenshot(path=str(artifacts_dir() / f"{request.node.name}.png"), full_page=True)
        finally:
            context.close()


def wait_for_text(page, selector: str) -> str:
    page.wait_for_function("sel => document.querySelector(sel).textContent.trim().length > 0", arg=selector)
    return page.locator(selector).text_content().strip()


# -- the tests ---------------------------------------------------------------------------------------

def test_the_index_shows_every_lab(page, server):
    page.goto(server.url + "/")
    rows = page.locator("#labs tr[data-lab]")
    shown = rows.evaluate_all("rows => rows.map(r => r.dataset.lab)")
    assert sorted(shown) == sorted(all_labs())
    for lab_id in all_labs():
        assert page.locator(f'#labs tr[data-lab="{lab_id}"] a[href="/labs/{lab_id}"]').count() >= 1, lab_id
    assert page.locator('a[href="/playground"]').count() >= 1
    assert page.locator('a[href="/runs"]').count() >= 1
    assert page.js_errors == []


# Before the page's own scripts: the order in which #log got its first line and #report its first figure.
ORDER_OBSERVER = """
window.__order = {};
let step = 0;
new MutationObserver(() => {
  const log = document.getElementById('log'), report = document.getElementById('report');
  if (log && log.textContent.trim() && !('log' in window.__order)) window.__order.log = ++step;
  if (report && report.querySelector('img') && !('report' in window.__order)) window.__order.report = ++step;
}).observe(document, {subtree: true, childList: true, characterData: true});
"""


def test_a_quick_lab_run_shows_live_log_lines_then_its_report_with_figures(page, server):
    page.add_init_script(ORDER_OBSERVER)
    page.goto(server.url + "/labs/mlp-classification")
    assert page.locator("#log").text_content().strip() == ""
    page.locator('#lab-form input[name="quick"]').check()
    page.locator("#start").click()
    page.wait_for_function("() => window.__order.report", timeout=QUICK_RUN_S * 1000)
    order = page.evaluate("window.__order")
    assert order.get("log", 99) < order["report"], f"no log line before the report: {order}"
    images = page.locator("#report img")
    page.wait_for_function("""() => [...document.querySelectorAll('#report img')].every(
        img => img.complete && img.naturalWidth > 0)""")
    sizes = images.evaluate_all("imgs => imgs.map(img => [img.getAttribute('src'), img.naturalWidth])")
    assert page.locator("#error").text_content().strip() == ""
    page.screenshot(path=str(artifacts_dir() / "lab_run_report.png"), full_page=True)

    runs = [job for job in server.get_json("/api/jobs") if job["lab"] == "mlp-classification"]
    assert [job["status"] for job in runs] == ["completed"], runs
    run_dir = server.runs / runs[0]["run"]
    config = json.loads((run_dir / "config.json").read_text())
    assert config["quick"] is True and config["config"]["epochs"] == 5  # quick mode's epochs, not the form's 200
    figures = (run_dir / "report.md").read_text().count("](figures/")
    assert figures >= 3 and len(sizes) >= figures, sizes
    assert all(src.startswith("/files/") and width > 0 for src, width in sizes), sizes
    # The finished run is listed under "Runs of this lab" without reloading the page.
    assert page.locator(f'#lab-runs a[href="/runs/{runs[0]["run"]}"]').count() == 1
    assert page.js_errors == []


def test_a_bad_value_shows_the_clis_one_line_message(page, server, capsys):
    assert main(["run", "mlp-classification", "--quick", "--set", "lr=-1"]) == 2
    cli_line = capsys.readouterr().err.strip()
    assert "\n" not in cli_line and "lr" in cli_line
    page.goto(server.url + "/labs/mlp-classification")
    page.locator('#lab-form input[name="quick"]').check()
    page.locator('#lab-form [name="lr"]').fill("-1")
    page.locator("#start").click()
    shown = wait_for_text(page, "#error")
    assert cli_line.startswith("dlc: error: ")
    assert shown == cli_line.removeprefix("dlc: error: ")  # the message, without the program's name
    running = [job for job in server.get_json("/api/jobs") if job["status"] == "running"]
    assert running == []  # nothing was started


def test_playground_trains_xor_with_two_hidden_layers_and_pause_stops_it(page, server):
    page.goto(server.url + "/playground")
    page.wait_for_function("() => document.querySelector('#boundary').getAttribute('src')")
    page.locator("select#dataset").select_option("xor")
    layers = page.locator("input#layers")
    layers.fill("2")
    layers.dispatch_event("change")
    page.wait_for_timeout(300)  # the settings request before play
    start = time.monotonic()
    page.locator("#play").click()
    losses, boundaries = [], []
    while True:
        boundaries.append(page.locator("#boundary").get_attribute("src"))
        text = page.locator("#test-loss").text_content().strip()
        try:
            losses.append((round(time.monotonic() - start, 1), float(text)))
        except ValueError:
            pass
        if losses and losses[-1][1] < XOR_LOSS:
            break
        assert time.monotonic() - start < XOR_SECONDS, f"not below {XOR_LOSS} in {XOR_SECONDS} s: {losses[-5:]}"
        page.wait_for_timeout(200)
    reached = time.monotonic() - start
    print(f"XOR, 2 hidden layers: test loss {losses[-1][1]} < {XOR_LOSS} after {reached:.1f} s; "
          f"fps {page.locator('#fps').text_content()}")
    assert len(set(boundaries)) >= 2, "the decision boundary did not change while the network trained"
    assert (page.locator("select#dataset").input_value(), layers.input_value()) == ("xor", "2")  # kept, not refused
    page.screenshot(path=str(artifacts_dir() / "playground_trained.png"), full_page=True)

    page.locator("#pause").click()
    page.wait_for_timeout(500)  # a frame already on its way may still land
    epoch, src = page.locator("#epoch").text_content(), page.locator("#boundary").get_attribute("src")
    page.wait_for_timeout(PAUSED_S * 1000)
    assert page.locator("#epoch").text_content() == epoch
    assert page.locator("#boundary").get_attribute("src") == src
    assert page.js_errors == []


def test_a_run_left_going_ends_with_the_server(page, server):
    """A full-length run started from the page and left running: the `server` fixture's teardown then
    stops the server, which must end this run too (its process is in a session of its own, so killing
    the server's group would not); the teardown fails if any process that the server started is left."""
    page.goto(server.url + "/labs/mlp-regression")
    page.locator('#lab-form [name="epochs"]').fill("1000000")
    page.locator("#start").click()
    deadline = time.monotonic() + PAGE_TIMEOUT_MS / 1000
    while not (running := [job for job in server.get_json("/api/jobs") if job["status"] == "running"]):
        assert time.monotonic() < deadline, "the run did not start"
        time.sleep(0.1)
    assert [job["lab"] for job in running] == ["mlp-regression"]
    assert descendants(server.proc.pid), "the run's process is not below the server's"
    assert page.locator("#error").text_content().strip() == ""
