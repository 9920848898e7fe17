"""Starts the server under test once per session and points the `mlflow` client at it.

Environment:
  SHIPYARD_TEST_TARGET   shipyard (default) or mlflow (a real `mlflow server`, to check that the
                         tests encode MLflow's behaviour; not used in CI)
  SHIPYARD_TEST_BACKEND  sqlite (default) or postgres
  SHIPYARD_TEST_PG_URI   PostgreSQL URI for the postgres backend (required then: never skipped)
  SHIPYARD_TEST_ARTIFACTS local (default) or s3: artifacts in a bucket of a local S3 endpoint
                         (moto's server, started here), to exercise the object_store cloud path
  SHIPYARD_BIN           the shipyard binary (default: target/release/shipyard)
  MLFLOW_SERVER_BIN      the mlflow executable for the mlflow target (default: `mlflow` on PATH)
"""
import os
import queue
import threading
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TARGET = os.environ.get("SHIPYARD_TEST_TARGET", "shipyard")
BACKEND = os.environ.get("SHIPYARD_TEST_BACKEND", "sqlite")
ARTIFACTS = os.environ.get("SHIPYARD_TEST_ARTIFACTS", "local")

# The client: fail fast on server errors, print nothing extra, no telemetry.
os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"
os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
os.environ["MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"] = "0"
os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = "60"
os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
os.environ["DO_NOT_TRACK"] = "true"


# The client's generation: the tracking part of the suite also runs with the seed article's era
# of the client (2.19, tests/seed/requirements.txt); tests of what only MLflow 3 has are marked.
MLFLOW_MAJOR = int(__import__("mlflow").__version__.split(".")[0])


def pytest_configure(config):
    config.addinivalue_line("markers", "shipyard_only: Shipyard behaviour that MLflow itself does not have")
    config.addinivalue_line("markers", "mlflow3: needs the MLflow 3 client (logged models, newer client calls)")


def pytest_collection_modifyitems(config, items):
    skip_shipyard = pytest.mark.skip(reason="checks Shipyard-specific behaviour")
    skip_old = pytest.mark.skip(reason=f"needs the MLflow 3 client (this is {__import__('mlflow').__version__})")
    for item in items:
        if TARGET == "mlflow" and "shipyard_only" in item.keywords:
            item.add_marker(skip_shipyard)
        if MLFLOW_MAJOR < 3 and "mlflow3" in item.keywords:
            item.add_marker(skip_old)


def model_name_arg(name="model"):
    """`log_model`'s argument naming the model: `name` in MLflow 3, `artifact_path` before."""
    return {"name": name} if MLFLOW_MAJOR >= 3 else {"artifact_path": name}


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_s3(workdir):
    """A local S3 endpoint (moto) with one bucket; returns (process, destination URI, env)."""
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=open(workdir / "s3.log", "w"), stderr=subprocess.STDOUT, start_new_session=True)
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while True:
        try:
            req = urllib.request.Request(f"{endpoint}/shipyard-interop", method="PUT")
            with urllib.request.urlopen(req, timeout=2) as r:
                if r.status == 200:
                    break
        except Exception:
            pass
        if proc.poll() is not None or time.time() > deadline:
            raise RuntimeError("the local S3 endpoint (moto) did not start: " + open(workdir / "s3.log").read()[-2000:])
        time.sleep(0.1)
    env = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_REGION": "us-east-1",
           "AWS_ENDPOINT": endpoint, "AWS_ALLOW_HTTP": "true"}
    return proc, f"s3://shipyard-interop/run-{uuid.uuid4().hex[:8]}", env


def _stop(proc):
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(20)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(proc.pid, signal.SIGKILL)


class Server:
    def __init__(self, url, artifact_root, workdir, log_path, backend_uri=None, destination=None, env=None):
        self.url = url
        # Shipyard only: the stores the server uses, for commands that open them directly.
        self.backend_uri = backend_uri
        self.destination = destination
        self.env = env or {}
        self.artifact_root = Path(artifact_root) if artifact_root is not None else None
        self.workdir = Path(workdir)
        self.log_path = log_path

    def log_tail(self, n=60):
        try:
            return "".join(open(self.log_path, errors="replace").readlines()[-n:])
        except OSError:
            return ""


@pytest.fixture(scope="session")
def server():
    workdir = Path(tempfile.mkdtemp(prefix="shipyard-interop-"))
    artifacts = workdir / "artifacts"
    destination, extra_env, s3 = str(artifacts), {}, None
    if ARTIFACTS == "s3":
        s3, destination, extra_env = _start_s3(workdir)
        artifacts = None  # nothing on local disk to inspect
    elif ARTIFACTS != "local":
        raise RuntimeError(f"unknown SHIPYARD_TEST_ARTIFACTS {ARTIFACTS!r}")
    port = _free_port()
    uri = None
    if TARGET == "mlflow":
        mlflow_bin = os.environ.get("MLFLOW_SERVER_BIN") or shutil.which("mlflow")
        cmd = [mlflow_bin, "server", "--backend-store-uri", f"sqlite:///{workdir}/mlflow.db",
               "--artifacts-destination", str(artifacts), "--serve-artifacts",
               "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
        env = dict(os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
    else:
        binary = os.environ.get("SHIPYARD_BIN", str(REPO / "target" / "release" / "shipyard"))
        if BACKEND == "postgres":
            uri = os.environ.get("SHIPYARD_TEST_PG_URI")
            if not uri:
                raise RuntimeError("SHIPYARD_TEST_BACKEND=postgres needs SHIPYARD_TEST_PG_URI (scripts/test.sh sets it)")
        elif BACKEND == "sqlite":
            uri = f"sqlite:///{workdir}/shipyard.db"
        else:
            raise RuntimeError(f"unknown SHIPYARD_TEST_BACKEND {BACKEND!r}")
        cmd = [binary, "server", "--backend-store-uri", uri, "--artifacts-destination", destination,
               "--host", "127.0.0.1", "--port", str(port), "--max-body-bytes", str(8 * 1024 * 1024),
               # Python models (test_python_models.py) run in workers of this interpreter.
               "--python", sys.executable]
        env = dict(os.environ, **extra_env)
    log_path = workdir / "server.log"
    proc = subprocess.Popen(cmd, stdout=open(log_path, "w"), stderr=subprocess.STDOUT, env=env,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    srv = Server(url, artifacts, workdir, log_path,
                 backend_uri=uri if TARGET != "mlflow" else None, destination=destination, env=extra_env)
    deadline = time.time() + 90
    while True:
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as r:
                if r.status == 200:
                    break
        except Exception:
            pass
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{srv.log_tail()}")
        if time.time() > deadline:
            raise RuntimeError(f"server did not answer /health in time:\n{srv.log_tail()}")
        time.sleep(0.05)
    os.environ["MLFLOW_TRACKING_URI"] = url
    yield srv
    _stop(proc)
    if s3 is not None:
        _stop(s3)
    if os.environ.get("SHIPYARD_TEST_KEEP") is None:
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    srv = item.funcargs.get("server") if hasattr(item, "funcargs") else None
    if report.failed and srv is not None:
        report.sections.append(("server log (tail)", srv.log_tail()))


@pytest.fixture(scope="session")
def tracking_uri(server):
    return server.url


@pytest.fixture(scope="session")
def artifact_root(server):
    """The server's local artifact folder (None when artifacts are in S3)."""
    return server.artifact_root


@pytest.fixture
def client(server):
    import mlflow
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(server.url)
    return MlflowClient(server.url)


@pytest.fixture
def unique():
    """A unique name with a readable prefix."""
    return lambda prefix="t": f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def experiment(client, unique):
    """A fresh experiment, set as the active one for the fluent API."""
    import mlflow

    name = unique("exp")
    exp_id = client.create_experiment(name)
    mlflow.set_experiment(experiment_id=exp_id)
    yield exp_id
    while mlflow.active_run() is not None:
        mlflow.end_run()


def run_shipyard(server, *args, check=True, timeout=300):
    """Runs the shipyard CLI against the session server's own store and artifact destination."""
    binary = os.environ.get("SHIPYARD_BIN", str(REPO / "target" / "release" / "shipyard"))
    env = dict(os.environ, **server.env)
    env.pop("SHIPYARD_TRACKING_URI", None)
    # --home keeps caches (remote dataset downloads) in the session's temporary folder.
    out = subprocess.run([binary, *args, "--tracking-uri", server.backend_uri,
                          "--artifacts-destination", server.destination, "--home", str(server.workdir / "home")],
                         capture_output=True, text=True, env=env, timeout=timeout)
    if check:
        assert out.returncode == 0, out.stderr
    return out


# ----- servers a test module starts itself (TLS, authentication): not the session's server -----

_LISTENING = __import__("re").compile(r"listening on (https?://[0-9.]+:\d+)")


def _shipyard_binary():
    return os.environ.get("SHIPYARD_BIN", str(REPO / "target" / "release" / "shipyard"))


def own_server_env(**extra):
    """The environment without any SHIPYARD_ setting of the caller's (stores, TLS, auth, log
    filter), plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHIPYARD_")}
    env.update(extra)
    return env


def stop_own_server(proc):
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(20)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


def launch_own_server(home, args, env, log_path):
    """Starts `shipyard server ARGS --home HOME` (no model serving, no monitors); returns (process, URL it reports or None if it
    exited first). Its stderr is copied to `log_path` by a thread for as long as it runs."""
    cmd = [_shipyard_binary(), "server", *args, "--port", "0", "--home", str(home), "--no-model-serving", "--no-monitors"]
    log = open(log_path, "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.PIPE, env=env, start_new_session=True)
    lines = queue.Queue()

    def drain():
        for raw in iter(proc.stderr.readline, b""):
            line = raw.decode(errors="replace")
            log.write(line)
            log.flush()
            lines.put(line)
        lines.put(None)

    threading.Thread(target=drain, daemon=True).start()
    deadline = time.time() + 60
    while True:
        try:
            line = lines.get(timeout=max(0.1, deadline - time.time()))
        except queue.Empty:
            line = ""
        if line is None:
            proc.wait(10)
            return proc, None
        m = _LISTENING.search(line or "")
        if m:
            return proc, m.group(1)
        if time.time() > deadline:
            stop_own_server(proc)
            raise RuntimeError(f"shipyard server did not report its address:\n{open(log_path).read()[-3000:]}")
