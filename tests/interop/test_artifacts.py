"""Artifacts through the proxied artifact API: upload, list, download, delete."""
import hashlib
import os

import mlflow
import pytest
import requests


def sha(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def test_round_trip_text_binary_nested(client, experiment, tmp_path):
    src = tmp_path / "src"
    (src / "sub" / "deeper").mkdir(parents=True)
    (src / "a.txt").write_text("hello artifact\n")
    (src / "sub" / "b.json").write_text('{"p": 1}')
    (src / "sub" / "deeper" / "c.bin").write_bytes(os.urandom(4096))
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(12 * 1024 * 1024 + 17))  # over one 5 MiB upload part, twice
    with mlflow.start_run() as run:
        mlflow.log_artifact(str(src / "a.txt"))
        mlflow.log_artifacts(str(src), artifact_path="folder")
        mlflow.log_artifact(str(big), artifact_path="blobs")
        mlflow.log_dict({"a": 1, "b": [1, 2]}, "config/params.json")
        mlflow.log_text("some text", "notes/readme.md")
    rid = run.info.run_id

    root = {f.path: f for f in client.list_artifacts(rid)}
    assert set(root) == {"a.txt", "folder", "blobs", "config", "notes"}
    assert root["a.txt"].file_size == len("hello artifact\n") and not root["a.txt"].is_dir
    assert root["folder"].is_dir and root["folder"].file_size is None
    sub = {f.path: f for f in client.list_artifacts(rid, "folder/sub")}
    assert set(sub) == {"folder/sub/b.json", "folder/sub/deeper"}

    out = tmp_path / "out"
    local = mlflow.artifacts.download_artifacts(run_id=rid, artifact_path="folder", dst_path=str(out))
    assert open(os.path.join(local, "a.txt")).read() == "hello artifact\n"
    assert sha(os.path.join(local, "sub", "deeper", "c.bin")) == sha(src / "sub" / "deeper" / "c.bin")
    big_local = mlflow.artifacts.download_artifacts(run_id=rid, artifact_path="blobs/big.bin", dst_path=str(out / "b"))
    assert sha(big_local) == sha(big)
    assert mlflow.artifacts.load_dict(f"runs:/{rid}/config/params.json") == {"a": 1, "b": [1, 2]}
    assert mlflow.artifacts.load_text(f"runs:/{rid}/notes/readme.md") == "some text"


def test_listing_a_missing_folder_is_empty(client, experiment):
    with mlflow.start_run() as run:
        mlflow.log_text("x", "present.txt")
    assert client.list_artifacts(run.info.run_id, "no/such/folder") == []


def test_delete_through_the_rest_endpoint(client, experiment, server, artifact_root):
    with mlflow.start_run() as run:
        mlflow.log_text("doomed", "trash/one.txt")
        mlflow.log_text("kept", "keep.txt")
    rid = run.info.run_id
    base = f"{server.url}/api/2.0/mlflow-artifacts/artifacts/{experiment}/{rid}/artifacts"
    assert requests.get(f"{base}/trash/one.txt").text == "doomed"
    r = requests.delete(f"{base}/trash")
    assert r.status_code == 200
    assert requests.get(f"{base}/trash/one.txt").status_code == 404
    assert [f.path for f in client.list_artifacts(rid)] == ["keep.txt"]
    if artifact_root is not None:  # a local root: the file is where MLflow would put it
        assert (artifact_root / experiment / rid / "artifacts" / "keep.txt").read_text() == "kept"


def _download_page(server, experiment):
    with mlflow.start_run() as run:
        mlflow.log_text("<script>alert(1)</script>", "page.html")
    r = requests.get(
        f"{server.url}/api/2.0/mlflow-artifacts/artifacts/{experiment}/{run.info.run_id}/artifacts/page.html"
    )
    assert r.status_code == 200
    assert r.text == "<script>alert(1)</script>"
    return r


def test_download_headers(server, experiment):
    r = _download_page(server, experiment)
    assert r.headers.get("X-Content-Type-Options") == "nosniff"


@pytest.mark.shipyard_only
def test_markup_is_served_as_plain_text(server, experiment):
    # MLflow sends text/html (as an attachment); Shipyard sends markup as text/plain.
    r = _download_page(server, experiment)
    assert r.headers["Content-Type"].startswith("text/plain")
    assert r.headers["Content-Disposition"].startswith("attachment")
