"""`bastion gate` end to end on a home: the evidence a pipeline leaves (data validation, PII
scan, training metrics, model scan, signature, provenance, a red-team campaign) evaluated by
a policy; the table, JUnit XML and SARIF that CI systems read; exit codes 0 / 1 / 2."""
import json
import os
import xml.etree.ElementTree as ET

import pytest

from cli import run, shipped_home

POLICY = """name = "production"
rules = [
  'dataset.validation = "pass"',
  'dataset.pii.columns = 0',
  'model.scan.max_severity < "HIGH"',
  'model.signature = "valid"',
  'provenance.dataset_validated = true',
  'model.metrics.test_roc_auc >= 0.95',
]

[[rule]]
id = "robust"
check = "redteam.eps_0_1.robust_accuracy >= 0.5"

[[rule]]
check = "privacy.membership_auc <= 0.75"
level = "warning"
"""


@pytest.fixture(scope="module")
def gated(tmp_path_factory):
    out = tmp_path_factory.mktemp("gate")
    with shipped_home() as home:
        constraints = out / "bc.toml"
        constraints.write_text(run(home, "data", "suggest", "bc@v1").stdout)
        run(home, "data", "validate", "bc@v1", "-c", str(constraints))
        run(home, "train", "--data", "bc", "--target", "diagnosis", "--model", "gbdt", "--register", "bcg")
        run(home, "redteam", "models:/bcg/1", "--data", "bc@v1", "--checks", "square,membership",
            "--eps", "0.1", "--max-rows", "100")
        yield home, out


def test_a_model_with_its_evidence_passes(gated):
    home, out = gated
    policy = out / "production.toml"
    policy.write_text(POLICY)
    p = run(home, "gate", "models:/bcg/1", "--policy", str(policy), "--junit", str(out / "junit.xml"),
            "--sarif", str(out / "gate.sarif"))
    assert "decision: PASS" in p.stdout, p.stdout
    for fact in ["dataset.validation", "model.metrics.test_roc_auc", "redteam.eps_0_1.robust_accuracy"]:
        line = next(l for l in p.stdout.splitlines() if fact in l)
        assert line.strip().startswith("PASS"), p.stdout
    suite = ET.parse(out / "junit.xml").getroot().find("testsuite")
    assert suite.get("tests") == "8" and suite.get("failures") == "0"
    assert len(suite.findall("testcase")) == 8
    sarif = json.loads((out / "gate.sarif").read_text())
    results = sarif["runs"][0]["results"]
    assert sarif["version"] == "2.1.0" and len(results) == 8
    assert all(r["kind"] == "pass" for r in results)

    # The JSON form carries the facts and the recorded decision.
    j = json.loads(run(home, "gate", "models:/bcg/1", "--policy", str(policy), "--format", "json").stdout)
    assert j["passed"] is True and isinstance(j["evidence"], int)
    assert j["facts"]["model.signature"] == "valid"
    assert j["facts"]["dataset.count"] == 1
    assert 0.5 <= j["facts"]["privacy.membership_auc"] <= 1


def test_a_failing_rule_fails_the_job_and_points_at_its_line(gated):
    home, out = gated
    policy = out / "strict.toml"
    policy.write_text(POLICY.replace("test_roc_auc >= 0.95", "test_roc_auc >= 0.99999")
                      + "\n[[rule]]\ncheck = 'model.metrics.no_such_metric > 0'\nlevel = 'warning'\n")
    p = run(home, "gate", "models:/bcg/1", "--policy", str(policy), "--junit", str(out / "j.xml"),
            "--sarif", str(out / "s.sarif"), ok=False)
    assert p.returncode == 1, p.stderr
    assert "decision: FAIL (1 of 9 rules blocking, 1 warnings)" in p.stdout, p.stdout
    assert "model.metrics.test_roc_auc >= 0.99999" in p.stderr
    suite = ET.parse(out / "j.xml").getroot().find("testsuite")
    assert suite.get("failures") == "1"
    failed = [c for c in suite.findall("testcase") if c.find("failure") is not None]
    assert [c.get("line") for c in failed] == ["8"]
    results = json.loads((out / "s.sarif").read_text())["runs"][0]["results"]
    bad = [r for r in results if r["kind"] == "fail"]
    assert [(r["level"], r["locations"][0]["physicalLocation"]["region"]["startLine"]) for r in bad] == [
        ("error", 8), ("warning", 20)]
    # A dry run decides the same without recording.
    j = json.loads(run(home, "gate", "models:/bcg/1", "--policy", str(policy), "--format", "json",
                       "--dry-run", ok=False).stdout)
    assert j["passed"] is False and j["evidence"] is None


@pytest.mark.parametrize("text,where", [
    ("rules = [\n  'model.metrics.test_roc_auc >= 0.9',\n  'model.scan.max_severity < \"SEVERE\"',\n]", "line 3"),
    ("rules = ['model.metrics.auc >= 0.9']\nowner = 'me'\n", "line 2"),
    ("name = 'nothing'\n", "no rules"),
])
def test_a_malformed_policy_is_an_error_with_its_line(gated, text, where):
    home, out = gated
    policy = out / "bad.toml"
    policy.write_text(text)
    p = run(home, "gate", "models:/bcg/1", "--policy", str(policy), ok=False)
    assert p.returncode == 2, p.stderr
    assert where in p.stderr and str(policy) in p.stderr, p.stderr


def test_an_unknown_version_is_an_error(gated):
    home, out = gated
    policy = out / "production.toml"
    policy.write_text(POLICY)
    p = run(home, "gate", "models:/bcg/9", "--policy", str(policy), ok=False)
    assert p.returncode == 2 and "bcg/9" in p.stderr, p.stderr
