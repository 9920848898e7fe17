#!/usr/bin/env python3
"""bench/serving/startup.py: time from start to the first answer of a new pickle version.

usage: startup.py [--shipyard BIN] [--runs N] [--skip-mlflow] [--out JSON]

The benchmark's forest as an `mlflow.sklearn` model (bench/serving/.work/model/rf100-mlflow, made
by run.sh) served by `shipyard serve`, one way at a time, each started `--runs` times (median):
  converting        --python (this venv), a local folder: converted and verified at every start
  kept conversion   models:/rf100/1 from a store whose server converted it at registration:
                    no --python at all, the kept ONNX file re-verified on Shipyard's engine
  workers, local    --sklearn-engine python --python (this venv): a warm environment
  workers, uv cold  --env-manager uv with an empty --env-root and uv cache: the environment is
                    built (packages downloaded) first
  workers, uv warm  the same --env-root again: the environment is kept
and MLflow's own `mlflow models serve` with `--env-manager local` and `uv` (cold: an empty
MLFLOW_ENV_ROOT and uv cache), the anchors. "First answer" is the first 200 to a one-row
Open Inference Protocol request (Shipyard) or `/invocations` (MLflow), polled every 50 ms from
the process's launch. Prints a markdown table and writes JSON (default
bench/serving/results/startup-<date>.json). Needs uv in this venv (requirements.txt).
"""
import argparse
import datetime
import http.client
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
MODEL = os.path.join(HERE, ".work", "model", "rf100-mlflow")
PAYLOADS = os.path.join(HERE, ".work", "model", "payloads")
BIN = os.path.dirname(sys.executable)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(port, path, body):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        c.request("POST", path, body, {"Content-Type": "application/json"})
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def first_answer(cmd, port, path, body, env, log, timeout=900):
    """Launches `cmd`, polls until a 200; seconds from launch. Stops the process."""
    started = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        while True:
            try:
                status, _ = post(port, path, body)
                if status == 200:
                    return time.perf_counter() - started
            except (OSError, http.client.HTTPException):
                pass
            if proc.poll() is not None:
                raise RuntimeError(f"{cmd[0]} exited ({proc.returncode}); see {log}")
            if time.perf_counter() - started > timeout:
                raise RuntimeError(f"no answer within {timeout} s; see {log}")
            time.sleep(0.05)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(proc.pid, signal.SIGKILL)


def registered_store(shipyard, work):
    """A store where `rf100` version 1 is the forest, prepared (converted) by the server at
    registration; its tracking URI and artifact folder."""
    import mlflow

    home = os.path.join(work, "store")
    port = free_port()
    log = open(os.path.join(work, "server.log"), "w")
    server = subprocess.Popen([shipyard, "server", "--port", str(port), "--home", home, "--python", sys.executable],
                              stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(600):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        mlflow.set_tracking_uri(url)
        with mlflow.start_run() as run:
            mlflow.log_artifacts(MODEL, "model")
        mlflow.register_model(f"runs:/{run.info.run_id}/model", "rf100")
        client = mlflow.MlflowClient(url)
        deadline = time.time() + 300
        while "shipyard.engine" not in client.get_model_version("rf100", "1").tags:
            if time.time() > deadline:
                raise RuntimeError("the server did not prepare the version")
            time.sleep(0.2)
        engine = client.get_model_version("rf100", "1").tags["shipyard.engine"]
        if engine != "onnx-converted":
            raise RuntimeError(f"the forest was not converted: {engine}")
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(30)
    return home


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shipyard", default=os.environ.get("SHIPYARD_BIN", os.path.join(ROOT, "target/release/shipyard")))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--skip-mlflow", action="store_true")
    ap.add_argument("--out")
    args = ap.parse_args()
    if not os.path.isdir(MODEL):
        sys.exit(f"error: no model at {MODEL}: run bench/serving/run.sh once (it makes it)")
    uv = os.path.join(BIN, "uv")
    v2 = open(os.path.join(PAYLOADS, "v2_1row.json")).read()
    inv = open(os.path.join(PAYLOADS, "mlflow_1row.json")).read()
    work = tempfile.mkdtemp(prefix="shipyard-startup-")
    env = dict(os.environ)
    env.pop("SHIPYARD_TRACKING_URI", None)
    results = []

    def measure(name, make_cmd, path, body, fresh=None, runs=args.runs, extra_env=None):
        times = []
        for k in range(runs):
            if fresh:
                fresh()
            port = free_port()
            cmd = make_cmd(port)
            t = first_answer(cmd, port, path, body, dict(env, **(extra_env or {})),
                             os.path.join(work, f"{name.replace(' ', '-')}-{k}.log"))
            times.append(t)
            print(f"  {name}: {t:.2f} s", file=sys.stderr, flush=True)
        results.append({"name": name, "runs_s": [round(t, 3) for t in times],
                        "median_s": round(statistics.median(times), 3), "cmd": cmd})

    shipyard = args.shipyard
    v2_path = "/v2/models/rf100/infer"

    def serve(*more):
        return lambda port: [shipyard, "serve", "--name", "rf100", "--port", str(port), "--home",
                             os.path.join(work, "home"), *more]

    measure("shipyard, converting", serve("--model", MODEL, "--python", sys.executable), v2_path, v2)
    home = registered_store(shipyard, work)
    measure("shipyard, kept conversion (no Python)",
            serve("--model", "models:/rf100/1", "--tracking-uri",
                  f"sqlite:///{os.path.join(home, 'shipyard.db')}", "--artifacts-destination",
                  os.path.join(home, "artifacts")), v2_path, v2)
    measure("shipyard, workers, local env", serve("--model", MODEL, "--sklearn-engine", "python", "--python",
                                                  sys.executable), v2_path, v2)
    envs = os.path.join(work, "envs")
    measure("shipyard, workers, uv env cold",
            serve("--model", MODEL, "--sklearn-engine", "python", "--env-manager", "uv", "--uv", uv,
                  "--env-root", envs), v2_path, v2, fresh=lambda: shutil.rmtree(envs, ignore_errors=True))
    measure("shipyard, workers, uv env warm",
            serve("--model", MODEL, "--sklearn-engine", "python", "--env-manager", "uv", "--uv", uv,
                  "--env-root", envs), v2_path, v2)
    if not args.skip_mlflow:
        mlflow_bin = os.path.join(BIN, "mlflow")
        mlflow_env = {"PATH": BIN + os.pathsep + env.get("PATH", "")}
        measure("mlflow models serve, local env",
                lambda port: [mlflow_bin, "models", "serve", "-m", MODEL, "-p", str(port), "--env-manager", "local"],
                "/invocations", inv, extra_env=mlflow_env)
        roots = os.path.join(work, "mlflow-envs")
        measure("mlflow models serve, uv env cold",
                lambda port: [mlflow_bin, "models", "serve", "-m", MODEL, "-p", str(port), "--env-manager", "uv"],
                "/invocations", inv, fresh=lambda: shutil.rmtree(roots, ignore_errors=True),
                extra_env=dict(mlflow_env, MLFLOW_ENV_ROOT=os.path.join(roots, "envs"),
                               UV_CACHE_DIR=os.path.join(roots, "uv-cache")))
    print("| server | start to first answer, median s | runs |")
    print("|---|---:|---|")
    for r in results:
        print(f"| {r['name']} | {r['median_s']:.2f} | {', '.join(f'{t:.2f}' for t in r['runs_s'])} |")
    out = args.out or os.path.join(HERE, "results", f"startup-{datetime.date.today().isoformat()}.json")
    with open(out, "w") as f:
        json.dump({"date": datetime.datetime.now().isoformat(timespec="seconds"), "machine": platform.node(),
                   "cpus": os.cpu_count(), "results": results}, f, indent=1)
    print(f"wrote {out}", file=sys.stderr)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
