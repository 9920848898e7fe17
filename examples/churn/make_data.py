"""Writes the example churn tables (train.csv, eval.csv) used by the README and its test.

Synthetic, seeded, stdlib only: customers with a tenure, monthly charges, a contract type,
support calls and a gender (the sensitive column of the fairness gate); churn is highest for
mid-priced monthly plans, a band that trees find and a linear model cannot draw.

    python3 examples/churn/make_data.py
"""

import csv
import math
import pathlib
import random


def rows(n, rng):
    out = []
    for _ in range(n):
        gender = rng.choice(["female", "male"])
        contract = rng.choices(["monthly", "yearly", "two_year"], weights=[5, 3, 2])[0]
        tenure = round(rng.expovariate(1 / 24), 1)
        charges = round(rng.uniform(20, 120), 2)
        calls = min(int(rng.expovariate(1 / 1.5)), 12)
        risk = -1.2 + 0.35 * calls - 0.04 * tenure
        # Mid-priced monthly plans churn most: a band a linear model cannot draw.
        if contract == "monthly":
            risk += 2.8 if 55 < charges < 95 else -0.6
        elif contract == "yearly":
            risk += 0.8 if charges > 100 else -0.8
        else:
            risk -= 1.5
        churned = "yes" if rng.random() < 1 / (1 + math.exp(-risk)) else "no"
        out.append([round(tenure, 1), charges, contract, calls, gender, churned])
    return out


def write(path, data):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["tenure_months", "monthly_charges", "contract", "support_calls", "gender", "churned"])
        w.writerows(data)


here = pathlib.Path(__file__).parent
rng = random.Random(20261203)
write(here / "train.csv", rows(3000, rng))
write(here / "eval.csv", rows(1000, rng))
print("wrote", here / "train.csv", "and", here / "eval.csv")
