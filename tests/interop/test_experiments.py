"""Experiments through the real mlflow client: create, read, search, rename, delete, restore, tags."""
import mlflow
import pytest
from mlflow.entities import ViewType
from mlflow.exceptions import MlflowException


def test_create_get_and_get_by_name(client, unique):
    name = unique("exp")
    exp_id = client.create_experiment(name, tags={"team": "vision", "stage": "dev"})
    exp = client.get_experiment(exp_id)
    assert exp.name == name
    assert exp.experiment_id == exp_id
    assert exp.lifecycle_stage == "active"
    assert exp.tags == {"team": "vision", "stage": "dev"}
    assert exp.artifact_location == f"mlflow-artifacts:/{exp_id}"
    assert exp.creation_time > 0 and exp.last_update_time >= exp.creation_time
    by_name = client.get_experiment_by_name(name)
    assert by_name.experiment_id == exp_id
    assert client.get_experiment_by_name(unique("missing")) is None


def test_set_experiment_creates_then_reuses(client, unique):
    name = unique("fluent")
    first = mlflow.set_experiment(name)
    second = mlflow.set_experiment(name)
    assert first.experiment_id == second.experiment_id
    assert client.get_experiment(first.experiment_id).name == name


def test_default_experiment_exists(client):
    default = client.get_experiment("0")
    assert default.name == "Default"


def test_duplicate_name_is_resource_already_exists(client, unique):
    name = unique("dup")
    client.create_experiment(name)
    with pytest.raises(MlflowException) as e:
        client.create_experiment(name)
    assert e.value.error_code == "RESOURCE_ALREADY_EXISTS"


def test_missing_experiment_is_resource_does_not_exist(client):
    with pytest.raises(MlflowException) as e:
        client.get_experiment("987654321")
    assert e.value.error_code == "RESOURCE_DOES_NOT_EXIST"


def test_rename_delete_restore(client, unique):
    exp_id = client.create_experiment(unique("life"))
    new_name = unique("renamed")
    client.rename_experiment(exp_id, new_name)
    assert client.get_experiment(exp_id).name == new_name
    run = client.create_run(exp_id)
    client.delete_experiment(exp_id)
    assert client.get_experiment(exp_id).lifecycle_stage == "deleted"
    active = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ACTIVE_ONLY)]
    deleted = [e.experiment_id for e in client.search_experiments(view_type=ViewType.DELETED_ONLY)]
    assert exp_id not in active and exp_id in deleted
    with pytest.raises(MlflowException):
        client.create_run(exp_id)
    client.restore_experiment(exp_id)
    assert client.get_experiment(exp_id).lifecycle_stage == "active"
    assert client.get_run(run.info.run_id).info.lifecycle_stage == "active"


@pytest.mark.mlflow3
def test_experiment_tags(client, unique):
    exp_id = client.create_experiment(unique("tags"))
    client.set_experiment_tag(exp_id, "owner", "alice")
    client.set_experiment_tag(exp_id, "owner", "bob")
    client.set_experiment_tag(exp_id, "note", "x" * 1000)
    tags = client.get_experiment(exp_id).tags
    assert tags["owner"] == "bob" and tags["note"] == "x" * 1000
    client.delete_experiment_tag(exp_id, "owner")
    assert "owner" not in client.get_experiment(exp_id).tags


def test_search_filter_order_and_paging(client, unique):
    prefix = unique("srch")
    ids = [client.create_experiment(f"{prefix}-{i}", tags={"parity": str(i % 2)}) for i in range(5)]
    found = client.search_experiments(filter_string=f"name LIKE '{prefix}-%'", order_by=["name DESC"])
    assert [e.name for e in found] == [f"{prefix}-{i}" for i in reversed(range(5))]
    odd = client.search_experiments(filter_string=f"name LIKE '{prefix}-%' AND tags.parity = '1'")
    assert sorted(e.experiment_id for e in odd) == sorted([ids[1], ids[3]])
    page1 = client.search_experiments(filter_string=f"name LIKE '{prefix}-%'", max_results=2, order_by=["name ASC"])
    assert len(page1) == 2 and page1.token
    page2 = client.search_experiments(filter_string=f"name LIKE '{prefix}-%'", max_results=2, order_by=["name ASC"],
                                      page_token=page1.token)
    page3 = client.search_experiments(filter_string=f"name LIKE '{prefix}-%'", max_results=2, order_by=["name ASC"],
                                      page_token=page2.token)
    names = [e.name for e in list(page1) + list(page2) + list(page3)]
    assert names == [f"{prefix}-{i}" for i in range(5)]
    assert not page3.token
    assert [e.name for e in mlflow.search_experiments(filter_string=f"name = '{prefix}-3'")] == [f"{prefix}-3"]
