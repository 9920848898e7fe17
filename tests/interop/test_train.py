"""`shipyard train` runs, read back by the mlflow client; the ONNX export run by onnxruntime.

Each model kind trains on a table with numeric, categorical and boolean features and missing
values. The client must see a complete run (params, metrics by the issue's names, tags, the
dataset input, the model directory in MLflow's layout); onnxruntime must reproduce
`shipyard predict` on the exported `model.onnx` to 1e-5.
"""
import json
import os
import signal
import subprocess
import time

import numpy as np
import pytest

from conftest import REPO, run_shipyard

pytestmark = pytest.mark.shipyard_only

CLASSIFICATION_METRICS = {"accuracy", "precision_macro", "recall_macro", "f1_macro", "precision_weighted",
                          "recall_weighted", "f1_weighted", "roc_auc", "log_loss"}
REGRESSION_METRICS = {"rmse", "mae", "r2", "mape"}
TIMING_METRICS = {"training_time_s", "inference_latency_p50_ms", "inference_latency_p99_ms"}


def mixed_table(path, rows=1500, seed=0):
    """Numeric (with NaN), categorical (with missing), boolean features; three targets."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    x1 = rng.normal(size=rows)
    x2 = rng.uniform(-2, 2, size=rows)
    city = rng.choice(["paris", "lyon", "nice", "lille"], size=rows)
    member = rng.random(rows) < 0.4
    effect = {"paris": 1.0, "lyon": -0.5, "nice": 0.3, "lille": -1.0}
    score = 1.5 * x1 - x2 ** 2 + np.vectorize(effect.get)(city) + 0.8 * member + rng.normal(scale=0.5, size=rows)
    x1_missing = x1.copy()
    x1_missing[rng.random(rows) < 0.1] = np.nan
    df = pd.DataFrame({
        "x1": x1_missing, "x2": x2, "city": city, "member": member,
        "label": np.where(score > 0, "yes", "no"),
        "grade": np.digitize(score, [-1.0, 0.5]),
        "amount": 100 + 10 * score,
    })
    df.loc[rng.random(rows) < 0.05, "city"] = None
    df.to_csv(path, index=False)
    return df


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    path = tmp_path_factory.mktemp("train") / "mixed.csv"
    return path, mixed_table(path)


CASES = [
    ("logistic_regression", "label", []),
    ("logistic_regression", "grade", []),
    ("linear_regression", "amount", []),
    ("decision_tree", "label", ["--param", "max_depth=6"]),
    ("random_forest", "grade", ["--param", "n_estimators=20"]),
    ("random_forest", "amount", ["--param", "n_estimators=10"]),
    ("gradient_boosting", "label", ["--param", "max_iter=30"]),
    ("gradient_boosting", "grade", ["--param", "max_iter=20"]),
    ("gradient_boosting", "amount", ["--param", "max_iter=30"]),
]


def train(server, table_path, kind, target, extra, experiment):
    out = run_shipyard(server, "train", "--data", str(table_path), "--target", target, "--model", kind,
                       "--exclude", ",".join(c for c in ["label", "grade", "amount"] if c != target),
                       "--experiment", experiment, "--format", "json", *extra)
    return json.loads(out.stdout)


@pytest.mark.parametrize("kind,target,extra", CASES, ids=[f"{k}-{t}" for k, t, _ in CASES])
def test_every_kind_logs_a_complete_run(server, client, unique, table, tmp_path, kind, target, extra):
    import mlflow
    import yaml

    path, df = table
    experiment = unique("train")
    result = train(server, path, kind, target, extra, experiment)
    run = client.get_run(result["run_id"])
    assert run.info.status == "FINISHED"
    assert client.get_experiment(run.info.experiment_id).name == experiment

    regression = target == "amount"
    expected = (REGRESSION_METRICS if regression else CLASSIFICATION_METRICS) | TIMING_METRICS
    assert set(run.data.metrics) == expected
    for name, value in result["metrics"].items():
        assert run.data.metrics[name] == pytest.approx(value, rel=1e-12)
    if not regression:
        assert 0.5 < run.data.metrics["accuracy"] <= 1.0
    else:
        assert run.data.metrics["r2"] > 0.5
    assert run.data.metrics["inference_latency_p99_ms"] >= run.data.metrics["inference_latency_p50_ms"] > 0

    params = run.data.params
    assert params["model"] == kind and params["target"] == target and params["seed"] == "42"
    assert int(params["train_rows"]) + int(params["test_rows"]) == len(df)
    tags = run.data.tags
    assert tags["shipyard.version"] and tags["shipyard.host"] and tags["mlflow.source.name"] == "shipyard train"
    if (REPO / ".git").exists():
        assert len(tags["mlflow.source.git.commit"]) == 40
    inputs = run.inputs.dataset_inputs
    assert len(inputs) == 1 and inputs[0].dataset.name == "mixed"

    listed = {f.path for f in client.list_artifacts(run.info.run_id, "model")}
    assert {"model/MLmodel", "model/model.json", "model/model.onnx", "model/input_example.json"} <= listed
    local = mlflow.artifacts.download_artifacts(f"runs:/{run.info.run_id}/model", dst_path=str(tmp_path))
    mlmodel = yaml.safe_load(open(os.path.join(local, "MLmodel")))
    assert mlmodel["flavors"]["shipyard"]["kind"] == kind
    assert mlmodel["run_id"] == run.info.run_id
    inputs = json.loads(mlmodel["signature"]["inputs"])
    assert [(c["name"], c["type"]) for c in inputs] == [
        ("x1", "double"), ("x2", "double"), ("city", "string"), ("member", "boolean")]
    assert [c["required"] for c in inputs] == [False, True, False, True]
    example = json.load(open(os.path.join(local, "input_example.json")))
    assert example["columns"] == ["x1", "x2", "city", "member"] and len(example["data"]) == 5

    everything = {f.path for f in client.list_artifacts(run.info.run_id, "evaluation")}
    assert {"evaluation/feature_importances.json", "evaluation/feature_importances.svg"} <= everything
    if not regression:
        assert {"evaluation/confusion_matrix.json", "evaluation/confusion_matrix.svg"} <= everything
    profile_dir = mlflow.artifacts.download_artifacts(f"runs:/{run.info.run_id}/profile", dst_path=str(tmp_path))
    profile = json.load(open(os.path.join(profile_dir, "training_profile.json")))
    assert profile["rows"] == int(params["train_rows"])


@pytest.mark.parametrize("kind,target,extra", CASES, ids=[f"{k}-{t}" for k, t, _ in CASES])
def test_onnx_export_matches_shipyard_predictions(server, client, unique, table, tmp_path, kind, target, extra):
    import mlflow
    import onnxruntime as ort
    import pandas as pd

    path, df = table
    result = train(server, path, kind, target, extra, unique("onnx"))
    model_uri = f"runs:/{result['run_id']}/model"
    predicted = tmp_path / "predictions.csv"
    run_shipyard(server, "predict", "--model", model_uri, "--data", str(path), "--output", str(predicted))
    ours = pd.read_csv(predicted, keep_default_na=False)

    local = mlflow.artifacts.download_artifacts(model_uri, dst_path=str(tmp_path))
    session = ort.InferenceSession(os.path.join(local, "model.onnx"), providers=["CPUExecutionProvider"])
    feed = {}
    for i in session.get_inputs():
        column = df[i.name]
        if i.type == "tensor(string)":
            text = column.map(lambda v: "" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v).lower())
            feed[i.name] = text.to_numpy(dtype=object).reshape(-1, 1)
        else:
            feed[i.name] = column.to_numpy(dtype=np.float32).reshape(-1, 1)
    outputs = dict(zip([o.name for o in session.get_outputs()], session.run(None, feed)))
    if target == "amount":
        np.testing.assert_allclose(outputs["variable"][:, 0], ours["prediction"].astype(float), rtol=1e-5, atol=1e-5)
    else:
        classes = [c[len("probability_"):] for c in ours.columns if c.startswith("probability_")]
        proba_cols = [f"probability_{c}" for c in classes]
        np.testing.assert_allclose(outputs["probabilities"], ours[proba_cols].to_numpy(dtype=float), atol=1e-5)
        labels = [str(v) for v in outputs["label"]]
        margin = np.sort(ours[proba_cols].to_numpy(dtype=float), axis=1)
        decided = (margin[:, -1] - margin[:, -2]) > 1e-5
        assert np.mean(decided) > 0.9
        assert [l for l, d in zip(labels, decided) if d] == [str(l) for l, d in zip(ours["prediction"], decided) if d]


def test_bad_input_fails_before_any_run_with_a_clear_message(server, client, unique, table, tmp_path):
    path, _ = table
    experiment = unique("bad")
    cases = [
        (["--target", "nope", "--model", "random_forest"], "no column 'nope'"),
        (["--target", "label", "--model", "random_forest", "--param", "depth=3"], "unknown parameter 'depth'"),
        (["--target", "label", "--model", "random_forest", "--param", "n_estimators=0"], "must be between 1 and 100000"),
        (["--target", "label", "--model", "linear_regression"], "not numeric"),
        (["--target", "label", "--model", "svm"], "unknown model kind 'svm'"),
    ]
    for args, message in cases:
        out = run_shipyard(server, "train", "--data", str(path), "--experiment", experiment, *args, check=False)
        assert out.returncode == 2, (args, out.stderr)
        assert message in out.stderr, (args, out.stderr)
    one_class = tmp_path / "one.csv"
    one_class.write_text("x,y\n1,a\n2,a\n3,a\n4,a\n")
    out = run_shipyard(server, "train", "--data", str(one_class), "--target", "y", "--model", "decision_tree",
                       "--experiment", experiment, check=False)
    assert out.returncode == 2 and "one class only" in out.stderr
    assert client.get_experiment_by_name(experiment) is None


def test_ctrl_c_ends_the_run_killed(server, client, unique, tmp_path):
    path = tmp_path / "big.csv"
    mixed_table(path, rows=40_000, seed=1)
    binary = os.environ.get("SHIPYARD_BIN", str(REPO / "target" / "release" / "shipyard"))
    env = dict(os.environ, **server.env)
    experiment = unique("kill")
    proc = subprocess.Popen([binary, "train", "--data", str(path), "--target", "grade", "--model", "random_forest",
                             "--exclude", "label,amount", "--param", "n_estimators=5000", "--experiment", experiment,
                             "--tracking-uri", server.backend_uri, "--artifacts-destination", server.destination,
                             "--home", str(server.workdir / "home")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.time() + 60
        runs = []
        while time.time() < deadline and not runs:
            time.sleep(0.2)
            exp = client.get_experiment_by_name(experiment)
            if exp is not None:
                runs = client.search_runs([exp.experiment_id])
        assert runs, "the run never appeared"
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 2, stderr
    assert "KILLED" in stderr
    run = client.get_run(runs[0].info.run_id)
    assert run.info.status == "KILLED" and run.info.end_time is not None


def test_grid_search_runs_children_under_a_parent_and_marks_the_best(server, client, unique, table):
    path, _ = table
    experiment = unique("search")
    result = json.loads(run_shipyard(
        server, "train", "--data", str(path), "--target", "label", "--model", "random_forest",
        "--exclude", "grade,amount", "--experiment", experiment, "--search", "grid",
        "--param", "max_depth=2,6", "--param", "n_estimators=5,15", "--cv", "3", "--metric", "f1_macro",
        "--format", "json").stdout)
    assert len(result["trials"]) == 4
    parent = client.get_run(result["run_id"])
    assert parent.info.status == "FINISHED"
    assert parent.data.params["space.max_depth"] == "2,6" and parent.data.params["cv"] == "3"
    children = client.search_runs([parent.info.experiment_id],
                                  filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert len(children) == 4 and all(c.info.status == "FINISHED" for c in children)
    scores = {c.info.run_id: c.data.metrics["cv_f1_macro_mean"] for c in children}
    best = max(scores, key=scores.get)
    assert parent.data.tags["shipyard.best_run_id"] == best == result["best_run_id"]
    assert parent.data.metrics["best_f1_macro"] == pytest.approx(scores[best])
    winner = client.get_run(best)
    assert parent.data.params["best.max_depth"] == winner.data.params["max_depth"]
    assert {"model/MLmodel", "model/model.json", "model/model.onnx"} <= {
        f.path for f in client.list_artifacts(parent.info.run_id, "model")}
