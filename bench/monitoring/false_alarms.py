"""bench/monitoring (c): false alarms and detection of the drift and accuracy monitors, next to
Evidently's defaults.

Reference: 4,000 rows of six numeric columns (normal, various scales) and one categorical
column (four levels at 40/30/20/10%), as in the issue that found Evidently's defaults crying
wolf. For windows of 100, 200, 400, 1,000 and 5,000 rows drawn from the same distribution
(calm), each window is compared with the reference by

- Shipyard: `shipyard data drift --preset calibrated` (what monitors and gates use: tests valid
  at both sizes, each column at 1% / 7), and `--preset evidently` (Evidently's choice, which
  Shipyard's numbers equal);
- Evidently 0.7's DataDriftPreset, in process (its verdict per column, from its tests).

Measured: the share of calm windows in which any column is flagged, and in which more than 30%
of columns are (the rule `drift_share > 0.3`), each window against a reference of its own (the
rate a test guarantees is over both samples); then, per window size, the share of windows in
which a 0.3-standard-deviation shift of one column is flagged. Sliding windows (the last 1,000 rows,
every 100 new rows, over a calm stream of 20,000 rows, one reference) show what overlapping
evaluations do to the count of false alerts.

Accuracy: labelled windows of 30 to 5,000 rows from a model of accuracy 0.85 and the seed's
rule `accuracy < 0.8`: the rate at which it fires on the point estimate (Evidently's
`TestAccuracyScore` and the seed's rule) against on the 97.5% Wilson upper bound (Shipyard's
monitors; the same formula as crates/monitor/src/intervals.rs, whose own code the Rust test
crates/monitor/tests/false_alarms.rs measures); and, per size, the rate of catching a drop
to 0.75.
"""
import json
import math
import os
import subprocess
import sys
import time

import numpy as np
import pandas as pd

NUMERIC = [(0.0, 1.0), (50.0, 12.0), (-3.0, 0.5), (1000.0, 250.0), (7.0, 2.0), (0.5, 0.1)]
LEVELS = ["a", "b", "c", "d"]
SHARES = [0.4, 0.3, 0.2, 0.1]
COLUMNS = [f"x{j}" for j in range(len(NUMERIC))] + ["cat"]


def frame(rng, rows, shift_column=None, shift=0.0):
    data = {}
    for j, (mean, sd) in enumerate(NUMERIC):
        delta = shift * sd if shift_column == j else 0.0
        data[f"x{j}"] = rng.normal(mean + delta, sd, rows)
    data["cat"] = rng.choice(LEVELS, size=rows, p=SHARES)
    return pd.DataFrame(data)


class Evidently:
    def __init__(self):
        from evidently import DataDefinition, Dataset, Report  # noqa: F401
        from evidently.presets import DataDriftPreset  # noqa: F401
        self.m = sys.modules["evidently"]
        self.preset = sys.modules["evidently.presets"].DataDriftPreset
        self.dd = self.m.DataDefinition(numerical_columns=COLUMNS[:-1], categorical_columns=["cat"])

    def flagged(self, ref, cur):
        """The columns Evidently's tests fail."""
        snap = self.m.Report([self.preset()], include_tests=True).run(
            self.m.Dataset.from_pandas(cur, data_definition=self.dd),
            self.m.Dataset.from_pandas(ref, data_definition=self.dd)).dict()
        out = []
        for t in snap["tests"]:
            name = t.get("name", "")
            if name.startswith("Value Drift for column ") and str(t["status"]).split(".")[-1] == "FAIL":
                out.append(name[len("Value Drift for column "):])
        return out


def shipyard_flagged(shipyard, ref_path, cur_path, preset):
    out = subprocess.run([shipyard, "data", "drift", "--reference", ref_path, "--current", cur_path,
                          "--preset", preset, "--format", "json"], capture_output=True, text=True)
    if out.returncode not in (0, 1):
        raise RuntimeError(out.stderr)
    report = json.loads(out.stdout)
    return [c["column"] for c in report["columns"] if c["drift"]], report


def wilson_upper(k, n, z=1.959963984540054):
    """Wilson's one-sided upper bound at 97.5% (the monitors' default confidence)."""
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre + half


def run(shipyard, work, windows, sizes=(100, 200, 400, 1000, 5000)):
    os.makedirs(work, exist_ok=True)
    rng = np.random.default_rng([17, 1])
    ref = frame(rng, 4000)
    ref_path = os.path.join(work, "fa-reference.csv")
    ref.to_csv(ref_path, index=False)
    ev = Evidently()
    cur_path = os.path.join(work, "fa-current.csv")
    k = len(COLUMNS)
    result = {"windows": windows, "sizes": list(sizes), "calm": {}, "shift": {}}
    t0 = time.perf_counter()
    for rows in sizes:
        counts = {"calibrated": [0, 0, 0], "shipyard_evidently": [0, 0, 0], "evidently": [0, 0, 0]}
        undecided = 0
        for _ in range(windows):
            # Each comparison draws its own reference: the rate is over both samples.
            ref = frame(rng, 4000)
            ref.to_csv(ref_path, index=False)
            cur = frame(rng, rows)
            cur.to_csv(cur_path, index=False)
            flags = {}
            flags["calibrated"], rep = shipyard_flagged(shipyard, ref_path, cur_path, "calibrated")
            undecided += rep.get("undecided_columns", 0)
            flags["shipyard_evidently"], _ = shipyard_flagged(shipyard, ref_path, cur_path, "evidently")
            flags["evidently"] = ev.flagged(ref, cur)
            for name, f in flags.items():
                counts[name][0] += len(f)
                counts[name][1] += int(len(f) > 0)
                counts[name][2] += int(len(f) / k > 0.3)
        result["calm"][rows] = {name: {"column_flags": c[0] / (windows * k), "any_column": c[1] / windows,
                                       "share_above_0.3": c[2] / windows} for name, c in counts.items()}
        result["calm"][rows]["undecided_columns"] = undecided
        print(f"  (c) calm {rows}-row windows: " + ", ".join(
            f"{n} any {v['any_column']:.3f}" for n, v in result["calm"][rows].items() if n != "undecided_columns"),
            file=sys.stderr)
    # A 0.3-SD shift of x1, per window size; then the sliding windows: one reference.
    for rows in sizes:
        seen = {"calibrated": 0, "shipyard_evidently": 0, "evidently": 0}
        for _ in range(windows):
            ref = frame(rng, 4000)
            ref.to_csv(ref_path, index=False)
            cur = frame(rng, rows, shift_column=1, shift=0.3)
            cur.to_csv(cur_path, index=False)
            seen["calibrated"] += "x1" in shipyard_flagged(shipyard, ref_path, cur_path, "calibrated")[0]
            seen["shipyard_evidently"] += "x1" in shipyard_flagged(shipyard, ref_path, cur_path, "evidently")[0]
            seen["evidently"] += "x1" in ev.flagged(ref, cur)
        result["shift"][rows] = {n: v / windows for n, v in seen.items()}
        print(f"  (c) 0.3-SD shift, {rows} rows: {result['shift'][rows]}", file=sys.stderr)
    ref = frame(rng, 4000)
    ref.to_csv(ref_path, index=False)
    # Sliding windows over a calm stream: the last 1,000 rows every 100 new rows.
    stream = frame(rng, 20_000)
    evaluations, flagged, episodes, previous = 0, 0, 0, False
    for end in range(1000, len(stream) + 1, 100):
        stream.iloc[end - 1000:end].to_csv(cur_path, index=False)
        f, _ = shipyard_flagged(shipyard, ref_path, cur_path, "calibrated")
        evaluations += 1
        flagged += bool(f)
        episodes += bool(f) and not previous
        previous = bool(f)
    result["sliding"] = {"evaluations": evaluations, "flagged": flagged, "episodes": episodes}
    print(f"  (c) sliding: {flagged} of {evaluations} evaluations flagged, in {episodes} episode(s)", file=sys.stderr)
    # Accuracy rules: the point estimate against the Wilson bound.
    arng = np.random.default_rng([17, 2])
    draws = 20_000
    acc = {}
    for rows in (30, 100, 400, 1000, 5000):
        correct = arng.binomial(rows, 0.85, draws)
        point = np.mean(correct / rows < 0.8)
        bound = np.mean([wilson_upper(c, rows) < 0.8 for c in correct])
        acc[rows] = {"point_estimate": float(point), "wilson_bound": float(bound)}
    drop = {}
    for rows in (30, 100, 400, 1000, 5000):
        dropped = arng.binomial(rows, 0.75, draws)
        drop[rows] = {"point_estimate": float(np.mean(dropped / rows < 0.8)),
                      "wilson_bound": float(np.mean([wilson_upper(c, rows) < 0.8 for c in dropped]))}
    result["accuracy"] = {"calm": acc, "drop_to_0.75": drop}
    result["seconds"] = time.perf_counter() - t0
    return result


def markdown(c):
    lines = [f"False alarms on calm windows ({c['windows']} windows per size, reference 4,000 rows, 7 columns): "
             "share of windows in which any column is flagged / in which more than 30% of columns are\n",
             "| Window rows | Shipyard calibrated (monitors, gates) | Shipyard evidently preset | Evidently 0.7 DataDriftPreset |",
             "|---|---|---|---|"]
    for rows, v in c["calm"].items():
        cells = [f"{v[n]['any_column']:.3f} / {v[n]['share_above_0.3']:.3f}"
                 for n in ("calibrated", "shipyard_evidently", "evidently")]
        lines.append(f"| {int(rows):,} | " + " | ".join(cells) + " |")
    lines.append("\nA 0.3-SD shift of one column: share of windows in which that column is flagged\n")
    lines.append("| Window rows | Shipyard calibrated | Shipyard evidently preset | Evidently 0.7 |")
    lines.append("|---|---|---|---|")
    for rows, v in c["shift"].items():
        lines.append(f"| {int(rows):,} | {v['calibrated']:.3f} | {v['shipyard_evidently']:.3f} | {v['evidently']:.3f} |")
    sl = c["sliding"]
    lines.append(f"\nSliding 1,000-row windows every 100 new calm rows (calibrated): {sl['flagged']} of "
                 f"{sl['evaluations']} evaluations flagged a column, in {sl['episodes']} episode(s).\n")
    lines.append("| Labelled rows | `accuracy < 0.8` fires at 0.85 (calm): point estimate (Evidently, the seed) "
                 "| on the 97.5% Wilson bound (Shipyard) | at 0.75 (a 10-point drop): point estimate | bound |")
    lines.append("|---|---|---|---|---|")
    for rows, v in c["accuracy"]["calm"].items():
        d = c["accuracy"]["drop_to_0.75"][rows]
        lines.append(f"| {int(rows):,} | {v['point_estimate']:.4f} | {v['wilson_bound']:.4f} "
                     f"| {d['point_estimate']:.4f} | {d['wilson_bound']:.4f} |")
    return "\n".join(lines)
