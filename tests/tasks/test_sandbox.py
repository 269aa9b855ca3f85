"""The sandbox on real child processes, in every mode this machine supports."""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from engine.errors import ConfigError
from engine.tasks.sandbox import FILE_LIMIT_MB, OUTPUT_LIMIT, TMP_LIMIT_MB, available_mode, execute


@pytest.fixture(params=["process", "bwrap"])
def mode(request):
    if request.param == "bwrap" and available_mode() != "bwrap":
        pytest.skip("bubblewrap does not work on this machine")
    return request.param


def _processes_with(marker: str) -> list[int]:
    """Pids of live (non-zombie) host processes whose command line contains ``marker``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                pass  # exited while we looked
    return found


def _wait_until(condition, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def test_exit_zero_passes_with_its_output(mode):
    outcome = execute(
        "import sys\nprint('out')\nprint('err', file=sys.stderr)", timeout=10, mode=mode
    )
    assert (outcome.status, outcome.exit_code) == ("passed", 0)
    assert outcome.stdout == "out\n" and outcome.stderr == "err\n"
    assert 0 < outcome.seconds < 10


def test_failed_assertion_fails(mode):
    outcome = execute("assert 1 + 1 == 3", timeout=10, mode=mode)
    assert (outcome.status, outcome.exit_code) == ("failed", 1)
    assert "AssertionError" in outcome.stderr


def test_exception_and_nonzero_exit_fail(mode):
    raised = execute("raise ValueError('boom')", timeout=10, mode=mode)
    assert raised.status == "failed" and "ValueError: boom" in raised.stderr
    exited = execute("import sys\nsys.exit(3)", timeout=10, mode=mode)
    assert (exited.status, exited.exit_code) == ("failed", 3)


def test_infinite_loop_times_out_promptly(mode):
    outcome = execute("while True:\n    pass", timeout=1, mode=mode)
    assert (outcome.status, outcome.exit_code) == ("timeout", None)
    assert 1 <= outcome.seconds < 3


def test_printing_forever_times_out_with_bounded_output(mode):
    code = "print('first line', flush=True)\nwhile True:\n    print('x' * 1000)"
    outcome = execute(code, timeout=1, mode=mode)
    assert outcome.status == "timeout" and outcome.seconds < 3
    assert len(outcome.stdout) <= OUTPUT_LIMIT + 100  # plus the marker line
    assert outcome.stdout.startswith("first line\n") and "bytes dropped" in outcome.stdout
    assert outcome.stdout.rstrip("\n").endswith("x" * 100)  # the end is kept too


def test_killed_by_a_signal_crashes(mode):
    outcome = execute("import os\nos.kill(os.getpid(), 9)", timeout=10, mode=mode)
    assert (outcome.status, outcome.exit_code) == ("crashed", -9)


def test_memory_bomb_crashes(mode):
    outcome = execute("block = bytearray(512 * 2**20)", timeout=10, memory_mb=256, mode=mode)
    assert outcome.status == "crashed"
    assert "memory limit" in outcome.stderr
    within = execute("block = bytearray(64 * 2**20)", timeout=10, memory_mb=256, mode=mode)
    assert within.status == "passed"  # the limit is the one asked for, not something lower


def test_writing_a_file_over_the_size_limit_crashes(mode):
    size = (FILE_LIMIT_MB + 1) * 2**20
    code = f"with open('big', 'wb') as f:\n    f.write(bytes({size}))"
    outcome = execute(code, timeout=10, mode=mode)
    assert outcome.status == "crashed" and outcome.exit_code == -25  # SIGXFSZ


def test_background_process_does_not_outlive_the_run(mode):
    marker = f"sandbox-test-{uuid.uuid4().hex}"
    code = (
        "import subprocess, sys, time\n"
        f"subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)', {marker!r}])\n"
        "time.sleep(1.5)\n"
    )
    runner = threading.Thread(target=execute, args=(code,), kwargs={"timeout": 20, "mode": mode})
    runner.start()
    assert _wait_until(lambda: _processes_with(marker)), "the background child never started"
    runner.join()
    assert _wait_until(lambda: not _processes_with(marker)), "the background child survived"


def test_an_interrupted_engine_leaves_no_running_code(mode):
    """Ctrl-C (or SIGTERM, which the CLI turns into KeyboardInterrupt) while code runs."""
    marker = f"sandbox-test-{uuid.uuid4().hex}"
    code = (
        "import subprocess, sys, time\n"
        f"subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)', {marker!r}])\n"
        "time.sleep(60)\n"
    )
    previous = signal.signal(signal.SIGALRM, _interrupt)
    try:
        signal.setitimer(signal.ITIMER_REAL, 1.5)
        with pytest.raises(KeyboardInterrupt):
            execute(code, timeout=30, mode=mode)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert _wait_until(lambda: not _processes_with(marker)), "the code outlived the interrupt"


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def test_detached_process_does_not_outlive_a_bwrap_run(mode):
    if mode != "bwrap":
        pytest.skip("only a PID namespace catches a child that left the process group")
    marker = f"sandbox-test-{uuid.uuid4().hex}"
    code = (
        "import subprocess, sys\n"
        f"subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)', {marker!r}],\n"
        "                 start_new_session=True)\n"
    )
    assert execute(code, timeout=20, mode=mode).status == "passed"
    assert _wait_until(lambda: not _processes_with(marker)), "the detached child survived"


def test_environment_is_scrubbed(mode, monkeypatch):
    monkeypatch.setenv("CODELLMTUNER_TEST_SECRET", "hunter2")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    code = (
        "import os\n"
        "assert 'CODELLMTUNER_TEST_SECRET' not in os.environ\n"
        "assert not any('proxy' in k.lower() for k in os.environ)\n"
        f"assert os.environ['HOME'] != {str(Path.home())!r}\n"
        "assert os.environ['PYTHONHASHSEED'] == '0'\n"
    )
    outcome = execute(code, timeout=10, mode=mode)
    assert outcome.status == "passed", outcome.stderr


def test_the_interpreter_is_the_engines_with_its_packages_but_no_pth_hooks(mode):
    # The launcher starts Python with -S and puts site-packages back itself: installed
    # packages import and site's builtins exist, but no .pth file ran (an editable
    # install's finder, say).
    import numpy

    code = (
        "import sys, numpy\n"
        f"assert sys.prefix == {sys.prefix!r}, sys.prefix\n"
        f"assert numpy.__version__ == {numpy.__version__!r}\n"
        "assert not any('__editable__' in repr(f) for f in sys.meta_path + sys.path_hooks)\n"
        "exit(7)\n"
    )
    outcome = execute(code, timeout=10, mode=mode)
    assert outcome.exit_code == 7, outcome.stderr


def test_hash_seed_is_fixed_so_runs_repeat(mode):
    code = "print(hash('abc'), list({'x', 'y', 'z', 'w'}))"
    assert (
        execute(code, timeout=10, mode=mode).stdout == execute(code, timeout=10, mode=mode).stdout
    )


def test_work_dir_is_the_cwd_and_is_removed(mode):
    code = "import os\nopen('scratch.txt', 'w').write('x')\nprint(os.getcwd())"
    outcome = execute(code, timeout=10, mode=mode)
    assert outcome.status == "passed"
    workdir = Path(outcome.stdout.strip())
    assert workdir.name.startswith("codellmtuner-sandbox-") and not workdir.exists()


def test_loopback_server_of_the_host_is_unreachable_only_under_bwrap(mode):
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        code = f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=3).close()"
        outcome = execute(code, timeout=10, mode=mode)
    expected = "failed" if mode == "bwrap" else "passed"
    assert outcome.status == expected, outcome.stderr


def test_network_is_unreachable_under_bwrap(mode):
    if mode != "bwrap":
        pytest.skip("process mode leaves the network alone")
    code = "import socket\nsocket.create_connection(('1.1.1.1', 53), timeout=3)"
    outcome = execute(code, timeout=10, mode=mode)
    assert outcome.status == "failed" and "Network is unreachable" in outcome.stderr


def test_writes_outside_the_work_dir_do_not_land_under_bwrap(mode, tmp_path):
    if mode != "bwrap":
        pytest.skip("process mode cannot stop writes outside the work dir")
    target = tmp_path / "escaped.txt"
    in_python = Path(sys.prefix) / f"escaped-{uuid.uuid4().hex}.txt"
    code = (
        "for path in [" + repr(str(target)) + ", " + repr(str(in_python)) + "]:\n"
        "    try:\n"
        "        open(path, 'w').write('x')\n"
        "    except OSError as error:\n"
        "        print(type(error).__name__)\n"
    )
    try:
        outcome = execute(code, timeout=10, mode=mode)
        assert not target.exists() and not in_python.exists()
        assert "OSError" in outcome.stdout  # the Python prefix is mounted read-only
    finally:
        in_python.unlink(missing_ok=True)


def test_private_tmp_is_bounded_and_root_is_read_only_under_bwrap(mode):
    if mode != "bwrap":
        pytest.skip("process mode has no private /tmp")
    code = (
        "import os\n"
        "try:\n"
        "    open('/escaped', 'w')\n"
        "except OSError as error:\n"
        "    print(error.errno)\n"
        f"for i in range({TMP_LIMIT_MB // 8 + 2}):\n"
        "    with open(f'/tmp/fill{i}', 'wb') as f:\n"
        "        f.write(bytes(8 * 2**20))\n"
    )
    outcome = execute(code, timeout=10, mode=mode)
    assert outcome.stdout.strip() == "30"  # EROFS
    assert outcome.status == "failed" and "No space left on device" in outcome.stderr


def test_home_is_not_visible_under_bwrap(mode):
    if mode != "bwrap":
        pytest.skip("process mode can read the user's home")
    home = Path.home()
    needed = {
        Path(p).resolve().relative_to(home).parts[0]
        for p in (sys.prefix, sys.base_prefix)
        if Path(p).resolve().is_relative_to(home)
    }  # the interpreter's own folders under home are mounted, nothing else
    entries = set(os.listdir(home))
    if not entries - needed:
        pytest.skip("the home folder holds nothing besides Python")
    code = f"import json, os\nh = {str(home)!r}\n"
    code += "print(json.dumps(os.listdir(h) if os.path.isdir(h) else []))"
    outcome = execute(code, timeout=10, mode=mode)
    assert outcome.status == "passed" and set(json.loads(outcome.stdout)) <= needed


def test_many_threads_at_once_each_get_their_own_run(mode):
    def run(i: int):
        return execute(f"print({i} * {i})", timeout=20, mode=mode)

    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = list(pool.map(run, range(16)))
    assert [o.stdout for o in outcomes] == [f"{i * i}\n" for i in range(16)]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"timeout": 0}, "timeout"),
        ({"timeout": float("inf")}, "timeout"),
        ({"timeout": 1, "memory_mb": 8}, "memory_mb"),
        ({"timeout": 1, "mode": "docker"}, "unknown sandbox mode 'docker'"),
    ],
)
def test_invalid_arguments_are_rejected(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        execute("pass", **kwargs)


def test_auto_mode_is_the_available_mode():
    assert available_mode() in ("bwrap", "process")
    assert execute("pass", timeout=10).status == "passed"
