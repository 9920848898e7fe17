"""Models logged by the real `mlflow` client, served by Shipyard.

- `shipyard server` serves every registered model whose `production` alias is set: a model
  logged with `mlflow.onnx.log_model` answers at `/predict/{name}` and over the Open Inference
  Protocol to the official `tritonclient` (health, metadata, ready, infer with its default
  binary tensors), with onnxruntime's labels and probabilities under the graph's own output
  names, as Triton serves them; moving the alias moves the traffic to the new version.
- `shipyard serve --model models:/NAME/VERSION --tracking-uri http://...` is a replica: it
  fetches the model over HTTP and answers MLflow's `/invocations` as `mlflow models serve` does
  for the onnx flavor (the graph's outputs by name).
- `shipyard serve --model FILE.onnx`: `tritonclient` reads a classifier's `label` and
  `probabilities` and a regressor's `variable` by name, equal to onnxruntime's.
"""
import json
import os
import signal
import socket
import subprocess
import time

import numpy as np
import pytest
import requests

from conftest import REPO, run_shipyard
from test_inference import log_onnx, onnx_model  # noqa: F401  (a fixture)

pytestmark = pytest.mark.shipyard_only


def post_json(url, payload, headers=None):
    """POSTs `payload` as Python's json writes it: a missing float is a bare NaN, as pandas'
    users send it (requests' own `json=` refuses NaN)."""
    return requests.post(url, data=json.dumps(payload), headers={"Content-Type": "application/json", **(headers or {})})


def wait_ready(url, name, version=None, timeout=30):
    """Waits until the server serves `name` (at `version` when given); returns the metadata."""
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        r = requests.get(f"{url}/v2/models/{name}", timeout=5)
        last = r.text
        if r.status_code == 200 and (version is None or version in r.json()["versions"]):
            return r.json()
        time.sleep(0.1)
    raise AssertionError(f"{name} was not served within {timeout} s: {last}")


def test_production_alias_is_served_by_the_tracking_server(server, client, unique, onnx_model):
    import tritonclient.http as triton

    _, rows, _, labels, probabilities = onnx_model
    name, _ = log_onnx(client, unique, onnx_model)
    client.set_registered_model_alias(name, "production", "1")
    meta = wait_ready(server.url, name, "1")
    assert meta["platform"] == "onnx_onnxv1"
    assert [i["name"] for i in meta["inputs"]] == list(rows.columns)
    assert meta["outputs"] == [{"name": "label", "datatype": "INT64", "shape": [-1]},
                               {"name": "probabilities", "datatype": "FP32", "shape": [-1, 3]}], meta["outputs"]

    # The seed's protocol, records by column name.
    records = rows.head(20).to_dict(orient="records")
    r = post_json(f"{server.url}/predict/{name}", {"records": records}, {"x-request-id": "interop-1"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["predictions"] == labels[:20].tolist()
    np.testing.assert_allclose(body["probabilities"], probabilities[:20], atol=1e-5)
    assert (body["model"], body["version"], body["request_id"]) == (name, "1", "interop-1")
    assert r.headers["x-request-id"] == "interop-1"

    # The official Triton client, binary tensors (its default) in, JSON out.
    host = server.url.removeprefix("http://")
    tc = triton.InferenceServerClient(url=host)
    assert tc.is_server_live() and tc.is_server_ready()
    assert tc.is_model_ready(name) and tc.is_model_ready(name, "1")
    assert not tc.is_model_ready(name + "-absent")
    assert tc.get_model_metadata(name)["name"] == name
    x = rows.to_numpy(dtype=np.float32)[:50]
    inp = triton.InferInput("input", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    result = tc.infer(name, [inp], request_id="triton-1")
    assert result.get_response()["id"] == "triton-1"
    assert result.as_numpy("label").tolist() == labels[:50].tolist()
    assert result.as_numpy("label").dtype == np.int64
    np.testing.assert_allclose(result.as_numpy("probabilities"), probabilities[:50], atol=1e-5)
    # JSON tensors, one output asked for.
    inp = triton.InferInput("input", list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=False)
    result = tc.infer(name, [inp], outputs=[triton.InferRequestedOutput("label", binary_data=False)])
    assert result.as_numpy("label").tolist() == labels[:50].tolist()
    assert result.as_numpy("probabilities") is None
    # A client's mistake is an InferenceServerException with the server's message.
    bad = triton.InferInput("input", [2, 5], "FP32")
    bad.set_data_from_numpy(np.zeros((2, 5), dtype=np.float32))
    with pytest.raises(triton.InferenceServerException, match="5"):
        tc.infer(name, [bad])

    # Moving the alias moves the traffic.
    log_onnx_again = log_onnx(client, lambda _: name, onnx_model)
    assert log_onnx_again[0] == name
    client.set_registered_model_alias(name, "production", "2")
    wait_ready(server.url, name, "2")
    r = post_json(f"{server.url}/predict/{name}", {"records": records[:1]})
    assert r.json()["version"] == "2" and r.headers["x-model-version"] == "2"

    metrics = requests.get(f"{server.url}/metrics", timeout=5).text
    assert f'shipyard_inference_requests_total{{model="{name}",version="1",protocol="v2",code="200"}} 2' in metrics
    assert f'shipyard_model_loaded{{model="{name}",version="2"}} 1' in metrics


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_replica_answers_mlflows_scoring_protocol(server, client, unique, onnx_model, tmp_path):
    _, rows, _, labels, probabilities = onnx_model
    name, _ = log_onnx(client, unique, onnx_model)
    binary = os.environ.get("SHIPYARD_BIN", str(REPO / "target" / "release" / "shipyard"))
    port = free_port()
    env = dict(os.environ, **server.env)
    env.pop("SHIPYARD_TRACKING_URI", None)
    log = open(tmp_path / "serve.log", "w")
    proc = subprocess.Popen([binary, "serve", "--model", f"models:/{name}/1", "--tracking-uri", server.url,
                             "--port", str(port), "--home", str(tmp_path / "home")],
                            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 30
        while True:
            try:
                if requests.get(f"{url}/ping", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert proc.poll() is None, open(tmp_path / "serve.log").read()
            assert time.time() < deadline, "the replica did not start"
            time.sleep(0.05)
        split = rows.head(30).to_dict(orient="split")
        # The onnx flavor's answer: the graph's outputs by name; one record per row for
        # DataFrame input to a model with a column signature (where MLflow itself fails on a
        # classifier's per-class scores, Shipyard gives them as a list per row).
        for payload in [
            {"dataframe_split": {"columns": split["columns"], "data": split["data"]}},
            {"dataframe_records": rows.head(30).to_dict(orient="records")},
        ]:
            r = post_json(f"{url}/invocations", payload)
            assert r.status_code == 200, r.text
            got = r.json()["predictions"]
            assert [p["label"] for p in got] == labels[:30].tolist()
            np.testing.assert_allclose([p["probabilities"] for p in got], probabilities[:30], atol=1e-5)
        for payload in [
            {"instances": rows.head(30).to_dict(orient="records")},
            {"inputs": rows.head(30).to_dict(orient="list")},
        ]:
            r = post_json(f"{url}/invocations", payload)
            assert r.status_code == 200, r.text
            got = r.json()["predictions"]
            assert got["label"] == labels[:30].tolist()
            np.testing.assert_allclose(got["probabilities"], probabilities[:30], atol=1e-5)
        r = requests.post(f"{url}/invocations", data=rows.head(30).to_csv(index=False), headers={"Content-Type": "text/csv"})
        assert r.status_code == 200, r.text
        assert [p["label"] for p in r.json()["predictions"]] == labels[:30].tolist(), r.text
        r = requests.post(f"{url}/invocations", json={"dataframe_split": {"columns": ["c0"], "data": [[1.0]]}})
        assert r.status_code == 400 and r.json()["error_code"] == "INVALID_PARAMETER_VALUE", r.text
        assert "missing columns" in r.json()["message"]
        assert requests.get(f"{url}/version").text == "3.17.2"
        r = post_json(f"{url}/predict/{name}/1", {"data": split["data"][:2]})
        assert r.status_code == 200 and r.json()["predictions"] == labels[:2].tolist(), r.text
    finally:
        proc.terminate()
        proc.wait(20)


def test_versions_logged_by_mlflow_are_gated_promoted_deployed_and_rolled_back(server, client, unique, onnx_model, tmp_path):
    """The promotion commands on versions the mlflow client logged: the client sees the alias
    moves, its own alias changes are in the history, and a canary deployment of them answers
    the official Triton client under the deployment's name."""
    import tritonclient.http as triton

    _, rows, _, labels, _ = onnx_model
    name, run_id = log_onnx(client, unique, onnx_model)
    assert log_onnx(client, lambda _: name, onnx_model)[0] == name
    evaluation = rows.assign(y=labels)
    evaluation.to_csv(tmp_path / "eval.csv", index=False)
    policy = tmp_path / "gates.yaml"
    policy.write_text(
        "gates: 1\n"
        f"evaluation: {{data: '{tmp_path / 'eval.csv'}', target: y}}\n"
        "latency: {max_p99_ms: 1000, repeat: 100}\n"
        "champion: {metric: accuracy, tolerance: 0}\n"
        "signature: {}\n"
    )
    out = run_shipyard(server, "models", "promote", name, "--version", "1", "--policy", str(policy))
    assert "(unset) -> version 1 (promote" in out.stdout, out.stdout
    assert client.get_model_version_by_alias(name, "production").version == "1"
    # Drift needs a reference: mlflow's runs store no training profile, and the gate says so.
    drift = tmp_path / "drift.yaml"
    drift.write_text(f"gates: 1\nevaluation: {{data: '{tmp_path / 'eval.csv'}', target: y}}\ndrift: {{}}\n")
    out = run_shipyard(server, "models", "validate", f"models:/{name}/2", "--policy", str(drift), "--format", "json", check=False)
    assert out.returncode == 1, out.stderr
    assert "no training profile" in json.loads(out.stdout)["checks"][0]["detail"]

    deployment = name + "-api"
    run_shipyard(server, "deploy", deployment, "--model", f"models:/{name}@production",
                 "--canary", f"models:/{name}/2", "--weight", "50")
    wait_ready(server.url, deployment)
    tc = triton.InferenceServerClient(url=server.url.removeprefix("http://"))
    x = rows.to_numpy(dtype=np.float32)[:20]
    inp = triton.InferInput("input", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    assert tc.infer(deployment, [inp]).as_numpy("label").tolist() == labels[:20].tolist()
    versions = {post_json(f"{server.url}/predict/{deployment}", {"records": rows.head(1).to_dict(orient="records")})
                .headers["x-model-version"] for _ in range(60)}
    assert versions == {"1", "2"}, versions

    # Same model, same accuracy: version 2 passes a zero-tolerance champion gate.
    run_shipyard(server, "models", "promote", name, "--version", "2", "--policy", str(policy))
    assert client.get_model_version_by_alias(name, "production").version == "2"
    run_shipyard(server, "models", "rollback", name, "--reason", "interop")
    assert client.get_model_version_by_alias(name, "production").version == "1"
    client.set_registered_model_alias(name, "staging", "2")
    history = json.loads(run_shipyard(server, "models", "history", name, "--format", "json").stdout)
    assert [(m["alias"], m["kind"], m["actor"] == "mlflow-api") for m in history] == [
        ("production", "promote", False), ("production", "promote", False),
        ("production", "rollback", False), ("staging", "set", True),
    ]
    lineage = json.loads(run_shipyard(server, "lineage", f"models:/{name}@production", "--format", "json").stdout)
    assert lineage["run"]["run_id"] == run_id
    assert {d["role"] for d in lineage["deployments"]} == {"arm 50%"}


def start_serving(args, tmp_path, env=None, timeout=30):
    """`shipyard serve ARGS` on a free port, waited for (a process that does not start in time is
    stopped, not left behind); (process, url)."""
    binary = os.environ.get("SHIPYARD_BIN", str(REPO / "target" / "release" / "shipyard"))
    port = free_port()
    log = open(tmp_path / f"serve-{port}.log", "w")
    proc = subprocess.Popen([binary, "serve", *args, "--port", str(port), "--home", str(tmp_path / "home")],
                            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + timeout
    while True:
        try:
            if requests.get(f"{url}/ping", timeout=1).status_code == 200:
                return proc, url
        except requests.ConnectionError:
            pass
        if proc.poll() is not None or time.time() >= deadline:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
            raise AssertionError(f"shipyard serve did not start within {timeout} s:\n"
                                 + open(tmp_path / f"serve-{port}.log").read()[-3000:])
        time.sleep(0.05)


@pytest.mark.parametrize("model", ["gb_classifier_3class", "gb_regressor", "logreg_string_labels", "logreg_binary_zipmap"])
def test_tritonclient_reads_onnx_outputs_by_their_graph_names(model, tmp_path):
    """The same .onnx file answers Triton's client as Triton would: each graph output under its
    own name and type, equal to onnxruntime's (a ZipMap output as its [rows, classes] tensor)."""
    import onnxruntime as ort
    import tritonclient.http as triton

    path = REPO / "tests" / "interop" / "fixtures" / "onnx_models" / f"{model}.onnx"
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    x = np.random.default_rng(7).normal(size=(25, 4)).astype(np.float32) + 3.0
    expected = dict(zip([o.name for o in session.get_outputs()], session.run(None, {input_name: x})))
    proc, url = start_serving(["--model", str(path)], tmp_path)
    try:
        tc = triton.InferenceServerClient(url=url.removeprefix("http://"))
        meta = tc.get_model_metadata(model)
        assert [o["name"] for o in meta["outputs"]] == list(expected), meta
        inp = triton.InferInput(input_name, list(x.shape), "FP32")
        inp.set_data_from_numpy(x)
        result = tc.infer(model, [inp])
        for name, want in expected.items():
            got = result.as_numpy(name)
            assert got is not None, f"{name} missing from {result.get_response()}"
            if isinstance(want, list):  # ZipMap: a list of {class: score}
                keys = list(want[0])
                want = np.array([[row[k] for k in keys] for row in want], dtype=np.float32)
            if want.dtype.kind in "OUS":
                assert [v.decode() if isinstance(v, bytes) else v for v in got.reshape(-1)] == want.reshape(-1).tolist()
            elif want.dtype.kind in "iu":
                assert got.dtype == want.dtype and got.tolist() == want.tolist(), name
            else:
                assert got.shape == want.shape, (name, got.shape, want.shape)
                np.testing.assert_allclose(got, want, atol=1e-5)
        # One output asked for by name; an unknown name is refused, naming the ones there are.
        first = list(expected)[0]
        only = tc.infer(model, [inp], outputs=[triton.InferRequestedOutput(first, binary_data=False)])
        assert only.as_numpy(first) is not None and len(only.get_response()["outputs"]) == 1
        with pytest.raises(triton.InferenceServerException, match=first):
            tc.infer(model, [inp], outputs=[triton.InferRequestedOutput("predict_proba")])
    finally:
        proc.terminate()
        proc.wait(20)
