"""Fills a tracking server with the UI benchmark's data through MLflow's REST API, so Shipyard
and MLflow receive exactly the same runs (same names, params, metrics, values).

- `--runs` runs in experiment `ui-bench`, each with `--metrics` metrics (a few steps each) and
  5 params;
- one run `long-history` in the same experiment with a metric `loss` of `--steps` steps: a slow
  wave with a spike to +50 at 3 single steps and a dip to -25 at 2 (SPIKES and DIPS, as fractions
  of the history; a chart that loses them is wrong), plus `lr` with 100 steps.

Prints one JSON line: {"experiment_id", "long_run_id", "first_run_id", "seconds"}.

    python bench/ui/seed.py --url http://127.0.0.1:5000 --runs 10000 --metrics 50 --steps 1000000
"""

import argparse
import concurrent.futures
import json
import math
import random
import time
import urllib.error
import urllib.parse
import urllib.request

# Where the spikes and dips are, as fractions of the history (step 123,457 of 1,000,000, ...).
SPIKES = [0.123457, 0.500001, 0.877777]
DIPS = [0.25, 0.654321]


def outliers(steps):
    """The steps of the spikes (+50) and of the dips (-25) in a history of `steps` steps."""
    return {int(f * steps) for f in SPIKES}, {int(f * steps) for f in DIPS}


def value_at(step, steps, spikes, dips):
    if step in spikes:
        return 50.0
    if step in dips:
        return -25.0
    return 1.0 + 0.5 * math.sin(step / max(steps / 20, 1)) + 0.01 * ((step * 7919) % 101) / 101


class Client:
    def __init__(self, url):
        self.url = url.rstrip("/") + "/api/2.0/mlflow/"

    def post(self, path, body):
        req = urllib.request.Request(self.url + path, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=600) as r:
            return json.loads(r.read() or b"{}")

    def experiment(self, name):
        try:
            return self.post("experiments/create", {"name": name})["experiment_id"]
        except urllib.error.HTTPError:
            q = urllib.parse.urlencode({"experiment_name": name})
            with urllib.request.urlopen(self.url + "experiments/get-by-name?" + q) as r:
                return json.loads(r.read())["experiment"]["experiment_id"]

    def run(self, experiment_id, name, start):
        body = {"experiment_id": experiment_id, "run_name": name, "start_time": start}
        return self.post("runs/create", body)["run"]["info"]["run_id"]


def seed_run(client, experiment_id, i, metrics, start):
    rng = random.Random(i)
    run_id = client.run(experiment_id, f"run-{i:05d}", start + i * 1000)
    params = [{"key": k, "value": str(v)} for k, v in
              [("lr", rng.choice([0.001, 0.01, 0.1])), ("depth", rng.randint(2, 12)),
               ("model", rng.choice(["rf", "gbm", "linear"])), ("seed", i), ("batch", rng.choice([32, 64, 128]))]]
    batch = []
    for m in range(metrics):
        for step in range(3):
            batch.append({"key": f"metric_{m:02d}", "value": rng.random() + step * 0.1,
                          "timestamp": start + i * 1000 + step, "step": step})
    for at in range(0, len(batch), 1000):
        client.post("runs/log-batch", {"run_id": run_id, "metrics": batch[at:at + 1000],
                                       "params": params if at == 0 else []})
    client.post("runs/update", {"run_id": run_id, "status": "FINISHED", "end_time": start + i * 1000 + 900})
    return run_id


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--runs", type=int, default=10_000)
    ap.add_argument("--metrics", type=int, default=50)
    ap.add_argument("--steps", type=int, default=1_000_000)
    ap.add_argument("--threads", type=int, default=8)
    args = ap.parse_args()
    began = time.time()
    client = Client(args.url)
    experiment_id = client.experiment("ui-bench")
    start = 1_780_000_000_000
    long_run = client.run(experiment_id, "long-history", start)

    spikes, dips = outliers(args.steps)

    def history(at):
        batch = [{"key": "loss", "value": value_at(s, args.steps, spikes, dips), "timestamp": start + s, "step": s}
                 for s in range(at, min(at + 1000, args.steps))]
        client.post("runs/log-batch", {"run_id": long_run, "metrics": batch})

    with concurrent.futures.ThreadPoolExecutor(args.threads) as pool:
        list(pool.map(history, range(0, args.steps, 1000)))
        lr = [{"key": "lr", "value": 0.1 * 0.97 ** s, "timestamp": start + s * 10_000, "step": s * 10_000}
              for s in range(100)]
        client.post("runs/log-batch", {"run_id": long_run, "metrics": lr})
        client.post("runs/update", {"run_id": long_run, "status": "FINISHED", "end_time": start + args.steps})
        ids = list(pool.map(lambda i: seed_run(client, experiment_id, i, args.metrics, start), range(args.runs)))
    print(json.dumps({"experiment_id": experiment_id, "long_run_id": long_run,
                      "first_run_id": ids[0] if ids else None, "seconds": round(time.time() - began, 1)}))


if __name__ == "__main__":
    main()
