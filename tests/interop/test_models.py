"""MLflow 3 logged models and the model registry, end to end with a real scikit-learn model."""
import time

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature
from sklearn.linear_model import LogisticRegression

from conftest import model_name_arg


@pytest.fixture(scope="module")
def logged(server):
    """One model logged with mlflow.sklearn.log_model: (experiment_id, run_id, model_info, X, model)."""
    from mlflow import MlflowClient

    client = MlflowClient(server.url)
    mlflow.set_tracking_uri(server.url)
    exp = client.create_experiment(f"models-{time.time_ns()}")
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(200, 4)), columns=["f0", "f1", "f2", "f3"])
    y = (X["f0"] + X["f1"] > 0).astype(int)
    model = LogisticRegression().fit(X, y)
    with mlflow.start_run(experiment_id=exp) as run:
        mlflow.log_param("C", 1.0)
        mlflow.log_metric("accuracy", float(model.score(X, y)))
        info = mlflow.sklearn.log_model(
            model,
            **model_name_arg(),
            signature=infer_signature(X, model.predict(X)),
            input_example=X.head(3),
            serialization_format="cloudpickle",
        )
    return exp, run.info.run_id, info, X, model


@pytest.mark.mlflow3
def test_logged_model_entity(client, logged):
    exp, run_id, info, _, _ = logged
    assert info.model_id.startswith("m-")
    lm = client.get_logged_model(info.model_id)
    assert lm.status == "LOGGED_MODEL_READY" or str(lm.status).endswith("READY")
    assert lm.name == "model" and lm.experiment_id == exp and lm.source_run_id == run_id
    assert lm.artifact_location == f"mlflow-artifacts:/{exp}/models/{info.model_id}/artifacts"
    assert lm.params == {"C": "1.0"}
    assert {m.key for m in lm.metrics} == {"accuracy"}
    assert all(m.model_id == info.model_id for m in lm.metrics)
    run = client.get_run(run_id)
    assert [o.model_id for o in run.outputs.model_outputs] == [info.model_id]


@pytest.mark.mlflow3
def test_logged_model_tags_and_search(client, logged):
    exp, run_id, info, _, _ = logged
    client.set_logged_model_tags(info.model_id, {"quality": "gold", "temp": "1"})
    client.delete_logged_model_tag(info.model_id, "temp")
    assert client.get_logged_model(info.model_id).tags.get("quality") == "gold"
    assert "temp" not in client.get_logged_model(info.model_id).tags
    found = client.search_logged_models(experiment_ids=[exp], filter_string="name = 'model'")
    assert [m.model_id for m in found] == [info.model_id]
    none = client.search_logged_models(experiment_ids=[exp], filter_string="metrics.accuracy > 2")
    assert list(none) == []


@pytest.mark.parametrize("uri_kind", ["model_id", "runs"])
def test_pyfunc_load_model(logged, uri_kind):
    _, run_id, info, X, model = logged
    uri = info.model_uri if uri_kind == "model_id" else f"runs:/{run_id}/model"
    loaded = mlflow.pyfunc.load_model(uri)
    assert list(loaded.predict(X.head(20))) == list(model.predict(X.head(20)))


@pytest.mark.mlflow3  # the 2.x client registers the resolved artifact location as the source
def test_registry_flow(client, logged, unique):
    _, run_id, info, X, model = logged
    name = unique("clf")
    mv = mlflow.register_model(info.model_uri, name)
    assert mv.version == "1" and mv.run_id == run_id and mv.source == info.model_uri
    mv2 = mlflow.register_model(f"runs:/{run_id}/model", name)
    assert mv2.version == "2"
    assert client.get_model_version_download_uri(name, "1") == info.artifact_path

    client.set_registered_model_alias(name, "champion", "1")
    by_alias = client.get_model_version_by_alias(name, "champion")
    assert by_alias.version == "1" and by_alias.aliases == ["champion"]
    loaded = mlflow.pyfunc.load_model(f"models:/{name}@champion")
    assert list(loaded.predict(X.head(10))) == list(model.predict(X.head(10)))
    loaded_v = mlflow.pyfunc.load_model(f"models:/{name}/1")
    assert list(loaded_v.predict(X.head(10))) == list(model.predict(X.head(10)))
    assert client.get_registered_model(name).aliases == {"champion": "1"}
    client.set_registered_model_alias(name, "champion", "2")
    assert client.get_model_version_by_alias(name, "champion").version == "2"
    client.delete_registered_model_alias(name, "champion")
    with pytest.raises(MlflowException):
        client.get_model_version_by_alias(name, "champion")

    client.transition_model_version_stage(name, "1", "Production")
    client.transition_model_version_stage(name, "2", "Production", archive_existing_versions=True)
    assert client.get_model_version(name, "1").current_stage == "Archived"
    latest = client.get_latest_versions(name, stages=["Production"])
    assert [v.version for v in latest] == ["2"]

    client.update_model_version(name, "1", description="first")
    assert client.get_model_version(name, "1").description == "first"
    client.set_model_version_tag(name, "1", "validated", "yes")
    assert client.get_model_version(name, "1").tags == {"validated": "yes"}
    client.delete_model_version_tag(name, "1", "validated")
    assert client.get_model_version(name, "1").tags == {}

    versions = client.search_model_versions(f"name = '{name}'")
    assert sorted(v.version for v in versions) == ["1", "2"]
    assert [v.version for v in client.search_model_versions(f"name = '{name}' AND run_id = '{run_id}'")] != []

    client.delete_model_version(name, "1")
    with pytest.raises(MlflowException) as e:
        client.get_model_version(name, "1")
    assert e.value.error_code == "RESOURCE_DOES_NOT_EXIST"


def test_registered_model_crud_and_search(client, unique):
    prefix = unique("reg")
    client.create_registered_model(f"{prefix}-a", tags={"team": "x"}, description="first")
    with pytest.raises(MlflowException) as e:
        client.create_registered_model(f"{prefix}-a")
    assert e.value.error_code == "RESOURCE_ALREADY_EXISTS"
    client.create_registered_model(f"{prefix}-b")
    client.create_registered_model(f"{prefix}-c")
    rm = client.get_registered_model(f"{prefix}-a")
    assert rm.description == "first" and rm.tags == {"team": "x"}
    client.update_registered_model(f"{prefix}-a", description="updated")
    assert client.get_registered_model(f"{prefix}-a").description == "updated"
    client.set_registered_model_tag(f"{prefix}-b", "stage", "beta")
    client.delete_registered_model_tag(f"{prefix}-a", "team")
    assert client.get_registered_model(f"{prefix}-a").tags == {}
    found = client.search_registered_models(filter_string=f"name LIKE '{prefix}-%'", order_by=["name DESC"])
    assert [m.name for m in found] == [f"{prefix}-c", f"{prefix}-b", f"{prefix}-a"]
    tagged = client.search_registered_models(filter_string=f"name LIKE '{prefix}-%' AND tags.stage = 'beta'")
    assert [m.name for m in tagged] == [f"{prefix}-b"]
    page = client.search_registered_models(filter_string=f"name LIKE '{prefix}-%'", max_results=2)
    assert len(page) == 2 and page.token
    rest = client.search_registered_models(filter_string=f"name LIKE '{prefix}-%'", max_results=2, page_token=page.token)
    assert len(rest) == 1
    client.rename_registered_model(f"{prefix}-c", f"{prefix}-z")
    assert client.get_registered_model(f"{prefix}-z").name == f"{prefix}-z"
    client.delete_registered_model(f"{prefix}-z")
    with pytest.raises(MlflowException) as e:
        client.get_registered_model(f"{prefix}-z")
    assert e.value.error_code == "RESOURCE_DOES_NOT_EXIST"


def test_rename_keeps_versions(client, logged, unique):
    _, run_id, info, _, _ = logged
    name = unique("ren")
    mlflow.register_model(info.model_uri, name)
    client.rename_registered_model(name, name + "-new")
    mv = client.get_model_version(name + "-new", "1")
    assert mv.name == name + "-new" and mv.run_id == run_id
