#!/usr/bin/env python3
"""bench/serving: train the benchmark's RandomForest and write every form the servers load.

usage: make_model.py OUT_DIR

The recipe is the serving anchors' (shared/anchors/scripts/train_rf100.py and inproc_inference.py):
RandomForestClassifier(n_estimators=100, random_state=0) on
make_classification(n_samples=20000, n_features=20, n_informative=10, random_state=0), fitted with
n_jobs=2 for speed and then reset to n_jobs=None (n_jobs does not change the trees).

Writes into OUT_DIR:
  train20k.csv        the 20,000 training rows: f0..f19, y
  rf100.joblib        the forest fitted on the numpy array (MLServer's model.joblib)
  rf100-mlflow/       mlflow.sklearn.save_model of the same forest fitted on a DataFrame with columns
                      f0..f19 (skops format, signature and input example); checked to give the same
                      probabilities as the numpy-fitted one
  rf100.onnx          skl2onnx conversion of rf100.joblib: input "input" float [None, 20], outputs
                      label and probabilities (zipmap off). bench.py serves it with Shipyard when
                      no other ONNX file is given and shared/anchors/models/rf100.onnx is missing.
  payloads/           the request bodies (shared/anchors/scripts/make_payloads.py): 1 and 100 rows of
                      make_classification(n_samples=1000, n_features=20, n_informative=10,
                      random_state=1), as MLflow dataframe_split bodies (mlflow_1row.json,
                      mlflow_100rows.json) and Open Inference Protocol bodies with one FP64 [N, 20]
                      input "input-0" (v2_1row.json, v2_100rows.json)
  manifest.json       versions and timings
"""
import json
import os
import shutil
import sys
import time

import joblib
import numpy as np
import pandas as pd
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier

COLS = [f"f{i}" for i in range(20)]
TRUST = ["sklearn.tree._tree.Tree"]  # MLflow 3's default sklearn format is skops, which needs this


def train_data():
    return make_classification(n_samples=20000, n_features=20, n_informative=10, random_state=0)


def held_out():
    return make_classification(n_samples=1000, n_features=20, n_informative=10, random_state=1)


def train(X, y):
    m = RandomForestClassifier(n_estimators=100, random_state=0, n_jobs=2).fit(X, y)
    return m.set_params(n_jobs=None)


def write_payloads(out):
    os.makedirs(out, exist_ok=True)
    X, _ = held_out()
    for n, tag in [(1, "1row"), (100, "100rows")]:
        rows = X[:n].tolist()
        with open(os.path.join(out, f"mlflow_{tag}.json"), "w") as f:
            json.dump({"dataframe_split": {"columns": COLS, "data": rows}}, f)
        with open(os.path.join(out, f"v2_{tag}.json"), "w") as f:
            json.dump({"inputs": [{"name": "input-0", "shape": [n, 20], "datatype": "FP64",
                                   "data": [v for r in rows for v in r]}]}, f)


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__.split("\n\n")[1])
    out = os.path.abspath(sys.argv[1])
    os.makedirs(out, exist_ok=True)
    info = {}

    X, y = train_data()
    df = pd.DataFrame(X, columns=COLS)
    df.assign(y=y).to_csv(os.path.join(out, "train20k.csv"), index=False, float_format="%.17g")

    t0 = time.perf_counter()
    model_np = train(X, y)
    info["fit_s"] = round(time.perf_counter() - t0, 2)
    model_df = train(df, y)
    same = np.array_equal(model_np.predict_proba(X[:2000]), model_df.predict_proba(df.head(2000)))
    if not same:
        sys.exit("error: the numpy- and DataFrame-fitted forests disagree")
    joblib.dump(model_np, os.path.join(out, "rf100.joblib"))
    print(f"trained the forest twice ({info['fit_s']} s each)", file=sys.stderr)

    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType
    t0 = time.perf_counter()
    onx = convert_sklearn(model_np, initial_types=[("input", FloatTensorType([None, 20]))],
                          options={id(model_np): {"zipmap": False}})
    with open(os.path.join(out, "rf100.onnx"), "wb") as f:
        f.write(onx.SerializeToString())
    info["convert_s"] = round(time.perf_counter() - t0, 2)

    import mlflow
    import mlflow.sklearn
    from mlflow.models import infer_signature
    local = os.path.join(out, "rf100-mlflow")
    shutil.rmtree(local, ignore_errors=True)
    sig = infer_signature(df, model_df.predict(df))
    mlflow.sklearn.save_model(model_df, local, signature=sig, input_example=df.head(2),
                              skops_trusted_types=TRUST)

    write_payloads(os.path.join(out, "payloads"))

    import onnx
    import skl2onnx
    import sklearn
    info.update({"mlflow": mlflow.__version__, "sklearn": sklearn.__version__,
                 "skl2onnx": skl2onnx.__version__, "onnx": onnx.__version__,
                 "numpy": np.__version__, "pandas": pd.__version__,
                 "files": sorted(os.listdir(out))})
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(info, f, indent=1)
        f.write("\n")
    print(f"wrote {out}: {', '.join(info['files'])}", file=sys.stderr)


if __name__ == "__main__":
    main()
