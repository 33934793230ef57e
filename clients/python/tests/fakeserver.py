"""A local HTTP/1.1 server in a thread, answering with a function, and recording requests."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Dict, List, Optional, Tuple
from urllib.parse import parse_qsl, urlsplit


@dataclass
class Request:
    method: str
    path: str
    query: Dict[str, str]
    headers: Dict[str, str]
    body: bytes
    #: The client's (host, port): one per connection.
    peer: Tuple[str, int]

    def json(self):
        return json.loads(self.body) if self.body else None


@dataclass
class Answer:
    status: int = 200
    body: object = b""
    headers: Dict[str, str] = field(default_factory=dict)
    #: Seconds to wait before answering.
    delay: float = 0.0


Handler = Callable[[Request], Answer]


class FakeServer:
    """``with FakeServer(handle) as server:`` serves on ``server.url`` until the block ends."""

    def __init__(self, handle: Handler):
        self.handle = handle
        self.requests: List[Request] = []
        self._lock = threading.Lock()
        outer = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def _serve(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                request = Request(
                    self.command,
                    parts.path,
                    dict(parse_qsl(parts.query)),
                    {k.lower(): v for k, v in self.headers.items()},
                    body,
                    self.client_address,
                )
                with outer._lock:
                    outer.requests.append(request)
                answer = outer.handle(request)
                if answer.delay:
                    threading.Event().wait(answer.delay)
                data = answer.body
                if not isinstance(data, bytes):
                    data = json.dumps(data).encode()
                try:
                    self.send_response(answer.status)
                    for k, v in answer.headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            do_GET = do_POST = do_PUT = do_DELETE = _serve

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread: Optional[threading.Thread] = None

    def __enter__(self) -> "FakeServer":
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()


def scripted(answers: List[Answer]) -> Handler:
    """Answers with ``answers`` in order, then with the last one."""
    remaining = list(answers)
    lock = threading.Lock()

    def handle(_request: Request) -> Answer:
        with lock:
            return remaining.pop(0) if len(remaining) > 1 else remaining[0]

    return handle
