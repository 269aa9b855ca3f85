"""A real optuna-dashboard on loopback, for the tests that read a store through it."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


@contextlib.contextmanager
def optuna_dashboard(url: str) -> Iterator[str]:
    """Run ``optuna-dashboard URL`` on a free loopback port; yields its ``/api/studies``
    address once it answers (within 30 s), and stops it afterwards."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dashboard = Path(sys.executable).with_name("optuna-dashboard")
    process = subprocess.Popen(
        [str(dashboard), url, "--host", "127.0.0.1", "--port", str(port), "--quiet"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    api = f"http://127.0.0.1:{port}/api/studies"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                get_json(api)
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"optuna-dashboard did not answer: {process.stderr.read()!r}")
                time.sleep(0.2)
        yield api
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        process.stderr.close()
