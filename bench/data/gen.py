#!/usr/bin/env python3
"""Seeded data for bench/data (numpy + pandas only).

The drift tables follow the anchor data set of ../shared/anchors (RESULTS-mlflow-evidently.md, §6),
so the Evidently figures there and here are comparable:
  num_0..num_14 ~ N(MU[j], SD[j]) with MU, SD drawn once from seed 12345 (uniform [-5, 5], [0.5, 3]);
  cat_0..cat_4 in a..e with frequencies P_REF; the current table shifts num_0..num_4 by +0.3 SD and
  re-weights cat_0 to P_SHIFT.
The validation table is a people-like table of 10 columns with a few planted defects.

usage: python gen.py drift N OUT_DIR         -> OUT_DIR/reference.csv, OUT_DIR/current.csv
       python gen.py validate N OUT_CSV      -> a table for the 20-expectation suite
"""
import os
import sys

import numpy as np
import pandas as pd

NUM = [f"num_{j}" for j in range(15)]
CAT = [f"cat_{j}" for j in range(5)]
LEVELS = np.array(["a", "b", "c", "d", "e"])
P_REF = [0.40, 0.25, 0.15, 0.12, 0.08]
P_SHIFT = [0.30, 0.25, 0.20, 0.15, 0.10]
_p = np.random.default_rng(12345)
MU = np.round(_p.uniform(-5, 5, size=15), 3)
SD = np.round(_p.uniform(0.5, 3, size=15), 3)


def drift_frame(n, rng, shifted):
    cols = {}
    for j, c in enumerate(NUM):
        mu = MU[j] + (0.3 * SD[j] if shifted and j < 5 else 0.0)
        cols[c] = rng.normal(mu, SD[j], size=n)
    for j, c in enumerate(CAT):
        p = P_SHIFT if shifted and j == 0 else P_REF
        cols[c] = LEVELS[rng.choice(5, size=n, p=p)]
    return pd.DataFrame(cols)


def validate_frame(n, seed=7):
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({
        "id": np.arange(n, dtype=np.int64),
        "age": rng.integers(18, 90, size=n),
        "income": np.round(rng.lognormal(10, 0.5, size=n), 2),
        "score": rng.uniform(0, 1, size=n),
        "country": rng.choice(["FR", "DE", "IT", "ES", "NL"], size=n),
        "segment": rng.choice(["retail", "pro", "vip"], size=n, p=[0.7, 0.25, 0.05]),
        "email": [f"user{i}@example.com" for i in range(n)],
        "visits": rng.poisson(4, size=n),
        "balance": np.round(rng.normal(1000, 300, size=n), 2),
        "active": rng.choice(["true", "false"], size=n),
    })
    # Planted defects, so that some expectations fail and report rows.
    bad = rng.choice(n, size=max(1, n // 10000), replace=False)
    df.loc[bad, "age"] = 150
    df.loc[bad[: len(bad) // 2], "country"] = "XX"
    df["income"] = df["income"].astype(object)
    df.loc[bad[: len(bad) // 3], "income"] = None
    return df


if __name__ == "__main__":
    kind, n, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    if kind == "drift":
        os.makedirs(out, exist_ok=True)
        drift_frame(n, np.random.default_rng([0, 1]), False).to_csv(os.path.join(out, "reference.csv"), index=False)
        drift_frame(n, np.random.default_rng([0, 2]), True).to_csv(os.path.join(out, "current.csv"), index=False)
    elif kind == "validate":
        validate_frame(n).to_csv(out, index=False)
    else:
        sys.exit(f"unknown kind {kind}")
