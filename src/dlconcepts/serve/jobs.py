"""Lab runs started from the browser: each one `python -m dlconcepts run LAB ...` in a process of its own.

Why a subprocess and not a call to `run_lab` in the server: a lab sets process-wide torch state (seeds,
threads, deterministic algorithms) and may take minutes; in its own process it cannot disturb the server or
another lab, it is stopped by a signal (SIGTERM: it checkpoints and ends, as `dlc run` does on Ctrl-C), and
what it writes is exactly what `dlc run` writes. Each job gets a process group of its own, so that stopping it
also stops whatever it started, and the terminal's Ctrl-C reaches the server alone (which then ends its jobs).

Validation. `lab_command` builds the very argument list the job will run and checks it the way the CLI does
before anything starts: the CLI's own parser, `config.parse_set_pairs` and `labs.runner.resolve_config`. A
value the CLI refuses is refused here with the same one line (a `UserError`), and nothing is started.

Events. Two reader threads read the job's stdout (its log lines) and stderr. Stderr is a pseudo-terminal
where the platform has them: the package shows its tqdm bars only on a terminal (`ProgressBar`), and a tqdm
bar rewrites itself with '\\r', so stderr is split at both '\\r' and '\\n' and a segment shaped like a tqdm
line becomes a `progress` event ({desc, n, total, postfix}) instead of a `log` line. Every event of a job is
kept (consecutive progress events of one bar are folded into the newest), so a page that subscribes late
replays the job from its start; `Last-Event-ID` resumes after an event. The last events are `metrics` (the
run's metrics.json) and `done` ({status, run, report, returncode, error}), the status read from the run's
metrics.json by `runs.run_status`.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dlconcepts.errors import UserError
from dlconcepts.runs import run_status

STOP_TIMEOUT_S = 15.0  # SIGTERM -> SIGKILL: a lab saves its checkpoint on SIGTERM first
READ_CHUNK = 65536
ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
# tqdm's default bar: "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate}{postfix}]"
TQDM_LINE = re.compile(
    r"^(?:(?P<desc>.*?): ?)?\s*(?P<percent>\d{1,3})%\|[^|]*\|\s*(?P<n>[\d.]+[kMGTP]?)/(?P<total>[\d.]+[kMGTP]?)"
    r"\s*\[(?P<inner>[^\]]*)\]\s*$"
)
SCALE = {"k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15}
FINISHED = ("completed", "failed", "interrupted")


class JobConflict(UserError):
    """A run of that lab is still running (HTTP 409)."""


# ------------------------------------------------------------------------------------------ the command

def lab_command(runs_dir: str | Path, lab_id: str, quick: bool = False, seed: Any = None,
                values: Mapping[str, Any] | None = None) -> list[str]:
    """The arguments of `dlc` for this run (`run LAB --out RUNS [--quick] [--seed=S] [--set=KEY=TEXT ...]`),
    checked as `dlc run` checks them; a mistake raises the CLI's own `UserError` / `ConfigError`."""
    from dlconcepts.cli import build_parser
    from dlconcepts.config import parse_set_pairs
    from dlconcepts.labs import get_lab
    from dlconcepts.labs.runner import resolve_config

    argv = ["run", lab_id, f"--out={Path(runs_dir).resolve()}"]
    if quick:
        argv.append("--quick")
    if seed is not None and seed != "":
        argv.append(f"--seed={_text(seed)}")
    # `--set=KEY=TEXT` as one token: a value that starts with '-' stays a value (`--set lr=-1`).
    argv += [f"--set={key}={_text(value)}" for key, value in (values or {}).items()]
    args = build_parser().parse_args(argv)  # --seed abc: the CLI's "invalid int value" line
    resolve_config(get_lab(lab_id), args.quick, {}, parse_set_pairs(args.set_pairs))
    return argv


def _text(value: Any) -> str:
    """A JSON value as the text `--set` would get: true/false, none, 30,15."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "none"
    if isinstance(value, (list, tuple)):
        return ",".join(_text(v) for v in value)
    return str(value)


# ------------------------------------------------------------------------------------------ events

@dataclass(frozen=True)
class Event:
    seq: int
    kind: str  # log, progress, status, metrics, done
    data: str  # one line of text, or JSON

    def encode(self) -> bytes:
        """The event in server-sent-events framing (a multi-line datum as several data: lines)."""
        lines = "".join(f"data: {line}\n" for line in (self.data.split("\n") or [""]))
        return f"id: {self.seq}\nevent: {self.kind}\n{lines}\n".encode()


def parse_progress(line: str) -> dict[str, Any] | None:
    """{desc, n, total, percent, elapsed, remaining, rate, postfix} of a tqdm line, or None."""
    match = TQDM_LINE.match(line)
    if match is None:
        return None
    parts = [p.strip() for p in match["inner"].split(",")]
    elapsed, _, remaining = parts[0].partition("<")
    postfix = dict(p.split("=", 1) for p in parts[2:] if "=" in p)
    return {"desc": (match["desc"] or "").strip(), "n": _count(match["n"]), "total": _count(match["total"]),
            "percent": int(match["percent"]), "elapsed": elapsed, "remaining": remaining,
            "rate": parts[1] if len(parts) > 1 else "", "postfix": postfix}


def _count(text: str) -> int:
    scale = SCALE.get(text[-1], 1)
    return int(float(text.rstrip("kMGTP")) * scale)


class Job:
    """One lab run: its process, its events, its subscribers."""

    def __init__(self, job_id: str, lab: str, argv: Sequence[str], runs_dir: Path):
        self.id, self.lab, self.argv, self.runs_dir = job_id, lab, list(argv), runs_dir
        self.started = time.time()
        self.status = "running"
        self.run: str | None = None
        self.returncode: int | None = None
        self.error: str | None = None
        self.process: subprocess.Popen | None = None
        self.events: list[Event] = []
        self._seq = 0
        self._lock = threading.Lock()
        self._subscribers: list[tuple[asyncio.AbstractEventLoop, asyncio.Queue]] = []
        self._threads: list[threading.Thread] = []
        self._stopping = False

    def as_dict(self) -> dict[str, Any]:
        return {"job": self.id, "lab": self.lab, "status": self.status, "run": self.run,
                "returncode": self.returncode, "error": self.error, "started": self.started,
                "events": f"/api/jobs/{self.id}/events"}

    @property
    def running(self) -> bool:
        return self.status == "running"

    # -- events -----------------------------------------------------------------------------------
    def emit(self, kind: str, data: Any) -> None:
        text = data if isinstance(data, str) else json.dumps(data)
        with self._lock:
            self._seq += 1
            event = Event(self._seq, kind, text)
            last = self.events[-1] if self.events else None
            if kind == "progress" and last is not None and last.kind == "progress" and \
                    json.loads(last.data).get("desc") == json.loads(text).get("desc"):
                self.events[-1] = event  # a replay needs the bar's newest state only
            else:
                self.events.append(event)
            subscribers = list(self._subscribers)
        for loop, queue in subscribers:
            _deliver(loop, queue, event)

    def subscribe(self, loop: asyncio.AbstractEventLoop, after: int = 0) -> tuple[list[Event], asyncio.Queue | None]:
        """The events after `after` so far, and a queue for the ones to come (None once the job is done)."""
        with self._lock:
            replay = [e for e in self.events if e.seq > after]
            if self.events and self.events[-1].kind == "done":
                return replay, None
            queue: asyncio.Queue = asyncio.Queue()
            self._subscribers.append((loop, queue))
            return replay, queue

    def unsubscribe(self, queue: asyncio.Queue | None) -> None:
        with self._lock:
            self._subscribers = [(lp, q) for lp, q in self._subscribers if q is not queue]

    def wake_subscribers(self) -> None:
        """End every open event stream (None is the end), as the server stops."""
        with self._lock:
            subscribers, self._subscribers = list(self._subscribers), []
        for loop, queue in subscribers:
            _deliver(loop, queue, None)

    # -- the process ------------------------------------------------------------------------------
    def signal(self, signum: int) -> bool:
        """Send `signum` to the job's process group; False when it has ended."""
        if self.process is None or self.process.poll() is not None:
            return False
        try:
            os.killpg(self.process.pid, signum)
        except (ProcessLookupError, PermissionError):
            return False
        return True

    def stop(self) -> bool:
        """SIGTERM: the lab saves a checkpoint and ends as 'interrupted' (resume with dlc run --resume)."""
        self._stopping = True
        return self.signal(signal.SIGTERM)

    def terminate(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM, then SIGKILL to the whole group after `timeout`; returns when the readers are done."""
        if self.process is None:
            return
        if self.stop():
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                self.process.wait()
        self.join(timeout=5)

    def join(self, timeout: float | None = None) -> None:
        for thread in self._threads:
            thread.join(timeout)


def _deliver(loop: asyncio.AbstractEventLoop, queue: asyncio.Queue, event: Event | None) -> None:
    try:
        loop.call_soon_threadsafe(queue.put_nowait, event)
    except RuntimeError:  # that subscriber's event loop is closed: it is gone
        pass


# ------------------------------------------------------------------------------------------ the manager

class JobManager:
    """The server's jobs: at most one running per lab; all of them ended by `shutdown`."""

    def __init__(self, runs_dir: str | Path, command: Sequence[str] | None = None,
                 stop_timeout: float = STOP_TIMEOUT_S, use_pty: bool | None = None):
        self.runs_dir = Path(runs_dir)
        self.command = list(command) if command is not None else [sys.executable, "-m", "dlconcepts"]
        self.stop_timeout = stop_timeout
        self.use_pty = (sys.platform != "win32") if use_pty is None else use_pty
        self.jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._closing = False

    def start(self, lab_id: str, argv: Sequence[str]) -> Job:
        """Start `dlc ARGV` (from `lab_command`) as a job of `lab_id`; JobConflict if that lab is running."""
        with self._lock:
            if self._closing:
                raise JobConflict("the server is stopping; no new runs")
            for other in self.jobs.values():
                if other.lab == lab_id and other.running:
                    where = f"run {other.run}" if other.run else "its run directory not created yet"
                    raise JobConflict(f"lab '{lab_id}' is already running as job {other.id} ({where}); "
                                      f"wait for it to end or stop it first (POST /api/jobs/{other.id}/stop)")
            job = Job(secrets.token_hex(4), lab_id, argv, self.runs_dir)
            while job.id in self.jobs:
                job.id = secrets.token_hex(4)
            self.jobs[job.id] = job
            try:
                self._spawn(job)
            except OSError as exc:
                del self.jobs[job.id]
                raise UserError(f"cannot start {self.command[0]}: {exc.strerror}") from None
        return job

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self.jobs.get(job_id)

    def list(self) -> list[Job]:
        with self._lock:
            return list(self.jobs.values())

    def running_job(self, lab_id: str) -> Job | None:
        return next((j for j in self.list() if j.lab == lab_id and j.running), None)

    def job_of_run(self, run_name: str) -> Job | None:
        return next((j for j in self.list() if j.run == run_name), None)

    def begin_shutdown(self) -> None:
        """No new jobs, and every open event stream ends now (so that the server need not wait for them)."""
        with self._lock:
            self._closing = True
            jobs = list(self.jobs.values())
        for job in jobs:
            job.wake_subscribers()

    def shutdown(self) -> None:
        """End every running job (SIGTERM, then SIGKILL after the timeout), in parallel; idempotent."""
        self.begin_shutdown()
        threads = [threading.Thread(target=job.terminate, args=(self.stop_timeout,), daemon=True)
                   for job in self.list() if job.process is not None]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    # -- the process and its readers --------------------------------------------------------------
    def _spawn(self, job: Job) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONIOENCODING": "utf-8", "MPLBACKEND": "Agg"}
        master = slave = None
        if self.use_pty:
            master, slave = _open_pty()
        try:
            job.process = subprocess.Popen(
                [*self.command, *job.argv], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=slave if slave is not None else subprocess.PIPE, env=env,
                start_new_session=True,  # its own process group: killpg stops it and what it started
            )
        except OSError:
            if master is not None:
                os.close(master)
            raise
        finally:
            if slave is not None:
                os.close(slave)
        assert job.process.stdout is not None
        stderr_fd = master if master is not None else job.process.stderr.fileno()  # type: ignore[union-attr]
        done_reading = threading.Event()
        readers = [
            threading.Thread(target=_pump, args=(job.process.stdout.fileno(), self._on_stdout(job), done_reading,
                                                 False), daemon=True, name=f"job-{job.id}-stdout"),
            threading.Thread(target=_pump, args=(stderr_fd, self._on_stderr(job), done_reading, True),
                             daemon=True, name=f"job-{job.id}-stderr"),
        ]
        waiter = threading.Thread(target=self._wait, args=(job, readers, done_reading, master), daemon=True,
                                  name=f"job-{job.id}-wait")
        job._threads = [*readers, waiter]
        job.emit("status", {"job": job.id, "lab": job.lab, "status": "running", "run": None})
        for thread in job._threads:
            thread.start()

    def _on_stdout(self, job: Job) -> Callable[[str, bool], None]:
        # The run's first line: "LAB: TITLE  ->  RUNS/NAME" (labs.runner); resumed: "LAB: resumed ...  ->  PATH".
        first = re.compile(rf"^{re.escape(job.lab)}: .*  ->  (?P<path>.+)$")

        def on_line(line: str, complete: bool) -> None:
            if not complete:
                return
            if job.run is None:
                match = first.match(line)
                if match:
                    job.run = self._run_name(Path(match["path"].strip()))
                    job.emit("status", {"job": job.id, "lab": job.lab, "status": "running", "run": job.run})
            job.emit("log", line)
        return on_line

    def _on_stderr(self, job: Job) -> Callable[[str, bool], None]:
        shown = {"partial": ""}

        def on_segment(segment: str, complete: bool) -> None:
            text = ANSI.sub("", segment).rstrip()
            if not text.strip():
                return
            progress = parse_progress(text)
            if progress is not None:
                if text != shown["partial"]:  # a bar line already sent while it was still being written
                    job.emit("progress", progress)
                shown["partial"] = "" if complete else text
                return
            if complete:
                if text.startswith("dlc: error: ") or text.startswith("dlc: interrupted: "):
                    job.error = text.split(": ", 2)[2]
                job.emit("log", text)
        return on_segment

    def _run_name(self, path: Path) -> str | None:
        try:
            return path.resolve().relative_to(self.runs_dir.resolve()).as_posix()
        except (OSError, ValueError):
            return None

    def _find_run(self, job: Job) -> str | None:
        """The run directory whose metrics.json names the job's process (when its first line was missed)."""
        if job.process is None or not self.runs_dir.is_dir():
            return None
        for path in sorted(self.runs_dir.glob(f"*-{job.lab}*"), reverse=True):
            try:
                metrics = json.loads((path / "metrics.json").read_text())
            except (OSError, ValueError):
                continue
            if metrics.get("pid") == job.process.pid:
                return self._run_name(path)
        return None

    def _wait(self, job: Job, readers: list[threading.Thread], done_reading: threading.Event,
              master: int | None) -> None:
        assert job.process is not None
        returncode = job.process.wait()
        # Whatever the run started and left behind in its group goes with it.
        try:
            os.killpg(job.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        done_reading.set()  # the readers drain what is left, then stop
        for reader in readers:
            reader.join(timeout=10)
        if master is not None:
            os.close(master)
        for stream in (job.process.stdout, job.process.stderr):
            if stream is not None:
                stream.close()
        if job.run is None:
            job.run = self._find_run(job)
        run_dir = self.runs_dir / job.run if job.run else None
        if run_dir is not None and (run_dir / "metrics.json").is_file():
            status = run_status(run_dir)
            try:
                job.emit("metrics", json.loads((run_dir / "metrics.json").read_text()))
            except (OSError, ValueError):
                pass
        elif returncode in (130, 143, -signal.SIGINT, -signal.SIGTERM, -signal.SIGKILL) or job._stopping:
            status = "interrupted"
        else:
            status = "failed" if returncode != 0 else "completed"
        if status == "running":  # metrics.json still says running though the process is gone
            status = "interrupted"
        if status == "completed" and returncode != 0:
            status = "failed"
        job.returncode, job.status = returncode, status
        if status == "failed" and job.error is None:
            job.error = f"the run exited with code {returncode}"
        job.emit("status", {"job": job.id, "lab": job.lab, "status": status, "run": job.run})
        job.emit("done", {"status": status, "run": job.run, "report": f"/runs/{job.run}" if job.run else None,
                          "returncode": returncode, "error": job.error})


def _open_pty() -> tuple[int, int] | tuple[None, None]:
    """A pseudo-terminal 120 columns wide (tqdm sizes its bar to the terminal), or (None, None)."""
    try:
        import fcntl
        import pty
        import struct
        import termios

        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
        return master, slave
    except (ImportError, OSError):
        return None, None


def _pump(fd: int, on_segment: Callable[[str, bool], None], done: threading.Event, split_cr: bool) -> None:
    """Read `fd` until it closes (or, once `done` is set, until it has nothing more), calling
    `on_segment(text, complete)` for each line; a tqdm bar's '\\r' ends a segment when `split_cr`. The
    unterminated tail is offered too (complete=False), so that a bar's newest state is not held back."""
    separators = re.compile(rb"\r\n|\r|\n" if split_cr else rb"\n")
    buffer = b""
    offered = b""
    while True:
        try:
            ready, _, _ = select.select([fd], [], [], 0.2)
        except (OSError, ValueError):
            break
        if not ready:
            if done.is_set():
                break
            continue
        try:
            chunk = os.read(fd, READ_CHUNK)
        except OSError:  # EIO: the pseudo-terminal's other side is closed
            chunk = b""
        if not chunk:
            break
        buffer += chunk
        *lines, buffer = separators.split(buffer)
        for raw in lines:
            on_segment(raw.decode("utf-8", "replace").rstrip("\r"), True)
        if buffer and buffer != offered:
            offered = buffer
            on_segment(buffer.decode("utf-8", "replace"), False)
    if buffer:
        on_segment(buffer.decode("utf-8", "replace"), True)
