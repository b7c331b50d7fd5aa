//! A decision for people (a table) and for CI systems: JUnit XML (one test case per rule)
//! and SARIF 2.1.0 (one result per rule, located at the rule's line in the policy file).

use bastion_core::html::escape;
use serde_json::{Value as Json, json};

use crate::decision::{Decision, RuleResult, Verdict};
use crate::policy::Level;

/// What the decision was about, as the renderings name it.
pub struct Subject<'a> {
    /// `models:/NAME/VERSION`.
    pub model: &'a str,
    /// The model's root digest (`sha256:…`).
    pub digest: &'a str,
    /// The policy file, as the CI job names it (SARIF locations and JUnit `file`).
    pub policy_path: &'a str,
}

fn mark(r: &RuleResult) -> &'static str {
    match (r.verdict, r.ok, r.level) {
        (Verdict::Pass, _, _) => "PASS",
        (Verdict::Missing, true, _) => "MISSING (accepted)",
        (_, _, Level::Warning) => "WARN",
        (Verdict::Missing, false, Level::Error) => "MISSING",
        (Verdict::Fail, _, Level::Error) => "FAIL",
    }
}

fn shown_value(r: &RuleResult) -> String {
    r.value
        .as_ref()
        .map_or_else(|| "no evidence".to_owned(), ToString::to_string)
}

/// Each rule with its value and verdict, then the decision.
pub fn table(d: &Decision, s: &Subject) -> String {
    let width = d.rules.iter().map(|r| r.check.len()).max().unwrap_or(0);
    let mut out = format!("policy {} on {} ({})\n", d.policy, s.model, s.digest);
    for r in &d.rules {
        out.push_str(&format!(
            "  {:<18} {:<width$}  value: {}\n",
            mark(r),
            r.check,
            shown_value(r)
        ));
    }
    out.push_str(&format!(
        "decision: {} ({} of {} rules blocking, {} warnings)\n",
        if d.passed { "PASS" } else { "FAIL" },
        d.errors,
        d.rules.len(),
        d.warnings
    ));
    out
}

/// JUnit XML: the policy is a test suite, each rule a test case; a blocking rule is a
/// failure, a failed warning rule passes with its message on `system-out`.
pub fn junit(d: &Decision, s: &Subject) -> String {
    let suite = escape(&format!("bastion gate {} on {}", d.policy, s.model));
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    out.push_str(&format!(
        "<testsuites name=\"{suite}\" tests=\"{}\" failures=\"{}\" errors=\"0\">\n",
        d.rules.len(),
        d.errors
    ));
    out.push_str(&format!(
        "  <testsuite name=\"{suite}\" tests=\"{}\" failures=\"{}\" errors=\"0\" skipped=\"0\">\n",
        d.rules.len(),
        d.errors
    ));
    out.push_str(&format!(
        "    <properties><property name=\"model\" value=\"{}\"/><property name=\"digest\" value=\"{}\"/></properties>\n",
        escape(s.model),
        escape(s.digest)
    ));
    for r in &d.rules {
        out.push_str(&format!(
            "    <testcase classname=\"bastion.gate.{}\" name=\"{}\" file=\"{}\" line=\"{}\">",
            escape(&d.policy),
            escape(&format!("{}: {}", r.id, r.check)),
            escape(s.policy_path),
            r.line
        ));
        if r.blocking() {
            out.push_str(&format!(
                "\n      <failure message=\"{}\" type=\"{:?}\">{}</failure>\n    ",
                escape(&r.message()),
                r.verdict,
                escape(&format!("value: {}", shown_value(r)))
            ));
        } else if !r.ok {
            out.push_str(&format!(
                "\n      <system-out>warning: {}</system-out>\n    ",
                escape(&r.message())
            ));
        }
        out.push_str("</testcase>\n");
    }
    out.push_str("  </testsuite>\n</testsuites>\n");
    out
}

/// SARIF 2.1.0: a rule per policy rule, a result per rule (`kind` pass or fail), located at
/// the rule's line in the policy file so code-scanning UIs point at the rule that blocked.
pub fn sarif(d: &Decision, s: &Subject, tool_version: &str) -> Json {
    let rules: Vec<Json> = d
        .rules
        .iter()
        .map(|r| {
            let mut rule = json!({
                "id": r.id,
                "shortDescription": {"text": r.check},
                "defaultConfiguration": {"level": level(r.level)},
            });
            if let Some(text) = &r.description {
                rule["fullDescription"] = json!({ "text": text });
            }
            rule
        })
        .collect();
    let results: Vec<Json> = d
        .rules
        .iter()
        .enumerate()
        .map(|(i, r)| {
            json!({
                "ruleId": r.id,
                "ruleIndex": i,
                "kind": if r.ok { "pass" } else { "fail" },
                "level": if r.ok { "none" } else { level(r.level) },
                "message": {"text": format!("{} on {}", r.message(), s.model)},
                "locations": [{"physicalLocation": {
                    "artifactLocation": {"uri": s.policy_path},
                    "region": {"startLine": r.line},
                }}],
                "properties": {
                    "fact": r.fact,
                    "value": r.value,
                    "verdict": r.verdict,
                    "model": s.model,
                    "digest": s.digest,
                },
            })
        })
        .collect();
    json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "bastion-gate",
                "informationUri": "https://example.invalid/bastion",
                "version": tool_version,
                "rules": rules,
            }},
            "properties": {"policy": d.policy, "passed": d.passed},
            "results": results,
        }]
    })
}

fn level(l: Level) -> &'static str {
    match l {
        Level::Error => "error",
        Level::Warning => "warning",
    }
}
