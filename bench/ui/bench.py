"""The web UI benchmark: Shipyard's pages against MLflow's UI on the same data.

    bench/ui/bench.py SHIPYARD_BIN OUT.json [--quick]

1. Starts `shipyard server` and `mlflow server` (SQLite each, MLflow with --workers 1) on free
   loopback ports and fills both through MLflow's REST API with the same data (seed.py):
   10,000 runs x 50 metrics (5 params each) and one run whose metric `loss` has 1,000,000
   steps with 3 one-step spikes to +50 and 2 dips to -25 (--quick: 500 runs x 10 metrics,
   100,000 steps).
2. Server time (median of 15 requests): Shipyard's experiment page, a run page and the
   reduced series of the 1M-step metric; for MLflow, the API calls its UI makes for the same
   views (runs/search of 100 runs, runs/get, metrics/get-history-bulk-interval with the 320
   points its charts ask for). Whether each answer holds the spikes is checked.
3. In headless Chromium (Debian's, via chromium-driver): the time from navigation start until
   each page's table or chart is drawn, read in the page (performance.now() when a condition
   first holds, checked on every DOM change and every 5 ms): a cold load (empty cache), then
   the median of 5 warm loads. And the JavaScript and CSS each page downloads.

Prints a table of medians and ratios and writes every number to OUT.json.
"""
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
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from machine import cpu_model, loadavg  # noqa: E402

SPIKES, DIPS = 3, 2


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_up(url, proc, log, seconds=120):
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as r:
                if r.status == 200:
                    return
        except Exception:
            pass
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not start:\n" + Path(log).read_text(errors="replace")[-3000:])


def stop(proc):
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(proc.pid, signal.SIGKILL)


def seed(url, quick):
    args = ["--runs", "500", "--metrics", "10", "--steps", "100000"] if quick else []
    out = subprocess.run([sys.executable, str(HERE / "seed.py"), "--url", url, *args],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def timed(fn, n=15):
    times = []
    result = None
    for _ in range(n):
        t = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times), result


def http(url, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"} if data else {})
    with urllib.request.urlopen(req, timeout=600) as r:
        return r.read()


def server_times(shipyard, mlflow, ids_s, ids_m):
    out = {}
    ms, _ = timed(lambda: http(f"{shipyard}/experiments/{ids_s['experiment_id']}"))
    out["experiment page"] = {"shipyard_ms": ms}
    ms, _ = timed(lambda: http(f"{mlflow}/ajax-api/2.0/mlflow/runs/search",
                               {"experiment_ids": [ids_m["experiment_id"]], "max_results": 100,
                                "order_by": ["attributes.start_time DESC"], "run_view_type": "ACTIVE_ONLY"}))
    out["experiment page"]["mlflow_ms"] = ms
    ms, _ = timed(lambda: http(f"{shipyard}/runs/{ids_s['first_run_id']}"))
    out["run page"] = {"shipyard_ms": ms}
    ms, _ = timed(lambda: http(f"{mlflow}/ajax-api/2.0/mlflow/runs/get?run_id={ids_m['first_run_id']}"))
    out["run page"]["mlflow_ms"] = ms
    ms, body = timed(lambda: http(f"{shipyard}/ui-api/series?run={ids_s['long_run_id']}&key=loss&buckets=1500"), n=7)
    series = json.loads(body)["runs"][0]
    out["long series"] = {"shipyard_ms": ms, "shipyard_points_sent": len(series["count"]),
                             "shipyard_max": max(series["max"]), "shipyard_min": min(series["min"])}
    url = (f"{mlflow}/ajax-api/2.0/mlflow/metrics/get-history-bulk-interval?run_ids={ids_m['long_run_id']}"
           "&metric_key=loss&max_results=320")
    ms, body = timed(lambda: http(url), n=7)
    values = [m["value"] for m in json.loads(body).get("metrics", [])]
    out["long series"].update({"mlflow_ms": ms, "mlflow_points_sent": len(values),
                                  "mlflow_max": max(values) if values else None,
                                  "mlflow_min": min(values) if values else None})
    return out


# Page-side timing: a script the browser runs before the page's own, recording when the
# condition first holds (checked on each DOM change and every 5 ms).
PROBE = """
(function () {
  var test = new Function("return (" + %s + ")");
  window.__drawnAt = null;
  function check() {
    if (window.__drawnAt !== null) return;
    try { if (test()) window.__drawnAt = performance.now(); } catch (e) {}
  }
  new MutationObserver(check).observe(document, {subtree: true, childList: true, attributes: true});
  setInterval(check, 5);
})();
"""


def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    options.binary_location = os.environ.get("CHROMIUM_BIN", "/usr/bin/chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--window-size=1280,900", f"--user-data-dir={tempfile.mkdtemp()}"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(os.environ.get("CHROMEDRIVER_BIN", "/usr/bin/chromedriver")),
                            options=options)


def page_time(driver, url, condition, timeout=120):
    """ms from navigation start until `condition` (a JS expression) first holds, and the JS+CSS
    bytes the page downloaded."""
    driver.get("about:blank")
    script = driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": PROBE % json.dumps(condition)})
    try:
        driver.get(url)
        deadline = time.time() + timeout
        while time.time() < deadline:
            at = driver.execute_script("return window.__drawnAt")
            if at is not None:
                sizes = driver.execute_script("""
                    var total = 0;
                    performance.getEntriesByType('resource').forEach(function (r) {
                      // By name: a preloaded series is a `link` resource too, and is data.
                      if (/\\.(js|css)(\\?|$)/.test(r.name)) total += r.decodedBodySize || 0;
                    });
                    return total;""")
                return at, sizes
            time.sleep(0.05)
        raise RuntimeError(f"{url}: `{condition}` did not hold within {timeout} s")
    finally:
        driver.execute_cdp_cmd("Page.removeScriptToEvaluateOnNewDocument", {"identifier": script["identifier"]})


def browser_times(shipyard, mlflow, s, m, warm=5):
    pages = {
        "experiment page": (
            (f"{shipyard}/experiments/{s['experiment_id']}", "document.querySelectorAll('#runs tbody tr').length >= 50"),
            (f"{mlflow}/#/experiments/{m['experiment_id']}/runs",
             "document.querySelectorAll('.ag-center-cols-container .ag-row').length >= 10"),
        ),
        "run page": (
            (f"{shipyard}/runs/{s['first_run_id']}", "document.querySelectorAll('#metrics tbody tr').length >= 10"),
            (f"{mlflow}/#/experiments/{m['experiment_id']}/runs/{m['first_run_id']}",
             "document.body.innerText.indexOf('metric_09') >= 0"),
        ),
        "long chart": (
            (f"{shipyard}/runs/{s['long_run_id']}",
             "document.querySelector('figure.chart[data-key=\"loss\"][data-state=\"drawn\"]') !== null"),
            (f"{mlflow}/#/experiments/{m['experiment_id']}/runs/{m['long_run_id']}/model-metrics",
             "document.querySelectorAll('.js-plotly-plot .scatterlayer .trace').length >= 1"),
        ),
    }
    out = {}
    for page, sides in pages.items():
        out[page] = {}
        for side, (url, condition) in zip(("shipyard", "mlflow"), sides):
            driver = browser()
            try:
                cold, js_css = page_time(driver, url, condition)
                warm_times = [page_time(driver, url, condition)[0] for _ in range(warm)]
            finally:
                driver.quit()
            out[page][side] = {"cold_ms": cold, "warm_median_ms": statistics.median(warm_times),
                               "warm_ms": warm_times, "js_css_bytes": js_css}
        if page == "long chart":
            driver = browser()
            try:
                page_time(driver, sides[0][0], sides[0][1])
                el = driver.find_element("css selector", 'figure.chart[data-key="loss"]')
                out[page]["shipyard"]["drawn_max"] = float(el.get_attribute("data-max"))
                out[page]["shipyard"]["drawn_min"] = float(el.get_attribute("data-min"))
            finally:
                driver.quit()
    return out


def mlflow_bundle_bytes(python):
    """The size of MLflow's built UI in its wheel."""
    code = ("import mlflow, os; root = os.path.join(os.path.dirname(mlflow.__file__), 'server', 'js', 'build');"
            "print(sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(root) for f in fs))")
    return int(subprocess.run([python, "-c", code], capture_output=True, text=True, check=True).stdout)


def main():
    shipyard_bin, out_path = sys.argv[1], sys.argv[2]
    quick = "--quick" in sys.argv[3:]
    work = Path(tempfile.mkdtemp(prefix="ui-bench-", dir=os.environ.get("SHIPYARD_BENCH_WORK")))
    sp, mp = free_port(), free_port()
    shipyard_url, mlflow_url = f"http://127.0.0.1:{sp}", f"http://127.0.0.1:{mp}"
    procs = []
    try:
        s_log, m_log = work / "shipyard.log", work / "mlflow.log"
        s = subprocess.Popen([shipyard_bin, "server", "--backend-store-uri", f"sqlite:///{work}/shipyard.db",
                              "--artifacts-destination", str(work / "s-art"), "--host", "127.0.0.1", "--port", str(sp)],
                             stdout=open(s_log, "w"), stderr=subprocess.STDOUT, start_new_session=True)
        procs.append(s)
        m = subprocess.Popen(["mlflow", "server", "--backend-store-uri", f"sqlite:///{work}/mlflow.db",
                              "--artifacts-destination", str(work / "m-art"), "--host", "127.0.0.1",
                              "--port", str(mp), "--workers", "1"],
                             stdout=open(m_log, "w"), stderr=subprocess.STDOUT, start_new_session=True,
                             env=dict(os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false"))
        procs.append(m)
        wait_up(shipyard_url, s, s_log)
        wait_up(mlflow_url, m, m_log)
        began = time.time()
        ids_s = seed(shipyard_url, quick)
        print(f"seeded shipyard in {ids_s['seconds']} s", flush=True)
        ids_m = seed(mlflow_url, quick)
        print(f"seeded mlflow in {ids_m['seconds']} s", flush=True)
        result = {
            "date": time.strftime("%Y-%m-%d %H:%M"),
            "machine": {"cpus": os.cpu_count(), "cpu": cpu_model(), "loadavg_before": loadavg()},
            "data": {"runs": 500 if quick else 10_000, "metrics_per_run": 10 if quick else 50,
                     "long_metric_steps": 100_000 if quick else 1_000_000, "spikes": SPIKES, "dips": DIPS,
                     "seed_seconds": {"shipyard": ids_s["seconds"], "mlflow": ids_m["seconds"]}},
            "server": server_times(shipyard_url, mlflow_url, ids_s, ids_m),
            "browser": browser_times(shipyard_url, mlflow_url, ids_s, ids_m),
            "mlflow_ui_bundle_bytes": mlflow_bundle_bytes(sys.executable),
            "seconds": round(time.time() - began, 1),
        }
    finally:
        for p in procs:
            stop(p)
    Path(out_path).write_text(json.dumps(result, indent=2))
    print(f"\n{'':22} {'Shipyard':>12} {'MLflow':>12} {'ratio':>8}")
    for page, v in result["server"].items():
        print(f"server {page:15} {v['shipyard_ms']:10.1f}ms {v['mlflow_ms']:10.1f}ms {v['mlflow_ms'] / v['shipyard_ms']:7.1f}x")
    for page, v in result["browser"].items():
        for kind in ("cold_ms", "warm_median_ms"):
            a, b = v["shipyard"][kind], v["mlflow"][kind]
            print(f"browser {page[:10]:10} {kind[:4]:4} {a:10.1f}ms {b:10.1f}ms {b / a:7.1f}x")
    sv = result["server"]["long series"]
    print(f"long series: Shipyard sent {sv['shipyard_points_sent']} buckets, max {sv['shipyard_max']}, min "
          f"{sv['shipyard_min']}; MLflow sent {sv['mlflow_points_sent']} points, max {sv['mlflow_max']}, "
          f"min {sv['mlflow_min']} (spikes are +50, dips -25)")
    js = {k: v["shipyard"]["js_css_bytes"] for k, v in result["browser"].items()}
    print(f"JS+CSS per page: Shipyard {js}; MLflow's UI bundle {result['mlflow_ui_bundle_bytes']} bytes")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
