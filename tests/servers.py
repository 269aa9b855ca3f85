"""A small HTTP relay for the server backend's tests: in front of a real ``transformers
serve`` (:func:`benchmarks._serve.transformers_serve`) it misbehaves the ways servers do
(drops a field, answers 503 for a while, never answers)."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Relay:
    """An HTTP server on loopback that passes requests on to ``target``, first applying
    ``edit`` to each JSON request body; ``hang`` makes it never answer, and ``fail`` answers
    503 to that many requests first. ``requests`` counts what it received."""

    def __init__(
        self, target: str, *, edit: Callable[[dict], dict] | None = None, hang: bool = False,
        fail: int = 0,
    ) -> None:  # fmt: skip
        self.target, self.edit, self.hang, self.fail = target, edit, hang, fail
        self.requests = 0
        relay = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                self._pass(None)

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                self._pass(relay.edit(body) if relay.edit else body)

            def _pass(self, body: dict | None) -> None:
                relay.requests += 1
                if relay.hang:
                    time.sleep(3600)
                if relay.fail > 0:
                    relay.fail -= 1
                    self._answer(503, b'{"detail": "busy"}')
                    return
                path = self.path.removeprefix("/v1")
                data = None if body is None else json.dumps(body).encode()
                request = urllib.request.Request(
                    relay.target + path, data, {"Content-Type": "application/json"}
                )
                try:
                    with urllib.request.urlopen(request, timeout=600) as response:
                        self._answer(response.status, response.read())
                except urllib.error.HTTPError as error:
                    self._answer(error.code, error.read())

            def _answer(self, status: int, payload: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> Relay:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
