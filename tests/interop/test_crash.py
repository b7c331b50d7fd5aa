"""kill -9 during heavy logging: every acknowledged write survives, and the database is sound."""
import json
import os
import sqlite3
import subprocess
import threading

import requests

from conftest import Server, free_port


def test_kill9_keeps_every_acknowledged_write(fresh_home):
    srv = Server(fresh_home, free_port()).start()
    api = srv.url + "/api/2.0/mlflow"
    auth = srv.auth
    exp = requests.post(api + "/experiments/create", json={"name": "crash"}, headers=auth).json()["experiment_id"]
    run = requests.post(api + "/runs/create", json={"experiment_id": exp, "start_time": 1}, headers=auth).json()["run"]["info"]["run_id"]
    acked = []
    acked_batches = []
    stop = threading.Event()

    def writer(worker):
        s = requests.Session()
        s.headers.update(auth)
        step = 0
        while not stop.is_set():
            try:
                if step % 10 == 9:
                    metrics = [{"key": f"b{worker}", "value": i, "timestamp": step, "step": step * 100 + i} for i in range(100)]
                    r = s.post(api + "/runs/log-batch", json={"run_id": run, "metrics": metrics}, timeout=5)
                    if r.status_code == 200:
                        acked_batches.append((f"b{worker}", step))
                else:
                    r = s.post(api + "/runs/log-metric", json={"run_id": run, "key": f"w{worker}", "value": step, "timestamp": 1, "step": step}, timeout=5)
                    if r.status_code == 200:
                        acked.append((f"w{worker}", step))
            except requests.RequestException:
                return
            step += 1

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    # Let the writers get going, then kill the server mid-stream.
    deadline_writes = 400
    import time

    t0 = time.time()
    while len(acked) < deadline_writes and time.time() - t0 < 30:
        time.sleep(0.01)
    srv.kill9()
    stop.set()
    for t in threads:
        t.join()
    assert len(acked) >= deadline_writes, "the workload did not run"

    # The database file is consistent before the server even starts again.
    db = sqlite3.connect(f"{fresh_home}/bastion.db")
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()

    srv2 = Server(fresh_home, free_port(), token=srv.token).start()
    try:
        api = srv2.url + "/api/2.0/mlflow"
        for key in {k for k, _ in acked}:
            hist = requests.get(api + "/metrics/get-history", params={"run_id": run, "metric_key": key}, headers=auth).json().get("metrics", [])
            stored = {m["step"] for m in hist}
            missing = [s for k, s in acked if k == key and s not in stored]
            assert not missing, f"{key}: acknowledged steps lost: {missing[:10]}"
        for key, step in acked_batches:
            hist = requests.get(api + "/metrics/get-history", params={"run_id": run, "metric_key": key}, headers=auth).json().get("metrics", [])
            got = [m for m in hist if step * 100 <= m["step"] < step * 100 + 100]
            assert len(got) == 100, f"batch {key}@{step} is partial: {len(got)} of 100"
        # Batches are all-or-nothing even when not acknowledged.
        for key in {k for k, _ in acked_batches}:
            hist = requests.get(api + "/metrics/get-history", params={"run_id": run, "metric_key": key}, headers=auth).json().get("metrics", [])
            by_batch = {}
            for m in hist:
                by_batch.setdefault(m["step"] // 100, 0)
                by_batch[m["step"] // 100] += 1
            assert all(n == 100 for n in by_batch.values()), by_batch
        # And the server still accepts writes to the same run.
        assert requests.post(api + "/runs/log-metric", json={"run_id": run, "key": "after", "value": 1, "timestamp": 1}, headers=auth).status_code == 200
    finally:
        srv2.stop()
    # The audit log survived the kill too: every entry, chain link and signed head verifies.
    out = subprocess.run([os.environ["BASTION_BIN"], "--home", fresh_home, "audit", "verify"], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    report = json.loads(out.stdout)
    assert report["ok"] and report["report"]["entries"] >= len(acked)
