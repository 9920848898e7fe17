"""Models logged by the real `mlflow` client, served by `shipyard predict`.

- A scikit-learn pipeline converted with skl2onnx and logged with MLflow's `onnx` flavor is
  registered, then scored by `shipyard predict` through `models:/NAME/VERSION`,
  `models:/NAME@ALIAS` and `runs:/ID/model`, from the store and over HTTP from the server; the
  predictions equal onnxruntime's to 1e-5 and keep the input's row order.
- A native model trained by `shipyard train` predicts, through `shipyard predict`, exactly what
  its evaluation run measured: the accuracy over the held-out rows (replayed with
  bench/train/shipyard_split.py) equals the logged `accuracy`.
"""
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO, run_shipyard

pytestmark = pytest.mark.shipyard_only


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory):
    import pandas as pd
    from sklearn.datasets import make_classification
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    X, y = make_classification(n_samples=600, n_features=6, n_informative=4, n_classes=3, random_state=3)
    X = X.astype(np.float32)
    X[::17, 2] = np.nan
    pipe = make_pipeline(SimpleImputer(), StandardScaler(), RandomForestClassifier(n_estimators=12, max_depth=6, random_state=0))
    pipe.fit(X, y)
    onx = convert_sklearn(pipe, initial_types=[("input", FloatTensorType([None, 6]))],
                          options={id(pipe.steps[-1][1]): {"zipmap": False}}, target_opset={"": 17, "ai.onnx.ml": 3})
    columns = [f"c{j}" for j in range(6)]
    rows = pd.DataFrame(X[:150], columns=columns)
    path = tmp_path_factory.mktemp("onnx") / "rows.csv"
    rows.to_csv(path, index=False)
    import onnxruntime as ort

    session = ort.InferenceSession(onx.SerializeToString(), providers=["CPUExecutionProvider"])
    labels, probabilities = session.run(None, {"input": X[:150]})
    return onx, rows, path, labels, probabilities


def log_onnx(client, unique, onnx_model):
    import mlflow
    from mlflow.models import infer_signature

    onx, rows, _, labels, _ = onnx_model
    name = unique("onnx-model")
    with mlflow.start_run() as run:
        mlflow.onnx.log_model(onx, name="model", signature=infer_signature(rows, labels), registered_model_name=name)
    return name, run.info.run_id


def check_predictions(csv_path, onnx_model):
    import pandas as pd

    _, rows, _, labels, probabilities = onnx_model
    ours = pd.read_csv(csv_path)
    assert list(ours.columns) == list(rows.columns) + ["prediction", "probability_0", "probability_1", "probability_2"]
    np.testing.assert_allclose(ours[list(rows.columns)].to_numpy(), rows.to_numpy(), rtol=1e-6)  # row order kept
    assert ours["prediction"].tolist() == labels.tolist()
    np.testing.assert_allclose(ours[["probability_0", "probability_1", "probability_2"]].to_numpy(), probabilities, atol=1e-5)


def test_mlflow_onnx_flavor_through_every_uri_form(server, client, unique, onnx_model, tmp_path):
    name, run_id = log_onnx(client, unique, onnx_model)
    client.set_registered_model_alias(name, "champion", "1")
    rows_csv = str(onnx_model[2])
    for k, uri in enumerate([f"models:/{name}/1", f"models:/{name}@champion", f"runs:/{run_id}/model"]):
        out = tmp_path / f"store-{k}.csv"
        run_shipyard(server, "predict", "--model", uri, "--input", rows_csv, "--output", str(out))
        check_predictions(out, onnx_model)


def test_predict_fetches_the_model_over_http(server, client, unique, onnx_model, tmp_path):
    import os

    name, _ = log_onnx(client, unique, onnx_model)
    binary = os.environ.get("SHIPYARD_BIN", str(REPO / "target" / "release" / "shipyard"))
    out = tmp_path / "http.csv"
    env = dict(os.environ, **server.env)
    env.pop("SHIPYARD_TRACKING_URI", None)
    done = subprocess.run([binary, "predict", "--model", f"models:/{name}/1", "--input", str(onnx_model[2]),
                           "--output", str(out), "--tracking-uri", server.url, "--home", str(tmp_path / "home")],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    check_predictions(out, onnx_model)
    # An unknown version is a clear error, not a crash.
    done = subprocess.run([binary, "predict", "--model", f"models:/{name}/9", "--input", str(onnx_model[2]),
                           "--tracking-uri", server.url, "--home", str(tmp_path / "home")],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 2 and "RESOURCE_DOES_NOT_EXIST" in done.stderr, done.stderr


def test_native_model_predicts_what_its_evaluation_measured(server, client, unique, tmp_path):
    import pandas as pd

    sys.path.insert(0, str(REPO / "bench" / "train"))
    from shipyard_split import train_test_split

    rng = np.random.default_rng(5)
    n = 800
    df = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n), "colour": rng.choice(["r", "g", "b"], size=n)})
    df["label"] = np.where(df["a"] + 0.5 * df["b"] + (df["colour"] == "r") + rng.normal(scale=0.7, size=n) > 0.3, "yes", "no")
    data = tmp_path / "native.csv"
    df.to_csv(data, index=False)
    experiment = unique("native-eval")
    out = run_shipyard(server, "train", "--data", str(data), "--target", "label", "--model", "random_forest",
                       "--param", "n_estimators=20", "--test-size", "0.25", "--seed", "11", "--experiment", experiment)
    run_id = out.stdout.strip().splitlines()[-1].strip()
    logged = client.get_run(run_id).data.metrics["accuracy"]

    scored = tmp_path / "scored.csv"
    run_shipyard(server, "predict", "--model", f"runs:/{run_id}/model", "--input", str(data), "--output", str(scored))
    ours = pd.read_csv(scored, keep_default_na=False)
    classes = sorted(df["label"].unique())
    codes = [classes.index(v) for v in df["label"]]
    _, test = train_test_split(codes, len(classes), test_size=0.25, seed=11)
    accuracy = float(np.mean(ours["prediction"].to_numpy()[test] == df["label"].to_numpy()[test]))
    assert accuracy == pytest.approx(logged, abs=1e-12)
