"""`corral` processes forked from an interpreter that has already imported Corral.

A `corral serve` spends about 1.2 s of CPU importing FastAPI, SQLAlchemy, Pydantic and its own
routes before it answers, an agent 0.4 s, a CLI command 0.3 s; the process tests start some
six hundred of them, and on two cores those imports were a third of the suite's time. The test
run therefore keeps one server process (this module run as `python -m tests.forkserver SOCKET`;
started by the run's controller for all its workers, or by a test process on first use) that
imports them once, builds the `corral` command once (`corral.cli.command`: every command's
signature read, some 60 ms), and forks a child per command. The child is a process of its own,
as with `subprocess`: its own pid, environment, working folder, standard streams and signals;
it then runs `python -m corral ARGS` (`runpy`), exits as the interpreter would (threads joined,
`atexit`, streams flushed), and its exit status is passed back. Only the imports and the built
command are shared, copied on write.

What a fresh interpreter would do differently, and how the child does it instead:
- the environment is the caller's (`os.environ` replaced before `corral` runs; PYTHONUNBUFFERED
  makes the standard streams write through);
- rich's consoles, made at import, are made again with that environment;
- signal handlers are the defaults again, and every descriptor but 0, 1 and 2 is closed.

Tests whose subject is a fresh interpreter (the README tour, the `corral` script) still start one.
"""

from __future__ import annotations

import atexit
import contextlib
import io
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

_MESSAGE = 1 << 20  # a request is one datagram: argv, environment and working folder
_WARM = (
    # what `corral serve`, `corral agent run|register` and the CLI import when they run
    "corral.cli.main", "corral.cli.serve", "corral.cli.agent", "corral.app", "corral.api.routes",
    "corral.controlplane", "corral.gateway.gateway", "corral.agent.runner",
    "corral.agent.register", "corral.agent.connection", "corral.agent.local_api",
    "corral.fleetfile.apply", "uvicorn", "uvicorn.main", "uvicorn.lifespan.on",
    "uvicorn.protocols.http.httptools_impl",
    "uvicorn.loops.uvloop", "websockets.asyncio.client", "websockets.asyncio.server",
    "psycopg", "sqlalchemy.dialects.postgresql.psycopg", "sqlalchemy.dialects.sqlite",
    "alembic", "alembic.command", "sqlite3", "argon2", "psutil", "httpx", "httpcore", "h11",
    "anyio._backends._asyncio", "anyio.streams.tls", "encodings.idna", "stringprep",
    "fastapi_swagger", "uvicorn.protocols.websockets", "typer.rich_utils",
)


# --- the server: one per test worker ------------------------------------------------------------


def serve(path: str) -> None:
    import gc
    import importlib

    for name in _WARM:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    from corral.cli import command

    command()  # the click command, built once here rather than in each child
    assert threading.active_count() == 1, "an import started a thread: forking would copy it"
    # what is imported stays: children's collections skip it, and do not touch (so copy) its
    # pages, as the gc module's documentation advises before a fork without exec
    gc.collect()
    gc.freeze()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    listener.bind(path)
    listener.listen(64)
    wake_r, wake_w = socket.socketpair()
    wake_r.setblocking(False)
    wake_w.setblocking(False)
    signal.set_wakeup_fd(wake_w.fileno())
    signal.signal(signal.SIGCHLD, lambda *_: None)  # a handler, so that the wakeup fd is written
    sel = selectors.DefaultSelector()
    sel.register(listener, selectors.EVENT_READ)
    sel.register(wake_r, selectors.EVENT_READ)
    waiting: dict[int, socket.socket] = {}  # pid: the connection its exit status goes back on
    print("ready", flush=True)
    while True:
        for key, _ in sel.select():
            if key.fileobj is wake_r:
                with contextlib.suppress(BlockingIOError):
                    while wake_r.recv(4096):
                        pass
                _reap(waiting)
                continue
            conn, _ = listener.accept()
            try:
                data, fds, _, _ = socket.recv_fds(conn, _MESSAGE, 3)
                request = json.loads(data)
            except (OSError, ValueError):
                conn.close()
                continue
            pid = os.fork()
            if pid == 0:
                sel.close()
                listener.close()
                signal.set_wakeup_fd(-1)
                _child(request, fds)  # never returns
            for fd in fds:
                os.close(fd)
            waiting[pid] = conn
            with contextlib.suppress(OSError):
                conn.send(json.dumps({"pid": pid}).encode())
        _reap(waiting)


def _reap(waiting: dict[int, socket.socket]) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        conn = waiting.pop(pid, None)
        if conn is not None:
            with contextlib.suppress(OSError):
                conn.send(json.dumps({"exit": os.waitstatus_to_exitcode(status)}).encode())
            conn.close()


def _child(request: dict[str, Any], fds: list[int]) -> None:
    code = 1
    try:
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP, signal.SIGPIPE):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
        os.closerange(3, 65536)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        sys.argv = list(request["argv"])
        _name_process(sys.argv[1:])
        sys.path[0] = os.getcwd()
        unbuffered = bool(os.environ.get("PYTHONUNBUFFERED"))
        for stream in (sys.stdout, sys.stderr):
            if isinstance(stream, io.TextIOWrapper):
                stream.reconfigure(write_through=unbuffered or stream is sys.stderr,
                                   line_buffering=unbuffered)
        _fresh_consoles()
        code = _run_corral()
    finally:
        _exit(code)


def _name_process(args: list[str]) -> None:
    """What `ps` and /proc/PID/comm show, since the command line is the fork server's:
    "corral-serve", "corral-agent-r" and the like (15 bytes at most)."""
    import ctypes

    name = "-".join(["corral", *(a for a in args[:2] if not a.startswith("-"))])[:15]
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).prctl(15, name.encode(), 0, 0, 0)  # PR_SET_NAME


def _run_corral() -> int:
    import runpy

    try:
        runpy.run_module("corral", run_name="__main__", alter_sys=True)
    except SystemExit as done:
        if done.code is None:
            return 0
        if isinstance(done.code, int):
            return done.code
        print(done.code, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        traceback.print_exc()
        _flush()
        signal.signal(signal.SIGINT, signal.SIG_DFL)  # ended by the signal, as Python does
        os.kill(os.getpid(), signal.SIGINT)
        return 130
    except BaseException:
        traceback.print_exc()
        return 1
    return 0


def _fresh_consoles() -> None:
    """rich reads NO_COLOR, COLUMNS and the like when a console is made: make Corral's again."""
    from rich.console import Console

    from corral.cli import output

    for console in (output.console, output.err_console):
        if isinstance(console, Console):
            Console.__init__(console, stderr=console.stderr)


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()


def _exit(code: int) -> None:
    """What the interpreter does on its way out, then the end of this process."""
    with contextlib.suppress(BaseException):
        threading._shutdown()  # type: ignore[attr-defined]
    with contextlib.suppress(BaseException):
        atexit._run_exitfuncs()
    _flush()
    os._exit(code)


# --- the client: Popen's shape ------------------------------------------------------------------


class Forked:
    """A `corral` child of the fork server, used as a `subprocess.Popen`."""

    def __init__(self, args: Sequence[str], conn: socket.socket, pid: int,
                 stdin: IO[Any] | None, stdout: IO[Any] | None, stderr: IO[Any] | None) -> None:
        self.args = list(args)
        self.pid = pid
        self.returncode: int | None = None
        self.stdin = stdin
        self.stdout = stdout
        self.stderr = stderr
        self._conn = conn

    def poll(self) -> int | None:
        if self.returncode is None:
            self._receive(0)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None and not self._receive(timeout):
            raise subprocess.TimeoutExpired(self.args, timeout or 0)
        assert self.returncode is not None
        return self.returncode

    def _receive(self, timeout: float | None) -> bool:
        """The exit status, if it comes within `timeout` (None: however long it takes)."""
        self._conn.settimeout(timeout)
        try:
            data = self._conn.recv(4096)
        except (TimeoutError, BlockingIOError):
            return False
        if not data:  # the fork server itself ended: the child is orphaned, not reaped by us
            raise RuntimeError(f"the fork server went away while {self.args} ran")
        self.returncode = int(json.loads(data)["exit"])
        self._conn.close()
        return True

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def communicate(self, input: str | None = None,
                    timeout: float | None = None) -> tuple[str, str]:
        """What `subprocess.run(capture_output=True, text=True)` needs: both streams read
        to their end (threads, so that neither pipe fills), then the exit awaited."""
        out: list[str] = []
        err: list[str] = []
        readers = [threading.Thread(target=lambda s=s, into=into: into.append(s.read()),
                                    daemon=True)
                   for s, into in ((self.stdout, out), (self.stderr, err)) if s is not None]
        for r in readers:
            r.start()
        if input is not None and self.stdin is not None:
            with contextlib.suppress(BrokenPipeError):
                self.stdin.write(input)
            with contextlib.suppress(BrokenPipeError):
                self.stdin.close()
        deadline = None if timeout is None else time.monotonic() + timeout
        for r in readers:
            r.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
            if r.is_alive():
                raise subprocess.TimeoutExpired(self.args, timeout or 0)
        self.wait(None if deadline is None else max(0.1, deadline - time.monotonic()))
        return "".join(out), "".join(err)


SHARED = "TESTS_FORK_SOCKET"
"""Set by the test run's controller (`share`) for its workers: one fork server for them all."""


class ForkServer:
    """The fork server of this test process: the run's shared one if its controller started
    one (`share`), else one of its own, started on first use and ended at its exit."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = None
        self._dir: Path | None = None
        self._owner = 0

    def share(self) -> None:
        """Start one now and name it to the processes this one starts (the run's workers)."""
        os.environ[SHARED] = self.path

    @property
    def path(self) -> str:
        shared = os.environ.get(SHARED)
        if shared and self._owner != os.getpid() and Path(shared).exists():
            return shared
        if self._proc is None or self._proc.poll() is not None or self._owner != os.getpid():
            self._start()
        assert self._dir is not None
        return str(self._dir / "fork.sock")

    def _start(self) -> None:
        import tempfile

        self._dir = Path(tempfile.mkdtemp(prefix="corral-fork-"))
        root = Path(__file__).resolve().parents[1]
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "tests.forkserver", str(self._dir / "fork.sock")],
            cwd=root, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            env={k: v for k, v in os.environ.items() if not k.startswith("CORRAL_")})
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if line.strip() != b"ready":
            raise RuntimeError("the fork server did not start")
        self._owner = os.getpid()
        atexit.register(self.stop)

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            self._proc.wait(10)
        if self._dir is not None:
            import shutil

            shutil.rmtree(self._dir, ignore_errors=True)

    def popen(self, args: Sequence[str], *, env: Mapping[str, str] | None = None,
              cwd: str | Path | None = None, stdin: Any = None, stdout: Any = None,
              stderr: Any = None, text: bool = False) -> Forked:
        """`subprocess.Popen([python, -m, corral, *args], ...)` for `corral ARGS`; `stdin`,
        `stdout`, `stderr`: None (this process's), DEVNULL, PIPE, STDOUT (stderr only) or a
        file."""
        mine: list[int] = []  # the child's ends, closed here once sent
        ours: dict[str, IO[Any]] = {}

        def end(spec: Any, which: str) -> int:
            if spec is None:
                return {"stdin": 0, "stdout": 1, "stderr": 2}[which]
            if spec == subprocess.DEVNULL:
                fd = os.open(os.devnull, os.O_RDWR)
                mine.append(fd)
                return fd
            if spec == subprocess.PIPE:
                r, w = os.pipe()
                child, here = (r, w) if which == "stdin" else (w, r)
                mine.append(child)
                ours[which] = os.fdopen(here, ("w" if which == "stdin" else "r")
                                        + ("" if text else "b"))
                return child
            return int(spec.fileno() if hasattr(spec, "fileno") else spec)

        fd_in = end(stdin, "stdin")
        fd_out = end(stdout, "stdout")
        fd_err = fd_out if stderr == subprocess.STDOUT else end(stderr, "stderr")
        argv = [str(Path(__file__).resolve().parents[1] / "src" / "corral" / "__main__.py"),
                *args]
        request = {"argv": argv, "env": dict(os.environ if env is None else env),
                   "cwd": str(cwd or os.getcwd())}
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            conn.connect(self.path)
            socket.send_fds(conn, [json.dumps(request).encode()], [fd_in, fd_out, fd_err])
            answer = conn.recv(4096)
        finally:
            for fd in mine:
                os.close(fd)
        if not answer:
            raise RuntimeError(f"the fork server did not start corral {' '.join(args)}")
        return Forked(argv, conn, int(json.loads(answer)["pid"]), ours.get("stdin"),
                      ours.get("stdout"), ours.get("stderr"))

    def run(self, args: Sequence[str], *, env: Mapping[str, str] | None = None,
            input: str | None = None, timeout: float | None = None,
            cwd: str | Path | None = None) -> subprocess.CompletedProcess[str]:
        """`subprocess.run([python, -m, corral, *args], capture_output=True, text=True)`; its
        standard input is `input`, or nothing."""
        child = self.popen(args, env=env, cwd=cwd, text=True,
                           stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            out, err = child.communicate(input, timeout)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
            raise
        return subprocess.CompletedProcess(child.args, child.returncode or 0, out, err)


if __name__ == "__main__":
    serve(sys.argv[1])
