"""Dataset versions from `shipyard data add --run`, seen by the mlflow client as run inputs."""
import json

import pytest

from conftest import run_shipyard

pytestmark = pytest.mark.shipyard_only


def shipyard(server, *args):
    return run_shipyard(server, *args).stdout


def test_dataset_version_is_a_run_input_in_mlflow_form(server, client, experiment, unique, tmp_path):
    import mlflow

    csv = tmp_path / "train.csv"
    csv.write_text("age,income,city\n31,5200.5,Paris\n45,,Lyon\n27,3100,Paris\n")
    with mlflow.start_run() as run:
        run_id = run.info.run_id
    name = unique("ds")
    added = json.loads(shipyard(server, "data", "add", str(csv), "--name", name, "--run", run_id,
                                "--format", "json"))
    assert (added["name"], added["version"], added["rows"], added["created"]) == (name, 1, 3, True)
    assert added["profile"]["columns"][1]["missing"] == 1

    inputs = client.get_run(run_id).inputs.dataset_inputs
    assert len(inputs) == 1
    ds = inputs[0].dataset
    assert ds.name == name
    assert ds.digest == added["digest"][:32]
    assert json.loads(ds.profile)["num_rows"] == 3
    schema = json.loads(ds.schema)["mlflow_colspec"]
    assert [(c["name"], c["type"]) for c in schema] == [("age", "long"), ("income", "double"), ("city", "string")]
    assert [t.value for t in inputs[0].tags if t.key == "mlflow.data.context"] == ["training"]
    if server.artifact_root is not None:
        # A local artifact store: MLflow's own `local` source resolves to the stored copy.
        assert ds.source_type == "local"
        source = mlflow.data.get_source(ds)
        stored = source.load()
        assert open(stored).read() == csv.read_text()
    else:
        assert ds.source_type == "shipyard"
        assert json.loads(ds.source)["uri"] == f"dataset:{name}@1"

    # The same bytes again: no new version; the file is stored once.
    again = json.loads(shipyard(server, "data", "add", str(csv), "--name", name, "--format", "json"))
    assert (again["version"], again["created"]) == (1, False)
    listed = json.loads(shipyard(server, "data", "list", name, "--format", "json"))
    assert [v["version"] for v in listed] == [1]
    # dataset:NAME@VERSION works where a file does, whichever artifact store holds it.
    profile = json.loads(shipyard(server, "data", "profile", f"dataset:{name}@1", "--format", "json"))
    assert profile["rows"] == 3 and profile["columns"][0]["numeric"]["mean"] == pytest.approx(103 / 3)
