"""`bastion scan` against the corpus made by tests/corpus/generate.py: every malicious file is
detected (a finding of MEDIUM or worse), no benign model file has any finding (INFO notes aside), and the exit
codes and SARIF output are what CI systems expect."""
import json
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
GENERATOR = os.path.join(HERE, "..", "corpus", "generate.py")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("corpus")
    subprocess.run([sys.executable, GENERATOR, str(out)], check=True, capture_output=True)
    return out


def scan(*args):
    return subprocess.run([os.environ["BASTION_BIN"], "scan", *map(str, args)], capture_output=True, text=True)


def test_every_malicious_file_is_detected(corpus):
    files = sorted(os.listdir(corpus / "malicious"))
    assert len(files) >= 50
    r = scan(corpus / "malicious", "--format", "json")
    assert r.returncode in (1, 2), r.stderr
    report = json.loads(r.stdout)
    by_name = {os.path.basename(f["path"]): f for f in report["files"]}
    assert sorted(by_name) == files
    missed = [n for n, f in by_name.items() if not any(x["severity"] in ("MEDIUM", "HIGH", "CRITICAL") for x in f["findings"])]
    assert missed == [], f"undetected: {missed}"
    # Broken pickles are reported with what was found before the break, and are errors.
    for name in ("truncated_evil.pkl", "broken_after_global.pkl"):
        assert by_name[name]["errors"], name
        assert any(x["severity"] == "CRITICAL" for x in by_name[name]["findings"]), name
    # Offsets point at the opcode.
    p0 = by_name["pickle_p0_os_system.pkl"]["findings"][0]
    assert (p0["subject"], p0["offset"]) == ("posix.system", 0)


def test_no_benign_file_has_a_finding(corpus):
    files = sorted(os.listdir(corpus / "benign"))
    assert len(files) >= 25
    r = scan(corpus / "benign", "--format", "json", "--fail-on", "low")
    report = json.loads(r.stdout)
    # INFO notes are not findings: TensorFlow's own checkpoint ops in a SavedModel, say.
    noisy = {
        os.path.basename(f["path"]): [x for x in f["findings"] if x["severity"] != "INFO"] + f["errors"]
        for f in report["files"]
    }
    noisy = {k: v for k, v in noisy.items() if v}
    assert noisy == {}, noisy
    assert r.returncode == 0
    notes = {os.path.basename(f["path"]): sorted(x["subject"] for x in f["findings"]) for f in report["files"] if f["findings"]}
    assert notes == {"tf_savedmodel.pb": ["MergeV2Checkpoints", "RestoreV2", "SaveV2"]}, notes


def test_exit_codes_and_sarif(corpus, tmp_path):
    evil = corpus / "malicious" / "pickle_p4_os_system.pkl"
    assert scan(evil).returncode == 1
    assert scan(evil, "--fail-on", "critical").returncode == 1
    medium_only = corpus / "malicious" / "onnx_custom_domain.onnx"
    assert scan(medium_only, "--fail-on", "high").returncode == 0
    assert scan(corpus / "malicious" / "truncated_evil.pkl").returncode == 2
    assert scan(tmp_path / "missing.pkl").returncode == 2
    sarif_path = tmp_path / "out.sarif"
    r = scan(corpus / "malicious", "--format", "sarif", "--output", sarif_path)
    assert r.returncode == 2
    sarif = json.loads(sarif_path.read_text())
    assert sarif["version"] == "2.1.0"
    run = sarif["runs"][0]
    rule_ids = {r["id"] for r in run["tool"]["driver"]["rules"]}
    assert {"pickle.dangerous-global", "scan.incomplete"} <= rule_ids
    for result in run["results"]:
        assert result["ruleId"] in rule_ids
        assert result["level"] in ("error", "warning", "note")
        assert result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]


def test_policy_files_extend_the_allow_list(corpus, tmp_path):
    unknown = tmp_path / "custom.pkl"
    # A class from the user's own package: unknown (MEDIUM) until their policy allows it.
    unknown.write_bytes(b"\x80\x02cmypackage.models\nNet\n)\x81.")
    assert scan(unknown).returncode == 1
    policy = tmp_path / "policy.toml"
    policy.write_text('[allow]\n"mypackage.models" = ["Net"]\n')
    assert scan(unknown, "--policy", policy).returncode == 0
    bad = tmp_path / "bad.toml"
    bad.write_text("[allow]\nx = 1\n")
    r = scan(unknown, "--policy", bad)
    assert r.returncode == 2 and "bad.toml" in r.stderr
