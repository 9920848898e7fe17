#!/usr/bin/env python3
"""Evidently's side of bench/data (a): DataDriftPreset on reference.csv vs current.csv.

usage: python evidently_drift.py DATA_DIR REPEATS OUT_JSON
Times, as the anchor measurement does, Dataset.from_pandas x2 + Report.run (median of REPEATS),
and separately the CSV load; reads each column's method, score and Evidently's own verdict from a
run with include_tests=True; peak memory is this process's VmHWM.
"""
import json
import os
import statistics
import sys
import time

t_start = time.perf_counter()
import pandas as pd  # noqa: E402
from evidently import DataDefinition, Dataset, Report  # noqa: E402
from evidently.presets import DataDriftPreset  # noqa: E402

data_dir, repeats, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
NUM = [f"num_{j}" for j in range(15)]
CAT = [f"cat_{j}" for j in range(5)]
import_s = time.perf_counter() - t_start

t0 = time.perf_counter()
ref = pd.read_csv(os.path.join(data_dir, "reference.csv"))
cur = pd.read_csv(os.path.join(data_dir, "current.csv"))
load_s = time.perf_counter() - t0
dd = DataDefinition(numerical_columns=NUM, categorical_columns=CAT)


def run_once(include_tests=False):
    c = Dataset.from_pandas(cur, data_definition=dd)
    r = Dataset.from_pandas(ref, data_definition=dd)
    return Report([DataDriftPreset()], include_tests=include_tests).run(c, r)


times = []
for _ in range(repeats):
    t0 = time.perf_counter()
    run_once()
    times.append(time.perf_counter() - t0)
snap = run_once(include_tests=True).dict()
columns = {}
for m in snap["metrics"]:
    cfg = m["config"]
    if cfg["type"].endswith("ValueDrift"):
        columns[cfg["column"]] = {"method": cfg["method"], "threshold": cfg["threshold"], "score": m["value"]}
for t in snap["tests"]:
    name = t.get("name", "")
    if name.startswith("Value Drift for column "):
        col = name[len("Value Drift for column "):]
        columns[col]["drift"] = str(t["status"]).split(".")[-1] == "FAIL"
hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
json.dump({"report_s": times, "report_median_s": statistics.median(times), "load_csv_s": load_s,
           "import_s": import_s, "peak_rss_mib": hwm / 1024, "columns": columns}, open(out, "w"), indent=1)
