//! From what the pickle machine saw to findings: each distinct global once (with the offset of
//! its first import and whether it is called), judged by the policy; computed callables,
//! computed imports, extension codes and BUILD on a global are dangerous whatever they name.

use std::collections::BTreeMap;

use super::{Event, Outcome};
use crate::finding::{Finding, Severity};
use crate::policy::{Policy, Verdict};

struct Seen {
    offset: u64,
    opcode: &'static str,
    called: bool,
}

fn finding(
    severity: Severity,
    rule: &str,
    message: String,
    location: &str,
    offset: u64,
    subject: Option<String>,
) -> Finding {
    Finding {
        subject,
        ..Finding::new(severity, rule, message, location).at(offset)
    }
}

/// Findings for one pickle stream at `location`.
pub fn findings(outcome: &Outcome, policy: &Policy, location: &str) -> Vec<Finding> {
    let mut globals: BTreeMap<(String, String), Seen> = BTreeMap::new();
    let mut out = Vec::new();
    for event in &outcome.events {
        match event {
            Event::Import(g) => {
                globals
                    .entry((g.module.clone(), g.name.clone()))
                    .or_insert(Seen {
                        offset: g.offset,
                        opcode: g.opcode,
                        called: false,
                    });
            }
            Event::Call { global, .. } => {
                if let Some(seen) = globals.get_mut(&(global.module.clone(), global.name.clone())) {
                    seen.called = true;
                }
            }
            Event::ComputedCall {
                callable,
                offset,
                opcode,
            } => out.push(finding(
                Severity::High,
                "pickle.computed-call",
                format!("{opcode} calls {callable}, a callable computed while loading"),
                location,
                *offset,
                Some(callable.clone()),
            )),
            Event::ComputedImport { offset, what } => out.push(finding(
                Severity::Critical,
                "pickle.computed-import",
                format!("STACK_GLOBAL imports a name computed while loading ({what})"),
                location,
                *offset,
                None,
            )),
            Event::BuildOnGlobal { global, offset } => out.push(finding(
                Severity::Critical,
                "pickle.build-on-global",
                format!(
                    "BUILD sets attributes on {} itself, changing code other objects will use",
                    global.dotted()
                ),
                location,
                *offset,
                Some(global.dotted()),
            )),
            Event::Extension { code, offset } => out.push(finding(
                Severity::High,
                "pickle.extension-code",
                format!(
                    "uses extension-registry code {code}: a callable chosen by the loading process"
                ),
                location,
                *offset,
                Some(format!("ext:{code}")),
            )),
        }
    }
    for ((module, name), seen) in globals {
        let Verdict::Flagged { severity, reason } = policy.classify(&module, &name) else {
            continue;
        };
        let what = if seen.called {
            "imports and calls"
        } else {
            "imports"
        };
        let rule = match severity {
            Severity::Critical | Severity::High => "pickle.dangerous-global",
            _ => "pickle.unknown-global",
        };
        out.push(finding(
            severity,
            rule,
            format!("{} {what} {module}.{name}: {reason}", seen.opcode),
            location,
            seen.offset,
            Some(format!("{module}.{name}")),
        ));
    }
    out.sort_by(|a, b| b.severity.cmp(&a.severity).then(a.offset.cmp(&b.offset)));
    out
}
