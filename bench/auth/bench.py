#!/usr/bin/env python3
"""Authentication benchmark: `mlflow server --app-name basic-auth` and `shipyard server --auth`.

Run through bench/auth/run.sh. For each server, on SQLite in a fresh temporary directory, on a
free loopback port, one keep-alive HTTP connection sends `GET /api/2.0/mlflow/experiments/get`
(a request both servers answer from one indexed row) and the client measures each answer:

  anonymous   the same server without authentication (the floor)
  password    HTTP Basic with a right password, as the mlflow client sends it on every request
  token       a token (Shipyard: `Authorization: Bearer shp_...`; MLflow 3.17 has no tokens)
  wrong       HTTP Basic with a wrong password (401), each on a new user name: the first five
              from one address (Shipyard throttles after five)
  throttled   Shipyard only: wrong passwords after those five, refused (429) without a check
  first       the first request of a user after the server started (no cached verification)

Medians and 90th percentiles in milliseconds; the overhead is the median minus the anonymous
median. The machine is noisy: read the ratios. Prints a table and writes JSON.

usage: bench.py SHIPYARD_BIN OUT_JSON [--quick]
"""
import base64
import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import machine  # noqa: E402

QUICK = "--quick" in sys.argv
N = 200 if QUICK else 2000
# Shipyard throttles a client address after 5 failures: 5 wrong passwords are checked, the
# following ones refused with 429 before any check (measured apart, as `throttled`).
WRONG = 5
THROTTLED = 20 if QUICK else 200
ADMIN = ("admin", "admin-password-for-bench")
USER = ("bench-user", "bench-user-password")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_up(port, deadline=60):
    end = time.time() + deadline
    while time.time() < end:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", "/health")
            if c.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"no server on port {port}")


def basic(user, password):
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def timed(port, path, headers, n):
    """n requests on one keep-alive connection; each answer's time in ms, and the last status."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    times, status = [], None
    for _ in range(n):
        start = time.perf_counter()
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        response.read()
        times.append((time.perf_counter() - start) * 1000)
        status = response.status
    conn.close()
    return times, status


def call(port, method, path, headers, body=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    data = json.dumps(body).encode() if body is not None else None
    h = dict(headers)
    if data is not None:
        h["Content-Type"] = "application/json"
    conn.request(method, path, body=data, headers=h)
    response = conn.getresponse()
    text = response.read()
    conn.close()
    return response.status, (json.loads(text) if text.startswith(b"{") else text)


def summary(times):
    times = sorted(times)
    return {"median_ms": statistics.median(times), "p90_ms": times[int(len(times) * 0.9) - 1], "n": len(times)}


def stop(proc):
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(20)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def start_shipyard(binary, home, auth):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHIPYARD_")}
    args = [binary, "server", "--port", str(port), "--home", home, "--no-model-serving", "--no-monitors", "--no-ui"]
    if auth:
        args.append("--auth")
        env["SHIPYARD_ADMIN_PASSWORD"] = ADMIN[1]
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    wait_up(port)
    return proc, port


def start_mlflow(home, auth):
    port = free_port()
    env = dict(os.environ)
    args = ["mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
            "--backend-store-uri", f"sqlite:///{home}/mlflow.db", "--artifacts-destination", f"{home}/artifacts"]
    if auth:
        ini = os.path.join(home, "basic_auth.ini")
        with open(ini, "w") as f:
            f.write("[mlflow]\ndefault_permission = READ\n"
                    f"database_uri = sqlite:///{home}/basic_auth.db\n"
                    f"admin_username = {ADMIN[0]}\nadmin_password = {ADMIN[1]}\n"
                    "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n")
        env["MLFLOW_AUTH_CONFIG_PATH"] = ini
        env["MLFLOW_FLASK_SERVER_SECRET_KEY"] = "bench-secret-key"
        args += ["--app-name", "basic-auth"]
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    wait_up(port, deadline=120)
    return proc, port


def measure(name, start, binary=None):
    """The anonymous floor, then every authenticated case, for one server kind."""
    results = {}
    home = tempfile.mkdtemp(prefix=f"bench-auth-{name}-")
    try:
        proc, port = start(binary, home, False) if binary else start(home, False)
        try:
            path = "/api/2.0/mlflow/experiments/get?experiment_id=0"
            timed(port, path, {}, 50)
            results["anonymous"] = summary(timed(port, path, {}, N)[0])
        finally:
            stop(proc)
        shutil.rmtree(home, ignore_errors=True)
        home = tempfile.mkdtemp(prefix=f"bench-auth-{name}-")
        proc, port = start(binary, home, True) if binary else start(home, True)
        try:
            admin = {"Authorization": basic(*ADMIN)}
            status, made = call(port, "POST", "/api/2.0/mlflow/users/create", admin,
                                {"username": USER[0], "password": USER[1]})
            assert status == 200, (status, made)
            user = {"Authorization": basic(*USER)}
            path = "/api/2.0/mlflow/experiments/get?experiment_id=0"
            first, status = timed(port, path, user, 1)
            assert status == 200, status
            results["first"] = {"median_ms": first[0], "p90_ms": first[0], "n": 1}
            timed(port, path, user, 50)
            times, status = timed(port, path, user, N)
            assert status == 200, status
            results["password"] = summary(times)
            if binary:
                status, made = call(port, "POST", "/api/shipyard/tokens/create", user, {"name": "bench"})
                assert status == 200, (status, made)
                token = {"Authorization": f"Bearer {made['token']}"}
                timed(port, path, token, 50)
                results["token"] = summary(timed(port, path, token, N)[0])
            wrong = []
            for i in range(WRONG):
                t, status = timed(port, path, {"Authorization": basic(f"nobody-{i}", "wrong-password-xyz")}, 1)
                assert status == 401, status
                wrong.extend(t)
            results["wrong"] = summary(wrong)
            if binary:
                throttled = []
                for i in range(THROTTLED):
                    t, status = timed(port, path, {"Authorization": basic(f"later-{i}", "wrong-password-xyz")}, 1)
                    assert status == 429, status
                    throttled.extend(t)
                results["throttled"] = summary(throttled)
        finally:
            stop(proc)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    return results


def main():
    binary, out = sys.argv[1], sys.argv[2]
    shipyard = measure("shipyard", start_shipyard, binary)
    mlflow = measure("mlflow", start_mlflow)
    rows = ["anonymous", "first", "password", "token", "wrong", "throttled"]
    print(f"{'request':<12}{'Shipyard median (p90) ms':>28}{'MLflow median (p90) ms':>28}{'ratio':>8}")
    for row in rows:
        s, m = shipyard.get(row), mlflow.get(row)
        fmt = lambda r: f"{r['median_ms']:.3f} ({r['p90_ms']:.3f})" if r else "-"  # noqa: E731
        ratio = f"{m['median_ms'] / s['median_ms']:.1f}x" if s and m else "-"
        print(f"{row:<12}{fmt(s):>28}{fmt(m):>28}{ratio:>8}")
    for name, r in (("Shipyard", shipyard), ("MLflow", mlflow)):
        print(f"{name}: a logged-in request costs {r['password']['median_ms'] - r['anonymous']['median_ms']:+.3f} ms "
              "over an anonymous one (medians)")
    record = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": {"cpu": machine.cpu_model(), "load": machine.loadavg(), "cores": os.cpu_count()},
        "requests_per_case": N,
        "shipyard": shipyard,
        "mlflow": mlflow,
    }
    with open(out, "w") as f:
        json.dump(record, f, indent=2)


if __name__ == "__main__":
    main()
