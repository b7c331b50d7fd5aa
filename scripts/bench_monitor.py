"""The monitor's sustained throughput, detection latency and memory (`scripts/bench-monitor`).

A home gets a 20-feature training set and a model trained on it (`bastion train`), then N
inference events of that model written straight into its event table, as serving writes
them: one row each, every row's 20 features kept, 100 callers. From event N/2 on, feature
f0 is shifted by half a standard deviation. `bastion monitor --once` judges them all (drift
per 1000-row window against the training data, the per-caller detectors, the alert rules)
and the script reports events per second, when the drift alert fired after the change, and
the peak memory, for N and 2N events: memory bounded by the windows stays flat.
"""
import argparse
import json
import os
import random
import sqlite3
import subprocess
import sys
import tempfile
import time

FEATURES = 20
WINDOW = 1000
CALLERS = 100
RULES = f"""
[window]
size = {WINDOW}

[[alert]]
name = "drift"
when = "drift.dataset = true"
for = 3
severity = "high"
cooldown = "1d"
"""


def bastion(bin_, home, *args):
    p = subprocess.run([bin_, "--home", home, *args], capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"bastion {' '.join(args)} failed: {p.stderr}")
    return p.stdout


def training_csv(path, rows, rng):
    with open(path, "w") as f:
        f.write(",".join(f"f{j}" for j in range(FEATURES)) + ",y\n")
        for _ in range(rows):
            x = [rng.gauss(0, 1) for _ in range(FEATURES)]
            f.write(",".join(f"{v:.6f}" for v in x) + f",{'yes' if x[0] + x[1] > 0 else 'no'}\n")


def write_events(db, n, shift_at, rng):
    """N events one millisecond apart, ending an hour ago (older than any settle time)."""
    start = int(time.time() * 1000) - 3_600_000 - n
    con = sqlite3.connect(db)
    rows = []
    for i in range(n):
        x = [rng.gauss(0, 1) for _ in range(FEATURES)]
        if i >= shift_at:
            x[0] += 0.5
        p = 1 / (1 + pow(2.718281828, -2 * (x[0] + x[1])))
        label = "yes" if p >= 0.5 else "no"
        features = json.dumps({f"f{j}": [round(v, 6)] for j, v in enumerate(x)})
        outputs = json.dumps({"labels": [label], "confidence": [max(p, 1 - p)],
                              "probabilities": [[1 - p, p]]})
        rows.append((start + i, "m", "1", "stable", f"user:caller-{i % CALLERS}", f"r{i}", 800, 200,
                     "ok", "d", 1, features, outputs, "null"))
        if len(rows) == 10_000:
            con.executemany(INSERT, rows)
            rows.clear()
    if rows:
        con.executemany(INSERT, rows)
    con.commit()
    con.close()
    return start


# Runs a command, passing its output through, then prints its peak resident memory (KiB).
PEAK = ("import resource, subprocess, sys\n"
        "p = subprocess.run(sys.argv[1:])\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)\n"
        "sys.exit(p.returncode)")

INSERT = ("INSERT INTO inference_events (time_ms, model_name, version, route, actor, request_id, "
          "latency_us, status, decision, input_digest, rows_count, features, outputs, guards) "
          "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")


def run(bin_, n, seed):
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory() as home:
        csv = os.path.join(home, "train.csv")
        training_csv(csv, 5000, rng)
        bastion(bin_, home, "data", "add", csv, "--name", "train")
        bastion(bin_, home, "train", "--data", "train@v1", "--target", "y", "--model", "logreg",
                "--register", "m")
        db = os.path.join(home, "bastion.db")
        shift_at = n // 2
        start = write_events(db, n, shift_at, rng)
        rules = os.path.join(home, "rules.toml")
        with open(rules, "w") as f:
            f.write(RULES)
        # Its own process, so that the peak memory is the monitor's alone.
        t0 = time.perf_counter()
        p = subprocess.run([sys.executable, "-c", PEAK, bin_, "--home", home, "monitor", "--rules", rules,
                            "--once", "--settle-ms", "0"], capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if p.returncode != 0:
            raise SystemExit(f"bastion monitor failed: {p.stderr}")
        out = json.loads(p.stdout)
        peak_kib = int(p.stderr.strip().splitlines()[-1])
        incidents = json.loads(bastion(bin_, home, "incidents", "list"))["incidents"]
        drift = [i for i in incidents if i["rule"] == "drift"]
        window = drift[0]["evidence"]["window"] if drift else None
        # Event i has time start + i: the alerting window's last event is how many events
        # after the change the alert came.
        detected_after = window["end_ms"] - start - shift_at + 1 if window else None
        return {
            "events": n,
            "judged": out["events"],
            "windows": out["windows"],
            "seconds": round(wall, 2),
            "events_per_s": round(out["events"] / wall),
            "drift_alerts": len(drift),
            "detected_after_events": detected_after,
            "detection_seconds_at_this_rate": round(detected_after / (out["events"] / wall), 3)
            if detected_after else None,
            "peak_rss_mib": round(peak_kib / 1024, 1),
        }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bastion", required=True)
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    results = []
    for n in (a.events, 2 * a.events):
        r = run(a.bastion, n, a.seed)
        results.append(r)
        print(json.dumps(r), flush=True)
    small, large = results
    print(f"throughput: {small['events_per_s']:,} and {large['events_per_s']:,} events/s "
          f"({FEATURES} features, 1 row per event, {CALLERS} callers)")
    print(f"drift (0.5 sd on f0 at event N/2) alerted {small['detected_after_events']} events after "
          f"the change ({WINDOW}-row windows, for = 3)")
    print(f"peak memory: {small['peak_rss_mib']} MiB for {small['events']:,} events, "
          f"{large['peak_rss_mib']} MiB for {large['events']:,}")


if __name__ == "__main__":
    main()
