"""Bad input straight at the REST API: malformed bodies, wrong types, size limits, path traversal.

Every answer must be a 4xx with a JSON error naming the problem: never a 5xx for a client's mistake,
never a byte read or written outside the artifact root. Requests go out through http.client so that
paths are sent exactly as written (no client-side normalisation of `..`).
"""
import http.client
import json
import os
from urllib.parse import urlparse

import pytest


def raw(server, method, path, body=None, headers=None):
    u = urlparse(server.url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    try:
        try:
            conn.request(method, path, body=body, headers=headers or {})
        except (BrokenPipeError, ConnectionResetError):
            # The server answered (a 413) and closed before the whole body was sent, as it may:
            # its answer is waiting to be read.
            pass
        r = conn.getresponse()
        return r.status, r.read(), dict(r.getheaders())
    finally:
        conn.close()


def error_of(body):
    payload = json.loads(body)
    assert "error_code" in payload and "message" in payload, payload
    return payload


API = "/api/2.0/mlflow"


def test_malformed_json(server):
    status, body, _ = raw(server, "POST", f"{API}/experiments/create", b'{"name": ', {"Content-Type": "application/json"})
    assert status == 400
    assert error_of(body)["error_code"] in ("INVALID_PARAMETER_VALUE", "BAD_REQUEST", "MALFORMED_REQUEST")


def test_json_that_is_not_an_object(server):
    status, body, _ = raw(server, "POST", f"{API}/runs/create", b"[1, 2]", {"Content-Type": "application/json"})
    assert status == 400
    error_of(body)


def test_missing_required_field_names_it(server):
    status, body, _ = raw(server, "POST", f"{API}/experiments/create", b"{}", {"Content-Type": "application/json"})
    assert status == 400
    err = error_of(body)
    assert err["error_code"] == "INVALID_PARAMETER_VALUE"
    assert "name" in err["message"]


def test_wrong_field_type(server):
    body = json.dumps({"experiment_id": "0", "start_time": "yesterday"}).encode()
    status, resp, _ = raw(server, "POST", f"{API}/runs/create", body, {"Content-Type": "application/json"})
    assert status == 400
    assert error_of(resp)["error_code"] == "INVALID_PARAMETER_VALUE"


@pytest.mark.shipyard_only
def test_wrong_field_type_message_names_the_field(server):
    body = json.dumps({"experiment_id": "0", "start_time": "yesterday"}).encode()
    _, resp, _ = raw(server, "POST", f"{API}/runs/create", body, {"Content-Type": "application/json"})
    assert "start_time" in error_of(resp)["message"]


def test_invalid_metric_value(server, client, experiment):
    rid = client.create_run(experiment).info.run_id
    body = json.dumps({"run_id": rid, "key": "m", "value": "not-a-number", "timestamp": 1}).encode()
    status, resp, _ = raw(server, "POST", f"{API}/runs/log-metric", body, {"Content-Type": "application/json"})
    assert status == 400
    assert error_of(resp)["error_code"] == "INVALID_PARAMETER_VALUE"


@pytest.mark.shipyard_only
def test_invalid_utf8(server):
    status, body, _ = raw(server, "POST", f"{API}/experiments/create", b'{"name": "\xff\xfe"}',
                          {"Content-Type": "application/json"})
    assert status == 400
    assert "UTF-8" in error_of(body)["message"]


@pytest.mark.shipyard_only
def test_body_over_the_limit_is_413(server, client, experiment):
    rid = client.create_run(experiment).info.run_id
    huge = json.dumps({"run_id": rid, "tags": [{"key": "big", "value": "x" * (9 * 1024 * 1024)}]}).encode()
    status, body, _ = raw(server, "POST", f"{API}/runs/log-batch", huge, {"Content-Type": "application/json"})
    assert status == 413
    assert error_of(body)["error_code"] == "REQUEST_LIMIT_EXCEEDED"
    assert "big" not in client.get_run(rid).data.tags


def test_unknown_endpoint_is_404(server):
    status, _, _ = raw(server, "GET", f"{API}/no/such/thing")
    assert status == 404


def test_health_and_version(server):
    status, body, _ = raw(server, "GET", "/health")
    assert status == 200 and body.strip() == b"OK"
    status, body, _ = raw(server, "GET", "/version")
    assert status == 200 and body.strip()


TRAVERSALS = [
    "../../../sentinel.txt",
    "0/../../sentinel.txt",
    "%2e%2e/%2e%2e/sentinel.txt",
    "%2E%2E%2F%2E%2E%2Fsentinel.txt",
    "%252e%252e/%252e%252e/sentinel.txt",
    "..%5c..%5csentinel.txt",
    "0/%00/x.txt",
    "/etc/passwd",
    "%2Fetc%2Fpasswd",
]


@pytest.fixture
def sentinel(artifact_root):
    """A file next to the artifact root that no request may read, write or delete."""
    artifact_root.mkdir(parents=True, exist_ok=True)
    path = artifact_root.parent / "sentinel.txt"
    path.write_text("secret")
    yield path
    assert path.read_text() == "secret"


@pytest.mark.shipyard_only
@pytest.mark.parametrize("evil", TRAVERSALS)
def test_traversal_is_refused_for_every_verb(server, sentinel, evil):
    base = "/api/2.0/mlflow-artifacts/artifacts/"
    for method, body in [("GET", None), ("PUT", b"pwned"), ("DELETE", None)]:
        status, resp, _ = raw(server, method, base + evil, body)
        assert 400 <= status < 500, (method, evil, status, resp[:200])
        assert b"secret" not in resp
    status, resp, _ = raw(server, "GET", f"{base[:-1]}?path={evil}")
    assert 400 <= status < 500 or (status == 200 and b"sentinel" not in resp), (evil, status, resp[:200])
    status, resp, _ = raw(server, "GET", f"{API}/artifacts/list?run_id=x&path={evil}")
    assert 400 <= status < 500, (evil, status)
    assert not any(p.name == "pwned" for p in sentinel.parent.rglob("*"))


@pytest.mark.shipyard_only
def test_symlink_out_of_the_root_is_refused(server, sentinel, artifact_root):
    link = artifact_root / "escape"
    if not link.exists():
        os.symlink(sentinel.parent, link)
    status, resp, _ = raw(server, "GET", "/api/2.0/mlflow-artifacts/artifacts/escape/sentinel.txt")
    assert status == 400 and b"secret" not in resp
    status, _, _ = raw(server, "PUT", "/api/2.0/mlflow-artifacts/artifacts/escape/new.txt", b"x")
    assert status == 400
    assert not (sentinel.parent / "new.txt").exists()


@pytest.mark.shipyard_only
@pytest.mark.parametrize("source", ["/etc/passwd", "file:///etc/passwd", "relative/path", "runs:/abc/../../etc",
                                    "mlflow-artifacts:/0/%2e%2e/%2e%2e/x"])
def test_model_version_source_cannot_point_at_the_server(client, unique, source):
    from mlflow.exceptions import MlflowException

    name = unique("src")
    client.create_registered_model(name)
    with pytest.raises(MlflowException) as e:
        client.create_model_version(name, source)
    assert e.value.error_code == "INVALID_PARAMETER_VALUE"
