"""`dlc serve`: the course in a browser — the labs, their runs, a lab started and watched live, the Playground.

A Starlette application (routes below; every page has a JSON twin under /api/, so what a test asserts is
what a student sees) run by uvicorn. `create_app` builds it for a runs folder; `serve` binds the socket,
prints the address and runs it until Ctrl-C or SIGTERM, then ends every lab run it started.

    GET  /                          the course: every lab with its three steps      /api/labs
    GET  /labs/{id}                 a lab's config form, live log, progress, report  /api/labs/{id}/config
    POST /api/labs/{id}/runs        start a run: 201 job, 400 the CLI's message, 404 unknown lab, 409 running
    GET  /api/jobs[/{job}]          jobs and their status; /events: server-sent events; POST .../stop
    GET  /runs, /runs/{name}        the runs folder; one run's report, metrics, config   /api/runs[/{name}]
    GET  /files/{path}              a file inside the runs folder (png, json, md, txt, csv, gif)
    GET  /static/{file}             the package's own script and style
    GET  /playground, /api/playground/...   the Playground (serve/playground.py)
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import importlib
import socket
import sys
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from dlconcepts.errors import UserError
from dlconcepts.serve import catalog, pages
from dlconcepts.serve.jobs import JobConflict, JobManager, lab_command
from dlconcepts.serve.security import LOOPBACK_NAMES, SameOriginMiddleware, safe_path

STATIC = Path(__file__).parent / "static"
MEDIA_TYPES = {".png": "image/png", ".gif": "image/gif", ".json": "application/json",
               ".md": "text/markdown; charset=utf-8", ".txt": "text/plain; charset=utf-8",
               ".csv": "text/csv; charset=utf-8"}
KEEPALIVE_S = 15.0
GRACEFUL_SHUTDOWN_S = 3  # open event streams (a Playground tab) get this long to close on Ctrl-C


def create_app(runs_dir: str | Path, *, jobs: JobManager | None = None, playground: Any = None,
               allowed_hosts: set[str] | None = None) -> Starlette:
    """The application for `runs_dir`. `jobs`: the lab runs (a JobManager; one is made if None); `playground`:
    the Playground's manager (serve/playground.py's PlaygroundManager; one is made if None and that module
    is there); `allowed_hosts`: the Host names answered (None: any; `serve` passes the loopback's names when
    it listens on the loopback only)."""
    runs_dir = Path(runs_dir)
    jobs = jobs if jobs is not None else JobManager(runs_dir)
    playground_routes, playground = _playground(playground)

    from dlconcepts.labs import all_labs

    labs = all_labs()

    def lab_or_404(request: Request) -> Any:
        lab_id = request.path_params["lab"]
        if lab_id not in labs:
            raise HTTPException(404, f"unknown lab '{lab_id}'; the labs: {', '.join(labs)}")
        return labs[lab_id]

    def job_or_404(request: Request) -> Any:
        job = jobs.get(request.path_params["job"])
        if job is None:
            raise HTTPException(404, f"no job '{request.path_params['job']}' on this server")
        return job

    # -- pages ------------------------------------------------------------------------------------
    # Handlers that read the runs folder are plain functions: Starlette runs them in its thread pool, so that
    # reading files never holds up the event loop that the live event streams share.
    def index(request: Request) -> Response:
        return page(pages.index_page([catalog.lab_summary(lab) for lab in labs.values()],
                                     catalog.list_runs(runs_dir), str(runs_dir)))

    def lab_form(request: Request) -> Response:
        lab = lab_or_404(request)
        runs = [r for e in catalog.list_runs(runs_dir) for r in (e, *e.children) if r.lab == lab.id]
        running = jobs.running_job(lab.id)
        return page(pages.lab_page(catalog.lab_summary(lab), catalog.lab_fields(lab), runs,
                                   running.id if running else None))

    def runs_list(request: Request) -> Response:
        return page(pages.runs_page(catalog.list_runs(runs_dir), str(runs_dir)))

    def run_view(request: Request) -> Response:
        detail = _detail_or_404(runs_dir, request.path_params["name"])
        job = jobs.job_of_run(detail.entry.name)
        return page(pages.run_page(detail, job.id if job is not None and job.running else None))

    async def files(request: Request) -> Response:
        relative = request.path_params["path"]
        path = safe_path(runs_dir, relative)
        if path is None or not path.is_file() or path.suffix.lower() not in MEDIA_TYPES:
            raise HTTPException(404, f"no file '{relative}' in the runs folder")
        return FileResponse(path, media_type=MEDIA_TYPES[path.suffix.lower()],
                            headers={"Cache-Control": "no-cache"})

    # -- API --------------------------------------------------------------------------------------
    def api_labs(request: Request) -> Response:
        return JSONResponse([{k: v for k, v in catalog.lab_summary(lab).items()
                              if k in ("id", "title", "function", "loss", "minimizer")} for lab in labs.values()])

    def api_lab_config(request: Request) -> Response:
        return JSONResponse(catalog.lab_fields(lab_or_404(request)))

    async def api_start(request: Request) -> Response:
        lab = lab_or_404(request)
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError):
            return _error("the request body must be JSON: {\"quick\": true, \"seed\": 0, \"values\": {\"lr\": \"0.01\"}}")
        problem = _body_problem(body)
        if problem:
            return _error(problem)
        try:
            # The CLI's parser and config resolution (importing the labs, torch): off the event loop.
            argv = await asyncio.to_thread(lab_command, runs_dir, lab.id, bool(body.get("quick", False)),
                                           body.get("seed"), body.get("values") or {})
            job = jobs.start(lab.id, argv)
        except JobConflict as exc:
            return _error(str(exc), 409)
        except UserError as exc:
            return _error(str(exc))
        return JSONResponse({"job": job.id, "run": job.run, "events": f"/api/jobs/{job.id}/events"}, status_code=201)

    def api_jobs(request: Request) -> Response:
        return JSONResponse([job.as_dict() for job in jobs.list()])

    def api_job(request: Request) -> Response:
        return JSONResponse(job_or_404(request).as_dict())

    async def api_stop(request: Request) -> Response:
        job = job_or_404(request)
        if not job.running or not job.stop():
            return _error(f"job {job.id} is not running ({job.status})", 409)
        return JSONResponse(job.as_dict(), status_code=202)

    async def api_events(request: Request) -> Response:
        job = job_or_404(request)
        try:
            after = int(request.headers.get("last-event-id") or 0)
        except ValueError:
            after = 0
        replay, queue = job.subscribe(asyncio.get_running_loop(), after)
        if queue is None and not replay:
            return Response(status_code=204)  # finished and nothing new: an EventSource stops reconnecting

        async def stream() -> AsyncIterator[bytes]:
            try:
                for event in replay:
                    yield event.encode()
                if queue is None:
                    return
                while True:
                    try:
                        event = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
                    except asyncio.TimeoutError:
                        yield b": keep-alive\n\n"
                        continue
                    if event is None:  # the server is stopping
                        return
                    yield event.encode()
                    if event.kind == "done":
                        return
            finally:
                job.unsubscribe(queue)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    def api_runs(request: Request) -> Response:
        return JSONResponse([entry.as_dict() for entry in catalog.list_runs(runs_dir)])

    def api_run(request: Request) -> Response:
        return JSONResponse(_detail_or_404(runs_dir, request.path_params["name"]).as_dict())

    # -- errors -----------------------------------------------------------------------------------
    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        message = exc.detail if exc.status_code != 405 else f"{request.method} is not allowed here"
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": message}, status_code=exc.status_code, headers=exc.headers)
        return page(pages.not_found_page(message), exc.status_code)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        jobs.begin_shutdown()
        await asyncio.to_thread(_shutdown, jobs, playground)

    routes = [
        Route("/", index),
        Route("/labs/{lab}", lab_form),
        Route("/runs", runs_list),
        Route("/runs/{name:path}", run_view),
        Route("/files/{path:path}", files),
        Route("/api/labs", api_labs),
        Route("/api/labs/{lab}/config", api_lab_config),
        Route("/api/labs/{lab}/runs", api_start, methods=["POST"]),
        Route("/api/jobs", api_jobs),
        Route("/api/jobs/{job}", api_job),
        Route("/api/jobs/{job}/events", api_events),
        Route("/api/jobs/{job}/stop", api_stop, methods=["POST"]),
        Route("/api/runs", api_runs),
        Route("/api/runs/{name:path}", api_run),
        *playground_routes,
        Mount("/static", app=StaticFiles(directory=STATIC), name="static"),
    ]
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={HTTPException: http_error})
    app.add_middleware(SameOriginMiddleware, allowed_hosts=allowed_hosts)
    app.state.jobs, app.state.playground, app.state.runs_dir = jobs, playground, runs_dir
    return app


def page(text: str, status_code: int = 200) -> HTMLResponse:
    return HTMLResponse(text, status_code=status_code,
                        headers={"Content-Security-Policy": pages.CONTENT_SECURITY_POLICY, "Cache-Control": "no-store"})


def _error(message: str, status_code: int = 400) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status_code)


def _detail_or_404(runs_dir: Path, name: str) -> catalog.RunDetail:
    detail = catalog.run_detail(runs_dir, name)
    if detail is None:
        raise HTTPException(404, f"'{name}' is not a run directory in the runs folder")
    return detail


def _body_problem(body: Any) -> str | None:
    """What is wrong with a start request's shape (its values are the CLI's to judge), or None."""
    if not isinstance(body, dict):
        return "the request body must be a JSON object: {\"quick\": true, \"seed\": 0, \"values\": {\"lr\": \"0.01\"}}"
    unknown = sorted(set(body) - {"quick", "seed", "values"})
    if unknown:
        return f"unknown field(s) {', '.join(map(repr, unknown))}; a start request has quick, seed and values"
    if not isinstance(body.get("quick", False), bool):
        return "quick must be true or false"
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, (bool, float)) or not isinstance(seed, (int, str))):
        return "seed must be an integer, or null for the default"
    values = body.get("values") or {}
    if not isinstance(values, dict) or not all(isinstance(k, str) for k in values):
        return "values must be an object of config keys and their values, e.g. {\"lr\": \"0.01\"}"
    if any(isinstance(v, dict) for v in values.values()):
        return "each value must be a text, a number, true/false, null or a list"
    return None


def _playground(playground: Any) -> tuple[list, Any]:
    """The Playground's routes and its manager: from serve/playground.py, if that module is installed."""
    try:
        module = importlib.import_module("dlconcepts.serve.playground")
    except ModuleNotFoundError as exc:
        if exc.name != "dlconcepts.serve.playground":
            raise
        async def missing(request: Request) -> Response:
            return page(pages.not_found_page("the Playground is not part of this installation"), 404)
        return [Route("/playground", missing)], None
    manager = playground if playground is not None else module.PlaygroundManager()
    return list(module.playground_routes(manager)), manager


def _shutdown(jobs: JobManager, playground: Any) -> None:
    """End the lab runs and the Playground's sessions (idempotent)."""
    stoppers = [threading.Thread(target=jobs.shutdown)]
    if playground is not None and hasattr(playground, "shutdown"):
        stoppers.append(threading.Thread(target=playground.shutdown))
    for thread in stoppers:
        thread.start()
    for thread in stoppers:
        thread.join()


# ------------------------------------------------------------------------------------------ dlc serve

def serve(runs_dir: str | Path = "runs", host: str = "127.0.0.1", port: int = 8000) -> int:
    """`dlc serve`: listen on host:port until Ctrl-C or SIGTERM; then end every lab run started here."""
    runs_dir = Path(runs_dir)
    if runs_dir.exists() and not runs_dir.is_dir():
        raise UserError(f"--runs {str(runs_dir)!r} is a file; give the folder of your runs (default runs/)")
    if not 0 <= port <= 65535:
        raise UserError(f"--port {port} is not a port; give 1 to 65535 (0: any free port)")
    sock = _bind(host, port)  # before anything else: a port in use is one line, not a traceback from uvicorn
    port = sock.getsockname()[1]
    loopback = host in LOOPBACK_NAMES
    if not loopback:
        print(f"dlc serve: warning: listening on {host}, not on 127.0.0.1: anyone who can reach this machine on "
              f"port {port} can read your runs and start labs on it. Use --host 127.0.0.1 unless you mean it.",
              file=sys.stderr, flush=True)
    jobs = JobManager(runs_dir)
    app = create_app(runs_dir, jobs=jobs, allowed_hosts=(LOOPBACK_NAMES | {host}) if loopback else None)
    shown_host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    shown_host = f"[{shown_host}]" if ":" in shown_host else shown_host
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False, lifespan="on",
                            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S)
    server = _Server(config, on_exit=lambda: _begin_exit(jobs, app.state.playground))
    print(f"dlc serve: http://{shown_host}:{port}/  (runs: {runs_dir}; Ctrl-C stops)", flush=True)
    try:
        server.run(sockets=[sock])
    finally:
        _shutdown(jobs, app.state.playground)  # again, for a second Ctrl-C that skipped the app's shutdown
        sock.close()
    print("dlc serve: stopped", flush=True)
    return 0


def _bind(host: str, port: int) -> socket.socket:
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    except socket.gaierror as exc:
        raise UserError(f"--host {host!r} is not an address of this machine: {exc.strerror}") from None
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on such sockets (else +40 ms a keep-alive request)
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise UserError(f"port {port} on {host} is already in use; stop what uses it or choose another "
                            "with --port") from None
        raise UserError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    return sock


def _begin_exit(jobs: JobManager, playground: Any) -> None:
    """On Ctrl-C / SIGTERM, before uvicorn waits for open connections: end the event streams, so it need not
    wait, and start stopping the Playground's sessions (their streams end with them)."""
    jobs.begin_shutdown()
    if playground is not None and hasattr(playground, "shutdown"):
        threading.Thread(target=playground.shutdown, daemon=True).start()


class _Server(uvicorn.Server):
    """uvicorn's server, whose first Ctrl-C / SIGTERM also ends our event streams, and which does not re-raise
    the signal after a clean stop (Ctrl-C is how `dlc serve` is meant to end: exit code 0)."""

    def __init__(self, config: uvicorn.Config, on_exit: Callable[[], None]):
        super().__init__(config)
        self._on_exit = on_exit

    def handle_exit(self, sig: int, frame: Any) -> None:
        if self.should_exit:
            self.force_exit = True  # a second Ctrl-C: stop waiting for open connections
            return
        self.should_exit = True
        # In a thread: a signal handler must not wait for a lock the interrupted code may hold.
        threading.Thread(target=self._on_exit, daemon=True).start()
