"""``transformers serve`` on loopback, for the throughput benchmark and the server
backend's tests."""

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
from dataclasses import dataclass
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
