"""Servers on loopback for the tests and benchmarks: a real ``transformers serve``
(:func:`transformers_serve`; the server backend's tests and the throughput benchmark use
it), and a relay in front of one that misbehaves the ways servers do (drops a field,
answers 503 for a while, never answers)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Served:
    """A running ``transformers serve``: its base URL, the model id it serves, its process."""

    url: str
    model: str
    process: subprocess.Popen
    log: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def transformers_serve(
    model_dir: Path, log: Path, port: int | None = None, *, continuous_batching: bool = False
) -> Served:
    """Start ``transformers serve MODEL_DIR`` on loopback (CPU, offline) and wait until it
    lists the model; the model id is the folder's path, as it lists it."""
    port = port or free_port()
    exe = Path(sys.executable).with_name("transformers")
    command = [str(exe if exe.exists() else shutil.which("transformers")), "serve",
               str(model_dir), "--host", "127.0.0.1", "--port", str(port), "--device", "cpu",
               "--log-level", "warning"]  # fmt: skip
    if continuous_batching:  # requests in flight share batches
        command.append("--continuous-batching")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    with open(log, "ab") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env,
                                   start_new_session=True)  # fmt: skip
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"transformers serve exited: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url + "/models", timeout=2) as response:
                models = [m["id"] for m in json.loads(response.read())["data"]]
            return Served(url, models[0], process, log)
        except OSError:
            time.sleep(0.5)
    os.killpg(process.pid, signal.SIGKILL)
    raise RuntimeError("transformers serve did not answer within 180 s")


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
