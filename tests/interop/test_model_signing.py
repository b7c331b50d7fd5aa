"""Bastion's model signatures against the reference OpenSSF implementation (`model-signing`
1.1.1): each side verifies what the other signs, root digests agree, tampering is rejected by
both, certificate chains interoperate, and registered versions verify end to end (also with
`model_signing` on the downloaded files). ML-BOMs validate against the CycloneDX 1.6 schema."""
import base64
import datetime
import hashlib
import json
import os
import subprocess
import sys

import mlflow
import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

import model_signing

from conftest import backend_args

BIN = os.environ["BASTION_BIN"]
MS = [sys.executable, "-m", "model_signing"]


def bastion(*args, home=None, check=True):
    cmd = [BIN] + (["--home", home] if home else []) + list(args)
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if check and r.returncode != 0:
        raise AssertionError(f"{cmd} exited {r.returncode}:\n{r.stdout}\n{r.stderr}")
    return r


def ms(*args):
    return subprocess.run(MS + list(args), capture_output=True, text=True, timeout=600)


def make_model(root, big=24 << 20):
    """Nested paths, names that sort differently by bytes and by components, empty files and a
    large file."""
    files = {
        "a/x": b"hi\n",
        "a-b/x": b"yo\n",
        "a.txt": b"",
        "a/b/c/deep.bin": bytes(range(256)) * 100,
        "empty/nothing": b"",
        "weights.safetensors": b"",
        "z": b"last",
    }
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    block = hashlib.sha256(b"seed").digest() * 32768  # 1 MiB
    with open(root / "weights.safetensors", "wb") as f:
        for i in range(big >> 20):
            f.write(block[i % 7:] + block[: i % 7])
    return root


def keypair(tmp_path, curve):
    key = ec.generate_private_key(curve)
    priv = tmp_path / f"{curve.name}.key"
    pub = tmp_path / f"{curve.name}.pub"
    # SEC1 ("EC PRIVATE KEY"), as `openssl ecparam -genkey` writes it.
    priv.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()))
    pub.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return priv, pub


def statement(sig):
    bundle = json.loads(sig.read_text())
    return json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))


def root_of(sig):
    return statement(sig)["subject"][0]["digest"]["sha256"]


@pytest.mark.parametrize("curve", [ec.SECP256R1(), ec.SECP384R1(), ec.SECP521R1()], ids=lambda c: c.name)
def test_each_side_verifies_the_other(tmp_path, curve):
    model = make_model(tmp_path / "model")
    priv, pub = keypair(tmp_path, curve)
    ours, theirs = tmp_path / "bastion.sig", tmp_path / "reference.sig"

    bastion("sign", str(model), "--key", str(priv), "--signature", str(ours))
    r = ms("verify", "key", str(model), "--signature", str(ours), "--public_key", str(pub))
    assert r.returncode == 0, r.stdout + r.stderr

    r = ms("sign", "key", str(model), "--private_key", str(priv), "--signature", str(theirs))
    assert r.returncode == 0, r.stdout + r.stderr
    out = bastion("verify", str(model), "--signature", str(theirs), "--key", str(pub))
    assert json.loads(out.stdout)["verified"] is True

    assert root_of(ours) == root_of(theirs)
    names = [r["name"] for r in statement(ours)["predicate"]["resources"]]
    assert names == [r["name"] for r in statement(theirs)["predicate"]["resources"]]
    assert names.index("a/x") < names.index("a-b/x") < names.index("a.txt")


def test_keys_from_bastion_keygen_verify_with_the_reference(tmp_path):
    model = make_model(tmp_path / "model", big=1 << 20)
    for alg in ["ecdsa-p256", "ecdsa-p384", "ecdsa-p521"]:
        out = json.loads(bastion("keygen", "--algorithm", alg, "--out", str(tmp_path / alg)).stdout)
        assert oct(os.stat(out["private_key"]).st_mode & 0o777) == "0o600"
        sig = tmp_path / f"{alg}.sig"
        bastion("sign", str(model), "--key", out["private_key"], "--signature", str(sig))
        r = ms("verify", "key", str(model), "--signature", str(sig), "--public_key", out["public_key"])
        assert r.returncode == 0, alg + r.stdout + r.stderr
    # Ed25519 is Bastion's own: it signs and verifies, the reference tool refuses the key.
    out = json.loads(bastion("keygen", "--algorithm", "ed25519", "--out", str(tmp_path / "ed")).stdout)
    assert out["openssf_compatible"] is False
    sig = tmp_path / "ed.sig"
    bastion("sign", str(model), "--key", out["private_key"], "--signature", str(sig))
    bastion("verify", str(model), "--signature", str(sig), "--key", out["public_key"])


def test_shards_agree_with_the_reference(tmp_path):
    model = make_model(tmp_path / "model", big=5 << 20)
    priv, pub = keypair(tmp_path, ec.SECP256R1())
    theirs, ours = tmp_path / "reference.sig", tmp_path / "bastion.sig"
    (model_signing.signing.Config()
        .use_elliptic_key_signer(private_key=priv)
        .set_hashing_config(model_signing.hashing.Config().use_shard_serialization(shard_size=1_000_000))
        .sign(model, theirs))
    # model_signing 1.1.1 writes the shard size as a float; Bastion accepts it.
    out = bastion("verify", str(model), "--signature", str(theirs), "--key", str(pub))
    assert json.loads(out.stdout)["verified"] is True
    bastion("sign", str(model), "--key", str(priv), "--signature", str(ours), "--shard-size", "1000000")
    assert statement(ours)["predicate"]["serialization"]["shard_size"] == 1000000
    assert root_of(ours) == root_of(theirs)
    # The reference CLI always re-hashes whole files, so shard signatures are checked with its
    # library, which takes the method from the signature (and raises on any mismatch).
    model_signing.verifying.Config().use_elliptic_key_verifier(public_key=pub).verify(model, ours)
    (model / "z").write_bytes(b"LAST")
    with pytest.raises(ValueError, match="z:0:4"):
        model_signing.verifying.Config().use_elliptic_key_verifier(public_key=pub).verify(model, ours)
    r = bastion("verify", str(model), "--signature", str(ours), "--key", str(pub), check=False)
    assert r.returncode == 1 and "z:0:4: content changed" in r.stderr, r.stderr


def test_single_file_models_agree(tmp_path):
    f = tmp_path / "model.onnx"
    f.write_bytes(b"\x08\x07" * 5000)
    priv, pub = keypair(tmp_path, ec.SECP256R1())
    ours, theirs = tmp_path / "b.sig", tmp_path / "r.sig"
    bastion("sign", str(f), "--key", str(priv), "--signature", str(ours))
    assert ms("sign", "key", str(f), "--private_key", str(priv), "--signature", str(theirs)).returncode == 0
    assert root_of(ours) == root_of(theirs)
    assert ms("verify", "key", str(f), "--signature", str(ours), "--public_key", str(pub)).returncode == 0


@pytest.mark.parametrize("tamper", ["changed-byte", "extra-file", "removed-file", "wrong-key"])
def test_tampering_is_rejected_by_both(tmp_path, tamper):
    model = make_model(tmp_path / "model", big=2 << 20)
    priv, pub = keypair(tmp_path, ec.SECP256R1())
    ours, theirs = tmp_path / "bastion.sig", tmp_path / "reference.sig"
    bastion("sign", str(model), "--key", str(priv), "--signature", str(ours))
    assert ms("sign", "key", str(model), "--private_key", str(priv), "--signature", str(theirs)).returncode == 0
    if tamper == "changed-byte":
        p = model / "weights.safetensors"
        data = bytearray(p.read_bytes())
        data[len(data) // 2] ^= 1
        p.write_bytes(bytes(data))
        expect = "weights.safetensors: content changed"
    elif tamper == "extra-file":
        (model / "a" / "evil.py").write_text("import os")
        expect = "a/evil.py: not covered"
    elif tamper == "removed-file":
        (model / "a-b" / "x").unlink()
        expect = "a-b/x: signed but missing"
    else:
        (tmp_path / "other").mkdir()
        _, pub = keypair(tmp_path / "other", ec.SECP256R1())
        expect = "key mismatch"
    for sig in (ours, theirs):
        r = bastion("verify", str(model), "--signature", str(sig), "--key", str(pub), check=False)
        assert r.returncode == 1, r.stdout + r.stderr
        assert expect in r.stderr, r.stderr
        r = ms("verify", "key", str(model), "--signature", str(sig), "--public_key", str(pub))
        assert r.returncode != 0, tamper


def test_malformed_bundles_are_errors_not_crashes(tmp_path):
    model = make_model(tmp_path / "model", big=1 << 20)
    priv, pub = keypair(tmp_path, ec.SECP256R1())
    sig = tmp_path / "b.sig"
    bastion("sign", str(model), "--key", str(priv), "--signature", str(sig))
    good = json.loads(sig.read_text())
    cases = {
        "not-json": "{",
        "wrong-media": json.dumps({**good, "mediaType": "application/json"}),
        "wrong-payload-type": json.dumps({**good, "dsseEnvelope": {**good["dsseEnvelope"], "payloadType": "text/plain"}}),
        "truncated-sig": json.dumps({**good, "dsseEnvelope": {**good["dsseEnvelope"], "signatures": [{"sig": good["dsseEnvelope"]["signatures"][0]["sig"][:20], "keyid": ""}]}}),
    }
    for name, text in cases.items():
        bad = tmp_path / f"{name}.sig"
        bad.write_text(text)
        r = bastion("verify", str(model), "--signature", str(bad), "--key", str(pub), check=False)
        assert r.returncode == 1, name + r.stderr
        assert "Verification failed" in r.stderr, name + r.stderr


def certificate(subject, key, issuer_name, issuer_key, ca, not_before):
    b = (x509.CertificateBuilder()
         .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
         .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_name)]))
         .public_key(key.public_key())
         .serial_number(x509.random_serial_number())
         .not_valid_before(not_before)
         .not_valid_after(not_before + datetime.timedelta(days=30))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ca:
        b = b.add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
    else:
        b = b.add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
        b = b.add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
    return b.sign(issuer_key, hashes.SHA256())


def test_certificate_chains_interoperate(tmp_path):
    model = make_model(tmp_path / "model", big=1 << 20)
    now = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=5)
    root_key, mid_key, leaf_key = (ec.generate_private_key(ec.SECP384R1()), ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1()))
    root = certificate("Test Root", root_key, "Test Root", root_key, True, now)
    mid = certificate("Test Intermediate", mid_key, "Test Root", root_key, True, now)
    leaf = certificate("model signer", leaf_key, "Test Intermediate", mid_key, False, now)
    pem = lambda c: c.public_bytes(serialization.Encoding.PEM)
    (tmp_path / "root.pem").write_bytes(pem(root))
    (tmp_path / "mid.pem").write_bytes(pem(mid))
    (tmp_path / "leaf.pem").write_bytes(pem(leaf))
    (tmp_path / "leaf.key").write_bytes(leaf_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))

    theirs, ours = tmp_path / "reference.sig", tmp_path / "bastion.sig"
    r = ms("sign", "certificate", str(model), "--private_key", str(tmp_path / "leaf.key"), "--signing_certificate", str(tmp_path / "leaf.pem"),
           "--certificate_chain", str(tmp_path / "mid.pem"), "--signature", str(theirs))
    assert r.returncode == 0, r.stdout + r.stderr
    out = bastion("verify", str(model), "--signature", str(theirs), "--certificate-chain", str(tmp_path / "root.pem"))
    assert json.loads(out.stdout)["verified"] is True

    bastion("sign", str(model), "--key", str(tmp_path / "leaf.key"), "--certificate", str(tmp_path / "leaf.pem"),
            "--certificate-chain", str(tmp_path / "mid.pem"), "--signature", str(ours))
    r = ms("verify", "certificate", str(model), "--signature", str(ours), "--certificate_chain", str(tmp_path / "root.pem"))
    assert r.returncode == 0, r.stdout + r.stderr

    # A root that did not issue the chain is refused by both.
    other_key = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "other.pem").write_bytes(pem(certificate("Other Root", other_key, "Other Root", other_key, True, now)))
    r = bastion("verify", str(model), "--signature", str(ours), "--certificate-chain", str(tmp_path / "other.pem"), check=False)
    assert r.returncode == 1 and "no trusted root" in r.stderr, r.stderr
    assert ms("verify", "certificate", str(model), "--signature", str(theirs), "--certificate_chain", str(tmp_path / "other.pem")).returncode != 0


def registry_args():
    return backend_args()


def register(server, name, tmp_path):
    model = make_model(tmp_path / "model", big=1 << 20)
    (model / "MLmodel").write_text("flavors: {}\n")
    mlflow.set_experiment(f"signing-{name}")
    with mlflow.start_run() as run:
        mlflow.log_param("learning_rate", "0.05")
        mlflow.log_metric("accuracy", 0.93)
        mlflow.set_tag("bastion.model_card.use_cases", "fraud triage\nmanual review queue")
        import numpy as np
        train = mlflow.data.from_numpy(np.arange(12).reshape(4, 3), name="transactions", source="s3://data/transactions.npy")
        mlflow.log_input(train, context="training")
        mlflow.log_artifacts(str(model), artifact_path="model")
    mv = mlflow.register_model(f"runs:/{run.info.run_id}/model", name)
    return mv


def test_registered_versions_verify_end_to_end(creds, tmp_path):
    server = creds
    name = f"signed-{server.mode}"
    mv = register(server, name, tmp_path)
    a = requests.get(server.url + "/api/bastion/v1/model-versions/attestations", params={"name": name, "version": mv.version}, headers=server.auth, timeout=30).json()
    assert a["root_digest"]

    # The reference tool verifies the server's signature on the downloaded files.
    dl = mlflow.artifacts.download_artifacts(f"models:/{name}/{mv.version}", dst_path=str(tmp_path / "dl"))
    # The mlflow client adds this file to the download itself; it is not one of the version's.
    os.remove(os.path.join(dl, "registered_model_meta"))
    (tmp_path / "server.sig").write_text(json.dumps(a["signature"]))
    (tmp_path / "server.pub").write_text(a["public_key"])
    r = ms("verify", "key", dl, "--signature", str(tmp_path / "server.sig"), "--public_key", str(tmp_path / "server.pub"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert root_of(tmp_path / "server.sig") == a["root_digest"]

    # And `bastion verify models:/…` checks the version in the registry itself, by version or
    # by alias.
    out = bastion("verify", f"models:/{name}/{mv.version}", *registry_args(), home=server.home)
    report = json.loads(out.stdout)
    assert report["verified"] is True and report["files_checked"] == 8, report
    mlflow.MlflowClient().set_registered_model_alias(name, "champion", mv.version)
    out = bastion("verify", f"models:/{name}@champion", *registry_args(), home=server.home)
    assert json.loads(out.stdout)["version"] == mv.version
    r = bastion("verify", f"models:/{name}@nobody", *registry_args(), home=server.home, check=False)
    assert r.returncode == 2 and "nobody" in r.stderr, r.stderr


@pytest.mark.skipif(bool(os.environ.get("BASTION_INTEROP_ARTIFACTS")), reason="tampers with a local blob folder")
def test_tampered_blob_is_reported_and_quarantined(creds, tmp_path):
    server = creds
    name = f"tampered-{server.mode}"
    mv = register(server, name, tmp_path)
    digest = hashlib.sha256(b"hi\n").hexdigest()
    blob = os.path.join(server.home, "blobs", "sha256", digest[:2], digest[2:4], digest)
    os.chmod(blob, 0o644)
    with open(blob, "wb") as f:
        f.write(b"ho\n")
    try:
        r = bastion("verify", f"models:/{name}/{mv.version}", *registry_args(), home=server.home, check=False)
        assert r.returncode == 1, r.stdout + r.stderr
        report = json.loads(r.stdout)
        assert any("a/x: its stored bytes changed" in m for m in report["mismatches"]), report
        assert report["quarantine"], report
        got = mlflow.MlflowClient().get_model_version(name, mv.version)
        assert got.status == "FAILED_REGISTRATION"
        assert "no longer match" in got.status_message
    finally:
        # Other tests share this content-addressed blob.
        with open(blob, "wb") as f:
            f.write(b"hi\n")


def test_bom_validates_against_cyclonedx_1_6(creds, tmp_path):
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    server = creds
    name = f"bom-{server.mode}"
    mv = register(server, name, tmp_path)
    out = tmp_path / "bom.json"
    bastion("bom", f"models:/{name}/{mv.version}", "--output", str(out), *registry_args(), home=server.home)
    validator = JsonStrictValidator(SchemaVersion.V1_6)
    errors = validator.validate_str(out.read_text())
    assert errors is None, errors
    bom = json.loads(out.read_text())
    model = bom["components"][0]
    assert model["type"] == "machine-learning-model"
    assert model["hashes"][0]["alg"] == "SHA-256"
    assert {"name": "bastion:parameter:learning_rate", "value": "0.05"} in model["properties"]
    card = model["modelCard"]
    assert card["quantitativeAnalysis"]["performanceMetrics"] == [{"type": "accuracy", "value": "0.93"}]
    assert card["considerations"]["useCases"] == ["fraud triage", "manual review queue"]
    assert len(model["components"]) == 8
    data = [c for c in bom["components"] if c["type"] == "data"]
    assert [d["name"] for d in data] == ["transactions"]
    assert card["modelParameters"]["datasets"] == [{"ref": data[0]["bom-ref"]}]
    assert any(p["name"] == "bastion:dataset-digest" for p in data[0]["properties"]), data

    folder = tmp_path / "folder-bom.json"
    bastion("bom", str(tmp_path / "model"), "--output", str(folder))
    assert validator.validate_str(folder.read_text()) is None


def test_a_signature_inside_the_model_is_not_part_of_it(tmp_path):
    model = make_model(tmp_path / "model", big=1 << 20)
    priv, pub = keypair(tmp_path, ec.SECP256R1())
    ours = model / "bastion.sig"
    bastion("sign", str(model), "--key", str(priv), "--signature", str(ours))
    assert "bastion.sig" in statement(ours)["predicate"]["serialization"]["ignore_paths"]
    assert ms("verify", "key", str(model), "--signature", str(ours), "--public_key", str(pub)).returncode == 0
    bastion("verify", str(model), "--signature", str(ours), "--key", str(pub))
    theirs = model / "reference.sig"
    assert ms("sign", "key", str(model), "--private_key", str(priv), "--signature", str(theirs)).returncode == 0
    # The reference signature covers bastion.sig (it only leaves out itself), so both sides
    # verify it as long as bastion.sig stays.
    bastion("verify", str(model), "--signature", str(theirs), "--key", str(pub))
    r = bastion("verify", str(model), "--signature", str(tmp_path / "absent.sig"), "--key", str(pub), check=False)
    assert r.returncode == 2 and "absent.sig" in r.stderr, r.stderr
