#!/usr/bin/env python3
"""bench/train: `shipyard train` / `shipyard predict` next to scikit-learn and LightGBM, same rows.

usage: bench.py SHIPYARD_BIN OUT_JSON [--quick] [--repeat N] [--work DIR]

Data sets: make_classification(n_samples=100,000, n_features=20, n_informative=10,
random_state=0) (--quick: 20,000 rows), and two tables that ship inside the scikit-learn wheel
(no download): load_digits (1,797 x 64, 10 classes) and load_breast_cancer (569 x 30, 2 classes).

Same split: Shipyard splits each table itself (stratified 80/20, seed 42, ChaCha8). shipyard_split.py
replays that split in Python, and it is checked on every data set against the training profile
Shipyard records (count, mean and M2 of an excluded row-id column) and against Shipyard's own
accuracy recomputed from `shipyard predict` on the test rows. scikit-learn and LightGBM are fitted
on exactly Shipyard's training rows and scored on its test rows. Should the check fail, the table
says so ("same-size stratified split, not identical rows").

Per model kind and engine, each repeat (interleaved across engines):
  fit s       Shipyard: the run's training_time_s (training only, table already in memory);
              others: wall time of .fit() on in-memory numpy arrays
  predict ms  10,000 test rows (all test rows when fewer). Shipyard: the scoring time that
              `shipyard predict` reports ("scored N rows in X ms"); its process wall time (file
              read and model load included) is given apart
  accuracy    on all held-out rows
Shipyard also gets the wall time of the whole `shipyard train` process (Parquet read,
evaluation, artifacts and the run record included) and its single-row latency p50.
Figures are medians over --repeat runs (default 3, --quick 1).

Engines: scikit-learn LogisticRegression(max_iter=1000) after StandardScaler (Shipyard
standardizes) and without it, DecisionTreeClassifier(random_state=0),
RandomForestClassifier(n_estimators=100, n_jobs=2, random_state=0),
HistGradientBoostingClassifier(random_state=0); LightGBM LGBMClassifier(n_estimators=100,
num_threads=2, verbose=-1, random_state=0). Shipyard runs with its defaults and --seed 42.
"""
import argparse
import glob
import io
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings

import lightgbm
import numpy as np
import pandas as pd
import pyarrow
import scipy
import sklearn
from lightgbm import LGBMClassifier
from sklearn.datasets import load_breast_cancer, load_digits, make_classification
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import shipyard_split  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from machine import cpu_model  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("shipyard")
ap.add_argument("out")
ap.add_argument("--quick", action="store_true")
ap.add_argument("--repeat", type=int)
ap.add_argument("--work", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), ".work"))
args = ap.parse_args()
REPEAT = args.repeat or (1 if args.quick else 3)
SYNTH_ROWS = 20_000 if args.quick else 100_000
PREDICT_ROWS = 10_000
SEED = 42  # Shipyard's --seed: its split and its models' randomness
TEST_SIZE = 0.2
TARGET = "y"
# Set to "--test-data" once `shipyard train` takes an explicit test file: Shipyard then gets the
# Python split's train.parquet and test.parquet instead of the full table and its own split.
TEST_DATA_OPTION = None
KINDS = ["logistic_regression", "decision_tree", "random_forest", "gradient_boosting"]
warnings.filterwarnings("ignore")  # ConvergenceWarning of the unscaled LogisticRegression


def sklearn_engines(kind):
    """(engine name, estimator factory) per kind; the first one is the goal's reference."""
    return {
        "logistic_regression": [
            ("scikit-learn", lambda: make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))),
            ("scikit-learn, no scaler", lambda: LogisticRegression(max_iter=1000)),
        ],
        "decision_tree": [("scikit-learn", lambda: DecisionTreeClassifier(random_state=0))],
        "random_forest": [("scikit-learn", lambda: RandomForestClassifier(n_estimators=100, n_jobs=2, random_state=0))],
        "gradient_boosting": [
            ("scikit-learn", lambda: HistGradientBoostingClassifier(random_state=0)),
            ("LightGBM", lambda: LGBMClassifier(n_estimators=100, num_threads=2, verbose=-1, random_state=0)),
        ],
    }[kind]


def load():
    return " ".join(open("/proc/loadavg").read().split()[:3])


def sh(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def shipyard(*argv):
    """Runs the binary; returns (wall seconds, completed process). Waits out a rebuild that
    briefly removes the binary."""
    for attempt in range(60):
        if os.path.exists(args.shipyard):
            break
        time.sleep(5)
    t0 = time.perf_counter()
    p = subprocess.run([args.shipyard, *argv], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise RuntimeError(f"shipyard {' '.join(argv)} failed ({p.returncode}):\n{p.stderr}")
    return wall, p


def datasets():
    X, y = make_classification(n_samples=SYNTH_ROWS, n_features=20, n_informative=10, random_state=0)
    yield f"make_classification {SYNTH_ROWS // 1000}k x 20", "make_classification", X, y
    X, y = load_digits(return_X_y=True)
    yield "digits 1,797 x 64", "digits", X, y
    X, y = load_breast_cancer(return_X_y=True)
    yield "breast_cancer 569 x 30", "breast_cancer", X, y


def frame(X, y=None, row_id=False):
    df = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])])
    if y is not None:
        df[TARGET] = y.astype(np.int64)
    if row_id:
        df.insert(0, "row_id", np.arange(len(df), dtype=np.int64))
    return df


def check_split(path, home, train_idx):
    """Trains once on the table with a row_id column (excluded from the features) and compares
    the training profile's moments of row_id with the reproduced training rows."""
    _, p = shipyard("train", "--data", path, "--target", TARGET, "--model", "logistic_regression",
                    "--exclude", "row_id", "--seed", str(SEED), "--test-size", str(TEST_SIZE),
                    "--task", "classification", "--home", home, "--format", "json")
    run = json.loads(p.stdout)
    prof = glob.glob(os.path.join(home, "artifacts", "*", run["run_id"], "artifacts", "profile",
                                  "training_profile.json"))
    col = next(c for c in json.load(open(prof[0]))["columns"] if c["name"] == "row_id")
    count, mean, m2 = col["state"]["moments"][:3]
    ids = np.asarray(train_idx, dtype=np.float64)
    ours = (len(ids), float(ids.mean()), float(((ids - ids.mean()) ** 2).sum()))
    same = count == ours[0] and abs(mean - ours[1]) <= 1e-9 * max(1.0, ours[1]) \
        and abs(m2 - ours[2]) <= 1e-9 * max(1.0, ours[2])
    return same, {"shipyard": [count, mean, m2], "python": list(ours)}


def scored_ms(stderr):
    m = re.search(r"scored (\d+) rows in ([0-9.]+) ms", stderr)
    return (int(m.group(1)), float(m.group(2))) if m else (None, None)


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


os.makedirs(args.work, exist_ok=True)
home = tempfile.mkdtemp(prefix="home-", dir=args.work)
res = {
    "benchmark": "bench/train",
    "date": time.strftime("%Y-%m-%d %H:%M %Z"),
    "quick": args.quick,
    "repeat": REPEAT,
    "machine": {"nproc": sh(["nproc"]), "cpu_model": cpu_model(),
                "mem_total_kib": next((int(l.split()[1]) for l in open("/proc/meminfo") if l.startswith("MemTotal")), None),
                "platform": platform.platform(), "python": platform.python_version()},
    "versions": {"shipyard": sh([args.shipyard, "--version"]),
                 "shipyard_commit": sh(["git", "-C", os.path.dirname(os.path.abspath(__file__)), "rev-parse", "HEAD"]),
                 "shipyard_tree_dirty": bool(sh(["git", "-C", os.path.dirname(os.path.abspath(__file__)), "status", "--porcelain", "--", "crates"])),
                 "shipyard_binary_mtime": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(os.path.getmtime(args.shipyard))),
                 "scikit-learn": sklearn.__version__, "lightgbm": lightgbm.__version__, "numpy": np.__version__,
                 "scipy": scipy.__version__, "pandas": pd.__version__, "pyarrow": pyarrow.__version__},
    "load_at_start": load(),
    "settings": {"seed": SEED, "test_size": TEST_SIZE, "predict_rows": PREDICT_ROWS,
                 "shipyard_fit": "training_time_s metric of the run",
                 "shipyard_predict": "scoring time printed by `shipyard predict` (process wall apart)",
                 "others_fit": "wall time of .fit() on numpy arrays", "test_data_option": TEST_DATA_OPTION},
    "datasets": [],
    "results": [],
}

try:
    for label, name, X, y in datasets():
        ddir = os.path.join(args.work, name)
        os.makedirs(ddir, exist_ok=True)
        classes = np.unique(y)  # Shipyard orders integer labels numerically, as here
        codes = np.searchsorted(classes, y)
        train_idx, test_idx = shipyard_split.train_test_split(codes.tolist(), len(classes), TEST_SIZE, SEED)
        X_train, y_train, X_test, y_test = X[train_idx], y[train_idx], X[test_idx], y[test_idx]
        n_pred = min(PREDICT_ROWS, len(test_idx))
        X_pred = X_test[:n_pred]
        full = os.path.join(ddir, "full.parquet")
        frame(X, y).to_parquet(full, index=False)
        test_file = os.path.join(ddir, "test.parquet")
        frame(X_test, y_test).to_parquet(test_file, index=False)
        pred_file = os.path.join(ddir, "predict.parquet")
        frame(X_pred).to_parquet(pred_file, index=False)
        if TEST_DATA_OPTION:
            train_file = os.path.join(ddir, "train.parquet")
            frame(X_train, y_train).to_parquet(train_file, index=False)
            data_args, split_same, split_check = ["--data", train_file, TEST_DATA_OPTION, test_file], True, "explicit test file"
        else:
            with_id = os.path.join(ddir, "with_id.parquet")
            frame(X, y, row_id=True).to_parquet(with_id, index=False)
            split_same, split_check = check_split(with_id, home, train_idx)
            data_args = ["--data", full]
        ds = {"label": label, "name": name, "rows": len(y), "features": X.shape[1], "classes": len(classes),
              "train_rows": len(train_idx), "test_rows": len(test_idx), "predict_rows": n_pred,
              "split": "identical rows" if split_same else "same-size stratified split, not identical rows",
              "split_check": split_check}
        res["datasets"].append(ds)
        print(f"{label}: {len(train_idx)} train / {len(test_idx)} test rows, split: {ds['split']}", flush=True)

        for kind in KINDS:
            engines = sklearn_engines(kind)
            runs = {"Shipyard": []} | {e: [] for e, _ in engines}
            for rep in range(REPEAT):
                wall, p = shipyard("train", *data_args, "--target", TARGET, "--model", kind, "--seed", str(SEED),
                                   "--test-size", str(TEST_SIZE), "--task", "classification",
                                   "--experiment", f"bench-{name}", "--home", home, "--format", "json")
                run = json.loads(p.stdout)
                m = run["metrics"]
                pwall, pp = shipyard("predict", "--model", run["model_uri"], "--data", pred_file,
                                     "--home", home, "--output", os.devnull)
                rows, score_ms = scored_ms(pp.stderr)
                r = {"fit_s": m["training_time_s"], "predict_ms": score_ms, "predict_wall_ms": pwall * 1e3,
                     "predict_scored_rows": rows, "accuracy": m["accuracy"], "train_wall_s": wall,
                     "latency_p50_ms": m.get("inference_latency_p50_ms"), "run_id": run["run_id"],
                     "train_rows": run["train_rows"], "test_rows": run["test_rows"]}
                if rep == 0:  # Shipyard's accuracy again, from its predictions of the test rows
                    _, tp = shipyard("predict", "--model", run["model_uri"], "--data", test_file, "--home", home)
                    pred = pd.read_csv(io.StringIO(tp.stdout))["prediction"].to_numpy()
                    r["accuracy_from_predict"] = float(np.mean(pred.astype(np.int64) == y_test))
                runs["Shipyard"].append(r)
                for engine, make in engines:
                    model = make()
                    t0 = time.perf_counter()
                    model.fit(X_train, y_train)
                    fit_s = time.perf_counter() - t0
                    t0 = time.perf_counter()
                    model.predict(X_pred)
                    predict_ms = (time.perf_counter() - t0) * 1e3
                    acc = float(np.mean(model.predict(X_test) == y_test))
                    runs[engine].append({"fit_s": fit_s, "predict_ms": predict_ms, "accuracy": acc})
            for engine, rs in runs.items():
                row = {"dataset": label, "kind": kind, "engine": engine, "repeats": rs}
                for key in ["fit_s", "predict_ms", "accuracy", "train_wall_s", "predict_wall_ms", "latency_p50_ms"]:
                    if key in rs[0]:
                        row[key] = med(r[key] for r in rs)
                if engine == "Shipyard":
                    row["accuracy_from_predict"] = rs[0]["accuracy_from_predict"]
                    row["accuracy_check"] = abs(rs[0]["accuracy_from_predict"] - rs[0]["accuracy"]) < 1e-12 \
                        and rs[0]["test_rows"] == len(test_idx)
                res["results"].append(row)
            sy = res["results"][-len(runs)]
            print(f"  {kind}: Shipyard fit {sy['fit_s']:.3f} s, acc {sy['accuracy']:.4f} | " + " | ".join(
                f"{r['engine']} fit {r['fit_s']:.3f} s, acc {r['accuracy']:.4f}" for r in res["results"][-len(runs) + 1:]),
                flush=True)
finally:
    shutil.rmtree(home, ignore_errors=True)
res["load_at_end"] = load()

# ---------------------------------------------------------------- ratios and goals
by = {(r["dataset"], r["kind"], r["engine"]): r for r in res["results"]}
goals = []
for ds in res["datasets"]:
    for kind in KINDS:
        sy = by[(ds["label"], kind, "Shipyard")]
        for r in res["results"]:
            if r["dataset"] == ds["label"] and r["kind"] == kind and r["engine"] != "Shipyard":
                r["fit_ratio"] = r["fit_s"] / sy["fit_s"]  # > 1: Shipyard fits faster
                r["predict_ratio"] = r["predict_ms"] / sy["predict_ms"] if sy["predict_ms"] else None
                r["accuracy_diff_points"] = (sy["accuracy"] - r["accuracy"]) * 100  # > 0: Shipyard better
        sk = by[(ds["label"], kind, "scikit-learn")]
        goals.append({"dataset": ds["label"], "kind": kind, "goal": "accuracy within 1 point of scikit-learn",
                      "value": f"{sk['accuracy_diff_points']:+.2f} points", "met": sk["accuracy_diff_points"] >= -1.0})
        if kind in ("random_forest", "gradient_boosting"):
            goals.append({"dataset": ds["label"], "kind": kind, "goal": "fit no slower than scikit-learn (2 threads)",
                          "value": f"scikit-learn/Shipyard {sk['fit_ratio']:.2f}x", "met": sk["fit_ratio"] >= 1.0})
        if kind == "gradient_boosting":
            lg = by[(ds["label"], kind, "LightGBM")]
            goals.append({"dataset": ds["label"], "kind": kind, "goal": "fit within 1.5x of LightGBM",
                          "value": f"Shipyard/LightGBM {1 / lg['fit_ratio']:.2f}x", "met": 1 / lg["fit_ratio"] <= 1.5})
res["goals"] = goals
with open(args.out, "w") as f:
    json.dump(res, f, indent=1)


# ---------------------------------------------------------------- table
def fmt(v, spec, width):
    return f"{v:{spec}}".rjust(width) if v is not None else "".rjust(width)


print(f"\nbench/train {res['date']}, {res['machine']['nproc']} vCPU {res['machine']['cpu_model']}, "
      f"medians of {REPEAT}, load {res['load_at_start']} -> {res['load_at_end']}")
if float(res["load_at_start"].split()[0]) > 0.5:  # the load at the end is mostly the benchmark's own
    print("WARNING: the machine was not idle at the start (1-minute load above 0.5); OpenMP-based engines suffer most")
print("fit: Shipyard training_time_s / .fit() wall; predict: 10,000 test rows (all when fewer), Shipyard's "
      "in-process scoring time;\nShipyard extras: wall of `shipyard train` and `shipyard predict` processes, "
      "single-row p50 latency. ratio = other / Shipyard.")
head = (f"{'dataset':28s} {'kind':20s} {'engine':24s} {'fit s':>8s} {'predict ms':>10s} {'accuracy':>8s} "
        f"{'fit ratio':>9s} {'acc diff':>8s} {'train wall s':>12s} {'pred wall ms':>12s} {'1-row p50 ms':>12s}")
print(head)
print("-" * len(head))
for ds in res["datasets"]:
    for kind in KINDS:
        for r in res["results"]:
            if r["dataset"] != ds["label"] or r["kind"] != kind:
                continue
            print(f"{r['dataset']:28s} {kind:20s} {r['engine']:24s} {fmt(r['fit_s'], '.3f', 8)} "
                  f"{fmt(r['predict_ms'], '.2f', 10)} {fmt(r['accuracy'], '.4f', 8)} "
                  f"{fmt(r.get('fit_ratio'), '.2f', 8)}{'x' if r.get('fit_ratio') else ' '} "
                  f"{fmt(r.get('accuracy_diff_points'), '+.2f', 8)} {fmt(r.get('train_wall_s'), '.3f', 12)} "
                  f"{fmt(r.get('predict_wall_ms'), '.1f', 12)} {fmt(r.get('latency_p50_ms'), '.4f', 12)}")
print("\nsplits:")
for ds in res["datasets"]:
    checks = [r["accuracy_check"] for r in res["results"] if r["dataset"] == ds["label"] and r["engine"] == "Shipyard"]
    print(f"  {ds['label']}: {ds['train_rows']} train / {ds['test_rows']} test, {ds['split']}; Shipyard's accuracy "
          f"recomputed from `shipyard predict` on those test rows: {'equal' if all(checks) else 'DIFFERENT'} "
          f"({sum(checks)}/{len(checks)} kinds); one test row = {100 / ds['test_rows']:.2f} accuracy points")
print("\ngoals (acc diff = Shipyard - scikit-learn, in points; fit ratio = scikit-learn or LightGBM fit / Shipyard fit):")
for g in goals:
    print(f"  {'met    ' if g['met'] else 'NOT MET'} {g['dataset']:28s} {g['kind']:18s} {g['goal']:44s} {g['value']}")
