"""What keeps `dlc serve` from being a door into the student's machine.

Three rules, each with one place in the code:

1. Only files inside the runs folder can be read: `safe_path` resolves a path from a URL (symlinks too) and
   gives None — a 404 — for anything that would leave the folder: `..`, an absolute path, a symlink pointing
   out, a hidden file (`.report.md.*.tmp`, a write in progress).
2. A request that changes state (POST, PUT, PATCH, DELETE) must come from the server's own pages:
   `SameOriginMiddleware` answers 403 when its `Origin` (or, without one, `Referer`) names another origin.
   Browsers send `Origin` on every cross-origin POST, so a page elsewhere on the web cannot start a lab on
   a student's machine; a request with neither header (curl, scripts, the tests) did not come from a
   browser page and is let through. Pages cannot be framed (X-Frame-Options: DENY), so another site cannot
   trick a click on our own Start button either.
3. While the server listens on the loopback only (the default), it answers only to the names of the
   loopback (`allowed_hosts`): a DNS-rebinding page — evil.example resolving to 127.0.0.1, so that its
   requests are "same-origin" — gets a 403 for reads as well as writes.

Lab ids and config values are checked where they are used (`jobs.lab_command`: the CLI's own parser and
config resolution).
"""

from __future__ import annotations

import json
from collections.abc import Collection
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})
DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
]


def safe_path(root: str | Path, relative: str) -> Path | None:
    """`root/relative` resolved, if it exists and stays inside `root` (symlinks resolved); else None.

    `relative` comes from a URL, already percent-decoded (`%2e%2e` is `..` by now). Refused before touching
    the disk: an empty or absolute path, a NUL byte, a backslash, a `..` part, a part starting with '.'
    (hidden files, and the temporary names of atomic writes). After resolving: anything outside `root`."""
    if not relative or "\x00" in relative or "\\" in relative:
        return None
    pure = PurePosixPath(relative)
    if pure.is_absolute() or any(part == ".." or part.startswith(".") for part in pure.parts):
        return None
    try:
        base = Path(root).resolve(strict=True)
        target = (base / pure).resolve(strict=True)
    except (OSError, RuntimeError):  # missing, a symlink loop, a name too long
        return None
    if target == base or base not in target.parents:
        return None
    return target


def _origin_of(url: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an origin or URL, the port filled in from the scheme; None if unreadable."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError:
        return None
    if not parts.scheme or not host:
        return None
    scheme = parts.scheme.lower()
    return scheme, host.lower(), port if port is not None else DEFAULT_PORTS.get(scheme, 0)


def own_origin(scheme: str, host_header: str | None) -> tuple[str, str, int] | None:
    """The origin of the server as the request addressed it: its scheme and its Host header."""
    if not host_header:
        return None
    return _origin_of(f"{scheme}://{host_header}")


def host_name(host_header: str | None) -> str | None:
    """'127.0.0.1' of '127.0.0.1:8000', '::1' of '[::1]:8000'."""
    if not host_header:
        return None
    try:
        return urlsplit(f"//{host_header}").hostname
    except ValueError:
        return None


def refusal(scope: dict[str, Any], headers: dict[str, str], allowed_hosts: Collection[str] | None) -> str | None:
    """Why this request is refused (the message of a 403), or None."""
    host = headers.get("host")
    if allowed_hosts is not None and host_name(host) not in allowed_hosts:
        return (f"this server answers only to {', '.join(sorted(allowed_hosts))}, not to the host {host!r}; "
                "open the address 'dlc serve' printed")
    if scope["method"] not in STATE_CHANGING:
        return None
    claimed = headers.get("origin") or headers.get("referer")
    if claimed is None:  # not sent by a browser page (curl, a script): nothing to forge
        return None
    if _origin_of(claimed) is None or _origin_of(claimed) != own_origin(scope.get("scheme", "http"), host):
        return (f"refused: this request came from another site ({claimed}); only the pages of this server "
                "may start or change anything")
    return None


class SameOriginMiddleware:
    """ASGI middleware: rules 2 and 3 of the module docstring, and the security headers on every response."""

    def __init__(self, app: Any, allowed_hosts: Collection[str] | None = None):
        self.app = app
        self.allowed_hosts = frozenset(allowed_hosts) if allowed_hosts is not None else None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        problem = refusal(scope, headers, self.allowed_hosts)
        if problem is not None:
            body = json.dumps({"error": problem}).encode()
            await send({"type": "http.response.start", "status": 403, "headers": [
                (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                *SECURITY_HEADERS]})
            await send({"type": "http.response.body", "body": body})
            return

        async def send_with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                present = {name for name, _ in message.get("headers", [])}
                message = {**message, "headers": [*message.get("headers", []),
                                                   *(h for h in SECURITY_HEADERS if h[0] not in present)]}
            await send(message)

        await self.app(scope, receive, send_with_headers)
