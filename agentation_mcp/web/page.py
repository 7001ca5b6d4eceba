"""The live page at `/`: one HTML page, its script and its style sheet, served from package data.

The page (`page.html`, `page.js`, `page.css` beside this module) shows the person at the
browser who is connected and what became of their annotations; it reads the
same routes as everyone (`/status`, `/status/events`, `/sessions`, `/events`),
so it passes the same gate. Nothing here is built at request time but the
server's port, written into the page's `<Agentation endpoint=...>` hint. The
page may only load from this server and talk to it (a Content-Security-Policy
of `'self'`), and it never turns stored text into markup.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .wire import Headers, Request

_POLICY = (
    b"default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
    b"base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_COMMON: Headers = [
    (b"cache-control", b"no-cache"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"content-security-policy", _POLICY),
]
PORT_MARK = b"{{port}}"


@dataclass(frozen=True, slots=True)
class PageFile:
    name: str
    content_type: bytes


FILES = {
    "/": PageFile("page.html", b"text/html; charset=utf-8"),
    "/page.js": PageFile("page.js", b"text/javascript; charset=utf-8"),
    "/page.css": PageFile("page.css", b"text/css; charset=utf-8"),
}


def _read(name: str) -> bytes:
    return Path(__file__).with_name(name).read_bytes()


class Page:
    """Answers `GET` and `HEAD` on the page's paths; the files are read once, when it is built."""

    def __init__(self) -> None:
        self._files = {path: (file, _read(file.name)) for path, file in FILES.items()}
        self._html_by_port: dict[int, bytes] = {}

    @staticmethod
    def serves(method: str, path: str) -> bool:
        return path in FILES and method in ("GET", "HEAD")

    def body(self, path: str, port: int) -> bytes:
        """The file at `path`; the page itself with `port` where its endpoint hint names the server."""
        _, content = self._files[path]
        if path != "/":
            return content
        html = self._html_by_port.get(port)
        if html is None:
            html = self._html_by_port[port] = content.replace(PORT_MARK, b"%d" % port)
        return html

    async def serve(self, request: Request, cors: Headers) -> None:
        file, _ = self._files[request.path]
        server = request.server
        body = self.body(request.path, server[1] if server else 4747)
        await request.respond(200, [*cors, (b"content-type", file.content_type), *_COMMON], body)
