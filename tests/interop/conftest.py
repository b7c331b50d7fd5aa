"""Starts a real `bastion server` for the interop suite.

BASTION_BIN names the binary. BASTION_INTEROP_BACKEND_URI / BASTION_INTEROP_ARTIFACTS, when
set, point the server at PostgreSQL / S3 instead of its embedded defaults.
"""
import os
import shutil
import socket
import subprocess
import tempfile
import time

import pytest
import requests


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, home, port, extra_args=()):
        self.home = home
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.extra_args = list(extra_args)
        self.proc = None

    def start(self):
        args = [os.environ["BASTION_BIN"], "--home", self.home, "server", "--port", str(self.port), *self.extra_args]
        self.log = open(os.path.join(self.home, "server.log"), "ab")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=self.log)
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                if requests.get(self.url + "/health", timeout=1).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError(f"bastion exited with {self.proc.returncode}; see {self.home}/server.log")
            time.sleep(0.1)
        raise RuntimeError("bastion did not become healthy")

    def kill9(self):
        self.proc.kill()
        self.proc.wait()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)


def backend_args():
    args = []
    if os.environ.get("BASTION_INTEROP_BACKEND_URI"):
        args += ["--backend-store-uri", os.environ["BASTION_INTEROP_BACKEND_URI"]]
    if os.environ.get("BASTION_INTEROP_ARTIFACTS"):
        args += ["--artifacts-destination", os.environ["BASTION_INTEROP_ARTIFACTS"]]
    return args


@pytest.fixture(scope="session")
def server():
    home = tempfile.mkdtemp(prefix="bastion-interop-")
    srv = Server(home, free_port(), backend_args()).start()
    import mlflow

    mlflow.set_tracking_uri(srv.url)
    yield srv
    srv.stop()
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def fresh_home():
    home = tempfile.mkdtemp(prefix="bastion-crash-")
    yield home
    shutil.rmtree(home, ignore_errors=True)
