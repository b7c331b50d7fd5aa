"""Several serving replicas and monitor workers on NATS JetStream, as real processes: two
`bastion server --nats` replicas of one home publish every inference event to the stream;
two `bastion monitor --nats` workers of one consumer group read it (one at a time, by
lease). The reading worker is killed with SIGKILL mid-stream; the other takes over, and the
verdicts count every event exactly once: each window of 50 events raised one alert, none
is missing or doubled, and no event is left over or read twice. The standalone workers
serve their metrics for Prometheus (`--metrics`).
"""
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import tempfile
import time

import pytest
import requests

import cli
from conftest import Server, free_port

REQUESTS = 1000
WINDOW = 50


@pytest.fixture
def nats():
    """`--nats` flags for a stream of this test's own: on the server CI started
    (BASTION_TEST_NATS_URL), or on a throwaway `nats-server`."""
    stream = f"INTEROP_{os.getpid()}_{int(time.time() * 1000)}"
    if os.environ.get("BASTION_TEST_NATS_URL"):
        yield ["--nats", os.environ["BASTION_TEST_NATS_URL"], "--nats-stream", stream]
        return
    if shutil.which("nats-server") is None:
        if os.environ.get("BASTION_TEST_REQUIRE_BACKENDS"):
            pytest.fail("BASTION_TEST_REQUIRE_BACKENDS is set but nats-server is not installed")
        pytest.skip("nats-server is not installed")
    port = free_port()
    with tempfile.TemporaryDirectory() as store:
        proc = subprocess.Popen(["nats-server", "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", store],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.time() + 10
            while time.time() < deadline:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError:
                    time.sleep(0.05)
            yield ["--nats", f"nats://127.0.0.1:{port}", "--nats-stream", stream]
        finally:
            proc.kill()
            proc.wait()


def lease_holder_pid(db):
    with sqlite3.connect(db) as c:
        row = c.execute("SELECT holder, until_ms FROM monitor_leases WHERE consumer = 'group'").fetchone()
    if row is None or row[1] < time.time() * 1000:
        return None
    return int(row[0].split("/")[1])


def cursor(db):
    with sqlite3.connect(db) as c:
        row = c.execute("SELECT after_id FROM monitor_cursors WHERE consumer = 'group'").fetchone()
    return row[0] if row else 0


def traffic_alerts(home, remote):
    listed = json.loads(cli.run(home, "incidents", "list", *remote).stdout)["incidents"]
    return sum(i["alerts"] for i in listed if i["rule"] == "traffic")


def test_a_worker_killed_mid_stream_loses_and_repeats_nothing(nats):
    with cli.shipped_home() as home:
        cli.run(home, "train", "--data", "bc@v1", "--target", "diagnosis", "--model", "logreg",
                "--register", "bc")
        features, x, _ = cli.load_csv("breast_cancer.csv", "diagnosis")
        first = Server(home, free_port(), extra_args=nats).start()
        second = None
        monitors = []
        try:
            second = Server(home, free_port(), extra_args=nats, token=first.token).start()
            remote = ["--server", first.url, "--token", first.token]
            cli.run(home, "deploy", "bc@1", *remote)
            rules = os.path.join(home, "rules.toml")
            with open(rules, "w") as f:
                f.write(f'[window]\nsize = {WINDOW}\n\n'
                        '[[alert]]\nname = "traffic"\nwhen = "requests >= 1"\ncooldown = "0s"\n')
            watch = [cli.BIN, "--home", home, "monitor", "--rules", rules, *nats, "--consumer", "group",
                     "--lease", "2", "--nats-ack-wait", "2", "--poll", "0.1"]
            metrics = []
            for i in range(2):
                log = open(os.path.join(home, f"monitor-{i}.log"), "ab")
                metrics.append(f"127.0.0.1:{free_port()}")
                monitors.append(subprocess.Popen([*watch, "--metrics", metrics[-1]], stdout=log, stderr=log))
            db = os.path.join(home, "bastion.db")

            def infer(i):
                srv = (first, second)[i % 2]
                body = {"inputs": [{"name": f, "shape": [1], "datatype": "FP64", "data": [float(x[i % len(x), j])]}
                                   for j, f in enumerate(features)]}
                r = requests.post(f"{srv.url}/v2/models/bc/infer", json=body, headers=srv.auth, timeout=30)
                r.raise_for_status()

            for i in range(REQUESTS // 2):
                infer(i)
            # Kill whichever worker is reading, once it has judged part of the stream.
            deadline = time.time() + 60
            while cursor(db) < WINDOW * 2 and time.time() < deadline:
                time.sleep(0.05)
            assert cursor(db) >= WINDOW * 2, "the monitor did not get going"
            pid = lease_holder_pid(db)
            victim = next(m for m in monitors if m.pid == pid)
            victim.send_signal(signal.SIGKILL)
            victim.wait()
            for i in range(REQUESTS // 2, REQUESTS):
                infer(i)
            # The survivor takes the lease when it lapses and gets back what the dead one
            # had fetched but not committed.
            survivor = next(m for m in monitors if m is not victim)
            deadline = time.time() + 90
            while cursor(db) < REQUESTS and time.time() < deadline:
                assert survivor.poll() is None, "the surviving monitor exited"
                time.sleep(0.1)
            assert cursor(db) == REQUESTS, f"stuck at {cursor(db)} of {REQUESTS}"
            assert lease_holder_pid(db) == survivor.pid
            # The standalone worker exports its figures for Prometheus.
            scraped = requests.get(f"http://{metrics[monitors.index(survivor)]}/metrics", timeout=10).text
            judged = [line for line in scraped.splitlines() if line.startswith("bastion_monitor_events_total")]
            assert judged and float(judged[0].split()[-1]) > 0, scraped
            assert 'bastion_monitor_alerts_total{model="bc",rule="traffic"' in scraped, scraped
            # Stopped by a signal, it gives the lease up; a last pass finds nothing left.
            survivor.send_signal(signal.SIGINT)
            assert survivor.wait(timeout=30) == 0
            last = json.loads(cli.run(home, "monitor", "--rules", rules, *nats, "--consumer", "group",
                                      "--once").stdout)
            assert (last["events"], last["position"], last["buffered"]) == (0, REQUESTS, 0), last
            assert traffic_alerts(home, remote) == REQUESTS // WINDOW
        finally:
            for m in monitors:
                if m.poll() is None:
                    m.kill()
                    m.wait()
            for s in (first, second):
                if s is not None:
                    s.stop()
