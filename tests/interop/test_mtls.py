"""Mutual TLS with the real mlflow client: a certificate issued by the server's client CA is
the whole credential (MLFLOW_TRACKING_CLIENT_CERT_PATH, no token or password); its subject CN
names the Bastion user. The certificates are generated here with `cryptography`."""
import datetime
import ipaddress
import os
import shutil
import subprocess
import tempfile

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from conftest import Server, free_port, use_credentials


def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Bastion interop"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _issue(subject, key, issuer, issuer_key, *, ca=False, server=False):
    now = datetime.datetime.now(datetime.timezone.utc)
    b = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now - datetime.timedelta(minutes=5))
         .not_valid_after(now + datetime.timedelta(days=1))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ca:
        b = b.add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True)
    elif server:
        b = (b.add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
             .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False))
    else:
        b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    return b.sign(issuer_key, hashes.SHA256())


def _pem(cert=None, key=None):
    out = b""
    if cert is not None:
        out += cert.public_bytes(serialization.Encoding.PEM)
    if key is not None:
        out += key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())
    return out


@pytest.fixture
def mtls_server():
    home = tempfile.mkdtemp(prefix="bastion-mtls-")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("Bastion interop CA")
    ca = _issue(ca_name, ca_key, ca_name, ca_key, ca=True)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = _issue(_name("bastion"), server_key, ca_name, ca_key, server=True)
    client_key = ec.generate_private_key(ec.SECP256R1())
    client_cert = _issue(_name("carol"), client_key, ca_name, ca_key)
    files = {
        "ca": _pem(ca), "server.pem": _pem(server_cert), "server.key": _pem(key=server_key),
        # requests takes one file holding the certificate and its key.
        "client.pem": _pem(client_cert, client_key),
    }
    paths = {}
    for name, data in files.items():
        paths[name] = os.path.join(home, name)
        with open(paths[name], "wb") as f:
            f.write(data)
    srv = Server(home, free_port(), ["--tls-cert", paths["server.pem"], "--tls-key", paths["server.key"],
                                     "--tls-client-ca", paths["ca"]], ca=paths["ca"]).start()
    subprocess.run([os.environ["BASTION_BIN"], "--home", home, "user", "create", "carol", "--role", "maintainer"],
                   check=True, capture_output=True)
    srv.paths = paths
    yield srv
    srv.stop()
    shutil.rmtree(home, ignore_errors=True)


def test_mlflow_client_authenticates_with_a_client_certificate(mtls_server, tmp_path):
    import mlflow
    from mlflow.tracking import MlflowClient

    srv = mtls_server
    previous_uri = mlflow.get_tracking_uri()
    saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_SERVER_CERT_PATH", "MLFLOW_TRACKING_CLIENT_CERT_PATH")}
    use_credentials()
    try:
        os.environ["MLFLOW_TRACKING_SERVER_CERT_PATH"] = srv.paths["ca"]
        os.environ["MLFLOW_TRACKING_CLIENT_CERT_PATH"] = srv.paths["client.pem"]
        mlflow.set_tracking_uri(srv.url)
        client = MlflowClient(srv.url)
        exp = client.create_experiment("mtls-experiment")
        run = client.create_run(exp)
        client.log_metric(run.info.run_id, "loss", 0.25, step=1)
        artifact = tmp_path / "notes.txt"
        artifact.write_text("over mutual TLS")
        client.log_artifact(run.info.run_id, str(artifact))
        got = client.get_run(run.info.run_id)
        assert got.data.metrics["loss"] == 0.25
        back = client.download_artifacts(run.info.run_id, "notes.txt", str(tmp_path / "down"))
        assert open(back).read() == "over mutual TLS"

        me = requests.get(srv.url + "/api/bastion/v1/whoami", cert=srv.paths["client.pem"],
                          verify=srv.paths["ca"], timeout=10).json()
        assert (me["name"], me["method"]) == ("carol", "certificate")
        # The audit log names the certificate as the way carol proved who she is.
        log = srv.admin("GET", "/api/bastion/v1/audit/entries", params={"actor": "user:carol (client certificate)"})
        assert any(e["action"] == "experiments.create" for e in log["entries"]), log
        # Without the certificate (and no other credential) the same call is refused.
        r = requests.get(srv.url + "/api/bastion/v1/whoami", verify=srv.paths["ca"], timeout=10)
        assert r.status_code == 401
    finally:
        mlflow.set_tracking_uri(previous_uri)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
