"""A real HTTP server on 127.0.0.1 in a thread, standing in for a media backend or a peer.

Tests switch what it answers (``server.answer(...)``) and read what it received
(``server.requests``); ``stop()`` closes the port, so the next request is refused, and
``start()`` opens the same port again.
"""

from __future__ import annotations

import socket
import ssl
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Answer:
    status: int = 200
    body: bytes = b"OK"
    headers: dict[str, str] = field(default_factory=dict)
    # Seconds to wait before answering (a hung backend), or between body bytes (a trickle).
    delay: float = 0.0
    trickle: float = 0.0
    # Send a Content-Length (False: close-delimited body).
    length: bool = True


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True


class LocalServer:
    def __init__(self, *, tls: ssl.SSLContext | None = None) -> None:
        self.tls = tls
        self.port = 0
        self.requests: list[Received] = []
        self._answer = Answer()
        self._routes: dict[str, Answer] = {}
        self._release = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def answer(
        self, status: int = 200, body: bytes | str = b"OK", *, path: str | None = None, **options
    ) -> None:
        """What every request (or, with ``path``, requests for that path) gets from now on."""
        answer = Answer(
            status=status, body=body.encode() if isinstance(body, str) else body, **options
        )
        if path is None:
            self._answer = answer
        else:
            self._routes[path] = answer

    def start(self) -> LocalServer:
        self._release.clear()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                owner.requests.append(
                    Received(
                        method=self.command,
                        path=self.path,
                        headers={k.lower(): v for k, v in self.headers.items()},
                        body=self.rfile.read(length) if length else b"",
                    )
                )
                answer = owner._routes.get(self.path.split("?")[0], owner._answer)
                if answer.delay and owner._release.wait(answer.delay):
                    return
                self.send_response(answer.status)
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                if answer.length:
                    self.send_header("Content-Length", str(len(answer.body)))
                self.send_header("Connection", "close")
                self.end_headers()
                if self.command == "HEAD":
                    return
                if answer.trickle:
                    for byte in answer.body:
                        if owner._release.wait(answer.trickle):
                            return
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                else:
                    self.wfile.write(answer.body)

            do_GET = do_POST = do_HEAD = do_PUT = do_DELETE = _handle

            def log_message(self, format: str, *args: object) -> None:
                pass

        server = _Server(("127.0.0.1", self.port), Handler)
        if self.tls is not None:
            server.socket = self.tls.wrap_socket(server.socket, server_side=True)
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Close the port: connections to it are now refused."""
        self._release.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None


def free_port() -> int:
    """A port nothing listens on (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
