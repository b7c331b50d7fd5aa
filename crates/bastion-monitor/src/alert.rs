//! When rules become alerts. Per rule and model version: the condition must hold for `for`
//! consecutive windows; while it keeps holding the alert is not repeated until its
//! cool-down has passed (de-duplication), and a condition that clears and comes back
//! within the cool-down does not fire again (no flapping). Alerts with the same key belong
//! to one incident.

use std::collections::HashMap;

use bastion_policy::{Facts, Value};
use serde::{Deserialize, Serialize};

use crate::rules::{AlertRule, AlertRules, Response, Severity};

/// What a window was about: a model version, and for per-caller detectors the caller.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Subject {
    pub model: String,
    pub version: String,
    /// The caller a detector judged; empty for model-wide signals.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub actor: String,
}

impl Subject {
    pub fn model_version(model: &str, version: &str) -> Self {
        Self {
            model: model.to_owned(),
            version: version.to_owned(),
            actor: String::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alert {
    pub rule: String,
    pub severity: Severity,
    pub subject: Subject,
    /// `rule/model/version` (and `/actor` for a caller): alerts with one key are one
    /// incident.
    pub key: String,
    /// The rule's condition, and the value it held on.
    pub condition: String,
    pub value: Value,
    /// Consecutive windows it has held.
    pub windows: usize,
    pub time_ms: i64,
    /// Whether an earlier alert with this key fired in the same episode.
    pub repeat: bool,
    pub respond: Vec<Response>,
}

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
struct State {
    streak: usize,
    /// The condition has fired in the current episode.
    firing: bool,
    last_fired_ms: Option<i64>,
}

#[derive(Debug)]
pub struct Alerter {
    rules: AlertRules,
    state: HashMap<(usize, Subject), State>,
}

impl Alerter {
    pub fn new(rules: AlertRules) -> Self {
        Self {
            rules,
            state: HashMap::new(),
        }
    }

    pub fn rules(&self) -> &AlertRules {
        &self.rules
    }

    /// The streaks and cool-downs in progress, to be restored by another worker.
    pub fn snapshot(&self) -> AlerterState {
        let mut entries: Vec<StateEntry> = self
            .state
            .iter()
            .filter(|(_, st)| **st != State::default())
            .filter_map(|((i, subject), st)| {
                Some(StateEntry {
                    rule: self.rules.rules.get(*i)?.name.clone(),
                    subject: subject.clone(),
                    state: st.clone(),
                })
            })
            .collect();
        entries.sort_by(|a, b| {
            (
                &a.rule,
                &a.subject.model,
                &a.subject.version,
                &a.subject.actor,
            )
                .cmp(&(
                    &b.rule,
                    &b.subject.model,
                    &b.subject.version,
                    &b.subject.actor,
                ))
        });
        AlerterState { entries }
    }

    /// Takes over a snapshot's streaks and cool-downs; those of rules no longer in the file
    /// are dropped.
    pub fn restore(&mut self, snapshot: AlerterState) {
        for e in snapshot.entries {
            if let Some(i) = self.rules.rules.iter().position(|r| r.name == e.rule) {
                self.state.insert((i, e.subject), e.state);
            }
        }
    }

    /// Forgets the state of subjects no longer seen (a version retired), to bound memory.
    pub fn forget(&mut self, keep: impl Fn(&Subject) -> bool) {
        self.state.retain(|(_, s), _| keep(s));
    }

    /// Feeds one closed window's signals; returns the alerts it fires.
    pub fn observe(&mut self, subject: &Subject, time_ms: i64, signals: &Facts) -> Vec<Alert> {
        let mut out = Vec::new();
        for (i, rule) in self.rules.rules.iter().enumerate() {
            if rule.model.as_ref().is_some_and(|m| *m != subject.model) {
                continue;
            }
            let st = self.state.entry((i, subject.clone())).or_default();
            // A window without the signal (too few rows for drift) neither extends nor
            // breaks a streak.
            let Some(holds) = rule.holds(signals) else {
                continue;
            };
            if !holds {
                st.streak = 0;
                st.firing = false;
                continue;
            }
            st.streak += 1;
            if st.streak < rule.windows {
                continue;
            }
            let cooled = st
                .last_fired_ms
                .is_none_or(|t| time_ms.saturating_sub(t) >= rule.cooldown_ms);
            if !cooled {
                continue;
            }
            let repeat = st.firing;
            st.firing = true;
            st.last_fired_ms = Some(time_ms);
            out.push(alert(rule, subject, signals, st.streak, time_ms, repeat));
        }
        out
    }
}

/// An [`Alerter`]'s progress, as data.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AlerterState {
    entries: Vec<StateEntry>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct StateEntry {
    rule: String,
    subject: Subject,
    #[serde(flatten)]
    state: State,
}

fn alert(
    rule: &AlertRule,
    subject: &Subject,
    signals: &Facts,
    windows: usize,
    time_ms: i64,
    repeat: bool,
) -> Alert {
    Alert {
        rule: rule.name.clone(),
        severity: rule.severity,
        key: if subject.actor.is_empty() {
            format!("{}/{}/{}", rule.name, subject.model, subject.version)
        } else {
            format!(
                "{}/{}/{}/{}",
                rule.name, subject.model, subject.version, subject.actor
            )
        },
        subject: subject.clone(),
        condition: rule.when.to_string(),
        value: signals
            .get(&rule.when.fact)
            .cloned()
            .unwrap_or(Value::Bool(false)),
        windows,
        time_ms,
        repeat,
        respond: rule.respond.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> AlertRules {
        AlertRules::parse(
            r#"
[[alert]]
name = "drift"
when = "drift.dataset = true"
for = 3
cooldown = "10s"

[[alert]]
name = "errors"
when = "error.rate > 0.1"
model = "other"
"#,
        )
        .unwrap()
    }

    fn drift(on: bool) -> Facts {
        let mut f = Facts::new();
        f.insert("drift.dataset".into(), Value::Bool(on));
        f.insert("error.rate".into(), Value::Number(0.5));
        f
    }

    #[test]
    fn persistence_dedup_cooldown_and_flapping() {
        let mut a = Alerter::new(rules());
        let s = Subject::model_version("bc", "1");
        let mut fired = Vec::new();
        // Two windows: not yet. Third: fires. Fourth and fifth (within 10 s): quiet.
        for (t, on) in [
            (0, true),
            (1_000, true),
            (2_000, true),
            (3_000, true),
            (4_000, true),
        ] {
            fired.extend(a.observe(&s, t, &drift(on)));
        }
        assert_eq!(fired.len(), 1);
        assert_eq!(
            (fired[0].time_ms, fired[0].windows, fired[0].repeat),
            (2_000, 3, false)
        );
        assert_eq!(fired[0].key, "drift/bc/1");
        // Still holding after the cool-down: a repeat.
        let again = a.observe(&s, 12_000, &drift(true));
        assert_eq!(again.len(), 1);
        assert!(again[0].repeat);
        // Clears, then holds 3 windows again within the cool-down: no new alert.
        a.observe(&s, 13_000, &drift(false));
        let mut quiet = Vec::new();
        for t in [14_000, 15_000, 16_000] {
            quiet.extend(a.observe(&s, t, &drift(true)));
        }
        assert!(quiet.is_empty());
        // A missing signal neither breaks nor extends the streak.
        let back = a.observe(&s, 30_000, &Facts::new());
        assert!(back.is_empty());
        let back = a.observe(&s, 31_000, &drift(true));
        assert_eq!(back.len(), 1);
        assert!(!back[0].repeat);
        // The `errors` rule is for another model.
        assert!(back.iter().all(|x| x.rule == "drift"));
    }

    #[test]
    fn subjects_are_independent() {
        let mut a = Alerter::new(rules());
        let v1 = Subject::model_version("bc", "1");
        let v2 = Subject::model_version("bc", "2");
        for t in 0..3 {
            a.observe(&v1, t, &drift(true));
        }
        let f = a.observe(&v2, 4, &drift(true));
        assert!(f.is_empty());
    }

    #[test]
    fn a_restored_alerter_goes_on_where_the_snapshot_left_off() {
        let s = Subject::model_version("bc", "1");
        let mut a = Alerter::new(rules());
        a.observe(&s, 0, &drift(true));
        a.observe(&s, 1_000, &drift(true));
        let json = serde_json::to_value(a.snapshot()).unwrap();
        let mut b = Alerter::new(rules());
        b.restore(serde_json::from_value(json).unwrap());
        // The third window fires on the restored alerter, as it would have on the first.
        let fired = b.observe(&s, 2_000, &drift(true));
        assert_eq!(fired.len(), 1);
        assert_eq!(fired[0].windows, 3);
        assert_eq!(b.snapshot(), {
            a.observe(&s, 2_000, &drift(true));
            a.snapshot()
        });
        // A caller's alerts have their own key.
        let mut c = Alerter::new(rules());
        let actor = Subject {
            actor: "mallory".into(),
            ..s.clone()
        };
        for t in 0..3 {
            let f = c.observe(&actor, t, &drift(true));
            if t == 2 {
                assert_eq!(f[0].key, "drift/bc/1/mallory");
            }
        }
    }
}
