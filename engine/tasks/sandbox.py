"""Run untrusted Python code in a limited child process.

Generated code never runs in the engine's process. :func:`execute` writes it to a
throwaway directory and runs it with the same interpreter in a child process that has

- a wall-clock limit, after which its whole process group is killed (``SIGKILL``), and
  in process mode every process still carrying the run's tag in its environment;
- resource limits set inside the child before the code starts: address space
  (``memory_mb``), CPU seconds, size of any file it writes, no core dumps, and in bwrap
  mode a process count;
- a launcher as the code's parent, so signalling ``os.getppid()`` never hits the engine;
- a scrubbed environment (no ``HOME`` secrets, proxies or tokens; a fixed hash seed);
- stdout and stderr captured through pipes, keeping at most :data:`OUTPUT_LIMIT` bytes
  of each (its beginning and its end), so a program printing forever costs nothing.

Mode ``"bwrap"`` additionally runs it under bubblewrap with every namespace unshared:
no network, a read-only view of the system and Python directories only, writable only
its work directory, ``/tmp`` and ``/dev/shm`` (each a tmpfs of :data:`TMP_LIMIT_MB` MiB
with bubblewrap 0.7 or later, so nothing it writes reaches the disk), and a PID namespace
so no process it starts outlives it. Mode ``"process"`` is the same without bubblewrap;
``"auto"`` picks bwrap when a probe run succeeds. ``docs/sandbox.md`` tabulates which
protection holds in which mode.

:func:`execute` is safe to call from many threads at once.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import re
import secrets
import selectors
import shutil
import signal
import site
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass

from engine.errors import ConfigError

__all__ = ["MODES", "OUTPUT_LIMIT", "Outcome", "available_mode", "execute"]

MODES = ("auto", "bwrap", "process")
OUTPUT_LIMIT = 64 * 1024  # bytes kept per stream: the first quarter and the last 3/4
FILE_LIMIT_MB = 16  # largest file the code may write
TMP_LIMIT_MB = 64  # size of each writable tmpfs under bwrap: /tmp, the work dir, /dev/shm
MAX_PROCESSES = 64  # processes and threads inside a bwrap sandbox
BWRAP = "/usr/bin/bwrap"
_GRACE = 0.5  # seconds to drain the pipes after the process group was killed
_PROGRAM = "main.py"
_TAG = "CODELLMTUNER_SANDBOX"  # environment variable that marks a process-mode run's processes

# Runs in the child before the code: set the limits, then run main.py as __main__ in a
# child of its own. The launcher stays as that child's parent, so a program that signals
# its parent (os.kill(os.getppid(), ...), SIGSTOP) hits the launcher, never the engine; it
# relays the program's exit code or signal. Python ignores SIGXFSZ; restoring the default
# turns "file too large" into a kill (crashed) instead of an OSError the code could
# swallow. A MemoryError that reaches the top is turned into a SIGKILL for the same reason:
# hitting a limit is a crash.
_LAUNCHER = """\
import os, resource, runpy, signal, site, sys
memory, cpu, fsize, nproc = (int(a) for a in sys.argv[1:5])
# Started with -S: what site does, but the .pth files. Their hooks (an editable install's
# import finder) cost time at every start and are nothing the program needs.
sys.prefix = sys.exec_prefix = sys.argv[6]
sys.path.extend(sys.argv[7:])
site.setquit(); site.setcopyright(); site.sethelper()
resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
if nproc:
    resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))
signal.signal(signal.SIGXFSZ, signal.SIG_DFL)
sys.argv = [sys.argv[5]]
child = os.fork()
if child:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    code = os.waitstatus_to_exitcode(os.waitpid(child, 0)[1])
    if code < 0:
        if -code not in (signal.SIGKILL, signal.SIGSTOP):
            signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    os._exit(code if code >= 0 else 128 - code)
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
except MemoryError:
    os.write(2, b"\\nsandbox: MemoryError, memory limit reached\\n")
    os.kill(os.getpid(), signal.SIGKILL)
"""


@dataclass(frozen=True)
class Outcome:
    """The result of one :func:`execute` call.

    ``status`` is ``"passed"`` (exit code 0), ``"failed"`` (an uncaught exception or
    another non-zero exit code), ``"timeout"`` (killed at the wall-clock limit) or
    ``"crashed"`` (killed by a signal or a resource limit: memory, CPU time, file size).
    ``exit_code`` is the exit code, ``-N`` for signal N, ``None`` after a timeout. Under
    bwrap an exit code above 128 is how bubblewrap reports a signal (128 + N), so
    ``sys.exit(137)`` reads as a crash there. ``stdout``/``stderr`` are decoded as UTF-8;
    beyond :data:`OUTPUT_LIMIT` bytes their middle is replaced by a marker line.
    """

    status: str
    exit_code: int | None
    stdout: str
    stderr: str
    seconds: float


def execute(code: str, *, timeout: float, memory_mb: int = 1024, mode: str = "auto") -> Outcome:
    """Run ``code`` as a Python program in a sandboxed child process.

    Args:
        code: the program's source; it runs as ``__main__`` in a fresh temporary
            directory that is removed afterwards.
        timeout: wall-clock limit in seconds, interpreter start-up included.
        memory_mb: address-space limit of the child in MiB.
        mode: ``"auto"``, ``"bwrap"`` or ``"process"`` (see the module docstring).

    Raises:
        ConfigError: an invalid ``timeout``, ``memory_mb`` or ``mode``, or ``"bwrap"``
            asked for where bubblewrap does not work.
    """
    if not (isinstance(timeout, (int, float)) and math.isfinite(timeout) and timeout > 0):
        raise ConfigError(f"sandbox timeout must be a positive number of seconds, got {timeout!r}")
    if not isinstance(memory_mb, int) or memory_mb < 64:
        raise ConfigError(f"sandbox memory_mb must be an integer >= 64, got {memory_mb!r}")
    return _execute(code, timeout, memory_mb, _resolve_mode(mode))


def available_mode() -> str:
    """The mode ``"auto"`` uses here: ``"bwrap"`` if a probe run under it passes, else
    ``"process"``. The probe runs once per process; its result is cached."""
    global _probed
    with _probe_lock:
        if _probed is None:
            _probed = "bwrap" if _bwrap_works() else "process"
        return _probed


_probe_lock = threading.Lock()
_probed: str | None = None


def _bwrap_works() -> bool:
    if not os.access(BWRAP, os.X_OK):
        return False
    try:
        outcome = _execute("print('ok')", 10.0, 256, "bwrap")
    except OSError:
        return False
    return outcome.status == "passed" and outcome.stdout.strip() == "ok"


def _execute(code: str, timeout: float, memory_mb: int, mode: str) -> Outcome:
    workdir = tempfile.mkdtemp(prefix="codellmtuner-sandbox-")
    try:
        path = os.path.join(workdir, _PROGRAM)
        with open(path, "w", encoding="utf-8") as file:
            file.write(code)
        # bwrap copies the program from this descriptor into the sandbox's work dir, as a
        # plain file the code's runner can remove (a bind mount could not be removed).
        with open(path, "rb") as program:
            fd = program.fileno() if mode == "bwrap" else None
            command = _command(mode, workdir, timeout, memory_mb, fd)
            return _run(command, workdir, timeout, mode, () if fd is None else (fd,))
    finally:
        _remove(workdir)


def _resolve_mode(mode: str) -> str:
    if mode not in MODES:
        raise ConfigError(f"unknown sandbox mode {mode!r}; use one of {', '.join(MODES)}")
    if mode == "auto":
        return available_mode()
    if mode == "bwrap" and available_mode() != "bwrap":
        raise ConfigError(f"sandbox mode 'bwrap' does not work here ({BWRAP} failed its probe)")
    return mode


def _command(
    mode: str, workdir: str, timeout: float, memory_mb: int, program_fd: int | None
) -> list[str]:
    limits = [
        str(memory_mb * 1024 * 1024),
        str(math.ceil(timeout) + 1),  # backstop only: the wall clock normally fires first
        str(FILE_LIMIT_MB * 1024 * 1024),
        # RLIMIT_NPROC counts every process of the user, so outside a user namespace any
        # small value would refuse forks for reasons unrelated to this program.
        str(MAX_PROCESSES if mode == "bwrap" else 0),
    ]
    # -I would also make Python ignore PYTHONHASHSEED; the environment is scrubbed anyway,
    # so -s (no user site) plus PYTHONSAFEPATH (set in _environment) isolate as well while
    # keeping set/dict-of-str iteration order, and so the scores, reproducible. -S: the
    # launcher puts the site-packages on sys.path itself, without running .pth files.
    python = [sys.executable, "-s", "-S", "-c", _LAUNCHER, *limits, _PROGRAM, sys.prefix,
              *site.getsitepackages()]  # fmt: skip
    if mode == "process":
        return python
    return [BWRAP, *_bwrap_args(workdir, program_fd), "--", *python]


def _bwrap_args(workdir: str, program_fd: int | None) -> list[str]:
    # --size is new in bwrap 0.7; without it a tmpfs may grow to half the RAM, so the work
    # dir stays on disk and /dev/shm unbounded there.
    sized = _bwrap_version() >= (0, 7)
    size = ["--size", str(TMP_LIMIT_MB * 1024 * 1024)] if sized else []
    args = ["--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL"]
    args += [*size, "--tmpfs", "/tmp"]  # first, so binds of paths under /tmp land on top of it
    for path in ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(path):  # merged-/usr systems: /lib -> usr/lib
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    for path in ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "alternatives"):
        args += ["--ro-bind-try", f"/etc/{path}", f"/etc/{path}"]
    for path in _python_dirs():
        args += ["--ro-bind", path, path]
    if sized:  # the work dir is a bounded tmpfs too: writing file after file cannot fill the disk
        program = os.path.join(workdir, _PROGRAM)
        args += [*size, "--tmpfs", workdir, "--file", str(program_fd), program]
    else:
        args += ["--bind", workdir, workdir]
    args += ["--chdir", workdir, "--proc", "/proc", "--dev", "/dev"]
    if sized:
        args += [*size, "--tmpfs", "/dev/shm"]
    # /dev (a tmpfs of half the RAM) and the sandbox's own root (a tmpfs) are read-only.
    return [*args, "--remount-ro", "/dev", "--remount-ro", "/"]


@functools.cache
def _bwrap_version() -> tuple[int, ...]:
    try:
        text = subprocess.run([BWRAP, "--version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return ()
    return tuple(int(part) for part in re.findall(r"\d+", text.stdout)[:3])


def _python_dirs() -> list[str]:
    """The directories the interpreter needs outside /usr (prefixes of the venv and of
    its base Python, symlinked or not), outermost first."""
    exe_root = os.path.dirname(os.path.dirname(os.path.realpath(sys.executable)))
    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix, exe_root}
    paths |= {os.path.realpath(p) for p in paths}
    kept: list[str] = []
    for path in sorted(p for p in paths if os.path.isdir(p) and p != "/"):
        if not any(_is_under(path, root) for root in (*kept, "/usr")):
            kept.append(path)
    return kept


def _is_under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def _environment(mode: str, workdir: str, tag: str) -> dict[str, str]:
    bindir = os.path.dirname(sys.executable)
    return {
        _TAG: tag,
        "PATH": f"{bindir}:/usr/local/bin:/usr/bin:/bin",
        "HOME": workdir,
        "TMPDIR": "/tmp" if mode == "bwrap" else workdir,
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "PYTHONHASHSEED": "0",
        "PYTHONSAFEPATH": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONIOENCODING": "utf-8",
        "PYTHONUNBUFFERED": "1",
    }


def _run(
    command: list[str], workdir: str, timeout: float, mode: str, pass_fds: tuple[int, ...]
) -> Outcome:
    start = time.monotonic()
    tag = secrets.token_hex(16)
    proc = subprocess.Popen(
        command,
        cwd=workdir,
        env=_environment(mode, workdir, tag),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its own process group, killed as a whole below
        pass_fds=pass_fds,
    )
    with proc:
        out, err = _Capped(), _Capped()
        # Under bwrap the PID namespace ends every process; in process mode those that
        # left the process group are found by the tag in their environment.
        sweep = tag if mode == "process" else None
        try:
            timed_out = _collect(proc, {proc.stdout: out, proc.stderr: err}, start + timeout, sweep)
        except BaseException:  # Ctrl-C or SIGTERM in the engine: the code must not outlive it
            _kill_group(proc.pid)
            if sweep is not None:
                _kill_tagged(sweep)
            raise
        code = proc.wait()
    seconds = time.monotonic() - start
    if mode != "process" and code > 128:  # bwrap reports "killed by signal N" as 128 + N
        code = 128 - code
    status = "timeout" if timed_out else _status(code)
    return Outcome(status, None if timed_out else code, out.text(), err.text(), seconds)


def _status(exit_code: int) -> str:
    if exit_code == 0:
        return "passed"
    return "crashed" if exit_code < 0 else "failed"


def _collect(proc: subprocess.Popen, sinks: dict, deadline: float, sweep: str | None) -> bool:
    """Read both pipes until the child exits or the deadline passes, then kill the process
    group (and with ``sweep``, every process tagged with it) and drain what is left.
    Returns whether the deadline was hit."""
    pidfd = _pidfd(proc.pid)
    with selectors.DefaultSelector() as selector:
        for pipe in sinks:
            selector.register(pipe, selectors.EVENT_READ)
        if pidfd is not None:
            selector.register(pidfd, selectors.EVENT_READ)
        timed_out = False
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                timed_out = True
                break
            # Without a pidfd, poll for the exit every 10 ms.
            ready = selector.select(left if pidfd is not None else min(left, 0.01))
            if _drain(selector, ready, sinks, pidfd) or (pidfd is None and proc.poll() is not None):
                break
        _kill_group(proc.pid)  # background children die with it, always
        if sweep is not None:
            _kill_tagged(sweep)
        if pidfd is not None:
            selector.unregister(pidfd)
            os.close(pidfd)
        # A process that escaped the group (process mode) may hold the pipes open: bounded.
        grace = time.monotonic() + _GRACE
        while selector.get_map() and time.monotonic() < grace:
            _drain(selector, selector.select(grace - time.monotonic()), sinks, None)
    return timed_out


def _drain(selector: selectors.BaseSelector, ready: list, sinks: dict, pidfd: int | None) -> bool:
    """Read every ready pipe (unregistering it at EOF); true when the child has exited."""
    exited = False
    for key, _ in ready:
        if pidfd is not None and key.fileobj == pidfd:
            exited = True
            continue
        chunk = os.read(key.fd, 65536)
        if chunk:
            sinks[key.fileobj].add(chunk)
        else:
            selector.unregister(key.fileobj)
    return exited


def _pidfd(pid: int) -> int | None:
    # A pidfd becomes readable when the process exits, without reaping it: the process
    # group id stays valid (and cannot be reused) until the kill below.
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # already gone
        os.killpg(pgid, signal.SIGKILL)


def _kill_tagged(tag: str) -> None:
    """``SIGKILL`` every process whose environment carries ``tag``: in process mode, the
    children that left the process group (``setsid``, double fork). A process that exec'd
    with a clean environment is not found; bwrap's PID namespace has no such gap."""
    needle = f"\0{_TAG}={tag}\0".encode()
    for _ in range(20):  # a process killed now may have forked just before: look again
        tagged = [pid for pid in _pids() if needle in _environ(pid)]
        if not tagged:
            return
        for pid in tagged:
            _kill_if_tagged(pid, needle)


def _pids() -> list[int]:
    try:
        return [int(name) for name in os.listdir("/proc") if name.isdigit()]
    except OSError:
        return []


def _environ(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/environ", "rb") as file:
            return b"\0" + file.read()  # a zombie's is empty
    except OSError:  # gone, or another user's
        return b""


def _kill_if_tagged(pid: int, needle: bytes) -> None:
    # Through a pidfd, checked again after opening it, so a reused pid is never signalled.
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    except (AttributeError, OSError):  # no pidfds (Linux < 5.3): accept a tiny reuse race
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
        return
    try:
        if needle in _environ(pid):
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
    except OSError:
        pass  # exited meanwhile
    finally:
        os.close(pidfd)


def _remove(workdir: str) -> None:
    try:
        shutil.rmtree(workdir)
    except OSError:  # the code may have made directories unreadable or unwritable
        for root, dirs, _ in os.walk(workdir):
            for name in [".", *dirs]:
                path = os.path.join(root, name)
                if not os.path.islink(path):  # never chmod through a link out of workdir
                    os.chmod(path, 0o700)
        shutil.rmtree(workdir, ignore_errors=True)


class _Capped:
    """Keeps the first quarter and the last three quarters of OUTPUT_LIMIT bytes."""

    def __init__(self) -> None:
        self.head = bytearray()
        self.tail = bytearray()
        self.dropped = 0

    def add(self, chunk: bytes) -> None:
        room = OUTPUT_LIMIT // 4 - len(self.head)
        if room > 0:
            self.head += chunk[:room]
            chunk = chunk[room:]
        self.tail += chunk
        excess = len(self.tail) - (OUTPUT_LIMIT - OUTPUT_LIMIT // 4)
        if excess > 0:
            del self.tail[:excess]
            self.dropped += excess

    def text(self) -> str:
        marker = f"\n[... {self.dropped} bytes dropped ...]\n".encode() if self.dropped else b""
        return bytes(self.head + marker + self.tail).decode("utf-8", errors="replace")
