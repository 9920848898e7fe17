#!/usr/bin/env python3
"""bench/engine: Shipyard's native ONNX engine next to onnxruntime, same models, same rows.

usage: bench.py [--models a,b,c] [--quick] [--models-dir DIR] [--csv-dir DIR] [--out-dir DIR]
                [--shipyard-bin PATH | --skip-shipyard] [--shipyard-threads N]

Models: every <name>.onnx in --models-dir (run.sh fills bench/engine/models/ with
make_onnx_fixtures.py --scale bench), with its <name>.json (recorded inputs and onnxruntime
outputs, see that script). --models keeps only the named ones.

Rows: the model's recorded inputs (1,000 rows at bench scale), written to <csv-dir>/<name>.csv
(default bench/engine/models/csv, whatever --models-dir is).
Columns: a model with one [N, F] input gets f0..f{F-1} (Shipyard takes a bare .onnx's single
input's columns in order); a model with several inputs (the string-column pipelines
pipe_columns_onehot: color, shape, num[6]; pipe_ordinal_tree: color, num[6]) gets one column per
[N, 1] input named after it and <input>_<j> for wider ones (num_0..num_5). Floats are written as
the shortest text that round-trips to the same float32; NaN (the hgb_*, lgbm_*, xgb_*, imputer
and tree_ensemble_v5_member rows hold 5% NaN) as an empty field (--nan-text). Without a JSON, a
model with only float inputs of known width gets 1,000 rows of N(0, 1) values (seed 0), others
are skipped. Every CSV is read back and fed to onnxruntime, and must reproduce the recorded
outputs (column "csv" of the report; "n/a" when regenerated).

Measurements per model, in this order (one process each, nothing in parallel):
  Shipyard   `shipyard models bench MODEL.onnx --data ROWS.csv --repeat R --format json`
             [--threads N]; its JSON is kept whole in the results file.
  ort crate  the same command with --engine onnxruntime: ONNX Runtime in process through the
             `ort` crate (1 intra-op thread), the library from this venv's onnxruntime wheel.
  ORT(1t), ORT(2t)
             onnxruntime.InferenceSession(CPUExecutionProvider, intra_op_num_threads=1 or 2,
             inter_op_num_threads=1, sequential execution, default graph optimisations),
             called from Python (sess.run(None, feeds): all outputs, so ZipMap models pay for
             building Python dicts, as a Python caller would).
             batch 1:  200 warm-up runs, then R = 2,000 timed single-row runs, rows cycling
                       (row k % n, feeds sliced beforehand); p50 = median, p99 = nearest rank.
             batches:  rows tiled (cycled) to 1,000 and 10,000; one warm-up run, then at least
                       5 timed runs, more while under the time budget (2 s, at most 100 runs);
                       median.
             load_ms:  InferenceSession construction.
  --quick: R = 500 after 50 warm-ups, batch budget 0.5 s (still at least 5 runs).

Table: ratios are ORT / Shipyard (> 1: Shipyard faster); b1 against ORT(1t), 10k against the
faster of ORT(1t) and ORT(2t). The last row is the geometric mean. The results JSON
(--out-dir, default bench/engine/results/engine-<date>.json) holds every number, the machine
(nproc, CPU model, load average before and after, per model too) and versions.
"""
import argparse
import csv
import datetime
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time

import numpy as np
import onnxruntime as ort

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from machine import cpu_model, loadavg  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
BATCH_SIZES = (1000, 10000)
REGEN_ROWS = 1000

NP_DTYPES = {"float32": np.float32, "float64": np.float64, "int64": np.int64,
             "int32": np.int32, "bool": np.bool_}
ORT_TYPES = {"tensor(float)": np.float32, "tensor(double)": np.float64,
             "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(bool)": np.bool_}


# ---------------------------------------------------------------------------
# Machine
# ---------------------------------------------------------------------------
def sh(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, check=True,
                              timeout=60).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def machine_info():
    return {
        "nproc": int(sh(["nproc"]) or 0) or None,
        "os_cpu_count": os.cpu_count(),
        "cpu_model": cpu_model(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
    }


# ---------------------------------------------------------------------------
# Rows and CSV
# ---------------------------------------------------------------------------
def load_inputs(json_path):
    """Recorded inputs of a fixture JSON: {name: np.ndarray} in graph order."""
    with open(json_path) as f:
        d = json.load(f)
    inputs = {}
    for name, t in d["inputs"].items():
        if t["dtype"] == "string":
            arr = np.array(t["data"], dtype=object)
        else:
            data = [np.nan if v is None else v for v in t["data"]]
            arr = np.array(data, dtype=NP_DTYPES[t["dtype"]])
        inputs[name] = arr.reshape(t["shape"])
    return d, inputs


def regenerate_inputs(sess):
    """N(0, 1) rows for a model whose inputs are all float tensors of known width."""
    rng = np.random.RandomState(0)
    inputs = {}
    for i in sess.get_inputs():
        if i.type not in ("tensor(float)", "tensor(double)"):
            return None, f"input {i.name!r} is {i.type}: cannot make up rows"
        shape = list(i.shape)
        if len(shape) == 1:
            shape = [REGEN_ROWS]
        elif len(shape) == 2 and isinstance(shape[1], int):
            shape = [REGEN_ROWS, shape[1]]
        else:
            return None, f"input {i.name!r} has shape {i.shape}: cannot make up rows"
        x = np.round(rng.standard_normal(shape), 3).astype(ORT_TYPES[i.type])
        inputs[i.name] = x
    return inputs, None


def csv_columns(inputs):
    """[(column name, input name, column index or None for a 1-D input)]."""
    cols = []
    single = len(inputs) == 1
    for name, arr in inputs.items():
        if arr.ndim == 1:
            cols.append(("f0" if single else name, name, None))
        elif arr.ndim == 2:
            width = arr.shape[1]
            for j in range(width):
                if single:
                    cols.append((f"f{j}", name, j))
                elif width == 1:
                    cols.append((name, name, j))
                else:
                    cols.append((f"{name}_{j}", name, j))
        else:
            raise ValueError(f"input {name!r} has {arr.ndim} dimensions")
    return cols


def fmt_value(v, dtype, nan_text):
    kind = np.dtype(dtype).kind
    if kind in "OUS":
        return str(v)
    if kind == "f":
        if np.isnan(v):
            return nan_text
        if dtype == np.float32:
            return np.format_float_positional(np.float32(v), unique=True, trim="-")
        return repr(float(v))
    if kind == "b":
        return "true" if v else "false"
    return str(int(v))


def write_csv(path, inputs, nan_text):
    cols = csv_columns(inputs)
    n = len(next(iter(inputs.values())))
    with open(path, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow([c for c, _, _ in cols])
        for r in range(n):
            row = []
            for _, name, j in cols:
                arr = inputs[name]
                v = arr[r] if j is None else arr[r, j]
                row.append(fmt_value(v, arr.dtype.type, nan_text))
            w.writerow(row)
    return [c for c, _, _ in cols], n


def read_csv(path, like, nan_text):
    """Reads a CSV written by write_csv back into arrays shaped and typed like `like`."""
    cols = csv_columns(like)
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    header, body = rows[0], rows[1:]
    assert header == [c for c, _, _ in cols], (header, cols)
    out = {name: np.empty((len(body),) + arr.shape[1:], dtype=arr.dtype)
           for name, arr in like.items()}
    for k, (_, name, j) in enumerate(cols):
        arr = out[name]
        vals = [row[k] for row in body]
        if arr.dtype.kind in "OUS":
            parsed = vals
        elif arr.dtype.kind == "f":
            parsed = [np.nan if v == nan_text else float(v) for v in vals]
        elif arr.dtype.kind == "b":
            parsed = [v == "true" for v in vals]
        else:
            parsed = [int(v) for v in vals]
        if j is None:
            arr[:] = np.array(parsed, dtype=arr.dtype)
        else:
            arr[:, j] = np.array(parsed, dtype=arr.dtype)
    return out


def same_arrays(a, b):
    for name in a:
        x, y = a[name], b[name]
        if x.shape != y.shape or x.dtype != y.dtype:
            return False
        if x.dtype.kind == "f":
            if not np.array_equal(x, y, equal_nan=True):
                return False
        elif not np.array_equal(x, y):
            return False
    return True


def outputs_match(recorded, names, got, tol=1e-5):
    """Compares onnxruntime outputs with a fixture JSON's recorded outputs; '' when equal."""
    problems = []
    for name, val in zip(names, got):
        exp = recorded.get(name)
        if exp is None:
            continue
        if exp["dtype"] == "seq_map":
            keys = [str(k) for k in exp["keys"]]
            got_keys = [str(k) for k in val[0]] if len(val) else []
            val = np.array([list(row.values()) for row in val], dtype=np.float64)
            if got_keys != keys:
                problems.append(f"{name}: keys {got_keys} != {keys}")
                continue
            e = np.array(exp["data"], dtype=np.float64).reshape(exp["shape"])
        elif exp["dtype"] == "string":
            if [str(v) for v in np.asarray(val).ravel()] != [str(v) for v in exp["data"]]:
                problems.append(f"{name}: labels differ")
            continue
        else:
            e = np.array([np.nan if v is None else v for v in exp["data"]],
                         dtype=np.float64).reshape(exp["shape"])
        v = np.asarray(val, dtype=np.float64)
        if v.size != e.size:
            problems.append(f"{name}: shape {v.shape} != {e.shape}")
            continue
        v = v.reshape(e.shape)
        nan_ok = np.array_equal(np.isnan(v), np.isnan(e))
        err = float(np.nanmax(np.abs(v - e))) if v.size else 0.0
        if not nan_ok or err > tol:
            problems.append(f"{name}: max |diff| {err:.2e}")
    return "; ".join(problems)


# ---------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------
def p99(times):
    s = sorted(times)
    return s[max(0, math.ceil(0.99 * len(s)) - 1)]


def tile(inputs, size):
    n = len(next(iter(inputs.values())))
    idx = np.arange(size) % n
    return {k: np.ascontiguousarray(v[idx]) for k, v in inputs.items()}


def timed_batches(run, budget_s, min_runs, max_runs):
    run()  # warm-up
    times = []
    start = time.perf_counter()
    while len(times) < min_runs or (time.perf_counter() - start < budget_s
                                     and len(times) < max_runs):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    return times


def ort_bench(path, inputs, threads, cfg):
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.log_severity_level = 3  # LightGBM graphs' [1]-shaped label output warns on every run
    t0 = time.perf_counter()
    sess = ort.InferenceSession(path, sess_options=so, providers=["CPUExecutionProvider"])
    load_ms = (time.perf_counter() - t0) * 1e3

    n = len(next(iter(inputs.values())))
    rows = [{k: np.ascontiguousarray(v[i:i + 1]) for k, v in inputs.items()} for i in range(n)]
    for k in range(cfg.warmup):
        sess.run(None, rows[k % n])
    times = []
    clock = time.perf_counter_ns
    for k in range(cfg.b1_runs):
        feed = rows[k % n]
        t0 = clock()
        sess.run(None, feed)
        times.append(clock() - t0)
    us = [t / 1e3 for t in times]
    res = {
        "threads": {"intra_op": threads, "inter_op": 1},
        "load_ms": round(load_ms, 3),
        "batch1": {"runs": len(us), "warmup": cfg.warmup,
                   "p50_us": round(statistics.median(us), 3), "p99_us": round(p99(us), 3),
                   "mean_us": round(statistics.fmean(us), 3)},
        "batches": [],
    }
    for size in BATCH_SIZES:
        feed = tile(inputs, size)
        bt = timed_batches(lambda: sess.run(None, feed), cfg.budget, cfg.min_runs, cfg.max_runs)
        ms = [t * 1e3 for t in bt]
        res["batches"].append({"rows": size, "runs": len(ms),
                               "median_ms": round(statistics.median(ms), 4),
                               "min_ms": round(min(ms), 4)})
    return res


# ---------------------------------------------------------------------------
# Shipyard
# ---------------------------------------------------------------------------
def parse_json_stdout(text):
    text = text.strip()
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    start = text.find("{")  # tolerate stray lines before the object
    while start != -1:
        try:
            return json.loads(text[start:])
        except json.JSONDecodeError:
            start = text.find("{", start + 1)
    raise ValueError("no JSON object on stdout")


def check_shipyard_json(d, n_rows, cfg):
    """Contract warnings (the numbers are used anyway when present)."""
    warn = []
    if d.get("engine") != "onnx-native":
        warn.append(f"engine is {d.get('engine')!r}, expected 'onnx-native'")
    if d.get("rows_available") != n_rows:
        warn.append(f"rows_available {d.get('rows_available')} != {n_rows} CSV rows")
    b1 = d.get("batch1") or {}
    for k in ("runs", "p50_us", "p99_us"):
        if not isinstance(b1.get(k), (int, float)):
            warn.append(f"batch1.{k} missing")
    if b1.get("runs") not in (None, cfg.b1_runs):
        warn.append(f"batch1.runs {b1.get('runs')} != --repeat {cfg.b1_runs}")
    sizes = [b.get("rows") for b in d.get("batches") or []]
    for s in BATCH_SIZES:
        if s not in sizes:
            warn.append(f"no {s}-row batch")
    for b in d.get("batches") or []:
        if not isinstance(b.get("median_ms"), (int, float)):
            warn.append(f"batch {b.get('rows')}: median_ms missing")
    if not isinstance(d.get("load_ms"), (int, float)):
        warn.append("load_ms missing")
    return warn


def ort_library():
    """The pinned wheel's libonnxruntime, for Shipyard's onnxruntime engine (the `ort` crate)."""
    import glob
    found = sorted(glob.glob(os.path.join(os.path.dirname(ort.__file__), "capi", "libonnxruntime.so*")))
    return found[0] if found else None


def shipyard_bench(bin_path, model_path, csv_path, n_rows, cfg, engine=None):
    cmd = [bin_path, "models", "bench", model_path, "--data", csv_path,
           "--repeat", str(cfg.b1_runs), "--format", "json"]
    if engine:
        cmd += ["--engine", engine]
    if cfg.shipyard_threads:
        cmd += ["--threads", str(cfg.shipyard_threads)]
    t0 = time.perf_counter()
    env = dict(os.environ)
    lib = ort_library()
    if lib:
        env["ORT_DYLIB_PATH"] = lib
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=cfg.shipyard_timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"cmd": cmd, "error": f"timed out after {cfg.shipyard_timeout} s"}
    except OSError as e:
        return {"cmd": cmd, "error": f"{type(e).__name__}: {e}"}
    wall = time.perf_counter() - t0
    res = {"cmd": cmd, "wall_s": round(wall, 3), "returncode": p.returncode}
    if p.returncode != 0:
        res["error"] = (p.stderr.strip() or p.stdout.strip())[-2000:] or f"exit {p.returncode}"
        return res
    try:
        res["json"] = parse_json_stdout(p.stdout)
    except ValueError as e:
        res["error"] = f"{e}: {p.stdout[-500:]!r}"
        return res
    res["warnings"] = check_shipyard_json(res["json"], n_rows, cfg)
    if p.stderr.strip():
        res["stderr"] = p.stderr.strip()[-2000:]
    return res


# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------
def batch_ms(res, size):
    for b in (res or {}).get("batches") or []:
        if b.get("rows") == size and isinstance(b.get("median_ms"), (int, float)):
            return float(b["median_ms"])
    return None


def b1_p50(res):
    v = ((res or {}).get("batch1") or {}).get("p50_us")
    return float(v) if isinstance(v, (int, float)) else None


def ratio(ort_value, shipyard_value):
    if ort_value is None or not shipyard_value:
        return None
    return ort_value / shipyard_value


def short_ops(ops):
    return ", ".join(o.split(":", 1)[-1] for o in ops)


def num(v, digits=1):
    if v is None:
        return "–"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    return f"{v:.{digits}f}"


def rat(v):
    return "–" if v is None else f"{v:.2f}x"


def geomean(xs):
    xs = [x for x in xs if x]
    return math.exp(sum(math.log(x) for x in xs) / len(xs)) if xs else None


def table(results):
    head = ["model", "ops", "Shipyard b1 p50 µs", "ORT(1t) b1 p50 µs", "ort crate b1 µs", "ratio",
            "Shipyard 10k ms", "ORT(1t) 10k ms", "ORT(2t) 10k ms", "ort crate 10k ms", "ratio vs best ORT"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * 2 + ["---:"] * 9) + "|"]
    r_b1, r_10k = [], []
    for m in results:
        sy = (m.get("shipyard") or {}).get("json")
        o1, o2 = m["ort"].get("1"), m["ort"].get("2")
        oc = (m.get("ort_crate") or {}).get("json")
        s_b1, s_10k = b1_p50(sy), batch_ms(sy, 10000)
        t1_10k, t2_10k = batch_ms(o1, 10000), batch_ms(o2, 10000)
        best = min([x for x in (t1_10k, t2_10k) if x is not None], default=None)
        rb1, r10k = ratio(b1_p50(o1), s_b1), ratio(best, s_10k)
        r_b1.append(rb1)
        r_10k.append(r10k)
        name = m["name"]
        if m.get("shipyard", {}).get("error"):
            name += " (Shipyard failed)"
        lines.append("| " + " | ".join([
            name, short_ops(m["ops"]), num(s_b1), num(b1_p50(o1)), num(b1_p50(oc)), rat(rb1),
            num(s_10k, 2), num(t1_10k, 2), num(t2_10k, 2), num(batch_ms(oc, 10000), 2), rat(r10k)]) + " |")
    lines.append("| " + " | ".join(["geometric mean", "", "", "", "", rat(geomean(r_b1)),
                                    "", "", "", "", rat(geomean(r_10k))]) + " |")
    return "\n".join(lines), geomean(r_b1), geomean(r_10k)


# ---------------------------------------------------------------------------
def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", help="comma-separated model names (default: all in --models-dir)")
    ap.add_argument("--quick", action="store_true", help="fewer runs (500 batch-1, 0.5 s budget)")
    ap.add_argument("--models-dir", default=os.path.join(HERE, "models"))
    ap.add_argument("--csv-dir", default=os.path.join(HERE, "models", "csv"),
                    help="where the row CSVs go (default: bench/engine/models/csv)")
    ap.add_argument("--out-dir", default=os.path.join(HERE, "results"))
    ap.add_argument("--shipyard-bin", default=os.path.join(ROOT, "target", "release", "shipyard"))
    ap.add_argument("--skip-shipyard", action="store_true", help="measure onnxruntime only")
    ap.add_argument("--shipyard-threads", type=int, help="pass --threads N to Shipyard")
    ap.add_argument("--shipyard-timeout", type=float, default=900.0, help="seconds per model")
    ap.add_argument("--ort-threads", default="1,2", help="onnxruntime intra-op thread counts")
    ap.add_argument("--b1-runs", type=int, help="batch-1 timed runs (default 2000, quick 500)")
    ap.add_argument("--warmup", type=int, help="batch-1 warm-up runs (default 200, quick 50)")
    ap.add_argument("--budget", type=float, help="seconds per batch size (default 2, quick 0.5)")
    ap.add_argument("--min-runs", type=int, default=5)
    ap.add_argument("--max-runs", type=int, default=100)
    ap.add_argument("--nan-text", default="", help="how NaN is written in the CSV (default: empty)")
    cfg = ap.parse_args()
    cfg.b1_runs = cfg.b1_runs or (500 if cfg.quick else 2000)
    cfg.warmup = cfg.warmup if cfg.warmup is not None else (50 if cfg.quick else 200)
    cfg.budget = cfg.budget if cfg.budget is not None else (0.5 if cfg.quick else 2.0)
    ort_threads = [int(t) for t in cfg.ort_threads.split(",") if t]

    if not os.path.isdir(cfg.models_dir):
        sys.exit(f"error: no models directory {cfg.models_dir} (bench/engine/run.sh makes it)")
    available = sorted(f[:-5] for f in os.listdir(cfg.models_dir) if f.endswith(".onnx"))
    if cfg.models:
        wanted = [m for m in cfg.models.split(",") if m]
        unknown = [m for m in wanted if m not in available]
        if unknown:
            sys.exit(f"error: no such model(s) in {cfg.models_dir}: {', '.join(unknown)}\n"
                     f"available: {', '.join(available)}")
        names = wanted
    else:
        names = available
    if not names:
        sys.exit(f"error: no .onnx models in {cfg.models_dir}")
    shipyard = None if cfg.skip_shipyard else os.path.abspath(cfg.shipyard_bin)
    if shipyard and not os.access(shipyard, os.X_OK):
        sys.exit(f"error: {shipyard} not found; build it (cargo build --release --locked --bin "
                 "shipyard), pass --shipyard-bin PATH, or --skip-shipyard")
    os.makedirs(cfg.csv_dir, exist_ok=True)
    os.makedirs(cfg.out_dir, exist_ok=True)

    started = datetime.datetime.now()
    report = {
        "bench": "engine",
        "date": started.isoformat(timespec="seconds"),
        "machine": machine_info(),
        "load_before": loadavg(),
        "versions": {
            "onnxruntime": ort.__version__, "numpy": np.__version__,
            "shipyard": sh([shipyard, "--version"]) if shipyard else None,
            "git_commit": sh(["git", "-C", ROOT, "rev-parse", "HEAD"]),
            "git_dirty": bool(sh(["git", "-C", ROOT, "status", "--porcelain"])),
        },
        "protocol": {
            "batch1_runs": cfg.b1_runs, "batch1_warmup": cfg.warmup,
            "batch_sizes": list(BATCH_SIZES), "batch_min_runs": cfg.min_runs,
            "batch_max_runs": cfg.max_runs, "batch_budget_s": cfg.budget,
            "ort_threads": ort_threads, "shipyard_threads": cfg.shipyard_threads,
            "quick": cfg.quick, "csv_nan_text": cfg.nan_text,
            "ratios": "ORT / Shipyard (> 1: Shipyard faster); b1 vs ORT(1t), "
                      "10k vs the faster ORT",
        },
        "models": [],
        "skipped": [],
    }
    print(f"{len(names)} models; machine: {report['machine']['nproc']} cpus, "
          f"{report['machine']['cpu_model']}, load {report['load_before']}", file=sys.stderr)

    for name in names:
        onnx_path = os.path.abspath(os.path.join(cfg.models_dir, name + ".onnx"))
        json_path = os.path.join(cfg.models_dir, name + ".json")
        so = ort.SessionOptions()
        so.log_severity_level = 3
        probe = ort.InferenceSession(onnx_path, sess_options=so,
                                     providers=["CPUExecutionProvider"])
        if os.path.exists(json_path):
            meta, inputs = load_inputs(json_path)
            origin = "recorded"
        else:
            meta = {"ops": [], "outputs": {}}
            inputs, why = regenerate_inputs(probe)
            origin = "regenerated"
            if inputs is None:
                print(f"note: skipping {name}: no {name}.json and {why}", file=sys.stderr)
                report["skipped"].append({"name": name, "reason": why})
                continue
        csv_path = os.path.abspath(os.path.join(cfg.csv_dir, name + ".csv"))
        columns, n_rows = write_csv(csv_path, inputs, cfg.nan_text)

        # The CSV must give back exactly these rows, and those rows the recorded outputs.
        back = read_csv(csv_path, inputs, cfg.nan_text)
        if not same_arrays(inputs, back):
            csv_check = "CSV does not read back to the same rows"
        elif origin == "recorded":
            out_names = [o.name for o in probe.get_outputs()]
            csv_check = outputs_match(meta["outputs"], out_names, probe.run(None, back)) or "ok"
        else:
            csv_check = "n/a"
        del probe
        if csv_check not in ("ok", "n/a"):
            print(f"warning: {name}: CSV check: {csv_check}", file=sys.stderr)

        entry = {"name": name, "ops": meta.get("ops", []), "source": meta.get("source"),
                 "rows": origin, "rows_available": n_rows, "csv": csv_path,
                 "csv_columns": columns, "csv_check": csv_check,
                 "load_before": loadavg(), "ort": {}}
        print(f"{name}: {n_rows} rows, {len(columns)} columns", file=sys.stderr)
        if shipyard:
            entry["shipyard"] = shipyard_bench(shipyard, onnx_path, csv_path, n_rows, cfg)
            s = entry["shipyard"]
            if s.get("error"):
                print(f"  Shipyard FAILED: {s['error'].splitlines()[-1] if s['error'] else ''}",
                      file=sys.stderr)
            else:
                for w in s.get("warnings", []):
                    print(f"  Shipyard JSON: {w}", file=sys.stderr)
                j = s["json"]
                print(f"  Shipyard   b1 p50 {num(b1_p50(j))} µs, 10k {num(batch_ms(j, 10000), 2)}"
                      f" ms (process {s['wall_s']:.1f} s)", file=sys.stderr)
            if ort_library():
                entry["ort_crate"] = shipyard_bench(shipyard, onnx_path, csv_path, n_rows, cfg, engine="onnxruntime")
                oc = entry["ort_crate"]
                if oc.get("error"):
                    print(f"  ort crate FAILED: {oc['error'].splitlines()[-1] if oc['error'] else ''}", file=sys.stderr)
                else:
                    j = oc["json"]
                    print(f"  ort crate  b1 p50 {num(b1_p50(j))} µs, 10k {num(batch_ms(j, 10000), 2)} ms",
                          file=sys.stderr)
        for t in ort_threads:
            r = ort_bench(onnx_path, inputs, t, cfg)
            entry["ort"][str(t)] = r
            print(f"  ORT({t}t)    b1 p50 {num(b1_p50(r))} µs, 10k {num(batch_ms(r, 10000), 2)} ms",
                  file=sys.stderr)
        entry["load_after"] = loadavg()
        report["models"].append(entry)

    report["load_after"] = loadavg()
    text, g_b1, g_10k = table(report["models"])
    report["geomean_ratio"] = {"batch1_vs_ort1t": g_b1, "batch10k_vs_best_ort": g_10k}
    out = os.path.join(cfg.out_dir, f"engine-{started.strftime('%Y%m%d-%H%M%S')}.json")
    with open(out, "w") as f:
        json.dump(report, f, indent=1)
        f.write("\n")
    print(text)
    for s in report["skipped"]:
        print(f"\nskipped {s['name']}: {s['reason']}")
    for m in report["models"]:
        err = (m.get("shipyard") or {}).get("error")
        if err:
            print(f"\nShipyard failed on {m['name']}: {err.strip().splitlines()[-1] if err.strip() else ''}")
    bad = [m["name"] for m in report["models"] if m["csv_check"] not in ("ok", "n/a")]
    if bad:
        print(f"\nCSV check failed for: {', '.join(bad)} (see csv_check in the JSON)")
    print(f"\nload average before {report['load_before']}, after {report['load_after']}; "
          f"{report['machine']['nproc']} cpus ({report['machine']['cpu_model']})")
    print(f"results: {out}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
