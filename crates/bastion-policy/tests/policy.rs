//! Policies as users write them: evaluation against facts, the renderings CI systems read,
//! and malformed files refused with the line that is wrong.

use bastion_policy::render::{Subject, junit, sarif, table};
use bastion_policy::{Facts, Level, Policy, PolicyError, Value, Verdict, evaluate};

const PRODUCTION: &str = r#"# What a model needs before production.
name = "production"
description = "release criteria"
rules = [
  'dataset.validation = "pass"',
  'dataset.pii.columns = 0',
  'model.scan.max_severity < "HIGH"',
  'model.signature = "valid"',
  'model.metrics.auc >= 0.95',
]

[[rule]]
id = "robust"
check = "redteam.pgd.eps_0_1.robust_accuracy >= 0.80"
description = "PGD at eps 0.1 leaves 80% of rows right"

[[rule]]
check = "privacy.membership_auc <= 0.60"
level = "warning"

[[rule]]
check = "provenance.dataset_validated = true"
missing = "pass"
"#;

fn facts(pairs: &[(&str, Value)]) -> Facts {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}

fn good() -> Facts {
    facts(&[
        ("dataset.validation", Value::Text("pass".into())),
        ("dataset.pii.columns", Value::Number(0.0)),
        ("model.scan.max_severity", Value::Text("MEDIUM".into())),
        ("model.signature", Value::Text("valid".into())),
        ("model.metrics.auc", Value::Number(0.991)),
        ("redteam.pgd.eps_0_1.robust_accuracy", Value::Number(0.85)),
        ("privacy.membership_auc", Value::Number(0.52)),
        ("provenance.dataset_validated", Value::Bool(true)),
    ])
}

const SUBJECT: Subject = Subject {
    model: "models:/bc/3",
    digest: "sha256:ab",
    policy_path: "policies/production.toml",
};

#[test]
fn a_model_that_meets_every_rule_passes() {
    let p = Policy::parse(PRODUCTION, "unnamed").expect("policy");
    assert_eq!(p.name, "production");
    assert_eq!(p.rules.len(), 8);
    assert_eq!(p.rules[0].line, 5);
    assert_eq!(p.rules[5].id, "robust");
    assert_eq!(p.rules[5].line, 14);
    assert_eq!(p.rules[6].level, Level::Warning);
    let d = evaluate(&p, &good());
    assert!(d.passed, "{d:#?}");
    assert_eq!((d.errors, d.warnings), (0, 0));
    assert!(d.rules.iter().all(|r| r.verdict == Verdict::Pass));
}

#[test]
fn each_failure_is_named_with_its_value() {
    let p = Policy::parse(PRODUCTION, "x").expect("policy");
    let mut f = good();
    f.insert("model.scan.max_severity".into(), Value::Text("HIGH".into()));
    f.insert("model.metrics.auc".into(), Value::Number(0.9));
    f.insert("privacy.membership_auc".into(), Value::Number(0.7));
    f.remove("redteam.pgd.eps_0_1.robust_accuracy");
    f.remove("provenance.dataset_validated");
    let d = evaluate(&p, &f);
    assert!(!d.passed);
    // Scan, AUC and the missing robustness figure block; the membership warning does not;
    // the provenance rule accepts a missing fact.
    assert_eq!(d.errors, 3);
    assert_eq!(d.warnings, 1);
    let by_id = |id: &str| d.rules.iter().find(|r| r.id == id).expect(id);
    assert_eq!(by_id("model.scan.max_severity").verdict, Verdict::Fail);
    assert_eq!(by_id("model.metrics.auc").value, Some(Value::Number(0.9)));
    assert_eq!(by_id("robust").verdict, Verdict::Missing);
    assert!(by_id("robust").blocking());
    assert!(!by_id("privacy.membership_auc").blocking());
    assert!(by_id("provenance.dataset_validated").ok);

    let text = table(&d, &SUBJECT);
    assert!(text.contains("FAIL "), "{text}");
    let auc_line = text
        .lines()
        .find(|l| l.contains("model.metrics.auc >= 0.95"))
        .expect("auc");
    assert!(
        auc_line.trim_start().starts_with("FAIL") && auc_line.ends_with("value: 0.9"),
        "{text}"
    );
    assert!(text.contains("MISSING "), "{text}");
    assert!(
        text.contains("decision: FAIL (3 of 8 rules blocking, 1 warnings)"),
        "{text}"
    );

    let xml = junit(&d, &SUBJECT);
    assert!(xml.contains("tests=\"8\" failures=\"3\""), "{xml}");
    assert_eq!(xml.matches("<failure ").count(), 3, "{xml}");
    assert_eq!(xml.matches("<testcase ").count(), 8);
    assert!(
        xml.contains(
            "name=\"model.scan.max_severity: model.scan.max_severity &lt; &quot;HIGH&quot;\""
        ),
        "{xml}"
    );
    assert!(
        xml.contains("file=\"policies/production.toml\" line=\"7\""),
        "{xml}"
    );
    assert!(xml.contains("<system-out>warning: "), "{xml}");

    let s = sarif(&d, &SUBJECT, "0.1.0");
    assert_eq!(s["version"], "2.1.0");
    let results = s["runs"][0]["results"].as_array().expect("results");
    assert_eq!(results.len(), 8);
    let failed: Vec<&serde_json::Value> = results.iter().filter(|r| r["kind"] == "fail").collect();
    assert_eq!(failed.len(), 4);
    let auc = results
        .iter()
        .find(|r| r["ruleId"] == "model.metrics.auc")
        .expect("auc");
    assert_eq!(auc["level"], "error");
    assert_eq!(
        auc["locations"][0]["physicalLocation"]["region"]["startLine"],
        9
    );
    assert_eq!(
        auc["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
        "policies/production.toml"
    );
    assert_eq!(auc["properties"]["value"], 0.9);
    let warn = results
        .iter()
        .find(|r| r["ruleId"] == "privacy.membership_auc")
        .expect("warn");
    assert_eq!(warn["level"], "warning");
    assert_eq!(
        s["runs"][0]["tool"]["driver"]["rules"]
            .as_array()
            .map(Vec::len),
        Some(8)
    );
}

#[test]
fn repeated_facts_get_numbered_ids() {
    let p = Policy::parse(
        "rules = ['model.metrics.auc >= 0.9', 'model.metrics.auc <= 1']",
        "p",
    )
    .expect("policy");
    let ids: Vec<&str> = p.rules.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["model.metrics.auc", "model.metrics.auc#2"]);
    assert_eq!(p.name, "p");
}

fn refusal(text: &str) -> PolicyError {
    match Policy::parse(text, "p") {
        Ok(p) => panic!("accepted: {p:?}"),
        Err(e) => e,
    }
}

#[test]
fn malformed_policies_are_refused_with_their_line() {
    let cases: &[(&str, &str)] = &[
        // TOML errors: the reader's line and column.
        (
            "name = \"x\"\nrules = [\n  'model.metrics.auc >= 0.9'\n  'x'\n]",
            "line 4",
        ),
        ("rules = ['model.metrics.auc >= 0.9']\nname = 3", "line 2"),
        // Unknown keys are refused, not ignored.
        ("rules = ['model.metrics.auc >= 0.9']\nrulez = []", "line 2"),
        (
            "[[rule]]\ncheck = 'model.metrics.auc >= 0.9'\nlevl = 'warning'",
            "line 3",
        ),
        (
            "[[rule]]\ncheck = 'model.metrics.auc >= 0.9'\nlevel = 'fatal'",
            "line 3",
        ),
        ("[[rule]]\nid = 'x'", "missing field `check`"),
        // Expressions: the rule's line, the column and what is wrong.
        (
            "\n\nrules = [\n 'model.metrics.auc >= 0.9',\n 'model.sig = \"valid\"',\n]",
            "line 5: rule 'model.sig = \"valid\"': column 3: unknown fact 'model.sig'",
        ),
        (
            "[[rule]]\ncheck = 'model.signature > \"valid\"'",
            "line 2: rule 'model.signature > \"valid\"': column 26: '>' orders values",
        ),
        (
            "rules = ['model.scan.max_severity < \"SEVERE\"']",
            "line 1: rule",
        ),
        (
            "rules = ['dataset.pii.columns = none']",
            "'none' is not a value",
        ),
        // Ids.
        (
            "[[rule]]\nid = 'a'\ncheck = 'model.metrics.auc >= 0.9'\n[[rule]]\nid = 'a'\ncheck = 'model.metrics.f1 >= 0.9'",
            "line 6: a rule with id 'a' is already defined",
        ),
        (
            "[[rule]]\nid = 'a b'\ncheck = 'model.metrics.auc >= 0.9'",
            "line 2: rule id 'a b'",
        ),
        // A policy without rules would pass anything.
        ("name = 'empty'", "the policy has no rules"),
        ("", "the policy has no rules"),
    ];
    for (text, expected) in cases {
        let e = refusal(text).to_string();
        assert!(
            e.contains(expected),
            "{text:?}\n gave: {e}\n expected: {expected}"
        );
    }
}

#[test]
fn hostile_input_is_refused_without_panicking() {
    for text in [
        "rules = ['\u{0}']",
        "rules = ['model.metrics.auc >= 0.9 \u{202e}']",
        "rules = ['model.metrics.\u{1F4A9} >= 1']",
        "rules = [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]",
        "rules = ['model.metrics.auc in [1,2,']",
        "rules = ['model.metrics.auc >= NaN']",
        "rules = ['model.metrics.auc >= inf']",
    ] {
        assert!(Policy::parse(text, "p").is_err(), "{text}");
    }
    let long = format!("rules = ['model.metrics.{} >= 1']", "a".repeat(100_000));
    assert!(Policy::parse(&long, "p").is_ok());
}
