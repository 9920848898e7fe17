#!/usr/bin/env python3
"""bench/serving: Shipyard's model server next to MLflow and MLServer: same forest, same bodies.

usage: bench.py [--quick] [--duration S] [--skip-shipyard] [--skip-ceiling] [--skip-mlflow]
                [--skip-mlserver] [--shipyard-bin PATH] [--ceiling-bin PATH] [--model X.onnx]
                [--data ROWS.csv] [--payloads DIR] [--model-dir DIR] ...
(run it through bench/serving/run.sh, which makes the venvs and the model files.)

The model: RandomForestClassifier(n_estimators=100, random_state=0) on make_classification(20,000
rows, 20 features, 10 informative, random_state=0) (make_model.py, the anchors' train_rf100.py).
  Shipyard  `shipyard serve --model X.onnx --name rf100 --host 127.0.0.1 --port P --cache-entries 0`:
            the ONNX file, by default shared/anchors/models/rf100.onnx, else --model-dir/rf100.onnx.
            The prediction cache is off (--shipyard-serve-args, default "--cache-entries 0"): wrk
            sends one body over and over, so with the cache every answer after the first would be
            a cache hit and the model would not run; MLflow and MLServer run it every time.
  MLflow    `mlflow models serve -m DIR --env-manager local -h 127.0.0.1 -p P` (1 uvicorn worker,
            as by default; --mlflow-workers), DIR = --model-dir/rf100-mlflow (sklearn flavor,
            mlflow.sklearn.save_model), the venv's bin first on PATH (uvicorn must be on PATH).
  MLServer  `mlserver start DIR` from bench/serving/.venv-mlserver (mlserver-sklearn, defaults but
            for the ports; model.joblib = --model-dir/rf100.joblib), when that venv installed.
  ceiling   target/release/examples/fixed_body: a minimal axum route answering {"predictions":[1]}
            (the HTTP ceiling: no parsing, no model).
make_model.py's forests and the shared ONNX file come from the same recipe (a regenerated ONNX file
differs from the shared one only in its random graph name). bench.py checks that the ONNX file's
probabilities match the sklearn forest the Python servers load (on the 100-row payload, within
1e-5) and its labels too, but for rows whose two probabilities are equal (2 of the 100: sklearn
takes the first class, a float32 sum in another order may not), and that every server answers the
100-row body with the forest's labels (same exception).

Bodies (--payloads, default shared/anchors/payloads, else --model-dir/payloads): held-out rows;
MLflow's dataframe_split (mlflow_1row.json, mlflow_100rows.json, columns f0..f19) and the Open
Inference Protocol (v2_1row.json, v2_100rows.json, one FP64 [N, 20] input). Shipyard is measured
on both routes of its one port: POST /invocations with the MLflow bodies (compared with MLflow)
and POST /v2/models/rf100/infer with the V2 bodies (compared with MLServer). The ceiling gets the
MLflow bodies on POST /.

Protocol, one server at a time (the others stopped), in this order: in-process, ceiling,
Shipyard, Shipyard serving the MLflow sklearn model (shipyard-pickle-converted: `shipyard serve
--model DIR --python <this venv's python> --sklearn-engine auto`, which serves its verified ONNX
conversion; shipyard-pickle-python: `--sklearn-engine python --python-workers N`, Python workers
with predictions joined), MLflow, MLServer.
  in-process  the compute floor: `shipyard models bench X.onnx --data ROWS --repeat R --threads 1
              --format json` (ROWS: --data, default shared/anchors/models/train20k.csv, without its
              y column) and onnxruntime from Python on the same rows (CPUExecutionProvider, 1
              intra-op thread, float32): 200 warm-ups, then R = 2,000 single-row runs, rows cycling;
              p50 = median, p99 = nearest rank; 10,000 rows: median of 5 runs.
  cold start  launch to the first 200 answer to a 1-row POST on the inference route, polled every
              5 ms (Shipyard, ceiling; --cold-starts runs, median reported) or 50 ms (MLflow,
              MLServer: one run, as the anchors did). Idle RSS 2 s later.
  loads       wrk (Debian) over 127.0.0.1, post_body.lua, --latency --timeout 10s, after an
              unrecorded warm-up (2 s, -t2 -c8): 1-row body at -t1 -c1, -t2 -c8, -t2 -c64 and
              100-row body at -t2 -c8, 15 s each (--duration; --quick: 3 s), 3 s apart. Recorded:
              requests/s, p50/p90/p99/max latency, errors (connect, read, write, timeout, status
              >= 400), the peak RSS of the server's process tree sampled every 0.5 s, and CPU
              seconds split into server / wrk and this script / foreign (anyone else on the
              machine, from /proc/stat: about 0 means a clean run).
wrk and the server share the machine's cores, as in the anchors (2 cores: a 2-thread wrk takes a
good part of them), so the ceiling row shows what this machine can do at all.

Goals (the issue): Shipyard at least 100x MLflow's requests/s at 64 connections; p99 at most
2 ms at 8 connections; at least half the fixed-body route's throughput (1 row, 64 connections);
in-process batch-1 p50 no slower than onnxruntime's; peak RSS under 50 MB (47.7 MiB); cold start
under 100 ms. The results JSON (--out-dir, default bench/serving/results/serving-<date>.json)
holds every number, wrk's output, the commands, the machine and the versions.
"""
import argparse
import csv
import datetime
import hashlib
import http.client
import json
import math
import os
import platform
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from machine import cpu_model, loadavg, meminfo_mib  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
ANCHORS = os.path.join(os.path.dirname(ROOT), "shared", "anchors")
MODEL_NAME = "rf100"
N_FEATURES = 20
MB50_MIB = 50e6 / 2**20


# ---------------------------------------------------------------------------
# Machine
# ---------------------------------------------------------------------------
def sh(cmd, env=None):
    """stdout of a command (stripped), or None; a non-zero exit still gives its output."""
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    except (OSError, subprocess.SubprocessError):
        return None
    out = (p.stdout or p.stderr).strip()
    return out or None


def machine_info():
    return {"nproc": os.cpu_count(), "cpu_model": cpu_model(), "platform": platform.platform(),
            "python": sys.version.split()[0],
            "mem_total_mib": meminfo_mib("MemTotal:")}


# ---------------------------------------------------------------------------
# Process trees: RSS and CPU (the anchors' rss_tree.py and cpu_account.py)
# ---------------------------------------------------------------------------
TICK = os.sysconf("SC_CLK_TCK")


def children(pid):
    out = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for t in tasks:
        try:
            out += [int(c) for c in open(f"/proc/{pid}/task/{t}/children").read().split()]
        except OSError:
            pass
    return out


def tree(pid):
    todo, seen = [pid], []
    while todo:
        p = todo.pop()
        seen.append(p)
        todo += children(p)
    return seen


def status_kb(pid, key):
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith(key):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def rss_tree(pid):
    pids = tree(pid)
    rss = sum(status_kb(p, "VmRSS:") for p in pids)
    return {"pids": len(pids), "rss_mib": round(rss / 1024, 1)}


def system_busy_s():
    f = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    return (sum(f[:8]) - f[3] - f[4]) / TICK  # all but idle and iowait


def tree_cpu_s(pid):
    tot = 0
    for p in tree(pid):
        try:
            f = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()
            tot += int(f[11]) + int(f[12])
        except (OSError, IndexError, ValueError):
            pass
    return tot / TICK


def own_cpu_s():
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class PeakRss:
    """Samples the RSS of a process tree every `interval` seconds in a thread; keeps the peak."""

    def __init__(self, pid, interval=0.5):
        self.pid, self.interval = pid, interval
        self.peak = {"rss_mib": 0.0, "pids": 0}
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            m = rss_tree(self.pid)
            self.samples += 1
            if m["rss_mib"] > self.peak["rss_mib"]:
                self.peak = m
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


# ---------------------------------------------------------------------------
# Servers
# ---------------------------------------------------------------------------
LIVE = []  # every server started and not yet stopped


def free_ports(n=1):
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class Server:
    def __init__(self, cmd, log_path, env=None, cwd=None):
        self.cmd, self.log_path, self.env, self.cwd = cmd, log_path, env, cwd
        self.proc = None
        self.t_launch = None

    def start(self):
        self.log = open(self.log_path, "w")
        self.t_launch = time.perf_counter()
        self.proc = subprocess.Popen(self.cmd, stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=self.env, cwd=self.cwd,
                                     start_new_session=True)
        LIVE.append(self)
        return self

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, grace=20.0):
        """SIGTERM to the process group, SIGKILL after `grace` seconds. Returns the exit code."""
        if self.proc is None:
            return None
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            pass
        try:  # the group may outlive its leader (workers): make sure nothing is left
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
        if self in LIVE:
            LIVE.remove(self)
        self.log.close()
        return self.proc.returncode

    def log_tail(self, n=15):
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-n:]).strip()
        except OSError:
            return ""


def stop_all():
    for s in list(LIVE):
        try:
            s.stop(grace=10.0)
        except Exception as e:  # noqa: BLE001 - best effort at exit
            print(f"warning: stopping {s.cmd[0]}: {e}", file=sys.stderr)


def http_call(port, method, path, body=None, timeout=10.0):
    """(status, body text); raises OSError/HTTPException when there is no answer."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        conn.request(method, path, body=body, headers=headers)
        r = conn.getresponse()
        return r.status, r.read().decode("utf-8", "replace")
    finally:
        conn.close()


def wait_first_200(server, port, path, body, interval, timeout):
    """Polls POST path until a 200; returns (seconds since launch, response, attempts, statuses)."""
    attempts, statuses = 0, {}
    while True:
        attempts += 1
        try:
            status, text = http_call(port, "POST", path, body, timeout=5.0)
            if status == 200:
                return time.perf_counter() - server.t_launch, text, attempts, statuses
            statuses[str(status)] = statuses.get(str(status), 0) + 1
        except (OSError, http.client.HTTPException):
            pass
        if not server.alive():
            raise RuntimeError(f"server exited with code {server.proc.returncode} before answering; "
                               f"log {server.log_path}:\n{server.log_tail()}")
        if time.perf_counter() - server.t_launch > timeout:
            raise RuntimeError(f"no 200 answer on {path} within {timeout:.0f} s "
                               f"(statuses seen: {statuses or 'none'}); log {server.log_path}:\n"
                               f"{server.log_tail()}")
        time.sleep(interval)


# ---------------------------------------------------------------------------
# wrk
# ---------------------------------------------------------------------------
UNITS = {"us": 1.0, "ms": 1e3, "s": 1e6, "m": 60e6}


def parse_wrk_text(text):
    """Numbers from wrk's --latency text: fallback when the WRKJSON line is missing."""
    r = {}
    m = re.search(r"Requests/sec:\s*([\d.]+)", text)
    if m:
        r["rps"] = float(m.group(1))
    m = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", text)
    if m:
        r["requests"] = int(m.group(1))
        r["duration_us"] = int(float(m.group(2)) * UNITS[m.group(3)])
    for pct in ("50", "90", "99"):
        m = re.search(rf"^\s*{pct}(?:\.0+)?%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.M)
        if m:
            r[f"p{pct}_us"] = float(m.group(1)) * UNITS[m.group(2)]
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    r.update({"err_connect": 0, "err_read": 0, "err_write": 0, "err_timeout": 0})
    if m:
        r.update({"err_connect": int(m.group(1)), "err_read": int(m.group(2)),
                  "err_write": int(m.group(3)), "err_timeout": int(m.group(4))})
    m = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", text)
    r["err_status"] = int(m.group(1)) if m else 0
    return r


def run_wrk(cfg, url, body_path, threads, conns, duration_s, server_pid):
    cmd = [cfg.wrk, f"-t{threads}", f"-c{conns}", f"-d{duration_s}s", "--latency", "--timeout", "10s",
           "-s", os.path.join(HERE, "post_body.lua"), url]
    l0 = loadavg()
    b0, s0, o0 = system_busy_s(), tree_cpu_s(server_pid), own_cpu_s()
    w0 = time.perf_counter()
    with PeakRss(server_pid) as rss:
        p = subprocess.run(cmd, env={**os.environ, "BODY": body_path}, capture_output=True, text=True,
                           timeout=duration_s + 120)
    wall = time.perf_counter() - w0
    d_server, d_own = tree_cpu_s(server_pid) - s0, own_cpu_s() - o0
    res = {"wrk_cmd": f"BODY={body_path} " + " ".join(cmd), "threads": threads, "conns": conns,
           "duration_s": duration_s, "wall_s": round(wall, 2), "returncode": p.returncode,
           "load_before": l0, "load_after": loadavg(),
           "server_cpu_s": round(d_server, 2), "wrk_and_bench_cpu_s": round(d_own, 2),
           "foreign_cpu_s": round(system_busy_s() - b0 - d_server - d_own, 2),
           "rss_peak": rss.peak, "rss_samples": rss.samples}
    text = p.stdout + ("\n" + p.stderr if p.stderr.strip() else "")
    line = [ln for ln in p.stdout.splitlines() if ln.startswith("WRKJSON ")]
    parsed = parse_wrk_text(p.stdout)
    if line:
        try:
            parsed.update(json.loads(line[0][8:]))
        except json.JSONDecodeError:
            pass
    res.update(parsed)
    res["errors"] = sum(int(res.get(k, 0)) for k in
                        ("err_connect", "err_read", "err_write", "err_timeout", "err_status"))
    if p.returncode != 0 or "rps" not in res:
        res["error"] = f"wrk exited {p.returncode}: {text.strip()[-500:]}"
    res["wrk_output"] = "\n".join(ln for ln in text.splitlines() if not ln.startswith("WRKJSON "))
    return res


# ---------------------------------------------------------------------------
# Model, rows, bodies
# ---------------------------------------------------------------------------
def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def features_csv(src, work):
    """The rows for `models bench`: src as is when all its columns are f0..f19, else a copy of
    those columns only (the text of each field unchanged)."""
    with open(src, newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        want = [f"f{i}" for i in range(N_FEATURES)]
        if header == want:
            return os.path.abspath(src), header, None
        missing = [c for c in want if c not in header]
        if missing:
            raise SystemExit(f"error: {src} has no column(s) {', '.join(missing)}")
        idx = [header.index(c) for c in want]
        dst = os.path.join(work, "features.csv")
        with open(dst, "w", newline="") as g:
            w = csv.writer(g, lineterminator="\n")
            w.writerow(want)
            for row in reader:
                w.writerow([row[i] for i in idx])
    dropped = [c for c in header if c not in want]
    return dst, want, dropped


def payload_rows(mlflow_body_path):
    with open(mlflow_body_path) as f:
        d = json.load(f)["dataframe_split"]
    return np.array(d["data"], dtype=np.float64)


def model_check(onnx_path, joblib_path, rows):
    """The ONNX file against the sklearn forest the Python servers load, on the payload rows."""
    import joblib
    import onnxruntime as ort
    res = {}
    try:
        sk = joblib.load(joblib_path)
        sk_label, sk_p = sk.predict(rows), sk.predict_proba(rows)
        sess = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
        feed = {sess.get_inputs()[0].name: rows.astype(np.float32)}
        outs = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feed)))
        label = np.asarray(outs.get("label", next(iter(outs.values())))).ravel()
        # Rows whose two probabilities are equal (50 trees each way) may get either label: sklearn
        # takes the first class, float32 sums in another order may not (anchors' note 11).
        ties = np.abs(sk_p[:, 1] - sk_p[:, 0]) < 1e-6
        res["rows"] = len(rows)
        res["tie_rows"] = [int(i) for i in np.flatnonzero(ties)]
        res["label_agreement"] = float(np.mean(label == sk_label))
        res["label_agreement_without_ties"] = float(np.mean((label == sk_label)[~ties]))
        if "probabilities" in outs:
            res["max_abs_proba_diff"] = float(np.abs(np.asarray(outs["probabilities"]) - sk_p).max())
        res["expected_labels"] = [int(x) for x in sk_label]
        res["ok"] = res["label_agreement_without_ties"] == 1.0 and res.get("max_abs_proba_diff", 0) < 1e-5
    except Exception as e:  # noqa: BLE001 - reported, not fatal
        res["error"] = f"{type(e).__name__}: {e}"
        res["ok"] = False
    return res


def labels_of(text):
    """Class labels from a server's answer: MLflow {"predictions": [...]}, Open Inference
    {"outputs": [...]} (the output named label or predict, else the first integer one), or
    Shipyard's forms (lists of numbers, of {"label": ...}, or {"label": [...]})."""
    try:
        d = json.loads(text)
    except (json.JSONDecodeError, TypeError):
        return None

    def flat(v):
        out = []
        for x in v:
            if isinstance(x, list):
                out += flat(x)
            else:
                out.append(x)
        return out

    def from_value(v):
        if isinstance(v, dict):
            for k in ("label", "labels", "predict", "prediction", "predictions"):
                if k in v:
                    return from_value(v[k])
            return None
        if isinstance(v, list):
            if v and all(isinstance(x, dict) for x in v):
                got = [from_value(x) for x in v]
                if all(g is not None and len(g) == 1 for g in got):
                    return [g[0] for g in got]
                return None
            vals = flat(v)
            if all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in vals):
                return vals
            return None
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return [v]
        return None

    if isinstance(d, dict) and isinstance(d.get("outputs"), list):
        outs = d["outputs"]
        pick = [o for o in outs if o.get("name") in ("label", "predict")]
        pick = pick or [o for o in outs if str(o.get("datatype", "")).startswith(("INT", "UINT"))]
        return from_value(pick[0].get("data")) if pick else None
    if isinstance(d, dict) and "predictions" in d:
        return from_value(d["predictions"])
    return from_value(d)


# ---------------------------------------------------------------------------
# In process: the compute floor
# ---------------------------------------------------------------------------
def p99(xs):
    s = sorted(xs)
    return s[max(0, math.ceil(0.99 * len(s)) - 1)]


def parse_json_stdout(text):
    text = text.strip()
    start = text.find("{")
    while start != -1:
        try:
            return json.loads(text[start:])
        except json.JSONDecodeError:
            start = text.find("{", start + 1)
    raise ValueError("no JSON object on stdout")


def shipyard_inprocess(cfg, onnx_path, rows_csv):
    cmd = [cfg.shipyard_bin, "models", "bench", onnx_path, "--data", rows_csv,
           "--repeat", str(cfg.repeat), "--format", "json"]
    if cfg.inproc_threads:
        cmd += ["--threads", str(cfg.inproc_threads)]
    res = {"cmd": cmd}
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    except (OSError, subprocess.SubprocessError) as e:
        res["error"] = f"{type(e).__name__}: {e}"
        return res
    res["returncode"] = p.returncode
    if p.returncode != 0:
        res["error"] = (p.stderr.strip() or p.stdout.strip())[-2000:] or f"exit {p.returncode}"
        return res
    try:
        res["json"] = parse_json_stdout(p.stdout)
    except ValueError as e:
        res["error"] = f"{e}: {p.stdout[-500:]!r}"
    return res


def ort_inprocess(cfg, onnx_path, rows_csv):
    import onnxruntime as ort
    x = np.loadtxt(rows_csv, delimiter=",", skiprows=1, dtype=np.float64, ndmin=2).astype(np.float32)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    t0 = time.perf_counter()
    sess = ort.InferenceSession(onnx_path, sess_options=so, providers=["CPUExecutionProvider"])
    load_ms = (time.perf_counter() - t0) * 1e3
    name = sess.get_inputs()[0].name
    n = min(len(x), cfg.repeat)  # the rows `shipyard models bench` cycles through
    feeds = [{name: np.ascontiguousarray(x[i:i + 1])} for i in range(n)]
    for k in range(cfg.ort_warmup):
        sess.run(None, feeds[k % n])
    times = []
    clock = time.perf_counter_ns
    for k in range(cfg.repeat):
        feed = feeds[k % n]
        t = clock()
        sess.run(None, feed)
        times.append((clock() - t) / 1e3)
    big = {name: np.ascontiguousarray(x[np.arange(10000) % len(x)])}
    sess.run(None, big)
    bt = []
    for _ in range(cfg.ort_batch_runs):
        t = time.perf_counter()
        sess.run(None, big)
        bt.append((time.perf_counter() - t) * 1e3)
    med = statistics.median(bt)
    return {"threads": {"intra_op": 1, "inter_op": 1}, "load_ms": round(load_ms, 3),
            "rows_available": len(x), "rows_cycled": n, "onnxruntime": ort.__version__,
            "batch1": {"runs": len(times), "warmup": cfg.ort_warmup,
                       "p50_us": round(statistics.median(times), 3), "p99_us": round(p99(times), 3),
                       "mean_us": round(statistics.fmean(times), 3)},
            "batches": [{"rows": 10000, "runs": len(bt), "median_ms": round(med, 3),
                         "rows_per_s": round(10000 / (med / 1e3))}]}


# ---------------------------------------------------------------------------
# One server: cold start, checks, loads
# ---------------------------------------------------------------------------
LOADS = [  # (label, body kind, wrk threads, connections)
    ("1 row, c1", "1row", 1, 1),
    ("1 row, c8", "1row", 2, 8),
    ("1 row, c64", "1row", 2, 64),
    ("100 rows, c8", "100rows", 2, 8),
]


def run_loads(cfg, server, port, series):
    """series: [{"name", "path", "bodies": {"1row": path, "100rows": path}}]; fills "loads"."""
    for s in series:
        url = f"http://127.0.0.1:{port}{s['path']}"
        s["url"] = url
        s["loads"] = []
        if cfg.warmup_s > 0:
            w = run_wrk(cfg, url, s["bodies"]["1row"], 2, 8, cfg.warmup_s, server.pid)
            s["warmup"] = {k: w.get(k) for k in ("requests", "rps", "errors", "error")}
            time.sleep(cfg.pause_s)
        for label, kind, threads, conns in LOADS:
            if not server.alive():
                s["loads"].append({"load": label, "error": "server is gone"})
                continue
            r = run_wrk(cfg, url, s["bodies"][kind], min(threads, cfg.wrk_threads, conns), conns,
                        cfg.duration, server.pid)
            r.update({"load": label, "rows_per_request": 100 if kind == "100rows" else 1})
            s["loads"].append(r)
            rps = r.get("rps")
            print(f"  {s['name']:<24} {label:<13} "
                  f"{num(rps):>9} req/s  p50 {ms(r.get('p50_us'))} ms  p99 {ms(r.get('p99_us'))} ms"
                  f"  errors {r.get('errors')}  rss {r['rss_peak']['rss_mib']} MiB"
                  f"  foreign cpu {r['foreign_cpu_s']} s" + (f"  ERROR {r['error']}" if r.get("error") else ""),
                  file=sys.stderr, flush=True)
            time.sleep(cfg.pause_s)


def bench_server(cfg, entry, make_server, port_for, ready_path, ready_body, poll_s, starts,
                 start_timeout, checks, series):
    """Starts the server `starts` times (cold start each), keeps the last one for the loads."""
    entry["startup"] = {"poll_interval_ms": poll_s * 1e3, "route": ready_path, "runs": []}
    server = None
    try:
        for k in range(max(1, starts)):
            ports = free_ports(port_for)
            server = make_server(ports)
            entry["cmd"] = server.cmd
            entry["log"] = server.log_path
            if k == 0:
                print(f"  $ {' '.join(server.cmd)}", file=sys.stderr, flush=True)
            server.start()
            elapsed, first, attempts, statuses = wait_first_200(server, ports[0], ready_path, ready_body,
                                                                poll_s, start_timeout)
            entry["startup"]["runs"].append({"first_200_ms": round(elapsed * 1e3, 2), "attempts": attempts,
                                             "statuses_before": statuses})
            entry["startup"]["first_response"] = first[:300]
            print(f"  {entry['name']}: first answer after {elapsed * 1e3:,.1f} ms ({attempts} polls)",
                  file=sys.stderr, flush=True)
            if k < max(1, starts) - 1:
                server.stop()
        runs = [r["first_200_ms"] for r in entry["startup"]["runs"]]
        entry["startup"]["median_ms"] = round(statistics.median(runs), 2)
        port = ports[0]
        time.sleep(cfg.idle_s)
        entry["rss_idle"] = rss_tree(server.pid)
        entry["checks"] = {}
        for name, method, path, body in checks:
            try:
                status, text = http_call(port, method, path, body)
                entry["checks"][name] = {"path": path, "status": status, "body": text[:300]}
                if body is not None and name.startswith("100 rows"):
                    entry["checks"][name]["labels"] = labels_of(text)
            except (OSError, http.client.HTTPException) as e:
                entry["checks"][name] = {"path": path, "error": f"{type(e).__name__}: {e}"}
        entry["series"] = series
        run_loads(cfg, server, port, series)
    except Exception as e:  # noqa: BLE001 - one failing server must not stop the others
        entry["error"] = f"{type(e).__name__}: {e}"
        print(f"  {entry['name']} FAILED: {entry['error']}", file=sys.stderr, flush=True)
    finally:
        if server is not None:
            entry["exit_code"] = server.stop()
    return entry


# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------
def num(v, digits=1):
    if v is None:
        return "–"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    return f"{v:.{digits}f}"


def ms(us):
    if us is None:
        return "–"
    v = us / 1e3
    if v < 1:
        return f"{v:.3f}"
    if v < 10:
        return f"{v:.2f}"
    if v < 100:
        return f"{v:.1f}"
    return f"{v:,.0f}"


def find_load(report, server, series, load):
    for e in report["servers"]:
        if e["name"] != server:
            continue
        for s in e.get("series") or []:
            if s["name"] == series:
                for r in s.get("loads") or []:
                    if r.get("load") == load and not r.get("error"):
                        return r
    return None


def server_entry(report, name):
    return next((e for e in report["servers"] if e["name"] == name and not e.get("error")), None)


def table(report):
    head = ["server", "load", "req/s", "p50 ms", "p99 ms", "errors", "peak RSS MiB", "foreign CPU s"]
    lines = ["| " + " | ".join(head) + " |", "|---|---|" + "---:|" * 6]
    for e in report["servers"]:
        for s in e.get("series") or []:
            for r in s.get("loads") or []:
                rps = r.get("rps")
                cell = num(rps)
                if rps is not None and r.get("rows_per_request", 1) > 1:
                    cell += f" ({num(rps * r['rows_per_request'])} rows/s)"
                lines.append("| " + " | ".join([
                    s["name"], r["load"], cell if not r.get("error") else "failed",
                    ms(r.get("p50_us")), ms(r.get("p99_us")), str(r.get("errors", "–")),
                    num((r.get("rss_peak") or {}).get("rss_mib")), num(r.get("foreign_cpu_s"), 2)]) + " |")
        if e.get("error"):
            lines.append(f"| {e['name']} | failed | – | – | – | – | – | – |")
    return "\n".join(lines)


def startup_table(report):
    lines = ["| server | cold start to first answer | idle RSS MiB (processes) |", "|---|---:|---:|"]
    for e in report["servers"]:
        st = e.get("startup") or {}
        runs = [r["first_200_ms"] for r in st.get("runs", [])]
        if not runs:
            continue
        med = statistics.median(runs)
        txt = f"{med:,.1f} ms" if med < 1000 else f"{med / 1e3:.2f} s"
        if len(runs) > 1:
            txt += f" (median of {len(runs)}: " + ", ".join(f"{x:,.1f}" for x in runs) + ")"
        idle = e.get("rss_idle") or {}
        lines.append(f"| {e['name']} | {txt} | {num(idle.get('rss_mib'))} ({idle.get('pids', '–')}) |")
    return "\n".join(lines)


def goals(report):
    """[(text, verdict)]: verdict True (met), False (missed) or None (not measured / no goal)."""
    out = []

    def rps(server, series, load):
        r = find_load(report, server, series, load)
        return r.get("rps") if r else None

    def ratio(a, b):
        return a / b if a is not None and b else None

    sy_inv, sy_v2 = "Shipyard /invocations", "Shipyard /v2 infer"
    r = ratio(rps("shipyard", sy_inv, "1 row, c64"), rps("mlflow", "MLflow /invocations", "1 row, c64"))
    out.append((f"req/s at 64 connections, Shipyard / MLflow (same /invocations body): "
                f"{num(r)}x (goal >= 100x)", None if r is None else r >= 100))
    r = ratio(rps("shipyard", sy_v2, "1 row, c64"), rps("mlserver", "MLServer /v2 infer", "1 row, c64"))
    out.append((f"req/s at 64 connections, Shipyard / MLServer (same V2 body): {num(r)}x (no goal)", None))
    r = ratio(rps("shipyard", sy_inv, "100 rows, c8"), rps("mlflow", "MLflow /invocations", "100 rows, c8"))
    out.append((f"100-row req/s at 8 connections, Shipyard / MLflow: {num(r)}x (no goal)", None))

    p99s = [(s, (find_load(report, "shipyard", s, "1 row, c8") or {}).get("p99_us")) for s in (sy_inv, sy_v2)]
    got = [(s, v) for s, v in p99s if v is not None]
    short = {sy_inv: "/invocations", sy_v2: "/v2"}
    out.append(("p99 at 8 connections, Shipyard: " + (", ".join(f"{short[s]} {ms(v)} ms" for s, v in got) or "–")
                + " (goal <= 2 ms)", None if not got else all(v <= 2000 for _, v in got)))

    parts, head = [], None
    for load in ("1 row, c1", "1 row, c8", "1 row, c64"):
        r = ratio(rps("shipyard", sy_inv, load), rps("ceiling", "ceiling (fixed body)", load))
        parts.append(f"{load.split(', ')[1]} {num(r, 2)}")
        if load == "1 row, c64":
            head = r
    out.append((f"throughput / fixed-body route (1 row, /invocations): {', '.join(parts)} "
                f"(goal >= 0.5 at c64)", None if head is None else head >= 0.5))

    inproc = report.get("inprocess") or {}
    sy_b1 = (((inproc.get("shipyard") or {}).get("json") or {}).get("batch1") or {}).get("p50_us")
    ort_b1 = ((inproc.get("onnxruntime") or {}).get("batch1") or {}).get("p50_us")
    r = ratio(sy_b1, ort_b1)
    out.append((f"in-process batch-1 p50: Shipyard {num(sy_b1)} µs, onnxruntime (1 thread) {num(ort_b1)} µs, "
                f"ratio {num(r, 2)} (goal <= 1)", None if r is None else r <= 1.0))

    sy = server_entry(report, "shipyard")
    peak = None
    if sy:
        peaks = [(r.get("rss_peak") or {}).get("rss_mib") for s in sy.get("series") or []
                 for r in s.get("loads") or []]
        peaks = [p for p in peaks + [(sy.get("rss_idle") or {}).get("rss_mib")] if p]
        peak = max(peaks) if peaks else None
    out.append((f"Shipyard peak RSS: {num(peak)} MiB (goal < 50 MB = {MB50_MIB:.1f} MiB)",
                None if peak is None else peak < MB50_MIB))

    # The MLflow sklearn model served by Shipyard: through Python workers against MLServer (V2
    # body, 8 connections); its conversion against Shipyard's own ONNX serving.
    pool = find_load(report, "shipyard-pickle-python", "shipyard-pickle-python /v2 infer", "1 row, c8")
    msrv = find_load(report, "mlserver", "MLServer /v2 infer", "1 row, c8")
    if pool and msrv:
        r = ratio(pool.get("rps"), msrv.get("rps"))
        p_pool, p_ms = pool.get("p99_us"), msrv.get("p99_us")
        m_pool, m_ms = (pool.get("rss_peak") or {}).get("rss_mib"), (msrv.get("rss_peak") or {}).get("rss_mib")
        met = (r is not None and r >= 2 and p_pool is not None and p_ms is not None and p_pool < p_ms
               and m_pool is not None and m_ms is not None and m_pool < m_ms)
        out.append((f"pickle through Python workers / MLServer at 8 connections (V2, 1 row): {num(r)}x req/s, "
                    f"p99 {ms(p_pool)} vs {ms(p_ms)} ms, peak RSS {num(m_pool)} vs {num(m_ms)} MiB "
                    "(goal >= 2x, lower p99, less memory)", met))
    else:
        out.append(("pickle through Python workers / MLServer at 8 connections: not measured", None))
    for series_sy, series_conv in ((sy_v2, "shipyard-pickle-converted /v2 infer"),
                                   (sy_inv, "shipyard-pickle-converted /invocations")):
        r = ratio(rps("shipyard-pickle-converted", series_conv, "1 row, c64"), rps("shipyard", series_sy, "1 row, c64"))
        out.append((f"pickle converted / Shipyard's ONNX serving ({series_sy.split()[-1]}, 1 row, c64): {num(r, 2)} "
                    "(goal: the same speed, >= 0.9)", None if r is None else r >= 0.9))

    def start_ms(name):
        e = report_entry(report, name)
        return ((e or {}).get("startup") or {}).get("median_ms")

    for name in ("shipyard-pickle-converted", "shipyard-pickle-python"):
        if start_ms(name):
            out.append((f"start to first answer of the pickle, {name}: {start_ms(name) / 1e3:.2f} s "
                        "(interpreter warm: its venv exists; no goal)", None))
    s_sy = start_ms("shipyard")
    others = ", ".join(f"{n} {start_ms(n) / 1e3:.2f} s" for n in ("mlflow", "mlserver") if start_ms(n))
    out.append((f"cold start to first answer: Shipyard {num(s_sy)} ms" + (f" ({others})" if others else "")
                + " (goal < 100 ms)", None if s_sy is None else s_sy < 100))
    return out


def report_entry(report, name):
    return next((e for e in report["servers"] if e["name"] == name), None)


# ---------------------------------------------------------------------------
def resolve_inputs(cfg):
    gen = os.path.abspath(cfg.model_dir)

    def pick(given, shared, generated):
        if given:
            return os.path.abspath(given), "given"
        if os.path.exists(shared):
            return shared, "shared/anchors"
        return generated, "generated (make_model.py)"

    onnx_path, onnx_from = pick(cfg.model, os.path.join(ANCHORS, "models", "rf100.onnx"),
                                os.path.join(gen, "rf100.onnx"))
    data_path, data_from = pick(cfg.data, os.path.join(ANCHORS, "models", "train20k.csv"),
                                os.path.join(gen, "train20k.csv"))
    shared_payloads = os.path.join(ANCHORS, "payloads")
    names = ["mlflow_1row.json", "mlflow_100rows.json", "v2_1row.json", "v2_100rows.json"]
    if not all(os.path.exists(os.path.join(shared_payloads, n)) for n in names):
        shared_payloads = os.path.join(ANCHORS, "no-payloads")
    pay_dir, pay_from = pick(cfg.payloads, shared_payloads, os.path.join(gen, "payloads"))
    inputs = {
        "onnx": onnx_path, "onnx_from": onnx_from,
        "data": data_path, "data_from": data_from,
        "payloads": pay_dir, "payloads_from": pay_from,
        "mlflow_model": os.path.join(gen, "rf100-mlflow"), "joblib": os.path.join(gen, "rf100.joblib"),
    }
    bodies = {k: os.path.join(pay_dir, n) for k, n in zip(("mlflow_1row", "mlflow_100rows", "v2_1row",
                                                            "v2_100rows"), names)}
    for path in [onnx_path, data_path] + list(bodies.values()):
        if not os.path.exists(path):
            raise SystemExit(f"error: {path} not found (bench/serving/run.sh makes --model-dir)")
    return inputs, bodies


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="3 s per load, 1 s warm-up and pauses, 500 in-process runs")
    ap.add_argument("--duration", type=int, help="seconds per load (default 15, --quick 3)")
    ap.add_argument("--warmup", dest="warmup_s", type=int, help="unrecorded wrk warm-up seconds "
                    "before each route's loads (default 2, --quick 1; 0: none)")
    ap.add_argument("--pause", dest="pause_s", type=float, help="seconds between loads (default 3, --quick 1)")
    ap.add_argument("--skip-shipyard", action="store_true", help="no `shipyard serve`, no in-process Shipyard")
    ap.add_argument("--skip-ceiling", action="store_true", help="no fixed-body route")
    ap.add_argument("--skip-mlflow", action="store_true")
    ap.add_argument("--skip-mlserver", action="store_true")
    ap.add_argument("--skip-inprocess", action="store_true", help="no in-process timings")
    ap.add_argument("--skip-pickle", action="store_true",
                    help="no `shipyard serve` of the MLflow sklearn model (converted, and through Python workers)")
    ap.add_argument("--python-workers", type=int, default=1,
                    help="Python workers of the shipyard-pickle-python server (default 1, as MLServer's "
                    "parallel_workers)")
    ap.add_argument("--shipyard-bin", default=os.path.join(ROOT, "target", "release", "shipyard"))
    ap.add_argument("--ceiling-bin", default=os.path.join(ROOT, "target", "release", "examples", "fixed_body"))
    ap.add_argument("--shipyard-serve-args", default="--cache-entries 0",
                    help="more arguments for `shipyard serve` (default \"--cache-entries 0\": no "
                    "prediction cache; give it as --shipyard-serve-args='...'; '' for Shipyard's defaults)")
    ap.add_argument("--mlflow-bin", default=os.path.join(os.path.dirname(sys.executable), "mlflow"),
                    help="default: the mlflow of the venv running this script")
    ap.add_argument("--mlflow-workers", type=int, default=1, help="uvicorn workers (default 1, MLflow's default)")
    ap.add_argument("--mlserver-bin", default=os.path.join(HERE, ".venv-mlserver", "bin", "mlserver"))
    ap.add_argument("--mlserver-unavailable", metavar="REASON",
                    help="run.sh: MLServer did not install; skip it and say why")
    ap.add_argument("--model", help="the forest as ONNX (default shared/anchors/models/rf100.onnx if "
                    "present, else MODEL_DIR/rf100.onnx)")
    ap.add_argument("--data", help="rows for the in-process timings, columns f0..f19 (others dropped); "
                    "default shared/anchors/models/train20k.csv if present, else MODEL_DIR/train20k.csv")
    ap.add_argument("--payloads", help="request bodies (default shared/anchors/payloads if present, "
                    "else MODEL_DIR/payloads)")
    ap.add_argument("--model-dir", default=os.path.join(HERE, ".work", "model"),
                    help="make_model.py's output: rf100-mlflow/, rf100.joblib and the fallbacks")
    ap.add_argument("--work-dir", default=os.path.join(HERE, ".work", "run"),
                    help="server logs, MLServer's model folder, the features-only CSV")
    ap.add_argument("--out-dir", default=os.path.join(HERE, "results"))
    ap.add_argument("--cold-starts", type=int, default=3,
                    help="cold starts of Shipyard and the ceiling (median reported; default 3)")
    ap.add_argument("--repeat", type=int, help="in-process single-row runs (default 2000, --quick 500)")
    ap.add_argument("--inproc-threads", type=int, default=1,
                    help="--threads for `shipyard models bench` (default 1, like onnxruntime's 1 "
                    "thread; 0: Shipyard's default)")
    ap.add_argument("--wrk", default=shutil.which("wrk") or "wrk")
    ap.add_argument("--wrk-threads", type=int, default=2, help="most wrk threads (default 2)")
    cfg = ap.parse_args()
    cfg.duration = cfg.duration or (3 if cfg.quick else 15)
    cfg.warmup_s = cfg.warmup_s if cfg.warmup_s is not None else (1 if cfg.quick else 2)
    cfg.pause_s = cfg.pause_s if cfg.pause_s is not None else (1.0 if cfg.quick else 3.0)
    cfg.idle_s = 1.0 if cfg.quick else 2.0
    cfg.repeat = cfg.repeat or (500 if cfg.quick else 2000)
    cfg.ort_warmup = 50 if cfg.quick else 200
    cfg.ort_batch_runs = 3 if cfg.quick else 5

    # Checks before anything runs.
    problems = []
    if not shutil.which(cfg.wrk) and not os.access(cfg.wrk, os.X_OK):
        problems.append("wrk not found: apt-get install -y wrk (run.sh does it when run as root)")
    cfg.shipyard_bin = os.path.abspath(cfg.shipyard_bin)
    cfg.ceiling_bin = os.path.abspath(cfg.ceiling_bin)
    missing = []
    if not cfg.skip_shipyard and not os.access(cfg.shipyard_bin, os.X_OK):
        missing.append(f"{cfg.shipyard_bin} (cargo build --release --locked --bin shipyard)")
    if not cfg.skip_ceiling and not os.access(cfg.ceiling_bin, os.X_OK):
        missing.append(f"{cfg.ceiling_bin} (cargo build --release --locked -p shipyard-serving "
                       "--example fixed_body)")
    if missing:
        problems.append("missing binaries; build both first:\n    " + "\n    ".join(missing)
                        + "\n  (or pass --shipyard-bin / --ceiling-bin, or --skip-shipyard / --skip-ceiling)")
    if not cfg.skip_mlflow and not os.access(cfg.mlflow_bin, os.X_OK):
        problems.append(f"{cfg.mlflow_bin} not found (run through bench/serving/run.sh, or --skip-mlflow)")
    if problems:
        sys.exit("error: " + "\nerror: ".join(problems))
    inputs, bodies = resolve_inputs(cfg)
    if not cfg.skip_mlflow and not os.path.isdir(inputs["mlflow_model"]):
        sys.exit(f"error: no MLflow model at {inputs['mlflow_model']} (bench/serving/run.sh makes it)")
    os.makedirs(cfg.work_dir, exist_ok=True)
    os.makedirs(cfg.out_dir, exist_ok=True)
    logs = os.path.join(cfg.work_dir, "logs")
    os.makedirs(logs, exist_ok=True)

    def on_signal(signum, _frame):
        raise SystemExit(128 + signum)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    started = datetime.datetime.now()
    venv_bin = os.path.dirname(sys.executable)
    mlserver_py = os.path.join(os.path.dirname(cfg.mlserver_bin), "python")
    report = {
        "bench": "serving",
        "date": started.isoformat(timespec="seconds"),
        "machine": machine_info(),
        "load_before": loadavg(),
        "versions": {
            "shipyard": None if cfg.skip_shipyard else sh([cfg.shipyard_bin, "--version"]),
            "mlflow": None if cfg.skip_mlflow else sh([cfg.mlflow_bin, "--version"]),
            "mlserver": (sh([mlserver_py, "-c", "import importlib.metadata as m; "
                                                "print(m.version('mlserver'), m.version('mlserver-sklearn'), "
                                                "m.version('scikit-learn'), m.version('uvloop'))"])
                         if os.access(mlserver_py, os.X_OK) else None),
            "wrk": sh(["dpkg-query", "-W", "-f", "${Version}", "wrk"]) or sh([cfg.wrk, "-v"]),
            "numpy": np.__version__,
            "git_commit": sh(["git", "-C", ROOT, "rev-parse", "HEAD"]),
            "git_dirty": bool(sh(["git", "-C", ROOT, "status", "--porcelain"])),
        },
        "protocol": {
            "duration_s": cfg.duration, "warmup_s": cfg.warmup_s, "pause_s": cfg.pause_s,
            "loads": [{"load": lb, "body": k, "wrk_threads": min(t, cfg.wrk_threads, c), "conns": c}
                      for lb, k, t, c in LOADS],
            "wrk_flags": "--latency --timeout 10s -s post_body.lua", "rss_sample_s": 0.5,
            "cold_starts_native": cfg.cold_starts, "repeat": cfg.repeat,
            "inproc_threads": cfg.inproc_threads, "quick": cfg.quick,
            "mlflow_workers": cfg.mlflow_workers, "shipyard_serve_args": cfg.shipyard_serve_args,
        },
        "inputs": inputs,
        "servers": [],
        "skipped": [],
    }
    report["inputs"]["onnx_sha256"] = sha256(inputs["onnx"])
    print(f"machine: {report['machine']['nproc']} cpus, {report['machine']['cpu_model']}, "
          f"load {report['load_before']}", file=sys.stderr)
    print(f"model {inputs['onnx']} ({inputs['onnx_from']}); bodies {inputs['payloads']}", file=sys.stderr)

    # The ONNX file and the sklearn forest the Python servers load must be the same model.
    rows100 = payload_rows(bodies["mlflow_100rows"])
    report["model_check"] = model_check(inputs["onnx"], inputs["joblib"], rows100)
    mc = report["model_check"]
    expected, ties = mc.get("expected_labels"), set(mc.get("tie_rows") or [])
    print(f"model check (ONNX vs sklearn forest, 100 payload rows): {'ok' if mc['ok'] else 'MISMATCH'} "
          f"{json.dumps({k: v for k, v in mc.items() if k not in ('expected_labels', 'ok')})}",
          file=sys.stderr, flush=True)

    try:
        # In process: the compute floor.
        if not cfg.skip_inprocess:
            rows_csv, cols, dropped = features_csv(inputs["data"], cfg.work_dir)
            report["inprocess"] = {"rows_csv": rows_csv, "dropped_columns": dropped}
            print("in-process:", file=sys.stderr, flush=True)
            if not cfg.skip_shipyard:
                r = shipyard_inprocess(cfg, inputs["onnx"], rows_csv)
                report["inprocess"]["shipyard"] = r
                b1 = ((r.get("json") or {}).get("batch1") or {})
                print(f"  Shipyard     batch-1 p50 {num(b1.get('p50_us'))} µs, p99 {num(b1.get('p99_us'))} µs"
                      + (f"  FAILED: {r['error'][-300:]}" if r.get("error") else ""), file=sys.stderr, flush=True)
            r = ort_inprocess(cfg, inputs["onnx"], rows_csv)
            report["inprocess"]["onnxruntime"] = r
            print(f"  onnxruntime  batch-1 p50 {num(r['batch1']['p50_us'])} µs, p99 {num(r['batch1']['p99_us'])} µs "
                  f"(1 thread); 10k rows {num(r['batches'][0]['median_ms'])} ms", file=sys.stderr, flush=True)

        inv_bodies = {"1row": bodies["mlflow_1row"], "100rows": bodies["mlflow_100rows"]}
        v2_bodies = {"1row": bodies["v2_1row"], "100rows": bodies["v2_100rows"]}
        body1 = open(bodies["mlflow_1row"], "rb").read()
        body100 = open(bodies["mlflow_100rows"], "rb").read()
        v2body1 = open(bodies["v2_1row"], "rb").read()
        v2body100 = open(bodies["v2_100rows"], "rb").read()
        v2_path = f"/v2/models/{MODEL_NAME}/infer"

        # The HTTP ceiling.
        if cfg.skip_ceiling:
            report["skipped"].append({"name": "ceiling", "reason": "--skip-ceiling"})
        else:
            print("ceiling (fixed_body):", file=sys.stderr, flush=True)
            entry = {"name": "ceiling"}
            report["servers"].append(entry)
            bench_server(cfg, entry,
                         lambda p: Server([cfg.ceiling_bin, str(p[0])], os.path.join(logs, "ceiling.log")),
                         1, "/", body1, 0.005, cfg.cold_starts, 30,
                         [("GET /", "GET", "/", None)],
                         [{"name": "ceiling (fixed body)", "path": "/", "bodies": inv_bodies}])

        # Shipyard.
        if cfg.skip_shipyard:
            report["skipped"].append({"name": "shipyard", "reason": "--skip-shipyard"})
        else:
            print("Shipyard (shipyard serve):", file=sys.stderr, flush=True)
            entry = {"name": "shipyard"}
            report["servers"].append(entry)
            bench_server(cfg, entry,
                         lambda p: Server([cfg.shipyard_bin, "serve", "--model", inputs["onnx"], "--name", MODEL_NAME,
                                           "--host", "127.0.0.1", "--port", str(p[0])]
                                          + shlex.split(cfg.shipyard_serve_args),
                                          os.path.join(logs, "shipyard.log")),
                         1, v2_path, v2body1, 0.005, cfg.cold_starts, 60,
                         [("GET /v2/health/ready", "GET", "/v2/health/ready", None),
                          ("GET /ping", "GET", "/ping", None),
                          ("100 rows /invocations", "POST", "/invocations", body100),
                          ("100 rows /v2 infer", "POST", v2_path, v2body100)],
                         [{"name": "Shipyard /invocations", "path": "/invocations", "bodies": inv_bodies},
                          {"name": "Shipyard /v2 infer", "path": v2_path, "bodies": v2_bodies}])

        # Shipyard serving the MLflow sklearn model itself (the pickle MLflow loads, skops format):
        # its verified ONNX conversion, and Python workers (conversion off).
        pickle_variants = [
            ("shipyard-pickle-converted", ["--sklearn-engine", "auto"]),
            ("shipyard-pickle-python", ["--sklearn-engine", "python", "--python-workers", str(cfg.python_workers)]),
        ]
        for variant, engine_args in pickle_variants:
            if cfg.skip_shipyard or cfg.skip_pickle:
                report["skipped"].append({"name": variant, "reason": "--skip-shipyard or --skip-pickle"})
                continue
            print(f"Shipyard, the MLflow sklearn model ({variant}):", file=sys.stderr, flush=True)
            entry = {"name": variant}
            report["servers"].append(entry)

            def make_pickle_server(p, variant=variant, engine_args=engine_args):
                # The interpreter with the model's packages: this venv's (mlflow, scikit-learn,
                # skops, pyarrow, skl2onnx).
                return Server([cfg.shipyard_bin, "serve", "--model", inputs["mlflow_model"], "--name", MODEL_NAME,
                               "--host", "127.0.0.1", "--port", str(p[0]), "--python", sys.executable]
                              + engine_args + shlex.split(cfg.shipyard_serve_args),
                              os.path.join(logs, f"{variant}.log"))

            bench_server(cfg, entry, make_pickle_server, 1, v2_path, v2body1, 0.05, 1, 300,
                         [("GET /v2/models/rf100", "GET", f"/v2/models/{MODEL_NAME}", None),
                          ("100 rows /invocations", "POST", "/invocations", body100),
                          ("100 rows /v2 infer", "POST", v2_path, v2body100)],
                         [{"name": f"{variant} /invocations", "path": "/invocations", "bodies": inv_bodies},
                          {"name": f"{variant} /v2 infer", "path": v2_path, "bodies": v2_bodies}])

        # MLflow.
        if cfg.skip_mlflow:
            report["skipped"].append({"name": "mlflow", "reason": "--skip-mlflow"})
        else:
            print("MLflow (mlflow models serve):", file=sys.stderr, flush=True)
            env = {**os.environ, "PATH": venv_bin + os.pathsep + os.environ.get("PATH", ""),
                   "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}
            entry = {"name": "mlflow"}
            report["servers"].append(entry)
            bench_server(cfg, entry,
                         lambda p: Server([cfg.mlflow_bin, "models", "serve", "-m", inputs["mlflow_model"],
                                           "--env-manager", "local", "-h", "127.0.0.1", "-p", str(p[0]),
                                           "-w", str(cfg.mlflow_workers)],
                                          os.path.join(logs, "mlflow.log"), env=env),
                         1, "/invocations", body1, 0.05, 1, 300,
                         [("GET /ping", "GET", "/ping", None),
                          ("100 rows /invocations", "POST", "/invocations", body100)],
                         [{"name": "MLflow /invocations", "path": "/invocations", "bodies": inv_bodies}])

        # MLServer.
        if cfg.skip_mlserver:
            report["skipped"].append({"name": "mlserver", "reason": "--skip-mlserver"})
        elif cfg.mlserver_unavailable or not os.access(cfg.mlserver_bin, os.X_OK):
            why = cfg.mlserver_unavailable or f"{cfg.mlserver_bin} not found"
            report["skipped"].append({"name": "mlserver", "reason": f"not installed: {why}"})
            print(f"MLServer skipped: {why}", file=sys.stderr, flush=True)
        else:
            print("MLServer (mlserver start):", file=sys.stderr, flush=True)
            ms_dir = os.path.join(cfg.work_dir, "mlserver")
            os.makedirs(ms_dir, exist_ok=True)
            shutil.copyfile(inputs["joblib"], os.path.join(ms_dir, "model.joblib"))
            with open(os.path.join(ms_dir, "model-settings.json"), "w") as f:
                json.dump({"name": MODEL_NAME, "implementation": "mlserver_sklearn.SKLearnModel",
                           "parameters": {"uri": "./model.joblib", "version": "v1"}}, f)

            def make_mlserver(p):
                with open(os.path.join(ms_dir, "settings.json"), "w") as f:
                    json.dump({"host": "127.0.0.1", "http_port": p[0], "grpc_port": p[1],
                               "metrics_port": p[2]}, f)
                ms_bin = os.path.dirname(cfg.mlserver_bin)
                env = {**os.environ, "PATH": ms_bin + os.pathsep + os.environ.get("PATH", "")}
                return Server([cfg.mlserver_bin, "start", ms_dir], os.path.join(logs, "mlserver.log"),
                              env=env, cwd=ms_dir)

            entry = {"name": "mlserver"}
            report["servers"].append(entry)
            bench_server(cfg, entry, make_mlserver, 3, v2_path, v2body1, 0.05, 1, 300,
                         [("GET /v2/health/ready", "GET", "/v2/health/ready", None),
                          ("100 rows /v2 infer", "POST", v2_path, v2body100)],
                         [{"name": "MLServer /v2 infer", "path": v2_path, "bodies": v2_bodies}])
    finally:
        stop_all()

    # Every server's answer to the 100-row body against the forest's labels.
    for e in report["servers"]:
        for name, c in (e.get("checks") or {}).items():
            if "labels" not in c:
                continue
            got = c["labels"]
            if got is None or expected is None or len(got) != len(expected):
                c["label_agreement"] = None
            else:
                same = [int(a) == int(b) for a, b in zip(got, expected)]
                c["label_agreement"] = float(np.mean(same))
                c["label_agreement_without_ties"] = float(np.mean([x for i, x in enumerate(same)
                                                                   if i not in ties]))
            del c["labels"]

    report["load_after"] = loadavg()
    report["goals"] = [{"text": t, "met": v} for t, v in goals(report)]
    out = os.path.join(cfg.out_dir, f"serving-{started.strftime('%Y%m%d-%H%M%S')}.json")
    with open(out, "w") as f:
        json.dump(report, f, indent=1)
        f.write("\n")

    print()
    print(table(report))
    print()
    print(startup_table(report))
    inproc = report.get("inprocess") or {}
    if inproc:
        sy = (inproc.get("shipyard") or {}).get("json") or {}
        o = inproc.get("onnxruntime") or {}
        print()
        print("compute floor (in process, 1 thread):")
        if sy:
            b1 = sy.get("batch1") or {}
            bat = ", ".join(f"{b.get('rows')} rows {num(b.get('median_ms'), 2)} ms ({num(b.get('rows_per_s'))} rows/s)"
                            for b in sy.get("batches") or [])
            print(f"  Shipyard ({sy.get('engine')}): batch-1 p50 {num(b1.get('p50_us'))} µs, "
                  f"p99 {num(b1.get('p99_us'))} µs; {bat}")
        elif (inproc.get("shipyard") or {}).get("error"):
            print(f"  Shipyard: FAILED: {inproc['shipyard']['error'].strip().splitlines()[-1]}")
        if o:
            print(f"  onnxruntime {o.get('onnxruntime')}: batch-1 p50 {num(o['batch1']['p50_us'])} µs, "
                  f"p99 {num(o['batch1']['p99_us'])} µs; 10000 rows {num(o['batches'][0]['median_ms'], 2)} ms "
                  f"({num(o['batches'][0]['rows_per_s'])} rows/s)")
    print()
    print("goals:")
    for t, v in [(g["text"], g["met"]) for g in report["goals"]]:
        mark = {True: "met   ", False: "MISSED", None: "  –   "}[v]
        print(f"  [{mark}] {t}")
    notes = []
    if not mc.get("ok"):
        notes.append("the ONNX file and the sklearn forest differ: "
                     + json.dumps({k: v for k, v in mc.items() if k not in ('expected_labels', 'ok')}))
    for e in report["servers"]:
        if e.get("error"):
            notes.append(f"{e['name']} failed: {e['error'].splitlines()[0]} (log {e.get('log')})")
        for name, c in (e.get("checks") or {}).items():
            if c.get("error") or (c.get("status") not in (None, 200)):
                notes.append(f"{e['name']} {name}: {c.get('status') or c.get('error')} {c.get('body', '')[:120]}")
            if "label_agreement" in c and c.get("label_agreement_without_ties") != 1.0:
                notes.append(f"{e['name']} {name}: labels agree with the forest's on "
                             f"{c.get('label_agreement_without_ties')} of the rows without ties "
                             f"(None: no labels found in {c.get('body', '')[:120]!r})")
        for s in e.get("series") or []:
            for r in s.get("loads") or []:
                if r.get("error"):
                    notes.append(f"{s['name']} {r['load']}: {r['error'][:200]}")
                elif r.get("errors"):
                    notes.append(f"{s['name']} {r['load']}: {r['errors']} errors "
                                 f"(connect {r.get('err_connect')}, read {r.get('err_read')}, write "
                                 f"{r.get('err_write')}, timeout {r.get('err_timeout')}, status {r.get('err_status')})")
                if (r.get("foreign_cpu_s") or 0) > 0.1 * cfg.duration:
                    notes.append(f"{s['name']} {r['load']}: {r['foreign_cpu_s']} foreign CPU-seconds "
                                 "(another process was busy: contended)")
    for s in report["skipped"]:
        notes.append(f"skipped {s['name']}: {s['reason']}")
    if notes:
        print()
        for n in notes:
            print(f"note: {n}")
    print(f"\nload average before {report['load_before']}, after {report['load_after']}; "
          f"{report['machine']['nproc']} cpus ({report['machine']['cpu_model']})")
    print(f"results: {out}")
    failed = [e["name"] for e in report["servers"] if e.get("error")]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
