"""`bastion data` against SciPy and age: drift statistics equal SciPy's on the same data (to
1e-9), dataset blobs encrypted by Bastion decrypt with the age format's reference library
(pyrage, bindings to rage) and the home's key file, and the CLI's exit codes.

Runs the CLI on a throwaway home (embedded defaults); no server needed.
"""
import json
import os
import subprocess
import tempfile

import numpy as np
import pyrage
import pytest
from scipy import stats
from scipy.spatial.distance import jensenshannon

BIN = os.environ.get("BASTION_BIN", "bastion")
TOL = 1e-9


def bastion(home, *args, check=True):
    p = subprocess.run(
        [BIN, "--home", home, "data", *args], capture_output=True, text=True, timeout=300
    )
    if check and p.returncode != 0:
        raise AssertionError(f"bastion data {args} exited {p.returncode}: {p.stderr}")
    return p


def write_csv(path, columns):
    names = list(columns)
    n = len(columns[names[0]])
    with open(path, "w") as f:
        f.write(",".join(names) + "\n")
        for i in range(n):
            f.write(",".join(repr(float(columns[c][i])) if not isinstance(columns[c][i], str) else columns[c][i] for c in names) + "\n")


@pytest.fixture
def home():
    with tempfile.TemporaryDirectory() as d:
        yield d


def quantile_edges(ref, bins=10):
    # The documented binning: interior reference quantiles (NumPy linear), duplicates removed;
    # bin i holds edge[i-1] <= v < edge[i].
    return np.unique(np.quantile(ref, np.arange(1, bins) / bins))


def bin_counts(x, edges):
    return np.bincount(np.searchsorted(edges, x, side="right"), minlength=len(edges) + 1)


def psi(p, q, floor=1e-4):
    p, q = np.maximum(p, floor), np.maximum(q, floor)
    return float(np.sum((q - p) * np.log(q / p)))


def hellinger(p, q):
    return float(np.sqrt(np.sum((np.sqrt(p) - np.sqrt(q)) ** 2) / 2))


@pytest.mark.parametrize("n_ref,n_cur,shift", [(300, 200, 0.0), (400, 350, 0.25), (800, 600, 0.1), (1500, 1200, 0.05)])
def test_drift_statistics_match_scipy(home, tmp_path, n_ref, n_cur, shift):
    rng = np.random.default_rng(n_ref + n_cur)
    a = {
        "x": rng.normal(0, 1, n_ref),
        # rounded values make ties, which the KS statistic must handle as SciPy does
        "t": np.round(rng.exponential(2.0, n_ref), 1),
        "c": rng.choice(["red", "green", "blue", "grey"], n_ref, p=[0.4, 0.3, 0.2, 0.1]),
    }
    b = {
        "x": rng.normal(shift, 1.1, n_cur),
        "t": np.round(rng.exponential(2.0 + shift, n_cur), 1),
        "c": rng.choice(["red", "green", "blue", "grey", "pink"], n_cur, p=[0.35, 0.3, 0.2, 0.1, 0.05]),
    }
    write_csv(tmp_path / "a.csv", a)
    write_csv(tmp_path / "b.csv", b)
    bastion(home, "add", str(tmp_path / "a.csv"), "--name", "d")
    bastion(home, "add", str(tmp_path / "b.csv"), "--name", "d")
    out = json.loads(bastion(home, "diff", "d@v1", "d@v2").stdout)
    cols = {c["column"]: c for c in out["diff"]["drift"]["columns"]}
    pvalues = []
    for name in ("x", "t"):
        got = cols[name]
        ref, cur = np.asarray(a[name], float), np.asarray(b[name], float)
        ks = stats.ks_2samp(ref, cur, method="exact")
        assert abs(got["ks"]["statistic"] - ks.statistic) <= TOL
        assert got["ks"]["pvalue_exact"] is not None
        assert abs(got["ks"]["pvalue_exact"] - ks.pvalue) <= TOL, (name, got["ks"], ks)
        en = n_ref * n_cur / (n_ref + n_cur)
        asym = stats.kstwobign.sf(np.sqrt(en) * ks.statistic)
        assert abs(got["ks"]["pvalue_asymptotic"] - asym) <= TOL
        w = stats.wasserstein_distance(ref, cur)
        assert abs(got["wasserstein"] - w) <= TOL
        assert abs(got["wasserstein_normalized"] - w / np.std(ref)) <= TOL
        edges = quantile_edges(ref)
        assert np.allclose(got["bins"]["edges"], edges, rtol=0, atol=TOL)
        rc, cc = bin_counts(ref, edges), bin_counts(cur, edges)
        assert got["bins"]["reference"] == rc.tolist() and got["bins"]["current"] == cc.tolist()
        p, q = rc / rc.sum(), cc / cc.sum()
        assert abs(got["jensen_shannon"] - jensenshannon(p, q)) <= TOL
        assert abs(got["hellinger"] - hellinger(p, q)) <= TOL
        assert abs(got["psi"] - psi(p, q)) <= TOL
        if got["test"] == "ks":
            pvalues.append((name, ks.pvalue))
    got = cols["c"]
    cats = sorted(set(a["c"]) | set(b["c"]))
    rc = np.array([np.sum(a["c"] == k) for k in cats])
    cc = np.array([np.sum(b["c"] == k) for k in cats])
    assert got["bins"]["categories"] == cats
    chi2, pval, dof, _ = stats.chi2_contingency([rc, cc], correction=False)
    assert abs(got["chi_square"]["statistic"] - chi2) <= TOL
    assert abs(got["chi_square"]["pvalue"] - pval) <= TOL
    assert got["chi_square"]["dof"] == dof
    p, q = rc / rc.sum(), cc / cc.sum()
    assert abs(got["jensen_shannon"] - jensenshannon(p, q)) <= TOL
    if got["test"] == "chi_square":
        pvalues.append(("c", pval))
    # The dataset verdict: Benjamini-Hochberg over the p-value tests, as SciPy computes it.
    if pvalues:
        adjusted = stats.false_discovery_control([p for _, p in pvalues], method="bh")
        for (name, _), adj in zip(pvalues, adjusted):
            assert abs(cols[name]["adjusted_pvalue"] - adj) <= TOL
            assert cols[name]["drift"] == (adj < 0.05)


def test_bonferroni_correction(home, tmp_path):
    rng = np.random.default_rng(7)
    cols_a = {f"v{i}": rng.normal(0, 1, 200) for i in range(5)}
    cols_b = {f"v{i}": rng.normal(0.2 * i, 1, 150) for i in range(5)}
    write_csv(tmp_path / "a.csv", cols_a)
    write_csv(tmp_path / "b.csv", cols_b)
    bastion(home, "add", str(tmp_path / "a.csv"), "--name", "m")
    bastion(home, "add", str(tmp_path / "b.csv"), "--name", "m")
    out = json.loads(bastion(home, "diff", "m@v1", "m@v2", "--correction", "bonferroni").stdout)
    for c in out["diff"]["drift"]["columns"]:
        p = stats.ks_2samp(cols_a[c["column"]], cols_b[c["column"]], method="exact").pvalue
        assert abs(c["adjusted_pvalue"] - min(1.0, 5 * p)) <= TOL


def test_encrypted_blobs_decrypt_with_age(home, tmp_path):
    rng = np.random.default_rng(3)
    write_csv(tmp_path / "s.csv", {"a": rng.normal(0, 1, 500), "b": rng.integers(0, 9, 500)})
    key = json.loads(bastion(home, "keygen").stdout)
    assert key["public_key"].startswith("age1")
    v = json.loads(bastion(home, "add", str(tmp_path / "s.csv"), "--name", "secret").stdout)["version"]
    assert v["encrypted"] is True and v["blob_digest"] != v["digest"]
    blob_hex = v["blob_digest"].split(":")[1]
    blob = os.path.join(home, "blobs", "sha256", blob_hex[:2], blob_hex[2:4], blob_hex)
    with open(blob, "rb") as f:
        ciphertext = f.read()
    assert ciphertext.startswith(b"age-encryption.org/v1\n")
    identity = next(l for l in open(os.path.join(home, "dataset-key.txt")).read().splitlines() if l.startswith("AGE-SECRET-KEY-"))
    plaintext = pyrage.decrypt(ciphertext, [pyrage.x25519.Identity.from_str(identity)])
    out = tmp_path / "got.parquet"
    bastion(home, "get", "secret@v1", "-o", str(out))
    assert plaintext == out.read_bytes()
    import hashlib
    assert "sha256:" + hashlib.sha256(plaintext).hexdigest() == v["digest"]

    # A wrong key fails in pyrage, and a changed byte makes Bastion refuse the blob.
    other = pyrage.x25519.Identity.generate()
    with pytest.raises(pyrage.DecryptError):
        pyrage.decrypt(ciphertext, [other])
    os.chmod(blob, 0o644)
    with open(blob, "r+b") as f:
        f.seek(len(ciphertext) - 50)
        f.write(bytes([ciphertext[-50] ^ 1]))
    p = bastion(home, "get", "secret@v1", "-o", str(tmp_path / "bad.parquet"), check=False)
    assert p.returncode == 2 and "failed authentication" in p.stderr, p.stderr
    assert not (tmp_path / "bad.parquet").exists()


def test_validate_exit_codes_and_bad_input(home, tmp_path):
    write_csv(tmp_path / "v.csv", {"age": [10.0, 20.0, 200.0]})
    bastion(home, "add", str(tmp_path / "v.csv"), "--name", "v")
    (tmp_path / "ok.toml").write_text("[columns.age]\nmin = 0\n")
    (tmp_path / "bad.toml").write_text("[columns.age]\nmax = 100\n")
    assert bastion(home, "validate", "v", "-c", str(tmp_path / "ok.toml"), check=False).returncode == 0
    p = bastion(home, "validate", "v", "-c", str(tmp_path / "bad.toml"), check=False)
    assert p.returncode == 1
    r = json.loads(p.stdout)
    assert r["results"][0]["failed_rows"] == 1 and r["results"][0]["examples"][0]["row"] == 2
    (tmp_path / "typo.toml").write_text("[columns.age]\nmaxx = 100\n")
    p = bastion(home, "validate", "v", "-c", str(tmp_path / "typo.toml"), check=False)
    assert p.returncode == 2 and "maxx" in p.stderr
    (tmp_path / "broken.csv").write_bytes(b"a,b\n1,2\n3\n")
    p = bastion(home, "add", str(tmp_path / "broken.csv"), "--name", "broken", check=False)
    assert p.returncode == 2 and "broken.csv" in p.stderr and "line 3" in p.stderr, p.stderr
    p = bastion(home, "list", "broken", check=False)
    assert json.loads(p.stdout) == [], "a failed ingest leaves no version"
