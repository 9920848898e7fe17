"""`shipyard pipeline run` against the session server's store (SQLite or PostgreSQL), read back by
the mlflow client: a parent run with one child run per step, the candidates as children of the
train step, the registered version with `production`, and a second run that reuses every step
but the smoke test. The smoke test calls the session server, which serves the new deployment.
"""
import json

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from conftest import run_shipyard

pytestmark = pytest.mark.shipyard_only


def churn_table(path, rows, seed):
    rng = np.random.default_rng(seed)
    tenure = rng.uniform(0, 60, size=rows)
    charges = rng.uniform(20, 120, size=rows)
    contract = rng.choice(["monthly", "yearly"], size=rows)
    score = 0.04 * (charges - 70) - 0.05 * (tenure - 30) + np.where(contract == "monthly", 0.8, -0.8)
    churned = np.where(score + rng.normal(scale=0.5, size=rows) > 0, "yes", "no")
    pd.DataFrame({"tenure": tenure, "charges": charges, "contract": contract, "churned": churned}).to_csv(path, index=False)


def test_a_pipeline_is_a_tree_of_runs_the_client_reads(server, tmp_path, unique):
    name = unique("pl")
    churn_table(tmp_path / "train.csv", 1200, 1)
    churn_table(tmp_path / "eval.csv", 300, 2)
    spec = f"""pipeline: 1
name: {name}
config:
  deployment_endpoint: {server.url}
  min_accuracy: 0.6
  max_inference_time: 0.1
steps:
  - validate: {{data: train.csv, dataset: {name}}}
  - train:
      data: ${{validate.data}}
      target: churned
      candidates: [{{model: logistic_regression}}, {{model: decision_tree, params: {{max_depth: 4}}}}]
  - register: {{model: '${{train.model_uri}}', name: {name}}}
  - gate: {{model: '${{register.model_uri}}', data: eval.csv, target: churned}}
  - promote: {{model: '${{register.model_uri}}'}}
    needs: [gate]
  - deploy: {{deployment: {name}, model: 'models:/{name}@production'}}
    needs: [promote]
  - smoke_test: {{deployment: '${{deploy.deployment}}', data: eval.csv, drop: [churned]}}
  - monitor: {{deployment: '${{deploy.deployment}}', target: churned}}
"""
    (tmp_path / "pipeline.yaml").write_text(spec)
    out = run_shipyard(server, "pipeline", "run", str(tmp_path / "pipeline.yaml"), "--format", "json")
    summary = json.loads(out.stdout)
    assert summary["success"], summary
    assert summary["model_version"] == f"{name}/1"
    assert summary["deployment_result"]["smoke_test"]["rows"] == 5

    client = MlflowClient()
    parent = client.get_run(summary["run_id"])
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["shipyard.pipeline"] == name
    assert parent.data.params["min_accuracy"] == "0.6"
    experiment = client.get_experiment(parent.info.experiment_id)
    assert experiment.name == f"pipeline-{name}"
    steps = client.search_runs([experiment.experiment_id], f"tags.mlflow.parentRunId = '{summary['run_id']}'",
                               order_by=["attributes.start_time ASC"])
    assert [r.data.tags["shipyard.pipeline.step"] for r in steps] == \
        ["validate", "train", "register", "gate", "promote", "deploy", "smoke_test", "monitor"]
    assert all(r.info.status == "FINISHED" for r in steps)
    train = next(r for r in steps if r.data.tags["shipyard.pipeline.step"] == "train")
    outputs = json.loads(train.data.tags["shipyard.pipeline.outputs"])
    assert train.data.metrics["score"] == outputs["score"]
    candidates = client.search_runs([experiment.experiment_id], f"tags.mlflow.parentRunId = '{train.info.run_id}'")
    assert sorted(r.data.params["model"] for r in candidates) == ["decision_tree", "logistic_regression"]
    assert outputs["run_id"] in {r.info.run_id for r in candidates}
    # The step's log and inputs are artifacts of its run.
    names = {a.path for a in client.list_artifacts(train.info.run_id, "step")}
    assert {"step/inputs.json", "step/log.txt"} <= names
    version = client.get_model_version_by_alias(name, "production")
    assert version.version == "1" and version.run_id == outputs["run_id"]

    # Unchanged: every step but the smoke test is reused; nothing new is registered.
    again = json.loads(run_shipyard(server, "pipeline", "run", str(tmp_path / "pipeline.yaml"),
                                    "--format", "json").stdout)
    assert again["success"], again
    assert [s["name"] for s in again["steps"] if not s["cached"]] == ["smoke_test"]
    assert len(client.search_model_versions(f"name = '{name}'")) == 1
    status = json.loads(run_shipyard(server, "pipeline", "status", again["run_id"], "--format", "json").stdout)
    assert status["steps"] == again["steps"]
