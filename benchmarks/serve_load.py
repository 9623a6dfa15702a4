"""`dlc serve` measured: page load time, the Playground's frame rate and control latency, and many
concurrent page loads while two labs run. Against 127.0.0.1 only, on a server this script starts.

The script starts `python -m dlconcepts serve` on a free port of 127.0.0.1 over a temporary runs
folder (a process group of its own; stopped at the end by its id: SIGTERM, then SIGKILL to the group)
and measures:

1. the index page: the time of `GET /` (median and p95 of --loads), and, when Chromium and Playwright
   are installed, a browser navigation to `/` (the navigation's loadEventEnd: HTML, scripts, styles);
2. the Playground (XOR, two hidden layers, playing): frames per second on its event stream, and the
   latency from a control change (POST settings: the learning rate, which keeps training going; the
   width, which rebuilds the network) to the first frame carrying the new settings_version (median
   and p95 over --changes changes each);
3. load: --concurrent page loads at once (`/` and `/runs` alternately; a load is the HTML and every
   /static/ file it links), --rounds times, first on an idle server, then while two labs run
   (mlp-regression and mlp-classification, full mode with more epochs so that they outlast the
   measurement, stopped through the API afterwards): errors (must be 0), p50, p95 and max latency.

    .venv/bin/python benchmarks/serve_load.py [--loads 20] [--changes 20] [--concurrent 50] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from common import load_average, positive_int

START_S = 120        # the server imports torch and every lab
STOP_S = 20
TIMEOUT_S = 60       # any one request, any one wait for a frame or a job state
FPS_SECONDS = 5.0    # frames counted over this long
LONG_RUNS = {        # two labs that outlast the load measurement (stopped afterwards)
    "mlp-regression": {"epochs": "1000000"},
    "mlp-classification": {"epochs": "100000", "patience": "0"},
}
CHROMIUM_FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))  # ceil
    return ordered[int(rank) - 1]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.1f}"


# -- the server --------------------------------------------------------------------------------------

class Server:
    def __init__(self, folder: Path):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = folder / "server.log"
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "dlconcepts", "serve", "--runs", str(folder / "runs"), "--host", "127.0.0.1",
             "--port", str(self.port)],
            stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True, cwd=folder)

    def log_tail(self, lines: int = 20) -> str:
        self._log.flush()
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def wait_until_it_answers(self) -> float:
        start = time.perf_counter()
        while True:
            if self.proc.poll() is not None:
                raise SystemExit(f"dlc serve exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                if httpx.get(self.url + "/", timeout=5).status_code == 200:
                    return time.perf_counter() - start
            except httpx.HTTPError:
                pass
            if time.perf_counter() - start > START_S:
                raise SystemExit(f"dlc serve did not answer within {START_S} s:\n{self.log_tail()}")
            time.sleep(0.2)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # the server ends its lab runs
            try:
                self.proc.wait(timeout=STOP_S)
            except subprocess.TimeoutExpired:
                print(f"dlc serve did not exit within {STOP_S} s of SIGTERM; SIGKILL to its group", file=sys.stderr)
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=10)
        self._log.close()


# -- 1. the index page -------------------------------------------------------------------------------

def index_over_http(url: str, loads: int) -> list[float]:
    times = []
    with httpx.Client(timeout=TIMEOUT_S) as client:
        client.get(url + "/").raise_for_status()  # warm-up
        for _ in range(loads):
            start = time.perf_counter()
            client.get(url + "/").raise_for_status()
            times.append(time.perf_counter() - start)
    return times


def find_chromium() -> str | None:
    explicit = os.environ.get("DLC_CHROMIUM")
    if explicit:
        return explicit if Path(explicit).is_file() else None
    return shutil.which("chromium") or shutil.which("chromium-browser")


def in_a_browser(url: str, loads: int, changes: int, chromium: str) -> tuple[list[float], list[float], float,
                                                                            list[float]]:
    """loadEventEnd and domContentLoadedEventEnd of `loads` navigations to / (fresh page each, warm cache);
    then, on the Playground page playing XOR, the frames per second it shows (#fps) after FPS_SECONDS and
    the latency it shows (#latency: from the control's change event to the first frame drawn with the new
    settings) over `changes` learning-rate changes."""
    from playwright.sync_api import sync_playwright

    load, dom = [], []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_FLAGS,
                                             timeout=TIMEOUT_S * 1000)
        try:
            context = browser.new_context()
            for i in range(loads + 1):
                page = context.new_page()
                page.goto(url + "/", wait_until="load", timeout=TIMEOUT_S * 1000)
                entry = page.evaluate("""() => { const n = performance.getEntriesByType('navigation')[0];
                                                 return [n.loadEventEnd - n.startTime,
                                                         n.domContentLoadedEventEnd - n.startTime]; }""")
                page.close()
                if i:  # the first one warms up
                    load.append(entry[0] / 1000)
                    dom.append(entry[1] / 1000)
            page = context.new_page()
            page.set_default_timeout(TIMEOUT_S * 1000)
            page.goto(url + "/playground")
            page.locator("select#dataset").select_option("xor")
            page.locator("input#layers").fill("2")
            page.locator("input#layers").dispatch_event("change")
            page.wait_for_timeout(300)
            page.locator("#play").click()
            page.wait_for_timeout(FPS_SECONDS * 1000)
            page_fps = float(page.locator("#fps").text_content())
            page_latency = []
            for i in range(changes):
                page.evaluate("document.getElementById('latency').textContent = ''")
                page.locator("input#lr").fill(["0.03", "0.01"][i % 2])
                page.locator("input#lr").dispatch_event("change")
                page.wait_for_function("document.getElementById('latency').textContent.endsWith(' ms')")
                page_latency.append(float(page.locator("#latency").text_content().split()[0]) / 1000)
            page.locator("#pause").click()
            page.close()  # the page ends its session
        finally:
            browser.close()
    return load, dom, page_fps, page_latency


# -- 2. the Playground -------------------------------------------------------------------------------

async def read_frames(client: httpx.AsyncClient, url: str, frames: asyncio.Queue) -> None:
    """The session's event stream: every `frame` event, as (arrival time, data), into `frames`."""
    async with client.stream("GET", url, timeout=httpx.Timeout(TIMEOUT_S, read=None)) as response:
        response.raise_for_status()
        event, data = "message", []
        async for line in response.aiter_lines():
            if line == "":
                if event == "frame" and data:
                    await frames.put((time.perf_counter(), json.loads("\n".join(data))))
                event, data = "message", []
            elif line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].lstrip())


async def next_frame(frames: asyncio.Queue) -> tuple[float, dict]:
    return await asyncio.wait_for(frames.get(), TIMEOUT_S)


async def playground(url: str, changes: int) -> dict:
    settings = {"dataset": "xor", "layers": 2}
    async with httpx.AsyncClient(base_url=url, timeout=TIMEOUT_S) as client:
        created = await client.post("/api/playground/sessions", json=settings)
        created.raise_for_status()
        session = created.json()
        sid, settings = session["id"], session["settings"]
        frames: asyncio.Queue = asyncio.Queue()
        reader = asyncio.create_task(read_frames(client, f"/api/playground/{sid}/events", frames))
        try:
            (await client.post(f"/api/playground/{sid}/play")).raise_for_status()
            arrived, frame = await next_frame(frames)
            warm_up = arrived + 1.0  # the first second of play is not counted
            while arrived < warm_up:
                arrived, frame = await next_frame(frames)
            first, count, last_frame = arrived, 0, frame
            while arrived - first < FPS_SECONDS:
                arrived, last_frame = await next_frame(frames)
                count += 1
            fps = count / (arrived - first)
            steps_per_s = (last_frame["step"] - frame["step"]) / (arrived - first)
            version = last_frame["settings_version"]

            latency: dict[str, list[float]] = {"lr": [], "width": []}
            for i in range(changes):
                for key, value in (("lr", [0.03, 0.01][i % 2]), ("width", [6, 8][i % 2])):
                    while not frames.empty():  # frames that arrived meanwhile
                        _, frame = frames.get_nowait()
                        version = max(version, frame["settings_version"])
                    start = time.perf_counter()
                    changed = await client.post(f"/api/playground/{sid}/settings", json={**settings, key: value})
                    changed.raise_for_status()
                    answer = changed.json()
                    settings = answer["settings"]
                    wanted = answer.get("settings_version", version + 1)  # the contract's answer is {settings}
                    while True:
                        arrived, frame = await next_frame(frames)
                        if frame["settings_version"] >= wanted:
                            version = frame["settings_version"]
                            break
                    latency[key].append(arrived - start)
            (await client.post(f"/api/playground/{sid}/pause")).raise_for_status()
        finally:
            reader.cancel()
            try:
                await reader
            except (asyncio.CancelledError, httpx.HTTPError):
                pass
    return {"fps": fps, "steps_per_s": steps_per_s, "latency": latency}


# -- 3. concurrent page loads ------------------------------------------------------------------------

STATIC = re.compile(r'(?:src|href)="(/static/[^"]+)"')


async def page_load(client: httpx.AsyncClient, path: str) -> float:
    """The HTML, then every /static/ file it links, at once; raises on any status but 200."""
    start = time.perf_counter()
    html = await client.get(path)
    html.raise_for_status()
    assets = await asyncio.gather(*(client.get(asset) for asset in sorted(set(STATIC.findall(html.text)))))
    for asset in assets:
        asset.raise_for_status()
    return time.perf_counter() - start


async def concurrent_loads(url: str, concurrent: int, rounds: int) -> tuple[list[float], list[str]]:
    times, errors = [], []
    limits = httpx.Limits(max_connections=concurrent * 4, max_keepalive_connections=0)  # a connection each
    async with httpx.AsyncClient(base_url=url, timeout=TIMEOUT_S, limits=limits) as client:
        for _ in range(rounds):
            paths = ["/" if i % 2 == 0 else "/runs" for i in range(concurrent)]
            results = await asyncio.gather(*(page_load(client, path) for path in paths), return_exceptions=True)
            for result in results:
                if isinstance(result, BaseException):
                    errors.append(f"{type(result).__name__}: {result}")
                else:
                    times.append(result)
    return times, errors


def start_long_runs(url: str) -> list[str]:
    jobs = []
    with httpx.Client(base_url=url, timeout=TIMEOUT_S) as client:
        for lab_id, values in LONG_RUNS.items():
            response = client.post(f"/api/labs/{lab_id}/runs", json={"quick": False, "seed": 0, "values": values})
            if response.status_code != 201:
                raise SystemExit(f"POST /api/labs/{lab_id}/runs: {response.status_code} {response.text}")
            jobs.append(response.json()["job"])
        # until both have written a first line: past their imports, training
        deadline = time.perf_counter() + TIMEOUT_S
        for job in jobs:
            with client.stream("GET", f"/api/jobs/{job}/events") as events:  # read timeout: TIMEOUT_S
                for line in events.iter_lines():
                    if line.startswith("event: log") or line.startswith("event: progress"):
                        break
                    if line.startswith("event: done") or time.perf_counter() > deadline:
                        raise SystemExit(f"job {job} ended or wrote nothing within {TIMEOUT_S} s")
    return jobs


def job_states(url: str, jobs: list[str]) -> list[str]:
    return [httpx.get(f"{url}/api/jobs/{job}", timeout=TIMEOUT_S).json()["status"] for job in jobs]


def stop_runs(url: str, jobs: list[str]) -> list[str]:
    for job in jobs:
        httpx.post(f"{url}/api/jobs/{job}/stop", timeout=TIMEOUT_S)
    deadline = time.perf_counter() + TIMEOUT_S
    while "running" in (states := job_states(url, jobs)) and time.perf_counter() < deadline:
        time.sleep(0.2)
    return states


# -- the table ---------------------------------------------------------------------------------------

def row(what: str, values: list[float], errors: int | None = None) -> str:
    err = "" if errors is None else f"{errors:>7}"
    return (f"{what:<58} {len(values):>5} {ms(statistics.median(values)):>9} {ms(percentile(values, 95)):>9} "
            f"{ms(max(values)):>9}{err}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--loads", type=positive_int, default=20, help="index page loads timed (HTTP, browser)")
    parser.add_argument("--changes", type=positive_int, default=20, help="Playground settings changes timed, per kind")
    parser.add_argument("--concurrent", type=positive_int, default=50, help="page loads fired at once")
    parser.add_argument("--rounds", type=positive_int, default=5, help="rounds of concurrent page loads")
    parser.add_argument("--no-browser", action="store_true", help="skip the browser navigation even with Chromium")
    args = parser.parse_args()

    chromium = None if args.no_browser else find_chromium()
    if chromium:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            chromium = None
    with tempfile.TemporaryDirectory(prefix="dlc-serve-load-") as tmp:
        server = Server(Path(tmp))
        try:
            started = server.wait_until_it_answers()
            print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, load {load_average()}, "
                  f"python {platform.python_version()}; dlc serve on 127.0.0.1:{server.port}, "
                  f"answering {started:.1f} s after start")
            header = f"{'measurement':<58} {'n':>5} {'median':>9} {'p95':>9} {'max':>9}"
            http_index = index_over_http(server.url, args.loads)
            browser = in_a_browser(server.url, args.loads, args.changes, chromium) if chromium else None
            play = asyncio.run(playground(server.url, args.changes))
            idle_times, idle_errors = asyncio.run(concurrent_loads(server.url, args.concurrent, args.rounds))
            jobs = start_long_runs(server.url)
            busy_times, busy_errors = asyncio.run(concurrent_loads(server.url, args.concurrent, args.rounds))
            during = job_states(server.url, jobs)
            after = stop_runs(server.url, jobs)
        finally:
            server.stop()

    print()
    print("index page (ms)")
    print(header)
    print(row("GET / (HTML)", http_index))
    if browser:
        print(row("browser navigation to /: DOMContentLoaded", browser[1]))
        print(row("browser navigation to /: load event (HTML, JS, CSS)", browser[0]))
    else:
        print("browser navigation to /: not measured (no Chromium/Playwright, or --no-browser)")
    print()
    print(f"Playground, XOR with 2 hidden layers, playing: {play['fps']:.1f} frames/s on the event stream, "
          f"{play['steps_per_s']:,.0f} training steps/s" +
          (f"; {browser[2]:.1f} frames/s shown by the page in Chromium (#fps)" if browser else ""))
    print("latency from a settings POST to the first frame with the new settings_version (ms)")
    print(header)
    print(row("learning rate change (training goes on)", play["latency"]["lr"]))
    print(row("width change (the network is rebuilt)", play["latency"]["width"]))
    if browser:
        print(row("learning rate change, as the page in Chromium shows it", browser[3]))
    print()
    print(f"{args.concurrent} concurrent page loads (/ and /runs, each with its /static/ files), "
          f"{args.rounds} rounds (ms)")
    print(header + f" {'errors':>7}")
    print(row("idle server", idle_times, len(idle_errors)))
    print(row(f"two labs running ({', '.join(LONG_RUNS)})", busy_times, len(busy_errors)))
    print(f"the two runs: {', '.join(during)} at the end of the loads; {', '.join(after)} after the stop requests")
    for error in (idle_errors + busy_errors)[:5]:
        print("error:", error)
    if idle_errors or busy_errors or during.count("running") != 2:
        sys.exit(1)


if __name__ == "__main__":
    main()
