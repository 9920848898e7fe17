"""search_runs: the filter language, ordering and paging, as the mlflow client sends them."""
import mlflow
import pytest
from mlflow.entities import Metric, Param, RunTag, ViewType
from mlflow.exceptions import MlflowException


@pytest.fixture(scope="module")
def populated(server):
    """Twelve runs with metrics, params and tags; returns (experiment_id, {name: run_id})."""
    from mlflow import MlflowClient

    client = MlflowClient(server.url)
    exp = client.create_experiment(f"search-{__import__('uuid').uuid4().hex[:8]}")
    ids = {}
    for i in range(12):
        run = client.create_run(exp, run_name=f"run-{i:02d}", start_time=1_700_000_000_000 + i)
        metrics = [Metric("acc", i / 10, 1, 0)] if i != 11 else []
        client.log_batch(
            run.info.run_id,
            metrics=metrics + [Metric("loss", 1 - i / 20, 1, 0)],
            params=[Param("model", "rf" if i < 6 else "lr"), Param("lr", str(0.1 * (i % 3)))],
            tags=[RunTag("parity", "even" if i % 2 == 0 else "odd"), RunTag("my tag.x", f"v{i}")],
        )
        if i == 5:
            client.set_terminated(run.info.run_id)
        ids[f"run-{i:02d}"] = run.info.run_id
    return exp, ids


def names(runs):
    return [r.info.run_name for r in runs]


@pytest.mark.parametrize(
    "filter_string,order_by,expected",
    [
        ("metrics.acc > 0.45 and params.model = 'rf'", ["metrics.acc DESC"], ["run-05"]),
        ("metrics.acc >= 0.9", ["metrics.acc ASC"], ["run-09", "run-10"]),
        ("metrics.acc < 0.15", [], ["run-01", "run-00"]),
        ("metrics.acc <= 0.1 AND metrics.acc != 0.0", [], ["run-01"]),
        ("metrics.acc = 0.3", [], ["run-03"]),
        ("params.model = 'lr' AND tags.parity = 'odd'", ["attributes.start_time ASC"], ["run-07", "run-09", "run-11"]),
        ("params.model != 'lr'", ["run_name ASC"], ["run-00", "run-01", "run-02", "run-03", "run-04", "run-05"]),
        ("params.model LIKE 'r%'", ["run_name DESC"], ["run-05", "run-04", "run-03", "run-02", "run-01", "run-00"]),
        ("params.model ILIKE 'R_'", ["run_name ASC"], ["run-00", "run-01", "run-02", "run-03", "run-04", "run-05"]),
        ("tags.`my tag.x` = 'v3'", [], ["run-03"]),
        ("tags.\"my tag.x\" IN ('v3', 'v4')", [], None),  # not a tag comparator: expect an error
        ("attributes.run_name LIKE 'run-1%'", ["run_name DESC"], ["run-11", "run-10"]),
        ("run_name = 'run-04'", [], ["run-04"]),
        ("attributes.status = 'FINISHED'", [], ["run-05"]),
        ("status != 'RUNNING'", [], ["run-05"]),
        ("attributes.start_time >= 1700000000010", [], ["run-11", "run-10"]),
        # MLflow accepts IN only on run_id; Shipyard on every string attribute.
        pytest.param("attributes.run_name IN ('run-02', 'run-03')", ["run_name ASC"], ["run-02", "run-03"],
                     marks=pytest.mark.shipyard_only),
        pytest.param("attributes.status NOT IN ('RUNNING', 'KILLED')", [], ["run-05"], marks=pytest.mark.shipyard_only),
    ],
)
def test_filters(client, populated, filter_string, order_by, expected):
    exp, _ = populated
    if expected is None:
        with pytest.raises(MlflowException) as e:
            client.search_runs([exp], filter_string)
        assert e.value.error_code == "INVALID_PARAMETER_VALUE"
        return
    got = client.search_runs([exp], filter_string, order_by=order_by)
    if order_by:
        assert names(got) == expected
    else:
        assert sorted(names(got)) == sorted(expected)


def test_run_id_in(client, populated):
    exp, ids = populated
    wanted = [ids["run-01"], ids["run-07"]]
    got = client.search_runs([exp], f"attributes.run_id IN ('{wanted[0]}', '{wanted[1]}')")
    assert sorted(r.info.run_id for r in got) == sorted(wanted)


def test_default_order_is_start_time_desc(client, populated):
    exp, _ = populated
    assert names(client.search_runs([exp])) == [f"run-{i:02d}" for i in reversed(range(12))]


def test_order_by_metric_puts_missing_last(client, populated):
    exp, _ = populated
    desc = names(client.search_runs([exp], order_by=["metrics.acc DESC"]))
    asc = names(client.search_runs([exp], order_by=["metrics.acc ASC"]))
    assert desc[0] == "run-10" and desc[-1] == "run-11"
    assert asc[0] == "run-00" and asc[-1] == "run-11"
    by_param = names(client.search_runs([exp], order_by=["params.lr ASC", "attributes.run_name ASC"]))
    assert by_param[:4] == ["run-00", "run-03", "run-06", "run-09"]


def test_paging_visits_every_run_once(client, populated):
    exp, _ = populated
    seen, token = [], None
    while True:
        page = client.search_runs([exp], order_by=["metrics.loss ASC"], max_results=5, page_token=token)
        seen += names(page)
        token = page.token
        if not token:
            break
    assert seen == names(client.search_runs([exp], order_by=["metrics.loss ASC"]))
    assert len(seen) == 12


def test_fluent_search_runs_dataframe(populated):
    exp, _ = populated
    df = mlflow.search_runs([exp], filter_string="params.model = 'rf'", order_by=["metrics.acc DESC"])
    assert list(df["tags.mlflow.runName"]) == [f"run-{i:02d}" for i in reversed(range(6))]
    assert list(df["metrics.acc"]) == [0.5, 0.4, 0.3, 0.2, 0.1, 0.0]
    assert set(df["params.model"]) == {"rf"}


def test_deleted_runs_and_view_types(client, unique):
    exp = client.create_experiment(unique("views"))
    keep = client.create_run(exp).info.run_id
    gone = client.create_run(exp).info.run_id
    client.delete_run(gone)
    assert [r.info.run_id for r in client.search_runs([exp])] == [keep]
    assert [r.info.run_id for r in client.search_runs([exp], run_view_type=ViewType.DELETED_ONLY)] == [gone]
    assert sorted(r.info.run_id for r in client.search_runs([exp], run_view_type=ViewType.ALL)) == sorted([keep, gone])


@pytest.mark.parametrize(
    "bad",
    [
        "metrics.acc > 'high'",
        "params.model > 1",
        "foo.bar = 1",
        "metrics.acc >",
        "metrics.acc > 1 OR metrics.acc < 0",
        "params.model = 'unterminated",
        "attributes.nonexistent = 'x'",
    ],
)
def test_bad_filters_are_invalid_parameter_value(client, populated, bad):
    exp, _ = populated
    with pytest.raises(MlflowException) as e:
        client.search_runs([exp], bad)
    assert e.value.error_code == "INVALID_PARAMETER_VALUE"


def test_bad_order_by_is_invalid_parameter_value(client, populated):
    exp, _ = populated
    with pytest.raises(MlflowException) as e:
        client.search_runs([exp], order_by=["metrics.acc SIDEWAYS"])
    assert e.value.error_code == "INVALID_PARAMETER_VALUE"
