"""`codellmtuner serve`: the app drawn in a browser through textual-serve."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time

import pytest

from tests import ROOT
from tests.servers import free_port

pytest.importorskip("textual_serve")


async def _first_screen(port: int, timeout: float = 60.0) -> str:
    """What the app sends a browser tab until its setup screen shows (or timeout)."""
    import aiohttp

    received = b""
    url = f"http://localhost:{port}/ws?width=80&height=24"
    async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
        end = time.monotonic() + timeout
        while b"new run" not in received and time.monotonic() < end:
            try:
                message = await ws.receive(timeout=end - time.monotonic())
            except asyncio.TimeoutError:
                break
            if message.type == aiohttp.WSMsgType.BINARY:
                received += message.data
            elif message.type != aiohttp.WSMsgType.TEXT:
                break
    return received.decode("utf-8", "replace")


@pytest.mark.slow
def test_serve_draws_the_setup_screen_in_a_browser_session(tmp_path):
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "tui.commands", "serve", "--port", str(port),
         "--store", str(tmp_path / "samples.db")],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            with socket.socket() as s:
                if s.connect_ex(("localhost", port)) == 0:
                    break
            assert time.monotonic() < deadline and server.poll() is None, "server did not start"
            time.sleep(0.2)
        screen = asyncio.run(_first_screen(port))
        assert "new run" in screen and "Candidates" in screen
    finally:
        server.terminate()
        server.wait(timeout=10)
