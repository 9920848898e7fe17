"""The `mlflow` client against `shipyard server --auth`: MLflow 3.17's basic-auth surface.

Users, per-user grants and roles are driven with MLflow's own `AuthServiceClient`
(`mlflow.server.auth.client`, which needs the full `mlflow` package and Flask-WTF: see
requirements.txt); tracking and registry calls with `MlflowClient` and the fluent API, whose
credentials come from the environment on every request:
  MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD   HTTP Basic
  MLFLOW_TRACKING_TOKEN                                 Authorization: Bearer (Shipyard's shp_ tokens)

This module starts its own servers, each with a temporary --home and its own first admin:
one with the default permission READ (MLflow's default), one with NO_PERMISSIONS, and one per
test where the state of the process matters (the failed-login throttle counts per process, by
user name and by client address: every client here is 127.0.0.1). It does not use the session
server of conftest.py. Credentials, the tracking URI and the active experiment are put back
after each test.
"""
import contextlib
import os
import re
import subprocess
import time
import uuid
from pathlib import Path

import mlflow
import pytest
import requests
from mlflow import MlflowClient
from mlflow.exceptions import RestException

# Shipyard's server with --auth: MLflow's own auth app is a different server (`mlflow server
# --app-name basic-auth`), started differently; the throttle, tokens and start-up refusals are
# Shipyard's.
pytestmark = pytest.mark.shipyard_only

if int(mlflow.__version__.split(".")[0]) < 3:
    # The seed era's mlflow-skinny 2.19 has no mlflow.server; the pinned suite must import it.
    pytest.skip("the auth client needs the full mlflow 3 package", allow_module_level=True)

from mlflow.server.auth.client import AuthServiceClient  # noqa: E402
from conftest import launch_own_server, own_server_env, stop_own_server  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
BINARY = os.environ.get("SHIPYARD_BIN", str(REPO / "target" / "release" / "shipyard"))
CRED_VARS = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN")

ADMIN = "admin"


def secret(label):
    """A password the server's policy accepts (12+ characters, not a common one)."""
    return f"{label}-{uuid.uuid4().hex[:16]}"


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


# ---------------------------------------------------------------------------------------------
# Servers


class AuthServer:
    def __init__(self, proc, url, log_path, admin_password):
        self.proc = proc
        self.url = url
        self.log_path = log_path
        self.admin = (ADMIN, admin_password)

    def log_text(self):
        try:
            return open(self.log_path, errors="replace").read()
        except OSError:
            return ""

    def log_tail(self, n=40):
        return "".join(self.log_text().splitlines(keepends=True)[-n:])

    def client(self):
        return MlflowClient(tracking_uri=self.url, registry_uri=self.url)

    def auth(self):
        return AuthServiceClient(self.url)


def start_auth_server(workdir, *extra_args, admin_password=None):
    workdir = Path(workdir)
    admin_password = admin_password or secret("admin")
    env = own_server_env(SHIPYARD_ADMIN_PASSWORD=admin_password)
    log_path = workdir / "server.log"
    proc, url = launch_own_server(workdir / "home", ["--auth", "--host", "127.0.0.1", *extra_args], env, log_path)
    if url is None:
        raise RuntimeError(f"shipyard server --auth exited with {proc.returncode}:\n{open(log_path).read()[-3000:]}")
    assert url.startswith("http://127.0.0.1:"), url
    return AuthServer(proc, url, log_path, admin_password)


def _finish(srv):
    stop_own_server(srv.proc)
    assert srv.proc.returncode == 0, srv.log_tail()


# ---------------------------------------------------------------------------------------------
# Who the client is


@contextlib.contextmanager
def creds(username=None, password=None, token=None):
    """The client's credentials (MLFLOW_TRACKING_USERNAME / PASSWORD / TOKEN) inside the block;
    the previous values after it."""
    saved = {k: os.environ.get(k) for k in CRED_VARS}
    wanted = dict(zip(CRED_VARS, (username, password, token)))
    try:
        for k, v in wanted.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def as_admin(srv):
    return creds(*srv.admin)


@pytest.fixture(autouse=True)
def no_credentials(monkeypatch):
    """Each test starts with no credentials in the environment."""
    for var in CRED_VARS:
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def fluent(monkeypatch):
    """Points the fluent API at a URL for one test; then puts back the global tracking URI and
    the active experiment (mlflow.set_experiment sets both a global and MLFLOW_EXPERIMENT_ID)."""
    from mlflow.tracking import fluent as fluent_module
    from mlflow.tracking._tracking_service import utils as tracking_utils

    old_uri = tracking_utils._tracking_uri
    old_experiment = fluent_module._active_experiment_id
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)

    def use(url):
        monkeypatch.setenv("MLFLOW_TRACKING_URI", url)  # restored by monkeypatch
        mlflow.set_tracking_uri(url)

    yield use
    while mlflow.active_run() is not None:
        mlflow.end_run()
    fluent_module._active_experiment_id = old_experiment
    mlflow.set_tracking_uri(old_uri)


def _error_code(call, *args, **kwargs):
    """The error_code of the RestException `call(*args)` raises."""
    with pytest.raises(RestException) as e:
        call(*args, **kwargs)
    return e.value.error_code


def _visible_experiments(srv):
    return {e.experiment_id for e in srv.client().search_experiments(max_results=1000)}


# ---------------------------------------------------------------------------------------------
# The servers and their users


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    """--auth with MLflow's default permission, READ; users alice and bob, made by the admin."""
    s = start_auth_server(tmp_path_factory.mktemp("auth-read"))
    s.users = {}
    s.passwords = {"alice": secret("alice"), "bob": secret("bob")}
    with as_admin(s):
        for name, password in s.passwords.items():
            s.users[name] = s.auth().create_user(name, password)
    yield s
    _finish(s)


@pytest.fixture(scope="module")
def closed(tmp_path_factory):
    """--auth --auth-default-permission NO_PERMISSIONS; users alice and bob."""
    s = start_auth_server(tmp_path_factory.mktemp("auth-closed"), "--auth-default-permission", "NO_PERMISSIONS")
    s.passwords = {"alice": secret("alice"), "bob": secret("bob")}
    with as_admin(s):
        for name, password in s.passwords.items():
            s.auth().create_user(name, password)
    yield s
    _finish(s)


def login(srv, name):
    return creds(name, srv.passwords[name])


# ---------------------------------------------------------------------------------------------
# a. user name and password


def test_users_made_by_the_admin_log_runs_and_own_their_experiments(srv, fluent, tmp_path):
    alice = srv.users["alice"]
    assert alice.username == "alice" and alice.is_admin is False and isinstance(alice.id, int)
    assert srv.users["bob"].id != alice.id
    with as_admin(srv):
        got = srv.auth().get_user("alice")
        assert (got.id, got.username, got.is_admin) == (alice.id, "alice", False)
        # A user name is taken once.
        assert _error_code(srv.auth().create_user, "alice", secret("again")) == "RESOURCE_ALREADY_EXISTS"
    # Only admins make users.
    with login(srv, "bob"):
        assert _error_code(srv.auth().create_user, unique("eve"), secret("eve")) == "PERMISSION_DENIED"

    note = tmp_path / "note.txt"
    note.write_text("logged by alice\n")
    name = unique("alice-exp")
    with login(srv, "alice"):
        fluent(srv.url)
        experiment = mlflow.set_experiment(name)
        with mlflow.start_run() as run:
            mlflow.log_param("alpha", "0.5")
            mlflow.log_metric("loss", 0.25, step=2)
            mlflow.log_artifact(str(note))
        run_id = run.info.run_id

        client = srv.client()
        assert client.get_experiment(experiment.experiment_id).name == name
        got = client.get_run(run_id)
        assert got.info.experiment_id == experiment.experiment_id
        assert got.info.status == "FINISHED"
        assert got.data.params == {"alpha": "0.5"}
        assert got.data.metrics == {"loss": 0.25}
        assert [(m.value, m.step) for m in client.get_metric_history(run_id, "loss")] == [(0.25, 2)]
        assert [f.path for f in client.list_artifacts(run_id)] == ["note.txt"]
        local = client.download_artifacts(run_id, "note.txt", str(tmp_path / "out"))
        assert Path(local).read_text() == "logged by alice\n"
        # Who the server thinks is calling.
        me = requests.get(f"{srv.url}/api/2.0/mlflow/users/current", auth=("alice", srv.passwords["alice"]),
                          timeout=10)
        assert me.status_code == 200 and me.json()["user"]["username"] == "alice"

    with as_admin(srv):
        perm = srv.auth().get_user_permission("alice", "experiment", experiment.experiment_id)
        assert perm.permission == "MANAGE" and perm.allowed is True
        # Nothing granted: the default.
        other = srv.auth().get_user_permission("bob", "experiment", experiment.experiment_id)
        assert other.permission == "READ" and other.allowed is False


# ---------------------------------------------------------------------------------------------
# b. a second user: READ by default, then EDIT, then DENY


def test_grants_decide_what_another_user_may_do(srv):
    name = unique("shared")
    with login(srv, "alice"):
        exp_id = srv.client().create_experiment(name)
        alice_run = srv.client().create_run(exp_id).info.run_id

    with login(srv, "bob"):
        client = srv.client()
        assert client.get_experiment(exp_id).name == name
        assert client.get_run(alice_run).info.experiment_id == exp_id
        assert exp_id in _visible_experiments(srv)
        assert _error_code(client.create_run, exp_id) == "PERMISSION_DENIED"
        assert _error_code(client.log_param, alice_run, "by", "bob") == "PERMISSION_DENIED"
        # Granting needs MANAGE on the experiment.
        assert _error_code(srv.auth().grant_user_permission, "bob", "experiment", exp_id, "EDIT") == "PERMISSION_DENIED"

    with login(srv, "alice"):
        srv.auth().grant_user_permission("bob", "experiment", exp_id, "EDIT")
        assert srv.auth().get_user_permission("bob", "experiment", exp_id).permission == "EDIT"

    with login(srv, "bob"):
        client = srv.client()
        run = client.create_run(exp_id)
        client.log_param(run.info.run_id, "by", "bob")
        client.log_metric(run.info.run_id, "score", 0.75)
        client.set_terminated(run.info.run_id)
        got = client.get_run(run.info.run_id)
        assert got.info.experiment_id == exp_id and got.info.status == "FINISHED"
        assert got.data.params == {"by": "bob"} and got.data.metrics == {"score": 0.75}
        # EDIT is not MANAGE: still no granting, no deleting.
        grant = srv.auth().grant_user_permission
        assert _error_code(grant, "bob", "experiment", exp_id, "MANAGE") == "PERMISSION_DENIED"
        assert _error_code(client.delete_experiment, exp_id) == "PERMISSION_DENIED"

    with login(srv, "alice"):
        srv.auth().grant_user_permission("bob", "experiment", exp_id, "DENY")
        assert srv.auth().get_user_permission("bob", "experiment", exp_id).permission == "DENY"

    with login(srv, "bob"):
        client = srv.client()
        assert _error_code(client.get_experiment, exp_id) == "PERMISSION_DENIED"
        assert _error_code(client.get_run, run.info.run_id) == "PERMISSION_DENIED"
        assert _error_code(client.create_run, exp_id) == "PERMISSION_DENIED"
        assert exp_id not in _visible_experiments(srv)
        assert client.search_experiments(filter_string=f"name = '{name}'") == []
        # Other experiments are still READ by default.
        assert "0" in _visible_experiments(srv)

    # Bob's own grants are kept as MLflow keeps them (a role of his own), which lists no role.
    with as_admin(srv):
        assert srv.auth().list_user_roles("bob") == []

    # Taking the grant back leaves the default.
    with login(srv, "alice"):
        srv.auth().revoke_user_permission("bob", "experiment", exp_id)
        assert srv.auth().get_user_permission("bob", "experiment", exp_id).permission == "READ"
    with login(srv, "bob"):
        assert srv.client().get_experiment(exp_id).name == name
        assert exp_id in _visible_experiments(srv)


# ---------------------------------------------------------------------------------------------
# c. NO_PERMISSIONS by default: searches show only what was granted


def test_no_permissions_by_default_hides_experiments_and_models(closed):
    exp_name, model = unique("private"), unique("private-model")
    with login(closed, "alice"):
        client = closed.client()
        exp_id = client.create_experiment(exp_name)
        run = client.create_run(exp_id)
        client.log_param(run.info.run_id, "k", "v")
        client.set_terminated(run.info.run_id)
        client.create_registered_model(model, description="alice's")
        version = client.create_model_version(model, f"{run.info.artifact_uri}/model", run_id=run.info.run_id)
        assert version.version == "1"
        # Her own things she sees.
        assert exp_id in _visible_experiments(closed)
        assert [m.name for m in client.search_registered_models(filter_string=f"name = '{model}'")] == [model]
        assert [(v.name, v.version) for v in client.search_model_versions(f"name = '{model}'")] == [(model, "1")]
        perm = closed.auth().get_user_permission("alice", "registered_model", model)
        assert perm.permission == "MANAGE"

    with login(closed, "bob"):
        client = closed.client()
        assert exp_id not in _visible_experiments(closed)
        assert client.search_experiments(filter_string=f"name = '{exp_name}'") == []
        assert _error_code(client.get_experiment, exp_id) == "PERMISSION_DENIED"
        assert _error_code(client.get_run, run.info.run_id) == "PERMISSION_DENIED"
        assert model not in [m.name for m in client.search_registered_models(max_results=1000)]
        assert client.search_registered_models(filter_string=f"name = '{model}'") == []
        assert client.search_model_versions(f"name = '{model}'") == []
        assert all(v.name != model for v in client.search_model_versions(max_results=1000))
        assert _error_code(client.get_registered_model, model) == "PERMISSION_DENIED"
        assert _error_code(client.get_model_version, model, "1") == "PERMISSION_DENIED"

    with login(closed, "alice"):
        closed.auth().grant_user_permission("bob", "registered_model", model, "READ")

    with login(closed, "bob"):
        client = closed.client()
        found = client.search_registered_models(filter_string=f"name = '{model}'")
        assert [(m.name, m.description) for m in found] == [(model, "alice's")]
        versions = client.search_model_versions(f"name = '{model}'")
        assert [(v.name, v.version, v.run_id) for v in versions] == [(model, "1", run.info.run_id)]
        assert client.get_model_version(model, "1").run_id == run.info.run_id
        # READ on the model, nothing on the experiment, nothing more on the model.
        assert _error_code(client.get_experiment, exp_id) == "PERMISSION_DENIED"
        assert _error_code(client.update_registered_model, model, description="bob's") == "PERMISSION_DENIED"


def test_a_page_of_experiments_is_filled_with_what_the_caller_may_read(closed):
    prefix = unique("page")
    with login(closed, "alice"):
        client = closed.client()
        shown = client.create_experiment(f"{prefix}-shown")
        for i in range(3):  # newer: first in the default order
            client.create_experiment(f"{prefix}-hidden-{i}")
        closed.auth().grant_user_permission("bob", "experiment", shown, "READ")
    with login(closed, "bob"):
        page = closed.client().search_experiments(max_results=1, filter_string=f"name LIKE '{prefix}%'")
        assert [e.experiment_id for e in page] == [shown]


def test_a_page_of_registered_models_is_filled_with_what_the_caller_may_read(closed):
    prefix = unique("page-model")
    with login(closed, "alice"):
        client = closed.client()
        for i in range(3):  # first by name
            client.create_registered_model(f"{prefix}-a{i}")
        client.create_registered_model(f"{prefix}-z")
        closed.auth().grant_user_permission("bob", "registered_model", f"{prefix}-z", "READ")
    with login(closed, "bob"):
        page = closed.client().search_registered_models(max_results=1, filter_string=f"name LIKE '{prefix}%'")
        assert [m.name for m in page] == [f"{prefix}-z"]


# ---------------------------------------------------------------------------------------------
# d. Shipyard's API tokens


def _make_token(srv, user, **body):
    r = requests.post(f"{srv.url}/api/shipyard/tokens/create", json=body,
                      auth=(user, srv.passwords[user]), timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def test_tokens_as_bearer_or_password_and_their_scopes(srv):
    with login(srv, "alice"):
        exp_id = srv.client().create_experiment(unique("tokens"))

    made = _make_token(srv, "alice", name="ci")
    token, record = made["token"], made["record"]
    assert token.startswith("shp_")
    assert record["name"] == "ci" and record["scopes"] == ["all"]
    assert record["user_id"] == srv.users["alice"].id
    assert record["revoked_time"] is None and record["expires_time"] is None

    # MLFLOW_TRACKING_TOKEN alone: Authorization: Bearer.
    with creds(token=token):
        client = srv.client()
        run = client.create_run(exp_id)
        client.log_metric(run.info.run_id, "m", 1.0)
        assert client.get_run(run.info.run_id).data.metrics == {"m": 1.0}
        me = requests.get(f"{srv.url}/api/2.0/mlflow/users/current",
                          headers={"Authorization": f"Bearer {token}"}, timeout=10)
        assert me.json()["user"]["username"] == "alice"

    # The token as the Basic password, with its owner's name.
    with creds("alice", token):
        assert srv.client().create_run(exp_id).info.experiment_id == exp_id
    # ... but not with another user's name.
    with creds("bob", token):
        assert _error_code(srv.client().search_experiments) == "UNAUTHENTICATED"

    listed = requests.get(f"{srv.url}/api/shipyard/tokens/list", auth=("alice", srv.passwords["alice"]), timeout=10)
    assert listed.status_code == 200
    assert [t["id"] for t in listed.json()["tokens"]] == [record["id"]]
    assert token not in listed.text

    revoked = requests.post(f"{srv.url}/api/shipyard/tokens/revoke", json={"id": record["id"]},
                            auth=("alice", srv.passwords["alice"]), timeout=10)
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["record"]["revoked_time"] is not None
    with creds(token=token):
        assert _error_code(srv.client().create_run, exp_id) == "UNAUTHENTICATED"
        assert _error_code(srv.client().search_experiments) == "UNAUTHENTICATED"

    # A read-only token reads and searches, and changes nothing.
    reader = _make_token(srv, "alice", name="dashboard", scopes=["read"], expires_in_days=1)
    assert reader["record"]["scopes"] == ["read"]
    assert reader["record"]["expires_time"] is not None
    with creds(token=reader["token"]):
        client = srv.client()
        assert exp_id in _visible_experiments(srv)
        assert client.get_run(run.info.run_id).data.metrics == {"m": 1.0}
        assert _error_code(client.create_run, exp_id) == "PERMISSION_DENIED"
        assert _error_code(client.create_experiment, unique("nope")) == "PERMISSION_DENIED"
        # A scoped token makes no tokens.
        r = requests.post(f"{srv.url}/api/shipyard/tokens/create", json={"name": "more"},
                          headers={"Authorization": f"Bearer {reader['token']}"}, timeout=10)
        assert r.status_code == 403 and r.json()["error_code"] == "PERMISSION_DENIED"


# ---------------------------------------------------------------------------------------------
# e. a wrong password fails once and fast


def test_a_wrong_password_is_refused_at_once_without_retries(srv):
    name = unique("erin")
    with as_admin(srv):
        srv.auth().create_user(name, secret("erin"))
    refused = re.compile(rf"password refused user={re.escape(name)}\b")
    with creds(name, "not-the-right-password"):
        started = time.monotonic()
        with pytest.raises(RestException) as e:
            srv.client().search_experiments()
        elapsed = time.monotonic() - started
    assert e.value.error_code == "UNAUTHENTICATED"
    assert elapsed < 3.0, f"{elapsed:.2f} s: the client retried or the server stalled"
    # The server saw one attempt (its log names every refused password).
    deadline = time.time() + 5
    while not refused.search(srv.log_text()) and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    assert len(refused.findall(srv.log_text())) == 1, srv.log_tail()


# ---------------------------------------------------------------------------------------------
# f. the failed-login throttle


@pytest.fixture
def own_server(tmp_path):
    """A server of the test's own: the throttle's counts are per process and per address."""
    s = start_auth_server(tmp_path)
    yield s
    _finish(s)


def test_repeated_wrong_passwords_are_throttled_then_let_through(own_server):
    srv = own_server
    name, password = unique("frank"), secret("frank")
    with as_admin(srv):
        srv.auth().create_user(name, password)
    search = f"{srv.url}/api/2.0/mlflow/experiments/search?max_results=10"

    answers = []
    for _ in range(7):
        r = requests.get(search, auth=(name, "wrong-password-guess"), timeout=10)
        answers.append(r)
        if r.status_code == 429:
            break
    statuses = [r.status_code for r in answers]
    assert statuses[:5] == [401] * 5, statuses
    assert len(statuses) in (6, 7) and statuses[-1] == 429, statuses
    throttled = answers[-1]
    assert throttled.json()["error_code"] == "REQUEST_LIMIT_EXCEEDED"
    retry_after = throttled.headers.get("Retry-After")
    assert retry_after is not None and retry_after.isdigit() and int(retry_after) >= 1, throttled.headers

    # The right password inside the wait is refused the same way: no oracle.
    r = requests.get(search, auth=(name, password), timeout=10)
    assert r.status_code == 429, r.text
    assert r.json()["error_code"] == "REQUEST_LIMIT_EXCEEDED"
    assert int(r.headers["Retry-After"]) >= 1
    time.sleep(int(r.headers["Retry-After"]))

    r = requests.get(search, auth=(name, password), timeout=10)
    assert r.status_code == 200, r.text
    assert [e["name"] for e in r.json()["experiments"]] == ["Default"]
    # And so does the mlflow client.
    with creds(name, password):
        assert [e.experiment_id for e in srv.client().search_experiments()] == ["0"]


def test_retry_after_is_never_shorter_than_the_wait_left(own_server):
    srv = own_server
    name, password = unique("grace"), secret("grace")
    with as_admin(srv):
        srv.auth().create_user(name, password)
    search = f"{srv.url}/api/2.0/mlflow/experiments/search?max_results=10"
    statuses = [requests.get(search, auth=(name, "wrong-password-guess"), timeout=10).status_code for _ in range(5)]
    assert statuses == [401] * 5
    r = requests.get(search, auth=(name, "wrong-password-guess"), timeout=10)
    assert r.status_code == 429
    time.sleep(int(r.headers["Retry-After"]))
    # One more wrong password after the first wait: the next wait is 2 s.
    r = requests.get(search, auth=(name, "wrong-password-guess"), timeout=10)
    assert r.status_code == 401
    r = requests.get(search, auth=(name, password), timeout=10)
    assert r.status_code == 429
    waited = int(r.headers["Retry-After"])
    time.sleep(waited)
    r = requests.get(search, auth=(name, password), timeout=10)
    assert r.status_code == 200, f"refused again after waiting Retry-After: {waited} s: {r.status_code} {r.text}"


# ---------------------------------------------------------------------------------------------
# g. roles


def test_a_role_grants_its_permissions_to_the_users_assigned_it(closed):
    reader, reader_pw = unique("dave"), secret("dave")
    with login(closed, "alice"):
        alice_exp = closed.client().create_experiment(unique("alice-private"))
    with as_admin(closed):
        admin_exp = closed.client().create_experiment(unique("admin-private"))
        everything = _visible_experiments(closed)
        assert {"0", alice_exp, admin_exp} <= everything
        user = closed.auth().create_user(reader, reader_pw)

        role = closed.auth().create_role("default", "readers", description="reads every experiment")
        assert (role.name, role.workspace, role.description) == ("readers", "default", "reads every experiment")
        added = closed.auth().add_role_permission(role.id, "experiment", "*", "READ")
        assert (added.role_id, added.resource_type, added.resource_pattern, added.permission) == \
            (role.id, "experiment", "*", "READ")

    with creds(reader, reader_pw):
        assert _visible_experiments(closed) == set()
        assert _error_code(closed.client().get_experiment, alice_exp) == "PERMISSION_DENIED"

    with as_admin(closed):
        assignment = closed.auth().assign_role(reader, role.id)
        assert (assignment.user_id, assignment.role_id) == (user.id, role.id)
        listed = closed.auth().list_role_permissions(role.id)
        assert [(p.id, p.resource_type, p.resource_pattern, p.permission) for p in listed] == \
            [(added.id, "experiment", "*", "READ")]
        assert [(r.id, r.name) for r in closed.auth().list_user_roles(reader)] == [(role.id, "readers")]
        assert [(a.user_id, a.role_id) for a in closed.auth().list_role_users(role.id)] == [(user.id, role.id)]
        roles = [r.name for r in closed.auth().list_roles("default")]
        assert "readers" in roles
        assert not [r for r in roles if r.startswith("__user_")], roles  # users' own grants are no role to list
        got = closed.auth().get_role(role.id)
        assert [(p.resource_type, p.permission) for p in got.permissions] == [("experiment", "READ")]
        assert closed.auth().get_user_permission(reader, "experiment", alice_exp).permission == "READ"

    with creds(reader, reader_pw):
        client = closed.client()
        assert _visible_experiments(closed) == everything
        assert client.get_experiment(alice_exp).experiment_id == alice_exp
        assert client.get_experiment(admin_exp).experiment_id == admin_exp
        # READ only.
        assert _error_code(client.create_run, alice_exp) == "PERMISSION_DENIED"
        # Users see their own roles.
        assert [r.name for r in closed.auth().list_user_roles(reader)] == ["readers"]
        # Only admins manage roles.
        assert _error_code(closed.auth().create_role, "default", unique("mine")) == "PERMISSION_DENIED"

    with as_admin(closed):
        closed.auth().unassign_role(reader, role.id)
        assert closed.auth().list_user_roles(reader) == []
        assert closed.auth().list_role_users(role.id) == []

    with creds(reader, reader_pw):
        assert _visible_experiments(closed) == set()
        assert _error_code(closed.client().get_experiment, alice_exp) == "PERMISSION_DENIED"


# ---------------------------------------------------------------------------------------------
# h. what needs no credentials, and the refusals at start


def test_health_and_version_are_public_and_the_api_is_not(srv):
    health = requests.get(f"{srv.url}/health", timeout=10)
    assert (health.status_code, health.text) == (200, "OK")
    version = requests.get(f"{srv.url}/version", timeout=10)
    assert version.status_code == 200 and re.fullmatch(r"\d+\.\d+\.\d+", version.text), version.text

    r = requests.get(f"{srv.url}/api/2.0/mlflow/experiments/search?max_results=10", timeout=10)
    assert r.status_code == 401
    assert r.headers.get("WWW-Authenticate", "").startswith("Basic"), r.headers
    assert r.json()["error_code"] == "UNAUTHENTICATED"
    r = requests.post(f"{srv.url}/api/2.0/mlflow/experiments/create", json={"name": unique("anon")}, timeout=10)
    assert r.status_code == 401 and r.json()["error_code"] == "UNAUTHENTICATED"
    # The mlflow client without credentials.
    assert _error_code(srv.client().search_experiments) == "UNAUTHENTICATED"


def _run_to_exit(args, env, home, timeout=60):
    cmd = [BINARY, "server", *args, "--port", "0", "--home", str(home), "--no-model-serving", "--no-monitors"]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


def test_refuses_to_start_open_on_a_public_address_or_without_an_admin(tmp_path):
    # Every interface without --auth: refused.
    done = _run_to_exit(["--host", "0.0.0.0"], own_server_env(), tmp_path / "open")
    assert done.returncode != 0
    assert "--auth" in done.stderr, done.stderr[-2000:]
    assert "listening on" not in done.stderr

    # --auth on a fresh home without SHIPYARD_ADMIN_PASSWORD: refused, naming the variable.
    done = _run_to_exit(["--auth", "--host", "127.0.0.1"], own_server_env(), tmp_path / "no-admin")
    assert done.returncode != 0
    assert "SHIPYARD_ADMIN_PASSWORD" in done.stderr, done.stderr[-2000:]
    assert "listening on" not in done.stderr

    # --insecure-no-auth: something in front authenticates; it starts.
    proc, url = launch_own_server(tmp_path / "insecure", ["--host", "0.0.0.0", "--insecure-no-auth"], own_server_env(),
                        tmp_path / "insecure.log")
    try:
        assert url is not None, (tmp_path / "insecure.log").read_text()[-2000:]
        port = url.rsplit(":", 1)[1]
        assert url == f"http://0.0.0.0:{port}"
        r = requests.get(f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/search?max_results=10", timeout=10)
        assert r.status_code == 200 and [e["name"] for e in r.json()["experiments"]] == ["Default"]
    finally:
        stop_own_server(proc)


# ---------------------------------------------------------------------------------------------
# i. changing a password


def test_changing_ones_own_password_needs_the_current_one(srv):
    name, old, new = unique("carol"), secret("carol-old"), secret("carol-new")
    with as_admin(srv):
        srv.auth().create_user(name, old)

    with creds(name, old):
        # Without the current password: 400.
        with pytest.raises(RestException) as e:
            srv.auth().update_user_password(name, new)
        assert e.value.error_code == "INVALID_PARAMETER_VALUE"
        assert e.value.get_http_status_code() == 400
        r = requests.patch(f"{srv.url}/api/2.0/mlflow/users/update-password",
                           json={"username": name, "password": new}, auth=(name, old), timeout=10)
        assert r.status_code == 400 and r.json()["error_code"] == "INVALID_PARAMETER_VALUE"
        # Another user's password: refused.
        assert _error_code(srv.auth().update_user_password, "bob", new, current_password=old) == "PERMISSION_DENIED"
        # The right current password: changed.
        srv.auth().update_user_password(name, new, current_password=old)

    # At once: the server forgets its cached verification of the old password.
    r = requests.get(f"{srv.url}/api/2.0/mlflow/experiments/search?max_results=10", auth=(name, old), timeout=10)
    assert r.status_code == 401 and r.json()["error_code"] == "UNAUTHENTICATED"
    with creds(name, new):
        assert "0" in _visible_experiments(srv)
        me = requests.get(f"{srv.url}/api/2.0/mlflow/users/current", auth=(name, new), timeout=10)
        assert me.json()["user"]["username"] == name
