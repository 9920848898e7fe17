"""Python models logged by the current `mlflow` client, served by Shipyard's Python workers.

Five models logged as `mlflow.sklearn` pickles or a custom `mlflow.pyfunc.PythonModel`,
registered, and served by `shipyard server` (started with `--python` this interpreter) under their
`production` alias, each on the engine its conversion earns (tagged on the version, and in the v2
metadata with the reason):
- a scikit-learn `Pipeline` with a `ColumnTransformer` (scaled numbers, a one-hot string column)
  and a logistic regression: converted to ONNX, verified, served by Shipyard's engine;
- a `Pipeline` whose `FunctionTransformer` runs a Python lambda and a ridge regression: skl2onnx
  cannot convert it, so Python workers serve it;
- a random forest fitted with missing values: skl2onnx loses where its splits send missing
  values, Shipyard's conversion puts that back, verification finds it exact, Shipyard serves it;
- two such forests voting: that fix does not reach them, rows with missing values get other
  labels, verification rejects the conversion, and Python workers serve it;
- a custom `PythonModel` answering text labels: Python workers.
Each answers `/predict/{name}`, the Open Inference Protocol and (through a `shipyard serve`
replica) `/invocations` with the model's own predictions; `/invocations` byte for byte as MLflow's
scoring function answers. A worker killed during a request fails that request cleanly (503), and
the next request is answered by its replacement.
"""
import json
import os
import signal
import subprocess
import sys
import threading
import time

import mlflow
import numpy as np
import pandas as pd
import pytest
import requests
from mlflow.models import infer_signature

from conftest import REPO
from test_serving import post_json, start_serving, wait_ready

sys.path.insert(0, str(REPO / "tests" / "interop" / "fixtures"))
from labeller import Labeller  # noqa: E402

LABELLER = REPO / "tests" / "interop" / "fixtures" / "labeller.py"

pytestmark = pytest.mark.shipyard_only


def frame(n, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "a": rng.normal(size=n),
        "b": rng.normal(size=n) * 3,
        "color": rng.choice(["red", "green", "blue"], size=n),
    })


@pytest.fixture(scope="module")
def python_models(server, tmp_path_factory):
    """{kind: (registered name, rows, the model's own predictions)}."""
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier, VotingClassifier
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

    mlflow.set_tracking_uri(server.url)
    client = mlflow.MlflowClient(server.url)
    suffix = str(int(time.time() * 1000))
    train = frame(400)
    y_class = ((train["a"] + (train["color"] == "red")) > 0.3).astype(int)
    y_value = 2 * train["a"] - train["b"] + (train["color"] == "blue")
    rows = frame(40, seed=1)
    models = {}
    column = ColumnTransformer([("num", StandardScaler(), ["a", "b"]), ("cat", OneHotEncoder(), ["color"])])
    classifier = Pipeline([("prep", column), ("model", LogisticRegression())]).fit(train, y_class)
    numeric = train[["a", "b"]]
    regressor = Pipeline([("double", FunctionTransformer(lambda X: X * 2)), ("model", Ridge())]).fit(numeric, y_value)
    labeller_rows = pd.DataFrame({"x": rows["a"], "note": [""] * len(rows)})
    # A forest that learned where missing values go: skl2onnx drops that (onnx/sklearn-onnx#1253),
    # Shipyard's conversion carries it over, and verification finds the conversion exact.
    holes = numeric.mask(np.random.default_rng(3).random(numeric.shape) < 0.15)
    forest = RandomForestClassifier(n_estimators=20, random_state=0).fit(holes, y_class)
    forest_rows = rows[["a", "b"]].mask(np.random.default_rng(4).random((len(rows), 2)) < 0.3)
    # Two such forests voting: their conversion (two tree ensembles) keeps skl2onnx's missing
    # directions, so rows with missing values get other labels and verification rejects it.
    voting = VotingClassifier([("rf", RandomForestClassifier(n_estimators=10, random_state=0)),
                               ("et", ExtraTreesClassifier(n_estimators=10, random_state=0))],
                              voting="soft", flatten_transform=False).fit(holes, y_class)
    cases = {
        "column_transformer": (classifier, train.head(5), rows),
        "lambda_transformer": (regressor, numeric.head(5), rows[["a", "b"]]),
        "custom_pyfunc": (Labeller(), labeller_rows.head(5), labeller_rows),
        "forest_with_missing": (forest, numeric.head(5), forest_rows),
        "voting_with_missing": (voting, numeric.head(5), forest_rows),
    }
    for kind, (model, example, test_rows) in cases.items():
        name = f"py-{kind}-{suffix}"
        with mlflow.start_run():
            if kind == "custom_pyfunc":
                signature = infer_signature(example, model.predict(None, example))
                info = mlflow.pyfunc.log_model(name="model", python_model=model, signature=signature,
                                               input_example=example, registered_model_name=name,
                                               code_paths=[str(LABELLER)])
                own = mlflow.pyfunc.load_model(info.model_uri).predict(test_rows)
            else:
                signature = infer_signature(example, model.predict(example))
                info = mlflow.sklearn.log_model(model, name="model", signature=signature, input_example=example,
                                                serialization_format="cloudpickle", registered_model_name=name)
                own = model.predict(test_rows)
        client.set_registered_model_alias(name, "production", "1")
        models[kind] = (name, test_rows, np.asarray(own).tolist(), info.model_uri)
    return models


KINDS = ["column_transformer", "lambda_transformer", "custom_pyfunc", "forest_with_missing", "voting_with_missing"]
# The engine each is served by, and words of the reason recorded for it.
ENGINES = {
    "column_transformer": ("onnx-converted", "verified on"),
    "lambda_transformer": ("python", "FunctionTransformer is not supported"),
    "custom_pyfunc": ("python", "not a scikit-learn model"),
    "forest_with_missing": ("onnx-converted", "verified on"),
    "voting_with_missing": ("python", "rows get another label"),
}


def same(got, want):
    if want and isinstance(want[0], float):
        np.testing.assert_allclose(got, want, rtol=1e-12)
    else:
        assert got == want


@pytest.mark.parametrize("kind", KINDS)
def test_predict_and_v2_answer_the_models_own_predictions(server, python_models, kind):
    name, rows, want, _ = python_models[kind]
    meta = wait_ready(server.url, name, "1", timeout=120)
    engine, reason = ENGINES[kind]
    assert meta["platform"] == ("mlflow_sklearn" if engine == "onnx-converted" else "mlflow_pyfunc"), meta
    assert meta["parameters"]["engine"] == engine and reason in meta["parameters"]["engine_reason"], meta
    tags = mlflow.MlflowClient(server.url).get_model_version(name, "1").tags
    assert tags["shipyard.engine"] == engine and reason in tags["shipyard.engine.reason"], tags
    assert [i["name"] for i in meta["inputs"]] == list(rows.columns)
    # Written as Python's json writes them: every float exact, a missing one a bare NaN.
    r = post_json(f"{server.url}/predict/{name}", {"records": rows.to_dict(orient="records")})
    assert r.status_code == 200, r.text
    same(r.json()["predictions"], want)
    r = post_json(f"{server.url}/predict/{name}", {"data": rows.to_numpy().tolist()})
    assert r.status_code == 200, r.text
    same(r.json()["predictions"], want)

    inputs = []
    for col in rows.columns:
        values = [None if isinstance(v, float) and np.isnan(v) else v for v in rows[col].tolist()]
        # pandas 3 gives text columns its string dtype, not object.
        if pd.api.types.is_bool_dtype(rows[col]):
            datatype = "BOOL"
        elif pd.api.types.is_numeric_dtype(rows[col]):
            datatype = "FP64"
        else:
            datatype = "BYTES"
        inputs.append({"name": col, "shape": [len(values)], "datatype": datatype, "data": values})
    r = requests.post(f"{server.url}/v2/models/{name}/infer", json={"inputs": inputs}, timeout=60)
    assert r.status_code == 200, r.text
    outputs = {o["name"]: o for o in r.json()["outputs"]}
    output = outputs["predict"]
    kinds = {"column_transformer": "INT64", "lambda_transformer": "FP64", "custom_pyfunc": "BYTES",
             "forest_with_missing": "INT64", "voting_with_missing": "INT64"}
    assert output["datatype"] == kinds[kind] and output["shape"][0] == len(rows), output
    same(output["data"], want)
    # A converted classifier also answers its probabilities, as scikit-learn models do.
    assert ("predict_proba" in outputs) == (engine == "onnx-converted"), outputs.keys()


def mlflow_answer(model, body, content_type):
    """What `mlflow models serve` answers: its scoring function's response, or an MlflowException
    rendered by its server's handler."""
    from mlflow.exceptions import MlflowException
    from mlflow.pyfunc import scoring_server

    try:
        answer = scoring_server.invocations(body, content_type, model, model.metadata.get_input_schema())
        return answer.status, answer.response.encode()
    except MlflowException as e:
        return e.get_http_status_code(), e.serialize_as_json().encode()


@pytest.mark.parametrize("kind", KINDS)
def test_invocations_answers_byte_for_byte_as_mlflows_scoring_function(server, python_models, kind, tmp_path):
    name, rows, want, uri = python_models[kind]
    model = mlflow.pyfunc.load_model(uri)
    env = dict(os.environ, **server.env)
    env.pop("SHIPYARD_TRACKING_URI", None)
    proc, url = start_serving(["--model", f"models:/{name}/1", "--tracking-uri", server.url,
                               "--python", sys.executable], tmp_path, env=env, timeout=180)
    try:
        bodies = [
            json.dumps({"dataframe_split": rows.to_dict(orient="split")}),
            json.dumps({"dataframe_records": rows.to_dict(orient="records")}),
            json.dumps({"dataframe_split": {"columns": ["nope"], "data": [[1]]}}),
        ]
        for body in bodies:
            status, content = mlflow_answer(model, body, "application/json")
            r = requests.post(f"{url}/invocations", data=body, headers={"Content-Type": "application/json"}, timeout=60)
            if status == 200:
                assert (r.status_code, r.content) == (status, content)
                same(r.json()["predictions"], want)
            elif ENGINES[kind][0] == "python":
                assert (r.status_code, r.content) == (status, content)
            else:
                # Shipyard's own engine reads the body: the same status and code, its own words.
                assert r.status_code == status and r.json()["error_code"] == json.loads(content)["error_code"], r.text
        csv = rows.to_csv(index=False)
        r = requests.post(f"{url}/invocations", data=csv, headers={"Content-Type": "text/csv"}, timeout=60)
        assert (r.status_code, r.content) == mlflow_answer(model, csv, "text/csv")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


def test_a_worker_killed_during_a_request_fails_it_cleanly_and_the_next_is_answered(server, python_models, tmp_path):
    name, rows, want, _ = python_models["custom_pyfunc"]
    wait_ready(server.url, name, "1", timeout=120)
    pid_file = tmp_path / "worker.pid"
    answer = {}

    def slow():
        answer["r"] = requests.post(f"{server.url}/predict/{name}",
                                    json={"records": [{"x": 1.0, "note": str(pid_file)}]}, timeout=60)

    thread = threading.Thread(target=slow)
    thread.start()
    deadline = time.time() + 30
    while not (pid_file.exists() and pid_file.read_text()):
        assert time.time() < deadline, "the worker never took the slow request"
        time.sleep(0.05)
    os.kill(int(pid_file.read_text()), signal.SIGKILL)
    thread.join(60)
    r = answer["r"]
    assert r.status_code == 503, r.text
    assert "exited" in r.json()["error"] and "replaced" in r.json()["error"], r.text
    # A request the prediction cache has not seen: its replacement answers.
    r = requests.post(f"{server.url}/predict/{name}", json={"records": [{"x": 5.0, "note": "fresh"}]}, timeout=120)
    assert r.status_code == 200, r.text
    assert r.json()["predictions"] == ["positive"]
    # The pool's state in Prometheus' metrics: one worker alive, none busy, one restart, its memory.
    metrics = requests.get(f"{server.url}/metrics", timeout=10).text
    labels = f'model="{name}",version="1"'
    assert f'shipyard_python_workers{{{labels},state="alive"}} 1' in metrics, metrics
    assert f'shipyard_python_workers{{{labels},state="busy"}} 0' in metrics
    assert f'shipyard_python_worker_restarts_total{{{labels}}} 1' in metrics
    assert f'shipyard_python_queue_depth{{{labels}}} 0' in metrics
    rss = [l for l in metrics.splitlines() if l.startswith(f'shipyard_python_worker_resident_bytes{{{labels},worker="0"}}')]
    assert rss and int(rss[0].split()[-1]) > 50 * 2**20, rss


def test_a_conversion_is_kept_with_the_version_and_serves_without_python(server, python_models, tmp_path):
    """The server's load kept each scikit-learn model's conversion (or the converter's refusal)
    with the version's files: a replica with no Python at all serves a verified conversion from
    it, and says why it cannot serve the others."""
    env = dict(os.environ, **server.env)
    env.pop("SHIPYARD_TRACKING_URI", None)
    for kind in KINDS:
        wait_ready(server.url, python_models[kind][0], "1", timeout=120)
    name, rows, want, uri = python_models["column_transformer"]
    proc, url = start_serving(["--model", f"models:/{name}/1", "--tracking-uri", server.url], tmp_path, env=env)
    try:
        meta = requests.get(f"{url}/v2/models/{name}", timeout=10).json()
        assert meta["parameters"]["engine"] == "onnx-converted", meta
        assert meta["parameters"]["engine_reason"].startswith("kept ONNX conversion"), meta
        r = post_json(f"{url}/predict/{name}", {"records": rows.to_dict(orient="records")})
        assert r.status_code == 200, r.text
        same(r.json()["predictions"], want)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    # No interpreter started: neither a conversion nor a worker appears in the replica's log.
    port = url.rsplit(":", 1)[1]
    log = (tmp_path / f"serve-{port}.log").read_text()
    assert "shipyard::python" not in log and "serving the ONNX conversion: kept ONNX conversion" in log, log
    # What is kept, beside the model's own files: the ONNX file and the verification's inputs,
    # scikit-learn's answers and outcome.
    from mlflow.artifacts import download_artifacts

    location = mlflow.MlflowClient(server.url).get_logged_model(uri.split("/")[-1]).artifact_location
    kept = download_artifacts(artifact_uri=f"{location}/shipyard-conversion", dst_path=str(tmp_path / "kept"))
    assert {"model.onnx", "MLmodel", "rows.arrow", "report.json", "verification.json",
            "conversion.json"} <= set(os.listdir(kept)), os.listdir(kept)
    verification = json.load(open(os.path.join(kept, "verification.json")))
    assert verification["passed"] and verification["rows"] > 400 and verification["label_mismatches"] == 0
    binary = os.environ.get("SHIPYARD_BIN", str(REPO / "target" / "release" / "shipyard"))
    reasons = {"lambda_transformer": ["FunctionTransformer is not supported", "(kept from an earlier attempt)"],
               "voting_with_missing": ["kept ONNX conversion", "rows get another label"],
               "custom_pyfunc": ["not a scikit-learn model"]}
    for kind, words in reasons.items():
        out = subprocess.run([binary, "serve", "--model", f"models:/{python_models[kind][0]}/1",
                              "--tracking-uri", server.url, "--port", "0"],
                             capture_output=True, text=True, env=env, timeout=60)
        assert out.returncode != 0 and "--python" in out.stderr, out.stderr
        assert all(w in out.stderr for w in words), out.stderr


def test_a_version_tag_forces_python_workers(server, python_models):
    """`shipyard.serving.sklearn_engine` on a version (or its model) picks the engine: a second
    version of the converted pipeline, tagged `python`, is served by workers, with that reason."""
    name, rows, want, uri = python_models["column_transformer"]
    client = mlflow.MlflowClient(server.url)
    version = client.create_model_version(name, uri, tags={"shipyard.serving.sklearn_engine": "python"}).version
    client.set_registered_model_alias(name, "production", version)
    try:
        meta = wait_ready(server.url, name, version, timeout=120)
        assert meta["parameters"]["engine"] == "python", meta
        assert "--sklearn-engine python" in meta["parameters"]["engine_reason"], meta
        r = post_json(f"{server.url}/predict/{name}", {"records": rows.to_dict(orient="records")})
        assert r.status_code == 200, r.text
        same(r.json()["predictions"], want)
    finally:
        client.set_registered_model_alias(name, "production", "1")


@pytest.mark.parametrize("kind", ["column_transformer", "lambda_transformer", "custom_pyfunc"])
def test_shipyard_predict_scores_python_models(server, python_models, kind, tmp_path):
    """`shipyard predict` scores a file with a Python model on the engine it earns: the kept
    conversion, or the model's workers (the file's extra columns left out of what they get)."""
    from conftest import run_shipyard

    name, rows, want, _ = python_models[kind]
    wait_ready(server.url, name, "1", timeout=120)
    data = rows.assign(row_id=range(len(rows)))
    if kind == "custom_pyfunc":
        # An empty text field reads as missing, which the signature's required column refuses.
        data["note"] = "-"
    data.to_csv(tmp_path / "rows.csv", index=False)
    out = run_shipyard(server, "predict", "--model", f"models:/{name}/1", "--input", str(tmp_path / "rows.csv"),
                       "--output", str(tmp_path / "scored.csv"), "--batch-size", "16", "--python", sys.executable)
    engine = "native" if ENGINES[kind][0] == "onnx-converted" else "python"
    assert f"{engine} engine" in out.stderr, out.stderr
    scored = pd.read_csv(tmp_path / "scored.csv", keep_default_na=False)
    assert list(scored["row_id"]) == list(range(len(rows)))
    got = scored["prediction"].tolist()
    same(got, want)


def test_gates_judge_a_python_model_on_its_own_engine(server, python_models, tmp_path):
    """`shipyard models validate` loads a Python version as serving does: the champion check
    scores both versions through their workers (equal to scikit-learn's own accuracy), and the
    latency check times the Python engine, as the version would be served."""
    from conftest import run_shipyard
    from sklearn.metrics import accuracy_score

    name, rows, want, uri = python_models["voting_with_missing"]
    wait_ready(server.url, name, "1", timeout=120)
    client = mlflow.MlflowClient(server.url)
    version = client.create_model_version(name, uri).version
    truth = (rows["a"].fillna(0) > 0.3).astype(int)
    rows.assign(y=truth).to_csv(tmp_path / "eval.csv", index=False)
    (tmp_path / "gates.yaml").write_text(
        "gates: 1\nevaluation: {target: y}\n"
        "latency: {max_p99_ms: 60000, sample_rows: 10, repeat: 30}\n"
        "champion: {metric: accuracy, tolerance: 0}\n"
        "signature: {}\n")
    out = run_shipyard(server, "models", "validate", f"models:/{name}/{version}", "--policy",
                       str(tmp_path / "gates.yaml"), "--data", str(tmp_path / "eval.csv"), "--format", "json",
                       "--python", sys.executable, timeout=600)
    report = json.loads(out.stdout)
    checks = {c["gate"]: c for c in report["checks"]}
    assert report["passed"], report
    assert checks["champion"]["observed"] == pytest.approx(accuracy_score(truth, want), abs=1e-12), checks
    assert "python engine" in checks["latency"]["detail"] and checks["latency"]["observed"] > 0, checks
    assert checks["latency"]["detail"].startswith("30 one-row predictions"), checks
    tags = client.get_model_version(name, version).tags
    assert tags["shipyard.engine"] == "python" and "kept ONNX conversion" in tags["shipyard.engine.reason"], tags


def test_a_version_whose_workers_crash_in_a_loop_fails_and_the_one_before_serves_again(server, tmp_path):
    """Five worker exits within a minute open the pool's breaker: the server reports the version
    failed, with the reason, and serves the version the alias held before it again."""
    mlflow.set_tracking_uri(server.url)
    client = mlflow.MlflowClient(server.url)
    name = f"py-crashing-{int(time.time() * 1000)}"
    example = pd.DataFrame({"x": [1.0, -1.0], "note": ["-", "-"]})
    with mlflow.start_run():
        signature = infer_signature(example, Labeller().predict(None, example))
        info = mlflow.pyfunc.log_model(name="model", python_model=Labeller(), signature=signature,
                                       input_example=example, registered_model_name=name,
                                       code_paths=[str(LABELLER)])
    client.set_registered_model_alias(name, "production", "1")
    wait_ready(server.url, name, "1", timeout=120)
    second = client.create_model_version(name, info.model_uri).version
    client.set_registered_model_alias(name, "production", second)

    def answer(x, note="-"):
        return post_json(f"{server.url}/predict/{name}", {"records": [{"x": x, "note": note}]})

    deadline = time.time() + 120
    while answer(1.0).json().get("version") != second:
        assert time.time() < deadline, "the second version never served"
        time.sleep(0.2)
    for i in range(5):
        r = answer(float(i), "exit")
        assert r.status_code == 503, r.text
    deadline = time.time() + 30
    while True:
        r = answer(2.5)
        if r.status_code == 200 and r.json()["version"] == "1":
            break
        assert time.time() < deadline, f"the first version did not serve again: {r.status_code} {r.text}"
        time.sleep(0.2)
    assert r.json()["predictions"] == ["positive"]


def test_a_registered_version_is_prepared_before_its_first_load(server, tmp_path):
    """Registering a scikit-learn version prepares it: the server converts and verifies it in the
    background (tagging the engine, keeping the conversion) with no alias set, and `shipyard
    models register --python` does the same in the command."""
    from conftest import run_shipyard
    from sklearn.linear_model import LogisticRegression

    mlflow.set_tracking_uri(server.url)
    client = mlflow.MlflowClient(server.url)
    name = f"py-prepared-{int(time.time() * 1000)}"
    train = frame(200)[["a", "b"]]
    model = LogisticRegression().fit(train, (train["a"] > 0).astype(int))
    with mlflow.start_run() as run:
        mlflow.sklearn.log_model(model, name="model", signature=infer_signature(train, model.predict(train)),
                                 input_example=train.head(3), serialization_format="cloudpickle",
                                 registered_model_name=name)
    deadline = time.time() + 120
    while "shipyard.engine" not in client.get_model_version(name, "1").tags:
        assert time.time() < deadline, "the server did not prepare the registered version"
        time.sleep(0.2)
    tags = client.get_model_version(name, "1").tags
    assert tags["shipyard.engine"] == "onnx-converted" and "verified on" in tags["shipyard.engine.reason"], tags
    out = run_shipyard(server, "models", "register", name, "--model-uri", f"runs:/{run.info.run_id}/model",
                       "--python", sys.executable, "--format", "json")
    registered = json.loads(out.stdout)
    assert registered["version"] == "2", registered
    # The files are the first version's: the conversion kept then is read and verified again.
    assert registered["engine"]["engine"] == "onnx-converted", registered
    assert registered["engine"]["reason"].startswith("kept ONNX conversion"), registered
    assert client.get_model_version(name, "2").tags["shipyard.engine"] == "onnx-converted"


def test_a_python_deployment_splits_logs_and_is_judged_by_its_monitor(server, python_models, tmp_path):
    """A canary deployment of two Python versions: traffic split between them, each answer the
    model's own, every request in the prediction log; with ground truth its monitor computes the
    accuracy of those answers, fires, and its action (zero the canary) takes effect."""
    from conftest import run_shipyard

    name, rows, want, uri = python_models["voting_with_missing"]
    wait_ready(server.url, name, "1", timeout=120)
    client = mlflow.MlflowClient(server.url)
    second = client.create_model_version(name, uri).version
    deployment = f"{name}-api"
    run_shipyard(server, "deploy", deployment, "--model", f"models:/{name}@production",
                 "--canary", f"models:/{name}/{second}", "--weight", "50")
    wait_ready(server.url, deployment, timeout=120)
    records = rows.to_dict(orient="records")
    served = []
    for i in range(60):
        r = post_json(f"{server.url}/predict/{deployment}", {"records": [records[i % len(records)]]})
        assert r.status_code == 200, r.text
        assert r.json()["predictions"] == [want[i % len(records)]]
        served.append((r.headers["x-request-id"], r.headers["x-model-version"], want[i % len(records)]))
    assert {v for _, v, _ in served} == {"1", second}

    train = frame(400)[["a", "b"]]
    train.assign(y=(train["a"] > 0.3).astype(int)).to_csv(tmp_path / "reference.csv", index=False)
    (tmp_path / "monitors.yaml").write_text(
        "monitors: 1\nwindow: {last: 1000}\n"
        f"reference: '{tmp_path / 'reference.csv'}'\ntarget: y\n"
        "rules:\n  - {name: low_accuracy, metric: accuracy, op: '<', threshold: 0.5, min_rows: 20, action: zero_canary}\n")
    run_shipyard(server, "monitor", "configure", "--deployment", deployment, "--config", str(tmp_path / "monitors.yaml"))
    # Every answer was wrong: the truth is the other label.
    truth = pd.DataFrame({"request_id": [rid for rid, _, _ in served], "actual": [1 - p for _, _, p in served]})
    truth.to_csv(tmp_path / "actuals.csv", index=False)
    deadline = time.time() + 30
    while run_shipyard(server, "monitor", "feedback", "--deployment", deployment, "--file",
                       str(tmp_path / "actuals.csv"), check=False).returncode != 0:
        assert time.time() < deadline, "the predictions never reached the log"
        time.sleep(0.5)
    out = run_shipyard(server, "monitor", "evaluate", "--deployment", deployment, "--format", "json", check=False)
    evaluation = json.loads(out.stdout)
    values = evaluation["windows"][0]["values"]
    assert values["labeled_rows"] == 60 and values["accuracy"] == 0.0, values
    [alert] = evaluation["alerts"]
    assert alert["rule"] == "low_accuracy" and alert["action_status"] == "succeeded", alert
    deadline = time.time() + 30
    while True:
        versions = {post_json(f"{server.url}/predict/{deployment}", {"records": [records[i]]})
                    .headers["x-model-version"] for i in range(20)}
        if versions == {"1"}:
            break
        assert time.time() < deadline, f"the canary still answers: {versions}"
        time.sleep(0.5)


def test_env_manager_uv_builds_the_models_environment_once(server, tmp_path):
    """`--env-manager uv` without `--python`: the model's environment is built by uv from the
    requirements MLflow logged with it, kept under its content key, and reused by the next load
    (measured: cold and warm start to the first answer, printed)."""
    from importlib import metadata

    mlflow.set_tracking_uri(server.url)
    name = f"py-uv-{int(time.time() * 1000)}"
    example = pd.DataFrame({"x": [1.0, -1.0], "note": ["-", "-"]})
    pins = [f"{p}=={metadata.version(p)}" for p in ("mlflow-skinny", "cloudpickle", "numpy", "pandas")]
    with mlflow.start_run():
        signature = infer_signature(example, Labeller().predict(None, example))
        info = mlflow.pyfunc.log_model(name="model", python_model=Labeller(), signature=signature,
                                       input_example=example, registered_model_name=name,
                                       code_paths=[str(LABELLER)], pip_requirements=pins)
    env = dict(os.environ, **server.env)
    env.pop("SHIPYARD_TRACKING_URI", None)
    uv = os.path.join(os.path.dirname(sys.executable), "uv")
    args = ["--model", f"models:/{name}/1", "--tracking-uri", server.url, "--env-manager", "uv", "--uv", uv,
            "--env-root", str(tmp_path / "envs")]
    rows = pd.DataFrame({"x": [2.0, -3.0, 0.5], "note": ["-", "-", "-"]})
    want = Labeller().predict(None, rows).tolist()
    took = []
    for attempt in ("cold", "warm"):
        started = time.time()
        proc, url = start_serving(args, tmp_path, env=env, timeout=900)
        try:
            r = post_json(f"{url}/predict/{name}", {"records": rows.to_dict(orient="records")})
            took.append(time.time() - started)
            assert r.status_code == 200, r.text
            assert r.json()["predictions"] == want
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
        # Built by the first load only; the second finds it kept.
        log = (tmp_path / f"serve-{url.rsplit(':', 1)[1]}.log").read_text()
        assert ("built the model's environment" in log) == (attempt == "cold"), log
    envs = [p for p in (tmp_path / "envs").iterdir() if p.name != "uv-cache"]
    assert len(envs) == 1, envs
    record = json.loads((envs[0] / "shipyard-env.json").read_text())
    assert record["python"].startswith("3.11") and any(l.startswith("mlflow-skinny==") for l in record["frozen"])
    print(f"--env-manager uv: start to first answer {took[0]:.1f} s cold (environment built), {took[1]:.1f} s warm")

    # A scikit-learn model (logged, not registered: nothing converted it yet) is converted in
    # its own environment, which gets skl2onnx beside the model's packages.
    from sklearn.linear_model import LogisticRegression

    train = frame(200)[["a", "b"]]
    model = LogisticRegression().fit(train, (train["a"] > 0).astype(int))
    pins += [f"{p}=={metadata.version(p)}" for p in ("scikit-learn", "scipy")]
    with mlflow.start_run() as run:
        mlflow.sklearn.log_model(model, name="model", signature=infer_signature(train, model.predict(train)),
                                 input_example=train.head(3), serialization_format="cloudpickle",
                                 pip_requirements=pins)
    args[1] = f"runs:/{run.info.run_id}/model"
    proc, url = start_serving(args, tmp_path, env=env, timeout=900)
    try:
        meta = requests.get(f"{url}/v2/models/model", timeout=10).json()
        assert meta["parameters"]["engine"] == "onnx-converted", meta
        r = post_json(f"{url}/predict/model", {"records": train.head(20).to_dict(orient="records")})
        assert r.status_code == 200 and r.json()["predictions"] == model.predict(train.head(20)).tolist(), r.text
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    frozen = [json.loads((p / "shipyard-env.json").read_text())["frozen"]
              for p in (tmp_path / "envs").iterdir() if p.name != "uv-cache"]
    assert any(any(l.startswith("skl2onnx==") for l in f) for f in frozen), frozen
