"""Bastion vs MLflow tracking server: same machine, same client, same workload.

The client is a single keep-alive HTTP/1.1 connection (http.client), so the figures measure the
servers rather than a heavy Python client stack. Both servers use SQLite. Bastion runs as it
does by default: authentication on (the client sends the bootstrap admin token), every write
authorized and audited.

--auth-overhead BASELINE_BIN instead measures what authentication, authorization and the audit
log cost: the p50 of log-metric on a Bastion built before them (BASELINE_BIN), on this Bastion
with --insecure (audit only) and on this Bastion as deployed (token + authorization + audit).
"""
import re
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
    """A client connection. keepalive=False opens a new TCP connection for every request."""

    def __init__(self, port, keepalive=True, token=None):
        self.port = port
        self.keepalive = keepalive
        self.token = token
        self.c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

    def call(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if data else {}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
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
        if not self.keepalive:
            self.c.close()
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


def bootstrap_token(log_path):
    with open(log_path, errors="replace") as f:
        found = re.search(r"bst_[0-9a-f]{12}_[A-Za-z0-9_-]{43}", f.read())
    return found.group(0) if found else None


def populate(port, exp, n, threads=8, token=None):
    """n runs, each with a metric, a param and a tag, written with a few parallel clients."""
    def work(chunk):
        c = Conn(port, token=token)
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


def bench(name, port, runs_large, token=None):
    c = Conn(port, token=token)
    out = {}
    exp = c.call("POST", "/experiments/create", {"name": f"bench-{time.time_ns()}"})["experiment_id"]
    run = c.call("POST", "/runs/create", {"experiment_id": exp, "start_time": 1})["run"]["info"]["run_id"]
    # (a) sequential log-metric on one keep-alive connection
    t = time.perf_counter()
    for i in range(2000):
        c.call("POST", "/runs/log-metric", {"run_id": run, "key": "m", "value": i * 0.1, "timestamp": 1000 + i, "step": i})
    out["a_log_metric_2000_s"] = time.perf_counter() - t
    # (a') the same call with a new TCP connection per request, which takes MLflow's
    # keep-alive stall out of the comparison
    fresh = Conn(port, keepalive=False, token=token)
    t = time.perf_counter()
    for i in range(500):
        fresh.call("POST", "/runs/log-metric", {"run_id": run, "key": "f", "value": i * 0.1, "timestamp": 1000 + i, "step": i})
    out["a2_log_metric_fresh_conn_ms"] = (time.perf_counter() - t) / 500 * 1000
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
        populate(port, e, n, token=token)
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
        times = []
        for _ in range(21):
            t = time.perf_counter()
            fresh.call("POST", "/runs/search", body)
            times.append(time.perf_counter() - t)
        out[f"c2_search_{label}_fresh_conn_p50_ms"] = statistics.median(times) * 1000
        out[f"c_search_{label}_hits"] = len(res.get("runs", []))
    print(f"  {name}: {json.dumps({k: round(v, 4) for k, v in out.items()})}", flush=True)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bastion", required=True)
    ap.add_argument("--mlflow")
    ap.add_argument("--runs", type=int, default=10_000)
    ap.add_argument("--auth-overhead", metavar="BASELINE_BIN")
    args = ap.parse_args()
    if args.auth_overhead:
        return auth_overhead(args.bastion, args.auth_overhead)
    root = tempfile.mkdtemp(prefix="bench-tracking-")
    print(f"workload: (a) 2000 log-metric, (b) 10 x log-batch(1000), (c) filtered+ordered search over 200 and {args.runs} runs")
    print("each server runs alone: started, measured, stopped, then the other")
    servers = {
        "bastion": [args.bastion, "--home", f"{root}/bastion", "server", "--port", "{port}"],
        "mlflow": [args.mlflow, "server", "--host", "127.0.0.1", "--port", "{port}",
                   "--backend-store-uri", f"sqlite:///{root}/mlflow.db", "--artifacts-destination", f"{root}/mlartifacts"],
    }
    results = {}
    try:
        for name, cmd in servers.items():
            port = free_port()
            log = open(os.path.join(root, f"{name}.log"), "w")
            proc = subprocess.Popen([c.replace("{port}", str(port)) for c in cmd], stdout=log, stderr=log, start_new_session=True)
            try:
                wait_healthy(port, proc, name)
                token = bootstrap_token(os.path.join(root, f"{name}.log")) if name == "bastion" else None
                out = bench(name, port, args.runs, token)
                out["rss_mb"], out["processes"] = tree_rss_mb(proc.pid)
                results[name] = out
            finally:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=60)
        m, b = results["mlflow"], results["bastion"]
        print()
        print(f"{'measure (keep-alive unless fresh_conn)':40} {'mlflow':>12} {'bastion':>12} {'ratio':>8}")
        keys = ["a_log_metric_2000_s", "a2_log_metric_fresh_conn_ms", "b_log_batch_10x1000_s",
                "c_search_200_p50_ms", f"c_search_{args.runs}_p50_ms",
                "c2_search_200_fresh_conn_p50_ms", f"c2_search_{args.runs}_fresh_conn_p50_ms"]
        for key in keys:
            print(f"{key:40} {m[key]:12.4f} {b[key]:12.4f} {m[key] / b[key]:7.1f}x")
        print(f"{'search hits (must match)':40} {m[f'c_search_{args.runs}_hits']:12} {b[f'c_search_{args.runs}_hits']:12}")
        print(f"{'server RSS after workload (MB)':40} {m['rss_mb']:12.1f} {b['rss_mb']:12.1f} {m['rss_mb'] / b['rss_mb']:7.1f}x")
        print(f"{'server processes':40} {m['processes']:12} {b['processes']:12}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


def log_metric_latencies(port, token, n=3000, warmup=300):
    c = Conn(port, token=token)
    exp = c.call("POST", "/experiments/create", {"name": f"lat-{time.time_ns()}"})["experiment_id"]
    run = c.call("POST", "/runs/create", {"experiment_id": exp, "start_time": 1})["run"]["info"]["run_id"]
    times = []
    for i in range(warmup + n):
        t = time.perf_counter()
        c.call("POST", "/runs/log-metric", {"run_id": run, "key": "m", "value": i * 0.1, "timestamp": 1000 + i, "step": i})
        if i >= warmup:
            times.append(time.perf_counter() - t)
    times.sort()
    return statistics.median(times) * 1000, times[int(len(times) * 0.99)] * 1000


def auth_overhead(current, baseline, rounds=5):
    root = tempfile.mkdtemp(prefix="bench-auth-")
    variants = {
        "before (no auth, no audit)": ([baseline], False),
        "--insecure (audit only)": ([current, "--insecure"], False),
        "default (token + authz + audit)": ([current], True),
    }
    results = {k: [] for k in variants}
    try:
        for r in range(rounds):
            for name, (cmd, secure) in variants.items():
                home = os.path.join(root, f"{r}-{len(results[name])}-{abs(hash(name))}")
                port = free_port()
                log_path = home + ".log"
                log = open(log_path, "w")
                exe, *flags = cmd
                proc = subprocess.Popen([exe, "--home", home, "server", "--port", str(port), *flags],
                                        stdout=log, stderr=log, start_new_session=True)
                try:
                    wait_healthy(port, proc, name)
                    token = bootstrap_token(log_path) if secure else None
                    results[name].append(log_metric_latencies(port, token))
                finally:
                    os.killpg(proc.pid, signal.SIGTERM)
                    proc.wait(timeout=60)
        base = statistics.median(p50 for p50, _ in results["before (no auth, no audit)"])
        print(f"log-metric on one keep-alive connection, 3000 calls after 300 warm-up, median of {rounds} rounds")
        print(f"{'variant':36} {'p50 ms':>8} {'p99 ms':>8} {'p50 vs before':>14}")
        for name, rs in results.items():
            p50 = statistics.median(p for p, _ in rs)
            p99 = statistics.median(p for _, p in rs)
            print(f"{name:36} {p50:8.3f} {p99:8.3f} {100 * (p50 / base - 1):+13.1f}%")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
