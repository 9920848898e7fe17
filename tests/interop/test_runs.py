"""Runs and what they log, through the fluent API and MlflowClient."""
import math
import threading
import time

import mlflow
import pandas as pd
import pytest
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException


def test_start_run_log_and_read_back(client, experiment):
    with mlflow.start_run(run_name="parent", tags={"team": "t1"}) as run:
        mlflow.log_param("model", "rf")
        mlflow.log_params({"n_estimators": 10, "max_depth": 4})
        for step, loss in enumerate([1.0, 0.5, 0.25]):
            mlflow.log_metric("loss", loss, step=step)
        mlflow.log_metrics({"acc": 0.91, "f1": 0.88})
        mlflow.set_tag("stage", "dev")
        mlflow.set_tags({"a": "1", "b": "2"})
        run_id = run.info.run_id
    got = client.get_run(run_id)
    assert got.info.status == "FINISHED"
    assert got.info.run_name == "parent"
    assert got.info.end_time >= got.info.start_time
    assert got.info.artifact_uri == f"mlflow-artifacts:/{experiment}/{run_id}/artifacts"
    assert got.data.params == {"model": "rf", "n_estimators": "10", "max_depth": "4"}
    assert got.data.metrics == {"loss": 0.25, "acc": 0.91, "f1": 0.88}
    tags = got.data.tags
    assert tags["team"] == "t1" and tags["stage"] == "dev" and tags["a"] == "1" and tags["b"] == "2"
    assert tags["mlflow.runName"] == "parent"
    history = client.get_metric_history(run_id, "loss")
    assert [(m.step, m.value) for m in history] == [(0, 1.0), (1, 0.5), (2, 0.25)]
    assert all(m.timestamp > 0 for m in history)


def test_nested_runs(client, experiment):
    with mlflow.start_run(run_name="outer") as outer:
        with mlflow.start_run(run_name="inner", nested=True) as inner:
            mlflow.log_metric("x", 1.0)
    child = client.get_run(inner.info.run_id)
    assert child.data.tags["mlflow.parentRunId"] == outer.info.run_id
    found = client.search_runs([experiment], f"tags.mlflow.parentRunId = '{outer.info.run_id}'")
    assert [r.info.run_id for r in found] == [inner.info.run_id]


def test_latest_metric_is_greatest_step_then_timestamp(client, experiment):
    run = client.create_run(experiment)
    rid = run.info.run_id
    client.log_metric(rid, "m", 5.0, timestamp=1000, step=3)
    client.log_metric(rid, "m", 7.0, timestamp=500, step=4)
    client.log_metric(rid, "m", 9.0, timestamp=2000, step=1)
    assert client.get_run(rid).data.metrics["m"] == 7.0
    client.log_metric(rid, "m", 1.0, timestamp=600, step=4)
    assert client.get_run(rid).data.metrics["m"] == 1.0


def test_nan_and_infinite_values(client, experiment):
    rid = client.create_run(experiment).info.run_id
    client.log_metric(rid, "nan", float("nan"))
    client.log_metric(rid, "pinf", float("inf"))
    client.log_metric(rid, "ninf", float("-inf"))
    metrics = client.get_run(rid).data.metrics
    assert math.isnan(metrics["nan"])
    # SQL cannot hold infinities: MLflow stores the largest finite doubles, and so do we.
    assert metrics["pinf"] == 1.7976931348623157e308
    assert metrics["ninf"] == -1.7976931348623157e308
    assert math.isnan(client.get_metric_history(rid, "nan")[0].value)


def test_log_batch_thousand_metrics_params_tags(client, experiment):
    rid = client.create_run(experiment).info.run_id
    ts = int(time.time() * 1000)
    metrics = [Metric(f"k{i % 10}", float(i), ts + i, i // 10) for i in range(1000)]
    client.log_batch(rid, metrics=metrics)
    client.log_batch(rid, params=[Param(f"p{i}", str(i)) for i in range(100)],
                     tags=[RunTag(f"t{i}", str(i)) for i in range(50)])
    run = client.get_run(rid)
    assert len(run.data.params) == 100 and run.data.params["p42"] == "42"
    assert run.data.tags["t7"] == "7"
    assert run.data.metrics["k3"] == 993.0
    history = client.get_metric_history(rid, "k3")
    assert len(history) == 100
    assert [m.value for m in history] == [float(i) for i in range(3, 1000, 10)]


def test_update_delete_restore_and_delete_tag(client, experiment):
    rid = client.create_run(experiment, run_name="before").info.run_id
    client.set_tag(rid, "temp", "x")
    client.delete_tag(rid, "temp")
    assert "temp" not in client.get_run(rid).data.tags
    client.update_run(rid, status="KILLED", name="after")
    info = client.get_run(rid).info
    assert info.status == "KILLED" and info.run_name == "after"
    assert client.get_run(rid).data.tags["mlflow.runName"] == "after"
    client.set_terminated(rid, status="FAILED")
    assert client.get_run(rid).info.status == "FAILED"
    client.delete_run(rid)
    assert client.get_run(rid).info.lifecycle_stage == "deleted"
    with pytest.raises(MlflowException) as e:
        client.log_param(rid, "p", "v")
    assert e.value.error_code == "INVALID_PARAMETER_VALUE"
    client.restore_run(rid)
    assert client.get_run(rid).info.lifecycle_stage == "active"
    client.log_param(rid, "p", "v")


def test_param_values_cannot_change(client, experiment):
    rid = client.create_run(experiment).info.run_id
    client.log_param(rid, "lr", "0.1")
    client.log_param(rid, "lr", "0.1")
    with pytest.raises(MlflowException) as e:
        client.log_param(rid, "lr", "0.2")
    assert e.value.error_code == "INVALID_PARAMETER_VALUE"
    assert client.get_run(rid).data.params["lr"] == "0.1"


def test_log_input_dataset(client, experiment):
    df = pd.DataFrame({"f0": [0.1, 0.2, 0.3], "f1": [1.0, 2.0, 3.0], "y": [0, 1, 0]})
    dataset = mlflow.data.from_pandas(df, source="/data/train.csv", name="train3", targets="y")
    with mlflow.start_run() as run:
        mlflow.log_input(dataset, context="training", tags={"split": "train"})
    inputs = client.get_run(run.info.run_id).inputs.dataset_inputs
    assert len(inputs) == 1
    d = inputs[0].dataset
    assert d.name == "train3" and d.digest == dataset.digest and d.source_type == "local"
    assert '"f0"' in d.schema and '"num_rows": 3' in d.profile
    tags = {t.key: t.value for t in inputs[0].tags}
    assert tags == {"mlflow.data.context": "training", "split": "train"}
    found = client.search_runs([experiment], "dataset.name = 'train3' AND dataset.context = 'training'")
    assert [r.info.run_id for r in found] == [run.info.run_id]


def test_missing_run_is_resource_does_not_exist(client):
    with pytest.raises(MlflowException) as e:
        client.get_run("0" * 32)
    assert e.value.error_code == "RESOURCE_DOES_NOT_EXIST"


def test_concurrent_writers_to_one_run_lose_nothing(client, experiment):
    rid = client.create_run(experiment).info.run_id
    errors = []

    def writer(w):
        try:
            from mlflow import MlflowClient

            c = MlflowClient(client.tracking_uri)
            for i in range(200):
                c.log_metric(rid, "shared", float(w * 1000 + i), timestamp=1000 * w + i, step=i)
            c.log_param(rid, f"p{w}", str(w))
            c.set_tag(rid, f"t{w}", str(w))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    history = client.get_metric_history(rid, "shared")
    assert len(history) == 1600
    assert sorted(m.value for m in history) == sorted(float(w * 1000 + i) for w in range(8) for i in range(200))
    run = client.get_run(rid)
    assert all(run.data.params[f"p{w}"] == str(w) and run.data.tags[f"t{w}"] == str(w) for w in range(8))
