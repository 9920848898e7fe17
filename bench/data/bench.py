#!/usr/bin/env python3
"""bench/data: Shipyard's data commands next to Evidently and Great Expectations, in one run.

usage: bench.py SHIPYARD_BIN EVIDENTLY_PY GX_PY WORK_DIR OUT_JSON [--quick]
  (a) drift, 100,000 x 20 (15 numeric, 5 categorical): `shipyard data drift` against Evidently's
      DataDriftPreset; wall time and peak memory; per column test, score and verdict compared.
  (b) validation of a 1,000,000-row CSV with 20 expectations: `shipyard data validate` against
      Great Expectations (pandas); wall time and peak memory.
  (c) profile of a CSV larger than 1 GB: `shipyard data profile`; peak memory.
Times are medians of repeated runs; peak memory is the max RSS of the process (Python: VmHWM).
--quick: 10x smaller inputs and one repeat, to check the script end to end.
"""
import json
import os
import platform
import statistics
import subprocess
import sys
import time

shipyard, ev_py, gx_py, work, out = sys.argv[1:6]
quick = "--quick" in sys.argv
here = os.path.dirname(os.path.abspath(__file__))
os.makedirs(work, exist_ok=True)
REPEATS = 1 if quick else 3
DRIFT_ROWS = 10_000 if quick else 100_000
VALIDATE_ROWS = 100_000 if quick else 1_000_000
PROFILE_BYTES = (100 << 20) if quick else (1100 << 20)


def load():
    return " ".join(open("/proc/loadavg").read().split()[:3])


def timed(cmd, stdout=subprocess.DEVNULL):
    """Wall seconds and max RSS (MiB) of a command, from /usr/bin/time."""
    t0 = time.perf_counter()
    p = subprocess.run(["/usr/bin/time", "-f", "%M", *cmd], stdout=stdout, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - t0
    rss_kib = int(p.stderr.strip().splitlines()[-1])
    if p.returncode not in (0, 1):
        raise RuntimeError(f"{cmd} failed ({p.returncode}): {p.stderr}")
    return wall, rss_kib / 1024, p


def median_run(cmd):
    runs = [timed(cmd) for _ in range(REPEATS)]
    return statistics.median(r[0] for r in runs), max(r[1] for r in runs)


res = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": f"{os.cpu_count()} vCPU, {platform.platform()}",
       "quick": quick, "load_at_start": load()}

# ---------------------------------------------------------------- (a) drift
ddir = os.path.join(work, f"drift-{DRIFT_ROWS}")
if not os.path.exists(os.path.join(ddir, "current.csv")):
    subprocess.run([ev_py, os.path.join(here, "gen.py"), "drift", str(DRIFT_ROWS), ddir], check=True)
ref, cur = os.path.join(ddir, "reference.csv"), os.path.join(ddir, "current.csv")
drift_cmd = [shipyard, "data", "drift", "--reference", ref, "--current", cur, "--format", "json"]
sy_wall, sy_rss = median_run(drift_cmd)
report = json.loads(timed(drift_cmd, stdout=subprocess.PIPE)[2].stdout)
ev_out = os.path.join(work, "evidently.json")
ev_wall, ev_rss, _ = timed([ev_py, os.path.join(here, "evidently_drift.py"), ddir, str(REPEATS), ev_out])
ev = json.load(open(ev_out))
names = {"K-S p_value": "ks", "chi-square p_value": "chisquare", "Z-test p_value": "z",
         "Wasserstein distance (normed)": "wasserstein", "Jensen-Shannon distance": "jensenshannon",
         "PSI": "psi", "Kullback-Leibler divergence": "kl_div"}
agree, rows = True, []
for c in report["columns"]:
    e = ev["columns"][c["column"]]
    score = c["p_value"] if c["p_value"] is not None else c["statistic"]
    same_test = names.get(e["method"], e["method"]) == c["test"]
    rel = abs(score - e["score"]) / max(abs(e["score"]), 1e-300)
    ok = same_test and c["drift"] == e["drift"] and rel < 1e-6
    agree &= ok
    rows.append({"column": c["column"], "test": c["test"], "evidently_test": e["method"], "score": score,
                 "evidently_score": e["score"], "drift": c["drift"], "evidently_drift": e["drift"], "agree": ok})
res["drift"] = {"rows": DRIFT_ROWS, "shipyard_wall_s": sy_wall, "shipyard_peak_mib": sy_rss,
                "evidently_report_s": ev["report_median_s"], "evidently_load_csv_s": ev["load_csv_s"],
                "evidently_process_wall_s": ev_wall, "evidently_peak_mib": ev["peak_rss_mib"],
                "all_agree": agree, "columns": rows,
                "shipyard_dataset_drift": report["dataset_drift"], "shipyard_drifted": report["drifted_columns"]}

# ---------------------------------------------------------------- (b) validation
vcsv = os.path.join(work, f"people-{VALIDATE_ROWS}.csv")
if not os.path.exists(vcsv):
    subprocess.run([ev_py, os.path.join(here, "gen.py"), "validate", str(VALIDATE_ROWS), vcsv], check=True)
suite = os.path.join(here, "suite.yaml")
val_cmd = [shipyard, "data", "validate", vcsv, "--suite", suite, "--format", "json"]
sv_wall, sv_rss = median_run(val_cmd)
sv = json.loads(timed(val_cmd, stdout=subprocess.PIPE)[2].stdout)
gx_out = os.path.join(work, "gx.json")
gx_wall, gx_rss, _ = timed([gx_py, os.path.join(here, "gx_validate.py"), vcsv, str(REPEATS), gx_out])
gx = json.load(open(gx_out))
res["validate"] = {"rows": VALIDATE_ROWS, "expectations": sv["evaluated_expectations"],
                   "shipyard_wall_s": sv_wall, "shipyard_peak_mib": sv_rss,
                   "shipyard_failed": [f"{r.get('column') or 'table'}.{r['expectation']}" for r in sv["results"] if not r["success"]],
                   "gx_version": gx["gx"], "gx_load_csv_s": gx["load_csv_s"], "gx_validate_s": gx["validate_median_s"],
                   "gx_process_wall_s": gx_wall, "gx_peak_mib": gx["peak_rss_mib"],
                   "gx_failed": [f"{r['column'] or 'table'}.{r['expectation']}" for r in gx["results"] if not r["success"]]}

# ---------------------------------------------------------------- (c) profile > 1 GB
big = os.path.join(work, f"big-{PROFILE_BYTES >> 20}mib.csv")
if not os.path.exists(big):
    with open(ref, "rb") as f:
        header, body = f.readline(), f.read()
    with open(big + ".tmp", "wb") as f:
        f.write(header)
        written = 0
        while written < PROFILE_BYTES:
            f.write(body)
            written += len(body)
    os.replace(big + ".tmp", big)
pr_wall, pr_rss, _ = timed([shipyard, "data", "profile", big, "--format", "json"])
res["profile"] = {"bytes": os.path.getsize(big), "shipyard_wall_s": pr_wall, "shipyard_peak_mib": pr_rss}
res["load_at_end"] = load()
json.dump(res, open(out, "w"), indent=1)

d, v, p = res["drift"], res["validate"], res["profile"]
print(f"\n(a) drift {d['rows']:,} x 20: Shipyard {d['shipyard_wall_s']:.3f} s, {d['shipyard_peak_mib']:.0f} MiB | "
      f"Evidently report {d['evidently_report_s']:.3f} s (+{d['evidently_load_csv_s']:.2f} s CSV load), "
      f"{d['evidently_peak_mib']:.0f} MiB | speed-up {d['evidently_report_s'] / d['shipyard_wall_s']:.1f}x "
      f"(report only), {(d['evidently_report_s'] + d['evidently_load_csv_s']) / d['shipyard_wall_s']:.1f}x "
      f"(with load) | every column agrees: {d['all_agree']}")
for r in d["columns"]:
    print(f"    {r['column']:7s} {r['test']:14s} {r['score']:.6g} vs {r['evidently_score']:.6g}  "
          f"drift {r['drift']!s:5s} vs {r['evidently_drift']!s:5s} {'ok' if r['agree'] else 'DIFFERENT'}")
print(f"(b) validate {v['rows']:,} rows, {v['expectations']} expectations: Shipyard {v['shipyard_wall_s']:.3f} s, "
      f"{v['shipyard_peak_mib']:.0f} MiB | GX {v['gx_version']} validate {v['gx_validate_s']:.3f} s "
      f"(+{v['gx_load_csv_s']:.2f} s CSV load), {v['gx_peak_mib']:.0f} MiB | speed-up "
      f"{v['gx_validate_s'] / v['shipyard_wall_s']:.1f}x (validate only), "
      f"{(v['gx_validate_s'] + v['gx_load_csv_s']) / v['shipyard_wall_s']:.1f}x (with load)")
print(f"    failed: Shipyard {v['shipyard_failed']} | GX {v['gx_failed']}")
print(f"(c) profile {p['bytes'] / 2**30:.2f} GiB CSV: {p['shipyard_wall_s']:.1f} s, peak {p['shipyard_peak_mib']:.0f} MiB")
