"""The seed article's pipeline, its code unchanged, against `shipyard server`.

`mlops_pipeline.py` is the article's code as written. The test chooses only what the article
leaves to its reader: the configuration (the server's address for both `mlflow_uri` and
`deployment_endpoint`) and the data (ten numeric features, as the article's deployment test sends
ten values; the model class passed as a class). It runs with the article's era of the `mlflow`
client (tests/seed/requirements.txt), which logs the model as a pickle; the server serves it with
Python workers of this same interpreter.

Checks: the pipeline succeeds; its deployment test (`POST /predict/{run_id}` with
`{"data": [[10 floats]]}`) got 200 and a prediction; Shipyard's answers equal the logged model's
own `predict` on 300 rows.

Environment: SHIPYARD_BIN (default target/release/shipyard).
"""
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
ARTICLE = REPO.parent / "shared" / "seed" / "000_de3126ab20d28e43.txt"

os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
os.environ["DO_NOT_TRACK"] = "true"


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("seed")
    port = _free_port()
    binary = os.environ.get("SHIPYARD_BIN", str(REPO / "target" / "release" / "shipyard"))
    log_path = workdir / "server.log"
    cmd = [binary, "server", "--backend-store-uri", f"sqlite:///{workdir}/shipyard.db",
           "--artifacts-destination", str(workdir / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
           "--python", sys.executable]
    proc = subprocess.Popen(cmd, stdout=open(log_path, "w"), stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while True:
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as r:
                if r.status == 200:
                    break
        except Exception:
            pass
        if proc.poll() is not None or time.time() > deadline:
            raise RuntimeError("the server did not start:\n" + log_path.read_text(errors="replace")[-3000:])
        time.sleep(0.05)
    yield url, workdir, log_path
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


# SHA-256 of the article's code block (lines 100-566 of the seed text, joined by newlines), taken
# from ../shared/seed/000_de3126ab20d28e43.txt on 2026-12-06: the copy is checked against it even
# where the article is not beside the repository (as in CI).
ARTICLE_CODE_SHA256 = "cdb78aec53c5dda18f7f642f2e6142a5d669f989b95ad8fd34b0b6246bbe2d35"


def test_the_copy_is_the_articles_code():
    import hashlib

    copy = "\n".join((HERE / "mlops_pipeline.py").read_text(encoding="utf-8").splitlines()[4:])
    assert hashlib.sha256(copy.encode()).hexdigest() == ARTICLE_CODE_SHA256
    if ARTICLE.exists():
        lines = ARTICLE.read_text(encoding="utf-8").splitlines()
        assert copy == "\n".join(lines[99:566])


def test_the_seed_pipeline_deploys_and_its_deployment_test_gets_a_prediction(server, monkeypatch):
    url, workdir, log_path = server
    # The deployer saves a joblib copy under ./models: keep it out of the repository.
    monkeypatch.chdir(workdir)
    sys.path.insert(0, str(HERE))
    import mlops_pipeline
    from sklearn.ensemble import RandomForestClassifier

    config = {
        "mlflow_uri": url,
        "deployment_endpoint": url,
        "min_accuracy": 0.8,
        "max_inference_time": 0.1,
        "alert_thresholds": {"min_accuracy": 0.8, "max_drift": 0.1},
    }
    rng = np.random.default_rng(0)
    features = rng.random((1000, 10))
    data = pd.DataFrame(features, columns=[f"feature_{i + 1}" for i in range(10)])
    data["target"] = (data["feature_1"] + data["feature_2"] - data["feature_3"] > 0.5).astype(int)

    pipeline = mlops_pipeline.MLOpsPipeline(config)
    result = pipeline.run_pipeline(data, "target", RandomForestClassifier, n_estimators=50, random_state=0)

    log = lambda: log_path.read_text(errors="replace")[-4000:]
    assert result["success"], (result, log())
    deployment = result["deployment_result"]
    test = deployment["test_result"]
    assert test["success"], (test, log())
    run_id = result["model_version"]
    assert deployment["endpoint"] == f"{url}/predict/{run_id}"
    prediction = test["prediction"]
    assert prediction["predictions"][0] in (0, 1), prediction

    # Shipyard's answers equal the logged model's own.
    import mlflow.sklearn

    model = mlflow.sklearn.load_model(f"runs:/{run_id}/model")
    rows = pd.DataFrame(rng.random((300, 10)), columns=data.columns[:10])
    answer = requests.post(f"{url}/predict/{run_id}", json={"data": rows.to_numpy().tolist()}, timeout=60)
    assert answer.status_code == 200, answer.text
    assert answer.json()["predictions"] == model.predict(rows).tolist()
    # By name too, in any column order.
    records = rows.iloc[:, ::-1].to_dict(orient="records")
    answer = requests.post(f"{url}/predict/{run_id}", json={"records": records}, timeout=60)
    assert answer.status_code == 200, answer.text
    assert answer.json()["predictions"] == model.predict(rows).tolist()


def test_a_run_without_a_model_is_a_clear_404(server):
    url, _, _ = server
    answer = requests.post(f"{url}/predict/{'0' * 32}", json={"data": [[0.0] * 10]}, timeout=30)
    assert answer.status_code == 404, answer.text
    assert "0" * 32 in answer.json()["error"]
