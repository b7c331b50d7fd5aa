"""SIGTERM drains: a request in flight when the signal arrives completes, then the process exits."""
import hashlib
import os
import threading
import time

import requests

from conftest import Server, free_port


def test_sigterm_drains_in_flight_upload(fresh_home):
    srv = Server(fresh_home, free_port()).start()
    chunk = os.urandom(256 * 1024)
    chunks = 20
    started = threading.Event()

    def slow_body():
        for i in range(chunks):
            if i == 2:
                started.set()
            time.sleep(0.1)
            yield chunk

    result = {}

    def upload():
        r = requests.put(srv.url + "/api/2.0/mlflow-artifacts/artifacts/0/x/artifacts/slow.bin", data=slow_body(), timeout=60, headers=srv.auth)
        result["status"] = r.status_code

    t = threading.Thread(target=upload)
    t.start()
    assert started.wait(10)
    srv.proc.terminate()  # SIGTERM mid-upload
    t.join(60)
    assert result.get("status") == 200, result
    assert srv.proc.wait(timeout=30) == 0

    srv2 = Server(fresh_home, free_port(), token=srv.token).start()
    try:
        body = requests.get(srv2.url + "/api/2.0/mlflow-artifacts/artifacts/0/x/artifacts/slow.bin", headers=srv.auth).content
        assert hashlib.sha256(body).hexdigest() == hashlib.sha256(chunk * chunks).hexdigest()
    finally:
        srv2.stop()
