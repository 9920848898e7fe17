#!/usr/bin/env python3
"""bench/monitoring: what production monitoring costs, next to Evidently.

(a) Serving throughput with the prediction log on (every request logged) against off, same
    load: `shipyard server` serving a deployment of a 20-feature model, wrk POSTing one row to
    /predict/NAME over 64 connections, runs alternated off/on ROUNDS times; medians and the
    ratio. Goal: logging costs at most 10% of throughput. The prediction cache is off, so every
    request runs the model and is logged.
(b) Window drift over 1,000,000 logged predictions x 20 features (15 numeric, 5 categorical;
    bench/data/gen.py's tables): the rows are sent through the server's /predict (1,000 requests
    of 1,000 rows) and logged; then `shipyard monitor report --window last:1000000 --format json`
    reads the window back and tests every feature against the model's training profile
    (50,000 rows, `reference: dataset:...` in its monitor configuration). Wall time and peak RSS of that process (median of REPEATS). Evidently 0.7
    (DataDriftPreset) runs the same comparison on the same rows from CSV, in the same run:
    report time and peak RSS, and each feature's score and verdict beside Shipyard's.
(c) False alarms and detection of the drift and accuracy monitors on calm and shifted windows
    of 100 to 5,000 rows, Shipyard's calibrated preset next to Evidently's defaults
    (false_alarms.py says how).

usage: bench.py SHIPYARD_BIN OUT_JSON [--quick] [--duration S] [--rounds N] [--repeats N]
Run by bench/monitoring/run.sh with the Evidently venv's python (numpy, pandas, evidently).
"""
import argparse
import http.client
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "bench"))
sys.path.insert(0, os.path.join(ROOT, "bench", "data"))
import machine  # noqa: E402
import gen  # noqa: E402  (bench/data/gen.py: the 20-feature drift tables)
import false_alarms  # noqa: E402  (part c)

import numpy as np  # noqa: E402

FEATURES = gen.NUM + gen.CAT


def sh(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


def measured(cmd, env=None):
    """Runs cmd; wall seconds, peak RSS in MiB (wait4's ru_maxrss), stdout."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    out, err = b"", b""
    # Read both pipes to the end before reaping, so a full pipe cannot stall the child.
    out, err = p.stdout.read(), p.stderr.read()
    _, status, usage = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) not in (0, 1):
        raise RuntimeError(f"{cmd} failed: {err.decode()[-2000:]}")
    return wall, usage.ru_maxrss / 1024, out.decode()


class Server:
    """`shipyard server` on a free port, in its own process group."""

    def __init__(self, shipyard, home, extra, cpus=None):
        pin = ["taskset", "-c", cpus] if cpus else []
        self.proc = subprocess.Popen(
            [*pin, shipyard, "server", "--home", home, "--port", "0", "--cache-entries", "0", "--no-monitors", *extra],
            stderr=subprocess.PIPE, text=True, start_new_session=True)
        for line in self.proc.stderr:
            m = re.search(r" on http://(\S+)", line)
            if m:
                self.addr = m.group(1)
                break
        else:
            raise RuntimeError("the server exited before listening")

    def metrics(self):
        host, port = self.addr.split(":")
        c = http.client.HTTPConnection(host, int(port))
        c.request("GET", "/metrics")
        return c.getresponse().read().decode()

    def logged(self, outcome):
        m = re.search(r'shipyard_prediction_log_rows_total\{outcome="%s"\} (\d+)' % outcome, self.metrics())
        return int(m.group(1)) if m else 0

    def stop(self):
        os.killpg(self.proc.pid, signal.SIGTERM)
        self.proc.wait(timeout=120)


def wrk(addr, path, body_file, duration, conns, cpus=None):
    env = dict(os.environ, BODY=body_file)
    lua = os.path.join(ROOT, "bench", "serving", "post_body.lua")
    pin = ["taskset", "-c", cpus] if cpus else []
    threads = len(cpus.split(",")) if cpus else 2
    out = sh([*pin, "wrk", f"-t{threads}", f"-c{conns}", f"-d{duration}s", "--latency", "--timeout", "10s", "-s", lua,
              f"http://{addr}{path}"], env=env).stdout
    return json.loads(out.split("WRKJSON ", 1)[1].splitlines()[0])


def setup_home(shipyard, work, ref):
    """Trains the model on the reference rows and deploys it twice: `load-api` for (a),
    `drift-api` for (b)."""
    home = os.path.join(work, "home")
    shutil.rmtree(home, ignore_errors=True)
    train = os.path.join(work, "train.csv")
    rng = np.random.default_rng(7)
    y = ((ref["num_0"] - gen.MU[0]) / gen.SD[0] + (ref["cat_0"] == "a") * 0.5 + rng.normal(0, 0.5, len(ref))) > 0.2
    ref.assign(y=y.astype(int)).to_csv(train, index=False)
    run = lambda *a: sh([shipyard, *a, "--home", home])  # noqa: E731
    run("train", "--data", train, "--target", "y", "--model", "logistic_regression", "--register", "bench")
    run("models", "promote", "bench", "--version", "1", "--force", "--reason", "bench")
    for name in ["load-api", "drift-api"]:
        run("deploy", name, "--model", "models:/bench@production")
    # (b) compares the window with the training table itself (all 50,000 rows, exact), as
    # Evidently is given it, rather than with the training profile (the rows after the
    # train/test split, sketched).
    run("data", "add", train, "--name", "bench-train")
    config = os.path.join(work, "monitors.yaml")
    open(config, "w").write("monitors: 1\nreference: dataset:bench-train@1\n")
    run("monitor", "configure", "--deployment", "drift-api", "--config", config)
    return home


def part_a(args, shipyard, home, ref, work):
    row = {c: (float(ref[c].iloc[0]) if c in gen.NUM else str(ref[c].iloc[0])) for c in FEATURES}
    body = os.path.join(work, "row.json")
    json.dump({"records": [row]}, open(body, "w"))
    runs = {"off": [], "on": []}
    dropped = 0
    for r in range(args.rounds):
        for mode in ["off", "on"]:
            server = Server(shipyard, home, ["--no-prediction-log"] if mode == "off" else [], args.server_cpus)
            try:
                wrk(server.addr, "/predict/load-api", body, 2, args.conns, args.wrk_cpus)  # warm-up
                result = wrk(server.addr, "/predict/load-api", body, args.duration, args.conns, args.wrk_cpus)
                if mode == "on":
                    dropped += server.logged("dropped")
            finally:
                server.stop()
            runs[mode].append(result)
            print(f"  (a) round {r + 1} logging {mode}: {result['rps']:.0f} req/s, p99 {result['p99_us'] / 1000:.2f} ms",
                  file=sys.stderr)
    med = {m: statistics.median(x["rps"] for x in v) for m, v in runs.items()}
    p99 = {m: statistics.median(x["p99_us"] for x in v) / 1000 for m, v in runs.items()}
    # Each round's on/off pair ran back to back: the median of the pairs' ratios is steadier
    # than the ratio of the medians when the machine's speed drifts during the run.
    paired = statistics.median(on["rps"] / off["rps"] for off, on in zip(runs["off"], runs["on"]))
    return {"runs": runs, "rps_median": med, "p99_ms_median": p99, "ratio_on_off": med["on"] / med["off"],
            "ratio_paired_median": paired,
            "dropped_rows": dropped, "errors": sum(x["err_status"] for v in runs.values() for x in v)}


def part_b(args, shipyard, home, ref, cur, work, evidently_py):
    server = Server(shipyard, home, ["--log-buffer", "100000"])
    try:
        host, port = server.addr.split(":")
        conn = http.client.HTTPConnection(host, int(port))
        rows = cur[FEATURES]
        t0 = time.perf_counter()
        for start in range(0, len(rows), 1000):
            chunk = rows.iloc[start:start + 1000]
            body = json.dumps({"columns": FEATURES, "data": chunk.values.tolist()})
            conn.request("POST", "/predict/drift-api", body, {"Content-Type": "application/json"})
            r = conn.getresponse()
            r.read()
            if r.status != 200:
                raise RuntimeError(f"/predict answered {r.status}")
        sent_s = time.perf_counter() - t0
        while server.logged("written") + server.logged("dropped") < len(rows):
            time.sleep(0.2)
        logged_s = time.perf_counter() - t0
        dropped = server.logged("dropped")
    finally:
        server.stop()
    print(f"  (b) {len(rows)} rows sent in {sent_s:.1f} s, all written after {logged_s:.1f} s ({dropped} dropped)",
          file=sys.stderr)
    cmd = [shipyard, "monitor", "report", "--deployment", "drift-api", "--window", f"last:{len(rows)}",
           "--format", "json", "--home", home]
    shipyard_runs = []
    report = None
    for _ in range(args.repeats):
        wall, rss, out = measured(cmd)
        shipyard_runs.append({"wall_s": wall, "peak_rss_mib": rss})
        report = json.loads(out)
        print(f"  (b) shipyard window of {report['window']['rows']} rows: {wall:.2f} s, {rss:.0f} MiB", file=sys.stderr)
    # Evidently on the same rows: the reference (features of the training rows) and the window.
    ev_dir = os.path.join(work, "evidently")
    os.makedirs(ev_dir, exist_ok=True)
    ref[FEATURES].to_csv(os.path.join(ev_dir, "reference.csv"), index=False)
    cur[FEATURES].to_csv(os.path.join(ev_dir, "current.csv"), index=False)
    ev_out = os.path.join(work, "evidently.json")
    ev_wall, ev_rss, _ = measured([evidently_py, os.path.join(ROOT, "bench", "data", "evidently_drift.py"), ev_dir,
                                   str(args.repeats), ev_out])
    ev = json.load(open(ev_out))
    print(f"  (b) evidently report {ev['report_median_s']:.2f} s (+ CSV load {ev['load_csv_s']:.1f} s), "
          f"{ev['peak_rss_mib']:.0f} MiB", file=sys.stderr)
    columns = []
    for c in report["window"]["drift"]["columns"]:
        e = ev["columns"].get(c["column"], {})
        score = c["p_value"] if c["p_value"] is not None else c["statistic"]
        columns.append({"column": c["column"], "test": c["test"], "shipyard_score": score, "shipyard_drift": c["drift"],
                        "evidently_method": e.get("method"), "evidently_score": e.get("score"),
                        "evidently_drift": e.get("drift")})
    return {"rows": len(rows), "send_s": sent_s, "logged_s": logged_s, "dropped": dropped,
            "shipyard": shipyard_runs, "shipyard_median_s": statistics.median(r["wall_s"] for r in shipyard_runs),
            "shipyard_peak_rss_mib": max(r["peak_rss_mib"] for r in shipyard_runs),
            "evidently": ev, "evidently_process_wall_s": ev_wall, "columns": columns,
            "drift_share": report["window"]["values"].get("drift_share")}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("shipyard")
    ap.add_argument("out")
    ap.add_argument("--evidently-python", required=True)
    ap.add_argument("--quick", action="store_true", help="short loads, 100,000 rows in (b)")
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--conns", type=int, default=64)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--skip-a", action="store_true")
    ap.add_argument("--skip-b", action="store_true")
    ap.add_argument("--skip-c", action="store_true")
    ap.add_argument("--windows", type=int, default=40, help="(c): windows per size")
    ap.add_argument("--pin", action="store_true",
                    help="(a): the server on the last CPU, wrk (one thread) on the others, so neither steals "
                         "the other's core and the ratio is the log's cost on the server's own core")
    args = ap.parse_args()
    args.server_cpus = args.wrk_cpus = None
    if args.pin:
        n = os.cpu_count() or 2
        args.server_cpus, args.wrk_cpus = str(n - 1), ",".join(str(c) for c in range(n - 1))
    if args.quick:
        args.duration, args.rounds, args.repeats, args.rows, args.windows = 5, 2, 1, 100_000, 10
    work = os.path.join(HERE, ".work")
    os.makedirs(work, exist_ok=True)
    ref = gen.drift_frame(50_000, np.random.default_rng([0, 1]), False)
    cur = gen.drift_frame(args.rows, np.random.default_rng([0, 2]), True)
    home = setup_home(args.shipyard, work, ref) if not (args.skip_a and args.skip_b) else None
    result = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cpu": machine.cpu_model(),
              "cores": os.cpu_count(), "mem_mib": machine.meminfo_mib("MemTotal:"),
              "load_before": machine.loadavg(), "args": vars(args)}
    if not args.skip_a:
        result["a"] = part_a(args, args.shipyard, home, ref, work)
    if not args.skip_b:
        result["b"] = part_b(args, args.shipyard, home, ref, cur, work, args.evidently_python)
    if not args.skip_c:
        result["c"] = false_alarms.run(args.shipyard, work, args.windows)
    result["load_after"] = machine.loadavg()
    json.dump(result, open(args.out, "w"), indent=1)

    print(f"\n## bench/monitoring, {result['date']}, {result['cpu']}, {result['cores']} cores\n")
    if "a" in result:
        a = result["a"]
        print("| Prediction log | req/s (median) | p99 ms (median) |\n|---|---|---|")
        for m in ["off", "on"]:
            print(f"| {m} | {a['rps_median'][m]:,.0f} | {a['p99_ms_median'][m]:.2f} |")
        print(f"\nThroughput with every request logged: {a['ratio_on_off']:.3f} of logging off "
              f"(median of the rounds' own ratios: {a['ratio_paired_median']:.3f}; goal >= 0.90); "
              f"rows dropped: {a['dropped_rows']}; error answers: {a['errors']}.\n")
    if "b" in result:
        b = result["b"]
        ev = b["evidently"]
        print(f"Window drift over {b['rows']:,} logged predictions x {len(FEATURES)} features "
              f"(reference: 50,000 training rows):\n")
        print("| | Time (median) | Peak RSS |\n|---|---|---|")
        print(f"| Shipyard `monitor report` (reads the log from SQLite, tests, JSON) | {b['shipyard_median_s']:.2f} s "
              f"| {b['shipyard_peak_rss_mib']:.0f} MiB |")
        print(f"| Evidently DataDriftPreset (frames in memory; CSV load {ev['load_csv_s']:.1f} s not counted) "
              f"| {ev['report_median_s']:.2f} s | {ev['peak_rss_mib']:.0f} MiB |")
        print(f"\nRatio Evidently / Shipyard: {ev['report_median_s'] / b['shipyard_median_s']:.1f}x time. "
              f"Logging the {b['rows']:,} rows through /predict took {b['logged_s']:.1f} s "
              f"({b['rows'] / b['logged_s']:,.0f} rows/s, {b['dropped']} dropped).\n")
        agree = sum(1 for c in b["columns"] if c["shipyard_drift"] == c["evidently_drift"])
        print(f"Verdicts agreeing with Evidently: {agree} of {len(b['columns'])}; largest score difference: "
              f"{max(abs(c['shipyard_score'] - (c['evidently_score'] or 0)) for c in b['columns']):.2e}.")
    if "c" in result:
        print("\n" + false_alarms.markdown(result["c"]))
    print(f"\nresults: {args.out}")


if __name__ == "__main__":
    main()
