//! The posture score: 100 for a model version with every piece of evidence in order, less a
//! fixed number of points for each thing that is missing or wrong, each with the reason
//! shown beside the score. The deductions are the table in `docs/dashboard.md`.

use serde::Serialize;

/// What a model version's recorded evidence says, as the score reads it.
#[derive(Debug, Clone, Default)]
pub struct Evidence {
    /// A signature is recorded on the version's root digest.
    pub signed: bool,
    /// Why the version is quarantined, if it is.
    pub quarantine: Option<String>,
    /// The worst finding over its files' scans (`NONE` when clean); `None` when some file
    /// was not scanned or its files are not stored here.
    pub scan_worst: Option<String>,
    /// The newest gate decision: `Some(true)` passed, `Some(false)` failed or does not
    /// verify, `None` no decision.
    pub gate: Option<bool>,
    /// The newest red-team campaign's worst robust accuracy and membership-inference AUC.
    pub redteam: Option<RedTeam>,
    /// Severities of its open (or acknowledged) incidents.
    pub incidents: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub struct RedTeam {
    pub worst_robust_accuracy: Option<f64>,
    pub membership_auc: Option<f64>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Reason {
    pub points: u32,
    pub text: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Posture {
    pub score: u32,
    pub reasons: Vec<Reason>,
}

/// Most points incidents can take away together.
const INCIDENTS_CAP: u32 = 50;

pub fn assess(e: &Evidence) -> Posture {
    let mut reasons = Vec::new();
    let mut take = |points: u32, text: String| reasons.push(Reason { points, text });
    if let Some(q) = &e.quarantine {
        take(60, format!("quarantined: {q}"));
    }
    if !e.signed {
        take(25, "no signature recorded".into());
    }
    match e.scan_worst.as_deref() {
        None => take(15, "files not (all) scanned".into()),
        Some("CRITICAL") => take(50, "CRITICAL scan finding".into()),
        Some("HIGH") => take(25, "HIGH scan finding".into()),
        Some("MEDIUM") => take(10, "MEDIUM scan finding".into()),
        Some("LOW") => take(2, "LOW scan finding".into()),
        Some(_) => {}
    }
    match e.gate {
        None => take(20, "no gate decision".into()),
        Some(false) => take(30, "gate decision failed or does not verify".into()),
        Some(true) => {}
    }
    match &e.redteam {
        None => take(10, "not red-teamed".into()),
        Some(r) => {
            if let Some(a) = r.worst_robust_accuracy.filter(|a| *a < 0.5) {
                take(10, format!("robust accuracy {:.2} < 0.50 under attack", a));
            }
            if let Some(auc) = r.membership_auc.filter(|a| *a > 0.6) {
                take(10, format!("membership inference AUC {auc:.2} > 0.60"));
            }
        }
    }
    let mut incident_points = 0;
    for s in &e.incidents {
        incident_points += match s.to_ascii_lowercase().as_str() {
            "critical" => 25,
            "high" => 15,
            "medium" | "warning" => 8,
            _ => 3,
        };
    }
    if !e.incidents.is_empty() {
        take(
            incident_points.min(INCIDENTS_CAP),
            format!("{} open incident(s)", e.incidents.len()),
        );
    }
    let lost: u32 = reasons.iter().map(|r| r.points).sum();
    Posture {
        score: 100u32.saturating_sub(lost),
        reasons,
    }
}

/// The overall score: the mean of the versions' scores (none when there are none).
pub fn overall(scores: &[u32]) -> Option<u32> {
    if scores.is_empty() {
        return None;
    }
    let sum: u32 = scores.iter().sum();
    Some((sum as f64 / scores.len() as f64).round() as u32)
}

/// How a score reads: 80 and up good, 50 and up fair, else poor.
pub fn tone(score: u32) -> crate::layout::Tone {
    use crate::layout::Tone;
    match score {
        80.. => Tone::Ok,
        50.. => Tone::Warn,
        _ => Tone::Bad,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> Evidence {
        Evidence {
            signed: true,
            quarantine: None,
            scan_worst: Some("NONE".into()),
            gate: Some(true),
            redteam: Some(RedTeam {
                worst_robust_accuracy: Some(0.8),
                membership_auc: Some(0.52),
            }),
            incidents: vec![],
        }
    }

    #[test]
    fn complete_evidence_scores_100_and_each_gap_costs_its_points() {
        assert_eq!(
            assess(&good()),
            Posture {
                score: 100,
                reasons: vec![]
            }
        );
        let bare = assess(&Evidence::default());
        // unsigned 25 + unscanned 15 + no gate 20 + no red team 10
        assert_eq!(bare.score, 30);
        assert_eq!(bare.reasons.len(), 4);
        let mut e = good();
        e.incidents = vec!["critical".into(); 3];
        let p = assess(&e);
        assert_eq!(p.score, 50, "incidents are capped at 50 points");
        let mut e = good();
        e.quarantine = Some("tampered".into());
        e.scan_worst = Some("CRITICAL".into());
        assert_eq!(assess(&e).score, 0);
        let mut e = good();
        e.redteam = Some(RedTeam {
            worst_robust_accuracy: Some(0.3),
            membership_auc: Some(0.7),
        });
        assert_eq!(assess(&e).score, 80);
        assert_eq!(overall(&[100, 50, 0]), Some(50));
        assert_eq!(overall(&[]), None);
    }
}
