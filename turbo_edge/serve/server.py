"""Start the real ``tritonserver`` binary of the nvidia-pytriton wheel on a model repository, and stop it.

Not PyTriton's ``Triton().bind()`` (it fails on Python 3.11.7, docs/decisions.md): the wheel's server, its Python
backend and the backend stub built for this interpreter's version, run as a plain model-repository server. The
stub is linked into a private backend directory (site-packages is never written to). The server logs to a file
unless ``verbose``; every failure is a ``ServeError`` whose message names the problem and the fix.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

INSTALL_HINT = "pip install 'turbo-edge[serve]'"


class ServeError(RuntimeError):
    """The server cannot start or run: not installed, a port taken, a model that failed to load."""


@dataclass(frozen=True)
class TritonInstall:
    """Where the wheel keeps the server binary, its libraries, the Python backend and the per-version stubs."""

    binary: Path
    libs: Path
    python_backend: Path
    stub: Path

    @classmethod
    def find(cls) -> TritonInstall:
        spec = importlib.util.find_spec("pytriton")  # locates the package without importing it
        if spec is None or not spec.submodule_search_locations:
            raise ServeError(f"tritonserver is not installed: {INSTALL_HINT} (the nvidia-pytriton wheel ships it; Linux x86-64)")
        root = Path(next(iter(spec.submodule_search_locations))) / "tritonserver"
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        install = cls(binary=root / "bin" / "tritonserver", libs=root.parents[1] / "nvidia_pytriton.libs",
                      python_backend=root / "backends" / "python", stub=root / "python_backend_stubs" / version / "triton_python_backend_stub")
        if not install.binary.is_file():
            raise ServeError(f"{install.binary} is missing (a broken nvidia-pytriton install); reinstall it: {INSTALL_HINT}")
        if not install.stub.is_file():
            raise ServeError(f"the nvidia-pytriton wheel has no Python backend stub for Python {version} ({install.stub}); "
                             "use Python 3.9-3.12 or serve with NVIDIA's Triton container (--write-only)")
        return install

    def backend_directory(self) -> Path:
        """A backend directory of our own: ``python/`` links the wheel's backend library and utils and this
        interpreter's stub (the wheel keeps stubs apart from the backend, where the backend looks for one)."""
        cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "turbo-edge" / "triton-backends"
        key = hashlib.sha256(str(self.stub).encode()).hexdigest()[:12]
        root = cache / f"py{self.stub.parent.name}-{key}"
        python = root / "python"
        links = {"libtriton_python.so": self.python_backend / "libtriton_python.so",
                 "triton_python_backend_utils.py": self.python_backend / "triton_python_backend_utils.py",
                 "triton_python_backend_stub": self.stub}
        python.mkdir(parents=True, exist_ok=True)
        for name, target in links.items():
            link = python / name
            if link.is_symlink() and Path(os.readlink(link)) == target:
                continue
            tmp = python / f".{name}.{os.getpid()}"
            tmp.unlink(missing_ok=True)
            tmp.symlink_to(target)
            os.replace(tmp, link)  # atomic: a concurrent start sees the old link or the new one
        return root


def serving_pythonpath() -> str:
    """``PYTHONPATH`` for the model's stub: turbo_edge's own parent folder, then this environment's site-packages."""
    package_parent = str(Path(__file__).resolve().parents[2])
    paths = sysconfig.get_paths()
    entries = [package_parent, paths["purelib"], paths["platlib"], *os.environ.get("PYTHONPATH", "").split(os.pathsep)]
    return os.pathsep.join(dict.fromkeys(e for e in entries if e))


PR_SET_PDEATHSIG = 1  # linux/prctl.h


def die_with_parent(parent: int) -> Callable[[], None] | None:
    """A ``preexec_fn`` that has the kernel send the child SIGTERM when ``turbo-edge serve`` dies, SIGKILL included
    (``prctl(PR_SET_PDEATHSIG)``; Triton's SIGTERM is a clean shutdown that ends its stubs), so tritonserver never
    outlives it holding the ports. A parent already gone by then (the race the prctl man page names) ends the child
    at once. None off Linux, where the server is stopped on the way out only."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)

    def preexec() -> None:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)

    return preexec


def check_port_free(address: str, port: int, what: str) -> None:
    with socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As the server binds: a port left in TIME_WAIT by closed connections is free, one that is listened on is not.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((address, port))
        except OSError as exc:
            raise ServeError(f"port {port} ({what}) on {address} is not free ({exc.strerror}); choose another with --port "
                             "(HTTP uses PORT, gRPC PORT+1)") from None


def free_port(address: str = "127.0.0.1") -> int:
    """A port P with P and P+1 both free now (for tests and benchmarks)."""
    for _ in range(100):
        with socket.socket() as sock:
            sock.bind((address, 0))
            port = sock.getsockname()[1]
        if port < 65535:
            try:
                check_port_free(address, port, "HTTP")
                check_port_free(address, port + 1, "gRPC")
            except ServeError:
                continue
            return port
    raise ServeError("found no two adjacent free ports")


def _last_error(log: Path) -> str:
    """The server log's last error line (Triton prefixes them with E), for a one-line message."""
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return "no log"
    errors = [line for line in lines if line.startswith("E") or line.startswith("error:")]
    text = " ".join((errors[-1] if errors else (lines[-1] if lines else "empty log")).split())
    return text if len(text) <= 400 else text[:400] + " ..."


class TritonServer:
    """``tritonserver`` serving ``repository`` on ``address:port`` (HTTP) and ``port + 1`` (gRPC); metrics off.

    ``with TritonServer(repo, port=8000) as server: ...`` starts it, waits until it and every model are ready,
    and stops it (SIGINT, Triton's clean shutdown; killed after ``exit_timeout`` seconds) on the way out.
    """

    def __init__(self, repository: str | Path, port: int = 8000, address: str = "127.0.0.1", log_file: str | Path | None = None,
                 verbose: bool = False, ready_timeout: float = 180.0, exit_timeout: int = 15) -> None:
        self.repository = Path(repository).expanduser().resolve()
        self.port, self.address = port, address
        self.log_file = Path(log_file) if log_file else self.repository.parent / f"{self.repository.name}.tritonserver.log"
        self.verbose, self.ready_timeout, self.exit_timeout = verbose, ready_timeout, exit_timeout
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"http://{host}:{self.port}"

    @property
    def grpc_url(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{host}:{self.port + 1}"

    def command(self, install: TritonInstall) -> list[str]:
        return [str(install.binary), "--model-repository", str(self.repository), "--backend-directory", str(install.backend_directory()),
                "--http-address", self.address, "--http-port", str(self.port),
                "--grpc-address", self.address, "--grpc-port", str(self.port + 1),
                "--allow-metrics", "false", "--disable-auto-complete-config", "--exit-on-error", "true",
                "--exit-timeout-secs", str(self.exit_timeout), "--log-verbose", "0"]

    def start(self) -> TritonServer:
        install = TritonInstall.find()
        if not self.repository.is_dir():
            raise ServeError(f"model repository {self.repository} does not exist; write one with `turbo-edge serve --bundle B --write-only`")
        check_port_free(self.address, self.port, "HTTP")
        check_port_free(self.address, self.port + 1, "gRPC")
        env = {**os.environ, "PYTHONPATH": serving_pythonpath(),
               "LD_LIBRARY_PATH": os.pathsep.join(p for p in (str(install.libs), os.environ.get("LD_LIBRARY_PATH", "")) if p)}
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        log = None if self.verbose else open(self.log_file, "w")  # noqa: SIM115  closed once the child holds it
        try:
            self.process = subprocess.Popen(self.command(install), env=env, stdin=subprocess.DEVNULL, stdout=log,
                                            stderr=subprocess.STDOUT if log else None, start_new_session=True,
                                            preexec_fn=die_with_parent(os.getpid()))
        finally:
            if log:
                log.close()
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout
        where = "the output above" if self.verbose else f"full log: {self.log_file}"
        while time.monotonic() < deadline:
            code = self.process.poll()
            if code is not None:
                detail = "" if self.verbose else f"{_last_error(self.log_file)}; "
                raise ServeError(f"tritonserver exited (code {code}) before it was ready: {detail}{where}")
            if self.ready():
                return
            time.sleep(0.25)
        raise ServeError(f"tritonserver was not ready after {self.ready_timeout:g} s (--ready-timeout); {where}")

    def ready(self) -> bool:
        """Whether the server and every model in the repository are ready (Triton's strict readiness)."""
        try:
            with urllib.request.urlopen(f"{self.url}/v2/health/ready", timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def stop(self) -> int | None:
        """Stop the server (clean shutdown, then kill); its exit code, None if it never started."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=self.exit_timeout + 10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def __enter__(self) -> TritonServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
