"""Bastion vs MLflow tracking server: same machine, same client, same workload.

The client is a single keep-alive HTTP/1.1 connection (http.client), so the figures measure the
servers rather than a heavy Python client stack. Both servers use SQLite.
"""
import argparse
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
from concurrent.futures import ThreadPoolExecutor


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Conn:
    def __init__(self, port):
        self.port = port
        self.c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

    def call(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if data else {}
        try:
            self.c.request(method, "/api/2.0/mlflow" + path, body=data, headers=headers)
            r = self.c.getresponse()
        except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
            # The server closed an idle keep-alive connection (uvicorn does after 5 s).
            self.c.close()
            self.c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
            self.c.request(method, "/api/2.0/mlflow" + path, body=data, headers=headers)
            r = self.c.getresponse()
        payload = r.read()
        if r.status != 200:
            raise RuntimeError(f"{method} {path}: {r.status} {payload[:300]!r}")
        return json.loads(payload) if payload else {}


def wait_healthy(port, proc, what):
    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited early")
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", "/health")
            if c.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.25)
    raise RuntimeError(f"{what} did not start")


def tree_rss_mb(pid):
    """RSS of a process and all its descendants, in MB."""
    total = 0
    todo = [pid]
    seen = set()
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
            with open(f"/proc/{p}/task/{p}/children") as f:
                todo.extend(int(x) for x in f.read().split())
        except OSError:
            pass
    return total / 1024, len(seen)


def populate(port, exp, n, threads=8):
    """n runs, each with a metric, a param and a tag, written with a few parallel clients."""
    def work(chunk):
        c = Conn(port)
        for i in chunk:
            run = c.call("POST", "/runs/create", {"experiment_id": exp, "start_time": 1_000_000 + i, "run_name": f"r{i}"})["run"]["info"]["run_id"]
            c.call("POST", "/runs/log-batch", {
                "run_id": run,
                "metrics": [{"key": "loss", "value": (i * 7919 % 1000) / 1000, "timestamp": 1, "step": 0},
                            {"key": "acc", "value": (i % 100) / 100, "timestamp": 1, "step": 0}],
                "params": [{"key": "model", "value": ["cnn", "rnn", "mlp", "gbm"][i % 4]}],
                "tags": [{"key": "team", "value": f"t{i % 10}"}],
            })
    chunks = [range(t, n, threads) for t in range(threads)]
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(work, chunks))


def bench(name, port, runs_large):
    c = Conn(port)
    out = {}
    exp = c.call("POST", "/experiments/create", {"name": f"bench-{time.time_ns()}"})["experiment_id"]
    run = c.call("POST", "/runs/create", {"experiment_id": exp, "start_time": 1})["run"]["info"]["run_id"]
    # (a) sequential log-metric on one keep-alive connection
    t = time.perf_counter()
    for i in range(2000):
        c.call("POST", "/runs/log-metric", {"run_id": run, "key": "m", "value": i * 0.1, "timestamp": 1000 + i, "step": i})
    out["a_log_metric_2000_s"] = time.perf_counter() - t
    # (b) 10 x log-batch of 1000 metrics
    t = time.perf_counter()
    for b in range(10):
        metrics = [{"key": f"k{j % 10}", "value": j * 0.5, "timestamp": 5000 + b, "step": b * 1000 + j} for j in range(1000)]
        c.call("POST", "/runs/log-batch", {"run_id": run, "metrics": metrics})
    out["b_log_batch_10x1000_s"] = time.perf_counter() - t
    # (c) search with a filter and order_by over 200 and over N runs
    for label, n in (("200", 200), (str(runs_large), runs_large)):
        e = c.call("POST", "/experiments/create", {"name": f"search-{n}-{time.time_ns()}"})["experiment_id"]
        t = time.perf_counter()
        populate(port, e, n)
        out[f"populate_{label}_s"] = time.perf_counter() - t
        body = {"experiment_ids": [e], "filter": "metrics.loss < 0.5 and params.model = 'cnn'",
                "order_by": ["metrics.acc DESC"], "max_results": 100}
        c.call("POST", "/runs/search", body)  # warm-up
        times = []
        for _ in range(21):
            t = time.perf_counter()
            res = c.call("POST", "/runs/search", body)
            times.append(time.perf_counter() - t)
        out[f"c_search_{label}_p50_ms"] = statistics.median(times) * 1000
        out[f"c_search_{label}_hits"] = len(res.get("runs", []))
    print(f"  {name}: {json.dumps({k: round(v, 4) for k, v in out.items()})}", flush=True)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bastion", required=True)
    ap.add_argument("--mlflow", required=True)
    ap.add_argument("--runs", type=int, default=10_000)
    args = ap.parse_args()
    root = tempfile.mkdtemp(prefix="bench-tracking-")
    procs = []
    try:
        mport, bport = free_port(), free_port()
        mlog = open(os.path.join(root, "mlflow.log"), "w")
        mproc = subprocess.Popen(
            [args.mlflow, "server", "--host", "127.0.0.1", "--port", str(mport),
             "--backend-store-uri", f"sqlite:///{root}/mlflow.db", "--artifacts-destination", f"{root}/mlartifacts"],
            stdout=mlog, stderr=mlog, start_new_session=True)
        procs.append(mproc)
        blog = open(os.path.join(root, "bastion.log"), "w")
        bproc = subprocess.Popen([args.bastion, "--home", f"{root}/bastion", "server", "--port", str(bport)],
                                 stdout=blog, stderr=blog, start_new_session=True)
        procs.append(bproc)
        wait_healthy(mport, mproc, "mlflow server")
        wait_healthy(bport, bproc, "bastion server")
        print(f"workload: (a) 2000 log-metric, (b) 10 x log-batch(1000), (c) filtered+ordered search over 200 and {args.runs} runs")
        b = bench("bastion", bport, args.runs)
        b_rss, b_procs = tree_rss_mb(bproc.pid)
        m = bench("mlflow ", mport, args.runs)
        m_rss, m_procs = tree_rss_mb(mproc.pid)
        print()
        print(f"{'measure':34} {'mlflow':>12} {'bastion':>12} {'ratio':>8}")
        for key in ["a_log_metric_2000_s", "b_log_batch_10x1000_s", "c_search_200_p50_ms", f"c_search_{args.runs}_p50_ms"]:
            print(f"{key:34} {m[key]:12.4f} {b[key]:12.4f} {m[key] / b[key]:7.1f}x")
        print(f"{'search hits (must match)':34} {m[f'c_search_{args.runs}_hits']:12} {b[f'c_search_{args.runs}_hits']:12}")
        print(f"{'server RSS after workload (MB)':34} {m_rss:12.1f} {b_rss:12.1f} {m_rss / b_rss:7.1f}x")
        print(f"{'server processes':34} {m_procs:12} {b_procs:12}")
    finally:
        for p in procs:
            try:
                os.killpg(p.pid, signal.SIGTERM)
                p.wait(timeout=30)
            except Exception:
                pass
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
