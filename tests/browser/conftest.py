"""Starts a `shipyard server` on a seeded store and a real browser (Debian's chromium, driven
through its matching chromium-driver with Selenium) for the web UI's browser tests.

The store is seeded through the real `mlflow` client, as users fill it. The browser is never
optional: without /usr/bin/chromium and /usr/bin/chromedriver the session fails, it does not
skip (scripts/test.sh installs both).

Environment: SHIPYARD_BIN (default target/release/shipyard), CHROMIUM_BIN, CHROMEDRIVER_BIN.
"""
import csv
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"
os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"

# Script payloads put in every value a user controls; none may run.
XSS = '<img src=x onerror="window.__xss=1"><script>window.__xss=2</script>'
SPIKE_STEP, SPIKE_VALUE = 12_345, 77.0


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Seeded:
    """What the store holds: ids the tests navigate to."""

    def __init__(self, url):
        self.url = url
        self.experiment_id = None
        self.long_run = None
        self.xss_run = None
        self.xss_experiment_id = None
        self.run_ids = []
        self.parent_run = None


def _seed(url):
    import mlflow
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient

    mlflow.set_tracking_uri(url)
    client = MlflowClient(url)
    seeded = Seeded(url)
    seeded.experiment_id = client.create_experiment("browser")
    now = int(time.time() * 1000)
    for i in range(120):
        run = client.create_run(seeded.experiment_id, run_name=f"run-{i:03d}")
        client.log_batch(run.info.run_id,
                         metrics=[Metric("acc", i / 120, now, 0), Metric("loss", 1 - i / 120, now, 0)],
                         params=[Param("lr", str(0.001 * (i % 7 + 1))), Param("depth", str(i % 5))],
                         tags=[RunTag("team", "vision" if i % 2 else "nlp")])
        client.set_terminated(run.info.run_id)
        seeded.run_ids.append(run.info.run_id)
    # A search with nested trials, logged as users do (mlflow.start_run(nested=True)).
    with mlflow.start_run(experiment_id=seeded.experiment_id, run_name="search") as parent:
        for i in range(4):
            with mlflow.start_run(run_name=f"trial-{i}", nested=True):
                mlflow.log_metric("acc", 0.5 + i / 100)
    seeded.parent_run = parent.info.run_id
    # A registered model with two versions and an alias, through the client's registry calls.
    client.create_registered_model("churn", description=XSS)
    for _ in range(2):
        client.create_model_version("churn", f"runs:/{seeded.run_ids[0]}/model", run_id=seeded.run_ids[0])
    client.set_registered_model_alias("churn", "champion", "2")
    # A long history with one spike: a chart that loses it is wrong.
    run = client.create_run(seeded.experiment_id, run_name="long")
    for at in range(0, 20_000, 1000):
        metrics = [Metric("loss", SPIKE_VALUE if s == SPIKE_STEP else 1.0 / (1 + s / 100), now + s, s)
                   for s in range(at, at + 1000)]
        client.log_batch(run.info.run_id, metrics=metrics)
    client.log_batch(run.info.run_id, metrics=[Metric("lr", 0.1 * 0.9 ** s, now + s, s) for s in range(50)])
    client.set_terminated(run.info.run_id)
    seeded.long_run = run.info.run_id
    # Payloads in every field a user controls.
    seeded.xss_experiment_id = client.create_experiment(XSS, tags={"note": XSS})
    run = client.create_run(seeded.xss_experiment_id, run_name=XSS, tags={"note": XSS})
    client.log_batch(run.info.run_id, metrics=[Metric("m", 1.0, now, 0)], params=[Param("p", XSS)])
    seeded.xss_run = run.info.run_id
    # Artifacts logged through the client's own calls: JSON, CSV, text and an SVG carrying a script.
    client.log_dict(run.info.run_id, {"accuracy": 0.91, "note": XSS}, "metrics.json")
    client.log_text(run.info.run_id, "id,name\n" + "".join(f"{i},{XSS if i == 3 else i}\n" for i in range(50)),
                    "data/rows.csv")
    svg = ('<svg xmlns="http://www.w3.org/2000/svg" width="120" height="80"><rect width="120" height="80" '
           'fill="#0b6bcb"/><script>window.__xss=3;alert(3)</script></svg>')
    client.log_text(run.info.run_id, svg, "plots/roc.svg")
    return seeded


def _churn_table(path, n, seed):
    """Rows of age, income, group and a label that depends on them (as the CLI tests' table)."""
    import random
    rng = random.Random(seed)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["age", "income", "group", "y"])
        for _ in range(n):
            group = "a" if rng.random() < 0.5 else "b"
            age, income = 20 + 40 * rng.random(), 20 + 60 * rng.random()
            score = 0.05 * (age - 40) + 0.04 * (income - 50) + (0.4 if group == "a" else 0) + rng.random() - 0.5
            writer.writerow([f"{age:.2f}", f"{income:.2f}", group, int(score > 0)])


def _seed_releases(binary, workdir, url):
    """What the action forms work on, made with the CLI: `gated` v1 (logistic) and v2 (a
    one-split tree) with a stored gate policy (accuracy >= 0.6, no worse than the champion);
    a deployment `scored` of v1 with v2 as a 30% canary, serving real answers; a monitor whose
    rule fired on that traffic."""
    store = ["--tracking-uri", f"sqlite:///{workdir}/shipyard.db", "--artifacts-destination", str(workdir / "artifacts")]

    def cli(*args, fired_ok=False):
        done = subprocess.run([binary, *args, *store], capture_output=True, text=True, timeout=120)
        # `monitor evaluate` exits 1 when a rule fired: that is what it is run for here.
        assert done.returncode == 0 or (fired_ok and done.returncode == 1), f"{args}: {done.stderr}"
        return done.stdout

    _churn_table(workdir / "train.csv", 1500, 1)
    _churn_table(workdir / "eval.csv", 500, 2)
    for model in (["--model", "logistic_regression"], ["--model", "decision_tree", "--param", "max_depth=1"]):
        cli("train", "--data", str(workdir / "train.csv"), "--target", "y", "--register", "gated", *model)
    policy = workdir / "policy.yaml"
    policy.write_text(f"gates: 1\nevaluation: {{data: '{workdir / 'eval.csv'}', target: y}}\n"
                      "metrics: {accuracy: {min: 0.6}}\nchampion: {tolerance: 0.0}\n")
    cli("models", "set-policy", "gated", "--policy", str(policy))
    cli("deploy", "scored", "--model", "models:/gated/1", "--canary", "models:/gated/2", "--weight", "30")
    monitor = workdir / "monitor.yaml"
    monitor.write_text("monitors: 1\nwindow: {last: 100}\ninterval_seconds: 3600\nrules:\n"
                       "  - {name: traffic-seen, metric: rows, op: '>=', threshold: 1, min_rows: 1}\n")
    cli("monitor", "configure", "--deployment", "scored", "--config", str(monitor))
    body = b'{"records": [{"age": 30, "income": 40, "group": "a"}]}'
    for _ in range(20):
        request = urllib.request.Request(url + "/predict/scored", data=body,
                                         headers={"content-type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as r:
            assert r.status == 200
    deadline = time.time() + 30
    while '"traffic-seen"' not in cli("monitor", "alerts", "--deployment", "scored", "--format", "json"):
        assert time.time() < deadline, "the monitor's rule never fired"
        time.sleep(0.3)
        cli("monitor", "evaluate", "--deployment", "scored", fired_ok=True)


@pytest.fixture(scope="session")
def server():
    workdir = Path(tempfile.mkdtemp(prefix="shipyard-browser-"))
    port = _free_port()
    binary = os.environ.get("SHIPYARD_BIN", str(REPO / "target" / "release" / "shipyard"))
    log_path = workdir / "server.log"
    proc = subprocess.Popen([binary, "server", "--backend-store-uri", f"sqlite:///{workdir}/shipyard.db",
                             "--artifacts-destination", str(workdir / "artifacts"),
                             "--host", "127.0.0.1", "--port", str(port)],
                            stdout=open(log_path, "w"), stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while True:
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as r:
                if r.status == 200:
                    break
        except Exception:
            pass
        if proc.poll() is not None or time.time() > deadline:
            raise RuntimeError("shipyard server did not start:\n" + log_path.read_text(errors="replace")[-3000:])
        time.sleep(0.05)
    try:
        seeded = _seed(url)
        # A deployment of the registered model (a canary at 20%), made with the CLI on the
        # server's store; its versions have no files, so it serves nothing: its page still shows.
        subprocess.run([binary, "deploy", "web", "--model", "models:/churn@champion", "--canary", "models:/churn/1",
                        "--weight", "20", "--no-wait", "--tracking-uri", f"sqlite:///{workdir}/shipyard.db",
                        "--artifacts-destination", str(workdir / "artifacts")],
                       check=True, capture_output=True, timeout=60)
        # A dataset version, recorded and profiled by `shipyard data add`.
        table = workdir / "people.csv"
        # Two versions of it, the second older by 30 years: the drift between them.
        for shift in (0, 30):
            with open(table, "w", newline="") as f:
                writer = csv.writer(f)
                writer.writerow(["age", "city"])
                writer.writerows([20 + shift + i % 50, XSS if i % 4 == 0 else f"c{i % 4}"] for i in range(200))
            subprocess.run([binary, "data", "add", str(table), "--name", "people", "--tracking-uri",
                            f"sqlite:///{workdir}/shipyard.db", "--artifacts-destination", str(workdir / "artifacts")],
                           check=True, capture_output=True, timeout=60)
        # A suite run on the latest version, recorded with it; the payload is among the values
        # it reports as unexpected.
        suite = workdir / "people-suite.yaml"
        suite.write_text("suite: 1\ncolumns:\n  age: {not_null: true, max: 200}\n  city: {allowed_values: [c1, c2, c3]}\n")
        done = subprocess.run([binary, "data", "validate", "dataset:people", "--suite", str(suite), "--tracking-uri",
                               f"sqlite:///{workdir}/shipyard.db", "--artifacts-destination", str(workdir / "artifacts")],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 1 and "recorded with dataset:people@2" in done.stdout, done.stdout + done.stderr
        _seed_releases(binary, workdir, url)
        yield seeded
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium = os.environ.get("CHROMIUM_BIN", "/usr/bin/chromium")
    driver_bin = os.environ.get("CHROMEDRIVER_BIN", "/usr/bin/chromedriver")
    for path in (chromium, driver_bin):
        if not os.access(path, os.X_OK):
            raise RuntimeError(f"{path} is missing: install Debian's chromium and chromium-driver "
                               "(scripts/test.sh does)")
    profile = tempfile.mkdtemp(prefix="shipyard-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--window-size=1280,900", f"--user-data-dir={profile}"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=driver_bin), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
