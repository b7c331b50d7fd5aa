//! A scan report as a table for people, JSON for programs, and SARIF 2.1.0 for code-scanning
//! services (GitHub accepts it as is).

use serde_json::{Value, json};

use crate::finding::{Report, Severity};

/// One line per finding and per error, worst first, then a summary line.
pub fn table(report: &Report) -> String {
    let mut out = String::new();
    let mut rows: Vec<(Severity, String, String, String)> = Vec::new();
    for f in report.findings() {
        let at = match f.offset {
            Some(o) => format!("{} @{o}", f.location),
            None => f.location.clone(),
        };
        rows.push((f.severity, f.rule.clone(), at, f.message.clone()));
    }
    rows.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.2.cmp(&b.2)));
    for (sev, rule, at, msg) in &rows {
        out.push_str(&format!(
            "{:<8} {rule:<28} {at}\n         {msg}\n",
            sev.as_str()
        ));
    }
    for file in &report.files {
        for e in &file.errors {
            out.push_str(&format!(
                "ERROR    {:<28} {}\n         {}\n",
                "scan.incomplete", e.location, e.message
            ));
        }
    }
    let errors: usize = report.files.iter().map(|f| f.errors.len()).sum();
    out.push_str(&format!(
        "{} files scanned, {} findings (worst: {}), {} files not fully scanned\n",
        report.files.len(),
        rows.len(),
        report.worst().map_or("none", Severity::as_str),
        errors
    ));
    out
}

pub fn json(report: &Report) -> Value {
    json!({
        "files": report.files,
        "summary": {
            "files": report.files.len(),
            "findings": report.findings().count(),
            "worst": report.worst(),
            "errors": report.files.iter().map(|f| f.errors.len()).sum::<usize>(),
        }
    })
}

fn sarif_level(s: Severity) -> &'static str {
    match s {
        Severity::Critical | Severity::High => "error",
        Severity::Medium => "warning",
        Severity::Low | Severity::Info => "note",
    }
}

/// SARIF's security-severity (0–10) as GitHub ranks alerts.
fn security_severity(s: Severity) -> &'static str {
    match s {
        Severity::Critical => "9.5",
        Severity::High => "8.0",
        Severity::Medium => "5.5",
        Severity::Low => "3.0",
        Severity::Info => "0.0",
    }
}

/// The file part of a location (`model.pt!archive/data.pkl` → `model.pt`), as a URI reference.
fn artifact_uri(location: &str) -> String {
    let file = location.split('!').next().unwrap_or(location);
    file.trim_start_matches("./").replace('\\', "/")
}

pub fn sarif(report: &Report, tool_version: &str) -> Value {
    let mut rules: std::collections::BTreeMap<String, Severity> = Default::default();
    for f in report.findings() {
        let e = rules.entry(f.rule.clone()).or_insert(f.severity);
        *e = (*e).max(f.severity);
    }
    let rule_list: Vec<Value> = rules
        .iter()
        .map(|(id, sev)| {
            json!({
                "id": id,
                "shortDescription": {"text": id},
                "properties": {"security-severity": security_severity(*sev), "tags": ["security", "ml-model"]},
            })
        })
        .collect();
    let mut results: Vec<Value> = report
        .findings()
        .map(|f| {
            let mut message = f.message.clone();
            if f.location.contains('!') {
                message = format!("{message} (in {})", f.location);
            }
            // A byte offset locates something in the file itself only outside containers.
            let region = match f.offset {
                Some(o) if !f.location.contains('!') => json!({"startLine": 1, "byteOffset": o}),
                _ => json!({"startLine": 1}),
            };
            json!({
                "ruleId": f.rule,
                "level": sarif_level(f.severity),
                "message": {"text": message},
                "locations": [{"physicalLocation": {
                    "artifactLocation": {"uri": artifact_uri(&f.location)},
                    "region": region,
                }}],
                "properties": {"severity": f.severity, "subject": f.subject},
            })
        })
        .collect();
    for file in &report.files {
        for e in &file.errors {
            results.push(json!({
                "ruleId": "scan.incomplete",
                "level": "error",
                "message": {"text": format!("not fully scanned: {} (in {})", e.message, e.location)},
                "locations": [{"physicalLocation": {"artifactLocation": {"uri": artifact_uri(&e.location)}, "region": {"startLine": 1}}}],
            }));
        }
    }
    let mut all_rules = rule_list;
    if report.has_errors() {
        all_rules.push(json!({"id": "scan.incomplete", "shortDescription": {"text": "A file could not be scanned completely"}, "properties": {"security-severity": "7.0"}}));
    }
    json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "bastion-scan",
                "informationUri": "https://example.invalid/bastion",
                "version": tool_version,
                "rules": all_rules,
            }},
            "results": results,
        }]
    })
}
