//! The Grafana dashboard in `deploy/grafana/` is valid JSON and names only metrics Bastion
//! exports (a renamed metric would leave an empty panel).

const DASHBOARD: &str = include_str!("../../../deploy/grafana/bastion-monitoring.json");
const SOURCES: [&str; 3] = [
    include_str!("../src/worker.rs"),
    include_str!("../src/respond.rs"),
    include_str!("../../bastion-serve/src/events.rs"),
];

fn metric_names(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find("bastion_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        out.push(tail[..end].to_owned());
        rest = &tail[end..];
    }
    out
}

#[test]
fn every_panel_queries_an_exported_metric() {
    let d: serde_json::Value = serde_json::from_str(DASHBOARD).expect("valid JSON");
    let panels = d["panels"].as_array().expect("panels");
    assert!(panels.len() >= 10);
    let mut checked = 0;
    for p in panels {
        for t in p["targets"].as_array().expect("targets") {
            let expr = t["expr"].as_str().expect("expr");
            let names = metric_names(expr);
            assert!(!names.is_empty(), "{expr}");
            for name in names {
                let quoted = format!("\"{name}\"");
                assert!(
                    SOURCES.iter().any(|s| s.contains(&quoted)),
                    "{name} (panel '{}') is not exported",
                    p["title"]
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 15, "{checked}");
}
