#!/usr/bin/env python3
"""Tracking benchmark: `mlflow server` and `shipyard server` side by side, same client workload.

Run through bench/tracking/run.sh, which builds Shipyard and prepares the venv. For each server,
in a fresh temporary directory on SQLite, on a free loopback port:

  startup   launch -> first HTTP 200 on /health (20 ms polling)
  idle      server process-tree RSS right after start
  a         1,000 x mlflow.log_metric in one run
  b         100,000 metrics via MlflowClient.log_batch, 1,000 per call
  c         1,000 runs, each create_run + one log_batch (5 params + 5 metrics)
  d         search_runs over those runs: metric and param filter, order_by a metric,
            max_results 1,000; median of 10 calls
  e, f      the log_batch and search requests again, sent as prepared JSON over raw HTTP
            (no mlflow client work), to show the server's share of the wall time
  after     server process-tree RSS after the load

For each workload: wall time (client side) and the server's own CPU seconds (user+system of its
process tree, from /proc). Prints a table with both servers and the ratios, and writes JSON.

usage: bench.py SHIPYARD_BIN OUT_JSON [--quick] [--shipyard-only]
"""
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")

import mlflow  # noqa: E402
from mlflow import MlflowClient  # noqa: E402
from mlflow.entities import Metric, Param  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
QUICK = "--quick" in sys.argv
SCALE = 10 if QUICK else 1  # --quick divides every workload by 10 (smoke run)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tree(pid):
    """pid and all its live descendants."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry))
            except OSError:
                pass
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def cpu_s(pid):
    tot = 0
    for p in tree(pid):
        try:
            f = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()
            tot += int(f[11]) + int(f[12])
        except OSError:
            pass
    return tot / TICK


def rss_mib(pid):
    tot = 0
    for p in tree(pid):
        try:
            tot += int(open(f"/proc/{p}/statm").read().split()[1]) * PAGE
        except OSError:
            pass
    return round(tot / 2**20, 1)


def load():
    return " ".join(open("/proc/loadavg").read().split()[:3])


def start(cmd, port, log):
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as r:
                if r.status == 200:
                    return proc, time.perf_counter() - t0
        except Exception:
            pass
        if proc.poll() is not None:
            sys.exit(f"server exited with {proc.returncode}: {' '.join(cmd)}")
        if time.perf_counter() - t0 > 180:
            sys.exit("server did not answer /health within 180 s")
        time.sleep(0.02)


def stop(proc):
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(proc.pid, signal.SIGKILL)


def run_workloads(uri, pid):
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(uri)
    res = {}

    def phase(name, fn, ops):
        c0, t0, o0 = cpu_s(pid), time.perf_counter(), os.times()
        extra = fn() or {}
        wall = time.perf_counter() - t0
        o1 = os.times()
        res[name] = {
            "wall_s": round(wall, 3),
            "server_cpu_s": round(cpu_s(pid) - c0, 3),
            "client_cpu_s": round((o1.user - o0.user) + (o1.system - o0.system), 3),
            "ops": ops,
            "load": load(),
            **extra,
        }
        print(f"  {name}: {res[name]}", flush=True)

    exp = mlflow.set_experiment(f"bench-{time.time_ns()}")

    n_a = 1000 // SCALE

    def a():
        with mlflow.start_run(run_name="a"):
            for i in range(n_a):
                mlflow.log_metric("m", i * 0.001, step=i)

    phase("a_log_metric", a, n_a)

    n_b = 100 // SCALE

    def b():
        r = client.create_run(exp.experiment_id, run_name="b")
        ts = int(time.time() * 1000)
        for k in range(n_b):
            client.log_batch(
                r.info.run_id,
                metrics=[Metric(f"k{j % 10}", random.random(), ts, k * 100 + j // 10) for j in range(1000)],
            )

    phase("b_log_batch_100k", b, n_b * 1000)

    exp_c = client.create_experiment(f"bench-runs-{time.time_ns()}")
    rng = random.Random(0)
    n_c = 1000 // SCALE

    def c():
        for i in range(n_c):
            r = client.create_run(exp_c, run_name=f"r{i}")
            ts = int(time.time() * 1000)
            client.log_batch(
                r.info.run_id,
                params=[Param("model", "rf" if i % 2 == 0 else "gbm")]
                + [Param(f"p{j}", str(rng.randint(0, 100))) for j in range(4)],
                metrics=[Metric("acc", rng.random(), ts, 0)] + [Metric(f"m{j}", rng.random(), ts, 0) for j in range(4)],
            )

    phase("c_runs_1000", c, n_c)

    times, rows = [], None

    def d():
        nonlocal rows
        for _ in range(10):
            t0 = time.perf_counter()
            found = client.search_runs(
                [exp_c], "metrics.acc > 0.5 and params.model = 'rf'", order_by=["metrics.acc DESC"], max_results=1000
            )
            times.append(time.perf_counter() - t0)
            rows = len(found)
        return {}

    phase("d_search_runs_x10", d, 10)
    res["d_search_runs_x10"].update(
        {"rows": rows, "median_ms": round(statistics.median(times) * 1000, 2), "min_ms": round(min(times) * 1000, 2)}
    )

    # The same two heavy requests without the Python client's own work (building entities,
    # protobuf, parsing answers): prepared bodies over one keep-alive connection, answers read
    # as bytes. This shows the server's share of the wall time.
    import requests

    session = requests.Session()
    api = f"{uri}/api/2.0/mlflow"
    raw_run = client.create_run(exp.experiment_id, run_name="raw").info.run_id
    ts = int(time.time() * 1000)
    bodies = [
        json.dumps({"run_id": raw_run, "metrics": [
            {"key": f"k{j % 10}", "value": random.random(), "timestamp": ts, "step": k * 100 + j // 10}
            for j in range(1000)]}).encode()
        for k in range(n_b)
    ]
    raw_times = []

    def e():
        for body in bodies:
            t0 = time.perf_counter()
            r = session.post(f"{api}/runs/log-batch", data=body, headers={"Content-Type": "application/json"})
            raw_times.append(time.perf_counter() - t0)
            assert r.status_code == 200, r.text

    phase("e_raw_log_batch", e, n_b)
    res["e_raw_log_batch"]["median_ms"] = round(statistics.median(raw_times) * 1000, 2)
    search_body = json.dumps({"experiment_ids": [exp_c], "filter": "metrics.acc > 0.5 and params.model = 'rf'",
                              "max_results": 1000, "order_by": ["metrics.acc DESC"]}).encode()
    search_times = []

    def f():
        for _ in range(30):
            t0 = time.perf_counter()
            r = session.post(f"{api}/runs/search", data=search_body, headers={"Content-Type": "application/json"})
            search_times.append(time.perf_counter() - t0)
            assert r.status_code == 200 and len(r.content) > 1000

    phase("f_raw_search_x30", f, 30)
    res["f_raw_search_x30"]["median_ms"] = round(statistics.median(search_times) * 1000, 2)
    return res


def bench(name, cmd_for, workdir):
    port = free_port()
    print(f"{name}: starting (load {load()})", flush=True)
    log = open(os.path.join(workdir, f"{name}.log"), "w")
    proc, startup = start(cmd_for(port), port, log)
    try:
        time.sleep(1.0)  # let the server settle before measuring idle memory
        out = {"startup_s": round(startup, 4), "rss_idle_mib": rss_mib(proc.pid)}
        out.update(run_workloads(f"http://127.0.0.1:{port}", proc.pid))
        out["rss_after_mib"] = rss_mib(proc.pid)
    finally:
        stop(proc)
    # A second start on the existing database (no migrations), best of three.
    restarts = []
    for _ in range(3):
        port = free_port()
        proc, t = start(cmd_for(port), port, log)
        restarts.append(t)
        stop(proc)
    out["restart_s"] = round(min(restarts), 4)
    return out


def main():
    shipyard_bin, out_path = sys.argv[1], sys.argv[2]
    mlflow_bin = shutil.which("mlflow") or os.path.join(os.path.dirname(sys.executable), "mlflow")
    work = tempfile.mkdtemp(prefix="shipyard-bench-")
    results = {"date": time.strftime("%Y-%m-%d %H:%M"), "quick": QUICK, "load_start": load(), "mlflow": mlflow.__version__}

    def mlflow_cmd(port):
        root = os.path.join(work, "mlflow")
        os.makedirs(root, exist_ok=True)
        return [mlflow_bin, "server", "--backend-store-uri", f"sqlite:///{root}/mlflow.db",
                "--artifacts-destination", f"{root}/artifacts", "--serve-artifacts",
                "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]

    def shipyard_cmd(port):
        root = os.path.join(work, "shipyard")
        return [shipyard_bin, "server", "--backend-store-uri", f"sqlite:///{root}/shipyard.db",
                "--artifacts-destination", f"{root}/artifacts", "--host", "127.0.0.1", "--port", str(port)]

    os.environ["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    if "--shipyard-only" in sys.argv:  # for quick iterations; the published table needs both
        results["shipyard_server"] = bench("shipyard", shipyard_cmd, work)
        json.dump(results, open(out_path, "w"), indent=1)
        return
    results["mlflow_server"] = bench("mlflow", mlflow_cmd, work)
    results["shipyard_server"] = bench("shipyard", shipyard_cmd, work)
    results["load_end"] = load()
    json.dump(results, open(out_path, "w"), indent=1)
    shutil.rmtree(work, ignore_errors=True)
    print_table(results)


def print_table(r):
    m, s = r["mlflow_server"], r["shipyard_server"]

    def ratio(a, b):
        return f"{a / b:,.0f}x" if b > 0 else "n/a (below /proc tick)"

    rows = []
    for key, label in [
        ("a_log_metric", "log_metric (per call)"),
        ("b_log_batch_100k", "log_batch, 1,000 metrics per call (per metric)"),
        ("c_runs_1000", "create_run + log_batch (per run)"),
        ("d_search_runs_x10", "search_runs, 1,000 runs (per call)"),
    ]:
        ops = m[key]["ops"]
        mw, sw = m[key]["wall_s"] / ops * 1000, s[key]["wall_s"] / ops * 1000
        if key == "d_search_runs_x10":
            mw, sw = m[key]["median_ms"], s[key]["median_ms"]
        mc, sc = m[key]["server_cpu_s"] / ops * 1000, s[key]["server_cpu_s"] / ops * 1000
        rows.append((label, f"{mw:.3f} ms", f"{sw:.3f} ms", ratio(mw, sw), f"{mc:.4f} ms", f"{sc:.4f} ms", ratio(mc, sc)))
    print()
    print("| workload | MLflow wall | Shipyard wall | wall ratio | MLflow server CPU | Shipyard server CPU | CPU ratio |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    for key, label in [
        ("e_raw_log_batch", "log_batch of 1,000 metrics, raw HTTP (median per call)"),
        ("f_raw_search_x30", "search_runs, raw HTTP (median per call)"),
    ]:
        ops = m[key]["ops"]
        mw, sw = m[key]["median_ms"], s[key]["median_ms"]
        mc, sc = m[key]["server_cpu_s"] / ops * 1000, s[key]["server_cpu_s"] / ops * 1000
        print(f"| {label} | {mw:.3f} ms | {sw:.3f} ms | {ratio(mw, sw)} | {mc:.4f} ms | {sc:.4f} ms | {ratio(mc, sc)} |")
    print(f"| startup to first /health 200 (new db) | {m['startup_s']:.3f} s | {s['startup_s'] * 1000:.1f} ms | "
          f"{ratio(m['startup_s'], s['startup_s'])} | | | |")
    print(f"| restart on existing db (best of 3) | {m['restart_s']:.3f} s | {s['restart_s'] * 1000:.1f} ms | "
          f"{ratio(m['restart_s'], s['restart_s'])} | | | |")
    print(f"| RSS idle | {m['rss_idle_mib']} MiB | {s['rss_idle_mib']} MiB | {ratio(m['rss_idle_mib'], s['rss_idle_mib'])} | | | |")
    print(f"| RSS after load | {m['rss_after_mib']} MiB | {s['rss_after_mib']} MiB | "
          f"{ratio(m['rss_after_mib'], s['rss_after_mib'])} | | | |")
    a = s["a_log_metric"]
    print(f"\nClient floor on log_metric: the Python client spent {a['client_cpu_s'] / a['ops'] * 1000:.3f} ms CPU per call; "
          f"Shipyard's wall per call was {a['wall_s'] / a['ops'] * 1000:.3f} ms, its server CPU "
          f"{a['server_cpu_s'] / a['ops'] * 1000:.4f} ms.")
    print(f"search_runs returned {m['d_search_runs_x10']['rows']} (MLflow) and {s['d_search_runs_x10']['rows']} (Shipyard) runs.")


if __name__ == "__main__":
    main()
