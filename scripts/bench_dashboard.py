"""Times the dashboard's pages on a home with many runs (see scripts/bench-dashboard).
Standard library only: the runs go in through the MLflow REST API with an admin token."""
import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bastion", required=True)
    ap.add_argument("--runs", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=20)
    a = ap.parse_args()
    home = tempfile.mkdtemp(prefix="bench-dashboard-")
    port = free_port()
    log = open(os.path.join(home, "server.log"), "w+")
    proc = subprocess.Popen([a.bastion, "--home", home, "server", "--port", str(port)], stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        token = None
        for _ in range(300):
            text = open(log.name).read()
            m = re.search(r"(bst_[A-Za-z0-9_-]+)", text)
            if m and "listening" in text:
                token = m.group(1)
                break
            time.sleep(0.1)
        assert token, open(log.name).read()
        auth = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

        def call(method, path, body=None):
            req = urllib.request.Request(base + path, method=method, headers=auth,
                                         data=None if body is None else json.dumps(body).encode())
            with urllib.request.urlopen(req) as r:
                return json.loads(r.read() or b"{}")

        exp = call("POST", "/api/2.0/mlflow/experiments/create", {"name": "bench"})["experiment_id"]
        t0 = time.time()
        run_ids = []
        for i in range(a.runs):
            run = call("POST", "/api/2.0/mlflow/runs/create", {"experiment_id": exp, "run_name": f"run-{i}", "start_time": 1_790_000_000_000 + i})
            rid = run["run"]["info"]["run_id"]
            run_ids.append(rid)
            metrics = [{"key": k, "value": (i % 97) / 97 + s / 100, "timestamp": 1, "step": s}
                       for k in ("loss", "accuracy", "auc") for s in range(10)]
            params = [{"key": "lr", "value": str(0.001 * (i % 10))}, {"key": "depth", "value": str(i % 8)}, {"key": "model", "value": "gbdt"}]
            call("POST", "/api/2.0/mlflow/runs/log-batch", {"run_id": rid, "metrics": metrics, "params": params})
        fill = time.time() - t0

        q = urllib.parse.quote
        pages = {
            "overview /": "/",
            "experiments": "/ui/experiments",
            "runs, newest 50": f"/ui/runs?experiment_id={exp}",
            "runs, filtered + sorted by metric": f"/ui/runs?experiment_id={exp}&filter={q('metrics.auc > 0.5 and params.depth = ' + chr(39) + '3' + chr(39))}&order_by={q('metrics.auc DESC')}",
            "run (3 charts)": f"/ui/run?run_id={run_ids[len(run_ids) // 2]}",
            "compare 5 runs": "/ui/compare?" + "&".join(f"run_id={r}" for r in run_ids[:5]),
            "audit, newest 50": "/ui/audit",
        }
        results = {}
        for name, path in pages.items():
            times = []
            for _ in range(a.repeat):
                req = urllib.request.Request(base + path, headers=auth)
                t = time.perf_counter()
                with urllib.request.urlopen(req) as r:
                    body = r.read()
                    assert r.status == 200, (path, r.status)
                times.append((time.perf_counter() - t) * 1000)
            times.sort()
            results[name] = {"p50_ms": round(statistics.median(times), 1),
                             "p95_ms": round(times[int(0.95 * (len(times) - 1))], 1),
                             "bytes": len(body)}
        print(json.dumps({"runs": a.runs, "fill_seconds": round(fill, 1), "pages": results}, indent=1))
        worst = max(r["p95_ms"] for r in results.values())
        print(f"slowest page p95: {worst:.1f} ms (target < 200 ms)")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


if __name__ == "__main__":
    main()
