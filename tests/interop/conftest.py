"""Starts a real `bastion server` for the interop suite, with authentication on (its default).

BASTION_BIN names the binary. BASTION_INTEROP_BACKEND_URI / BASTION_INTEROP_ARTIFACTS, when
set, point the server at PostgreSQL / S3 instead of its embedded defaults. The `server`
fixture runs every test twice: once with the MLflow client authenticating by API token
(MLFLOW_TRACKING_TOKEN), once by password (MLFLOW_TRACKING_USERNAME / _PASSWORD).
"""
import json
import os
import re
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
    def __init__(self, home, port, extra_args=(), token=None, ca=None):
        self.home = home
        self.port = port
        # With `ca` (the CA file that signed its certificate) the server speaks HTTPS.
        self.verify = ca if ca else True
        self.url = f"{'https' if ca else 'http'}://127.0.0.1:{port}"
        self.extra_args = list(extra_args)
        self.proc = None
        # The bootstrap admin token, printed once on the first start of a home.
        self.token = token

    @property
    def auth(self):
        return {"Authorization": f"Bearer {self.token}"}

    def admin(self, method, path, **kw):
        kw.setdefault("verify", self.verify)
        r = requests.request(method, self.url + path, headers=self.auth, timeout=30, **kw)
        r.raise_for_status()
        return r.json()

    def start(self):
        args = [os.environ["BASTION_BIN"], "--home", self.home, "server", "--port", str(self.port), *self.extra_args]
        self.log = open(os.path.join(self.home, "server.log"), "ab")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=self.log)
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                if requests.get(self.url + "/health", timeout=1, verify=self.verify).status_code == 200:
                    if self.token is None:
                        with open(os.path.join(self.home, "server.log"), errors="replace") as f:
                            found = re.search(r"bst_[0-9a-f]{12}_[A-Za-z0-9_-]{43}", f.read())
                        self.token = found.group(0) if found else self.mint_admin_token()
                    return self
            except requests.RequestException:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError(f"bastion exited with {self.proc.returncode}; see {self.home}/server.log")
            time.sleep(0.1)
        raise RuntimeError("bastion did not become healthy")

    def mint_admin_token(self):
        """A database that already has users (shared by an earlier server) printed no
        bootstrap token: mint one for `admin` with the CLI, as an operator would."""
        store = []
        if "--backend-store-uri" in self.extra_args:
            i = self.extra_args.index("--backend-store-uri")
            store = self.extra_args[i:i + 2]
        out = subprocess.run([os.environ["BASTION_BIN"], "--home", self.home, "token", "create", "--user", "admin", *store],
                             capture_output=True, text=True, check=True)
        return json.loads(out.stdout)["token"]

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


CREDENTIAL_VARS = ("MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")


def use_credentials(**env):
    """Points the mlflow client at these credentials (it reads them on every request)."""
    for var in CREDENTIAL_VARS:
        os.environ.pop(var, None)
    os.environ.update(env)


@pytest.fixture(scope="session", params=["token", "basic"])
def server(request):
    home = tempfile.mkdtemp(prefix="bastion-interop-")
    srv = Server(home, free_port(), backend_args()).start()
    assert srv.token, "the first start printed no bootstrap token"
    import mlflow

    # A maintainer (not the admin): the workflows need MANAGE and DEPLOY on experiments and
    # models, nothing more.
    password = "interop password 1"
    for user in ({"name": "mia", "role": "maintainer", "password": password}, {"name": "vic", "role": "viewer"}):
        # The PostgreSQL run shares one database between both parameters: users may exist.
        r = requests.post(srv.url + "/api/bastion/v1/users", json=user, headers=srv.auth, timeout=30)
        assert r.status_code == 200 or "already exists" in r.text, r.text
    token = srv.admin("POST", "/api/bastion/v1/users/mia/tokens", json={"description": "interop"})["token"]
    srv.viewer_token = srv.admin("POST", "/api/bastion/v1/users/vic/tokens", json={})["token"]
    srv.mode = request.param
    srv.credentials = (
        {"MLFLOW_TRACKING_TOKEN": token}
        if request.param == "token"
        else {"MLFLOW_TRACKING_USERNAME": "mia", "MLFLOW_TRACKING_PASSWORD": password}
    )
    use_credentials(**srv.credentials)
    mlflow.set_tracking_uri(srv.url)
    yield srv
    use_credentials()
    srv.stop()
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def creds(server):
    """Restores the server's credentials after a test that switched them."""
    use_credentials(**server.credentials)
    yield server
    use_credentials(**server.credentials)


@pytest.fixture
def fresh_home():
    home = tempfile.mkdtemp(prefix="bastion-crash-")
    yield home
    shutil.rmtree(home, ignore_errors=True)
