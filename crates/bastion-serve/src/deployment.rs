//! A registered model's deployment: which versions take its unpinned traffic (a stable
//! version and optionally a weighted canary), which one sees a mirrored copy (shadow), which
//! ones a request can pin by header (A/B variants), and how it is served (guards, limits,
//! batching, automatic rollback). Changes are pure functions here; `models.rs` admits the
//! versions they name and stores the result.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::guard::GuardSettings;

/// The header that pins a request to a variant: a label given with `deploy --pin LABEL`, or
/// `stable` / `canary`.
pub const VARIANT_HEADER: &str = "x-bastion-variant";

/// How many earlier stable versions `rollback` can return to.
const HISTORY: usize = 20;

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Deployment {
    /// The version that takes the traffic no canary or pin claims.
    pub stable: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<Canary>,
    /// Receives a copy of every routed request; its answers are compared, never returned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow: Option<String>,
    /// Variant label → version, chosen by the `x-bastion-variant` header.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pins: BTreeMap<String, String>,
    /// Earlier stable versions, the most recent last.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<String>,
    #[serde(default)]
    pub guards: GuardSettings,
    #[serde(default)]
    pub limits: ServeLimits,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batching: Option<Batching>,
    #[serde(default)]
    pub rollback: RollbackRule,
    /// Callers blocked or throttled on this model (by the monitor's responders or a person),
    /// by actor.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub restricted: BTreeMap<String, Restriction>,
}

/// What a restricted caller may still do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Restriction {
    /// Requests per second the caller may still make; none: the caller is blocked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<u32>,
    pub reason: String,
    /// When it ends (ms since the epoch); none: when it is lifted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until_ms: Option<i64>,
}

impl Restriction {
    pub fn in_force(&self, now_ms: i64) -> bool {
        self.until_ms.is_none_or(|t| now_ms < t)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Canary {
    pub version: String,
    /// Share of unpinned traffic, in percent (0 < p < 100).
    pub percent: f64,
}

/// Per-model request limits; `None` is unlimited (the server's per-token limit still holds).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeLimits {
    /// Sustained inference requests per second for the model, all callers together.
    pub rate: Option<u32>,
    /// Sustained inference requests per second for the model, per caller.
    pub rate_per_caller: Option<u32>,
    /// Requests allowed at once above the sustained rate.
    pub burst: Option<u32>,
    /// Inference requests in progress at once; more are refused (429), not queued.
    pub concurrency: Option<u32>,
}

/// Adaptive micro-batching: requests arriving together are predicted as one batch of at
/// most `max_batch` rows, waiting at most `max_wait_us` for company.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Batching {
    pub max_batch: usize,
    pub max_wait_us: u64,
}

/// When a canary is rolled back without anyone asking: over its last `window` requests (once
/// it has served `min_requests`), an error rate above `max_error_rate` or a 99th percentile
/// latency above `max_p99_ms`. Errors are answers the canary failed to give (refusal, load
/// failure, model failure), not inputs it rejected.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollbackRule {
    pub max_error_rate: Option<f64>,
    pub max_p99_ms: Option<f64>,
    pub min_requests: u64,
    pub window: u64,
}

impl Default for RollbackRule {
    fn default() -> Self {
        Self {
            max_error_rate: None,
            max_p99_ms: None,
            min_requests: 20,
            window: 200,
        }
    }
}

/// What a deploy changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum Change {
    /// All unpinned traffic to the version (the previous stable is kept for rollback).
    Stable {
        version: String,
    },
    /// The version as a canary taking `percent` of unpinned traffic.
    Canary {
        version: String,
        percent: f64,
    },
    /// The version as the shadow.
    Shadow {
        version: String,
    },
    ClearShadow,
    /// The version as variant `label`.
    Pin {
        label: String,
        version: String,
    },
    Unpin {
        label: String,
    },
    /// The canary becomes the stable version.
    Promote,
    /// Drop the canary if there is one, else return to the previous stable version.
    Rollback,
    /// Routes unchanged; only the settings given with the change.
    Configure,
    /// Blocks a caller on this model (`rate` none) or limits it to `rate` requests per second.
    Restrict {
        actor: String,
        #[serde(default)]
        rate: Option<u32>,
        reason: String,
        #[serde(default)]
        until_ms: Option<i64>,
    },
    /// Ends a caller's restriction.
    Lift {
        actor: String,
    },
}

/// A change with the settings to replace (each section given replaces the stored one).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeployRequest {
    pub change: Change,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guards: Option<GuardSettings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<ServeLimits>,
    /// `max_batch` 1 turns batching off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batching: Option<Batching>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<RollbackRule>,
    /// Refuse the change if the deployment is no longer at this revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_revision: Option<i64>,
}

impl DeployRequest {
    pub fn new(change: Change) -> Self {
        Self {
            change,
            guards: None,
            limits: None,
            batching: None,
            rollback: None,
            expected_revision: None,
        }
    }

    /// The deployment after this request.
    pub fn apply(&self, d: &Deployment) -> Result<Deployment, String> {
        let mut next = d.apply(&self.change)?;
        if let Some(g) = &self.guards {
            next.guards = g.clone();
        }
        if let Some(l) = self.limits {
            next.limits = l;
        }
        if let Some(b) = self.batching {
            next.batching = (b.max_batch > 1).then_some(b);
        }
        if let Some(r) = self.rollback {
            next.rollback = r;
        }
        next.validate()?;
        Ok(next)
    }
}

impl Change {
    /// The version this change puts into service, which must be admitted first.
    pub fn admits(&self) -> Option<&str> {
        match self {
            Self::Stable { version }
            | Self::Canary { version, .. }
            | Self::Shadow { version }
            | Self::Pin { version, .. } => Some(version),
            _ => None,
        }
    }

    /// The audit action this change is recorded as.
    pub fn action(&self) -> &'static str {
        match self {
            Self::Promote => "deployment.promote",
            Self::Rollback => "deployment.rollback",
            Self::Restrict { .. } => "deployment.restrict",
            Self::Lift { .. } => "deployment.lift",
            _ => "deployment.deploy",
        }
    }
}

/// Where a request went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Stable,
    Canary,
    Shadow,
    Pinned,
    /// The URL named the version.
    Direct,
}

impl Route {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stable => "stable",
            Self::Canary => "canary",
            Self::Shadow => "shadow",
            Self::Pinned => "pinned",
            Self::Direct => "direct",
        }
    }
}

fn valid_label(label: &str) -> bool {
    !label.is_empty()
        && label.len() <= 64
        && label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && !matches!(label, "stable" | "canary")
}

impl Deployment {
    /// The deployment after `change`, or why the change makes no sense now.
    pub fn apply(&self, change: &Change) -> Result<Deployment, String> {
        let mut d = self.clone();
        match change {
            Change::Stable { version: v } => {
                // Deploying the stable version again changes no route (settings may change).
                if d.stable.as_deref() == Some(v) {
                    return Ok(d);
                }
                if let Some(old) = d.stable.replace(v.clone()) {
                    d.push_history(old);
                }
                if d.canary.as_ref().is_some_and(|c| &c.version == v) {
                    d.canary = None;
                }
            }
            Change::Canary {
                version: v,
                percent,
            } => {
                if !(percent.is_finite() && *percent > 0.0 && *percent < 100.0) {
                    return Err(format!(
                        "a canary takes more than 0% and less than 100% of traffic, not {percent}%"
                    ));
                }
                match &d.stable {
                    None => {
                        return Err(
                            "there is no stable version to put a canary beside: deploy one first"
                                .into(),
                        );
                    }
                    Some(s) if s == v => {
                        return Err(format!("version {v} is the stable version already"));
                    }
                    Some(_) => {}
                }
                d.canary = Some(Canary {
                    version: v.clone(),
                    percent: *percent,
                });
            }
            Change::Shadow { version: v } => {
                if d.stable.is_none() {
                    return Err("there is no stable version to mirror: deploy one first".into());
                }
                d.shadow = Some(v.clone());
            }
            Change::ClearShadow => {
                if d.shadow.take().is_none() {
                    return Err("there is no shadow version".into());
                }
            }
            Change::Pin { label, version: v } => {
                if !valid_label(label) {
                    return Err(format!(
                        "variant label '{}': use 1-64 letters, digits, '-', '_' or '.', \
                         and not 'stable' or 'canary' (those name the routes)",
                        label.escape_debug()
                    ));
                }
                d.pins.insert(label.clone(), v.clone());
            }
            Change::Unpin { label } => {
                if d.pins.remove(label).is_none() {
                    return Err(format!("there is no variant '{}'", label.escape_debug()));
                }
            }
            Change::Promote => {
                let c = d
                    .canary
                    .take()
                    .ok_or("there is no canary to promote".to_owned())?;
                if let Some(old) = d.stable.replace(c.version) {
                    d.push_history(old);
                }
            }
            Change::Configure => {}
            Change::Restrict {
                actor,
                rate,
                reason,
                until_ms,
            } => {
                if actor.is_empty() || actor.len() > 256 || actor.chars().any(char::is_control) {
                    return Err("restrict: the actor must be 1-256 printable characters".into());
                }
                if *rate == Some(0) {
                    return Err(
                        "restrict: a rate of 0 is a block; leave the rate out to block".into(),
                    );
                }
                d.restricted.insert(
                    actor.clone(),
                    Restriction {
                        rate: *rate,
                        reason: reason.chars().take(1000).collect(),
                        until_ms: *until_ms,
                    },
                );
            }
            Change::Lift { actor } => {
                if d.restricted.remove(actor).is_none() {
                    return Err(format!("'{}' is not restricted", actor.escape_debug()));
                }
            }
            Change::Rollback => {
                if d.canary.take().is_none() {
                    let previous = d.history.pop().ok_or(
                        "there is no canary and no earlier stable version to roll back to",
                    )?;
                    d.stable = Some(previous);
                }
            }
        }
        Ok(d)
    }

    fn push_history(&mut self, version: String) {
        self.history.retain(|v| v != &version);
        self.history.push(version);
        if self.history.len() > HISTORY {
            self.history.remove(0);
        }
    }

    /// The version a request goes to: the variant its header pins, else the canary for a
    /// `draw` (uniform in [0, 1)) below its share, else the stable version. `None` when the
    /// deployment has no stable version.
    pub fn route(&self, variant: Option<&str>, draw: f64) -> Result<Option<(&str, Route)>, String> {
        if let Some(label) = variant {
            return match label {
                "stable" => Ok(self.stable.as_deref().map(|v| (v, Route::Pinned))),
                "canary" => self
                    .canary
                    .as_ref()
                    .map(|c| Some((c.version.as_str(), Route::Pinned)))
                    .ok_or_else(|| "the deployment has no canary".to_owned()),
                other => self
                    .pins
                    .get(other)
                    .map(|v| Some((v.as_str(), Route::Pinned)))
                    .ok_or_else(|| {
                        format!(
                            "the deployment has no variant '{}' ({VARIANT_HEADER})",
                            other.escape_debug()
                        )
                    }),
            };
        }
        let Some(stable) = self.stable.as_deref() else {
            return Ok(None);
        };
        if let Some(c) = &self.canary
            && draw * 100.0 < c.percent
        {
            return Ok(Some((c.version.as_str(), Route::Canary)));
        }
        Ok(Some((stable, Route::Stable)))
    }

    /// Checks settings a hand-edited or older document could get wrong.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(b) = &self.batching
            && (b.max_batch == 0 || b.max_batch > 65_536 || b.max_wait_us > 1_000_000)
        {
            return Err("batching: max_batch must be 1-65536 and max_wait at most 1 s".to_owned());
        }
        let r = &self.rollback;
        if r.max_error_rate.is_some_and(|e| !(0.0..=1.0).contains(&e))
            || r.max_p99_ms.is_some_and(|p| !(p.is_finite() && p > 0.0))
            || r.window == 0
            || r.window > 100_000
        {
            return Err(
                "rollback: max_error_rate must be within 0-100%, max_p99 positive and window 1-100000"
                    .to_owned(),
            );
        }
        let l = &self.limits;
        if [l.rate, l.rate_per_caller, l.burst, l.concurrency].contains(&Some(0)) {
            return Err(
                "limits: a limit of 0 would refuse every request; leave it unset to turn it off"
                    .to_owned(),
            );
        }
        self.guards.validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stable(v: &str) -> Deployment {
        Deployment::default()
            .apply(&Change::Stable { version: v.into() })
            .unwrap()
    }

    #[test]
    fn canary_promote_and_rollback() {
        let d = stable("1");
        assert!(
            d.apply(&Change::Canary {
                version: "1".into(),
                percent: 10.0
            })
            .is_err()
        );
        assert!(
            d.apply(&Change::Canary {
                version: "2".into(),
                percent: 100.0
            })
            .is_err()
        );
        assert!(
            d.apply(&Change::Canary {
                version: "2".into(),
                percent: f64::NAN
            })
            .is_err()
        );
        let c = d
            .apply(&Change::Canary {
                version: "2".into(),
                percent: 10.0,
            })
            .unwrap();
        let p = c.apply(&Change::Promote).unwrap();
        assert_eq!(p.stable.as_deref(), Some("2"));
        assert_eq!(p.history, vec!["1"]);
        assert!(p.canary.is_none());
        // Rolling back a promoted version returns to the previous stable one.
        let r = p.apply(&Change::Rollback).unwrap();
        assert_eq!(r.stable.as_deref(), Some("1"));
        assert!(r.history.is_empty());
        assert!(r.apply(&Change::Rollback).is_err());
        // Rolling back a canary only drops it.
        let r = c.apply(&Change::Rollback).unwrap();
        assert_eq!((r.stable.as_deref(), r.canary.is_none()), (Some("1"), true));
        assert!(Deployment::default().apply(&Change::Promote).is_err());
        assert!(
            Deployment::default()
                .apply(&Change::Canary {
                    version: "2".into(),
                    percent: 5.0
                })
                .is_err()
        );
    }

    #[test]
    fn routes_by_pin_then_weight() {
        let d = stable("1")
            .apply(&Change::Canary {
                version: "2".into(),
                percent: 25.0,
            })
            .unwrap()
            .apply(&Change::Pin {
                label: "blue".into(),
                version: "3".into(),
            })
            .unwrap();
        assert_eq!(d.route(None, 0.1).unwrap(), Some(("2", Route::Canary)));
        assert_eq!(d.route(None, 0.25).unwrap(), Some(("1", Route::Stable)));
        assert_eq!(
            d.route(Some("blue"), 0.1).unwrap(),
            Some(("3", Route::Pinned))
        );
        assert_eq!(
            d.route(Some("stable"), 0.1).unwrap(),
            Some(("1", Route::Pinned))
        );
        assert_eq!(
            d.route(Some("canary"), 0.9).unwrap(),
            Some(("2", Route::Pinned))
        );
        assert!(d.route(Some("green"), 0.1).is_err());
        assert_eq!(Deployment::default().route(None, 0.0).unwrap(), None);
        assert!(
            d.apply(&Change::Pin {
                label: "stable".into(),
                version: "3".into()
            })
            .is_err()
        );
        assert!(
            d.apply(&Change::Pin {
                label: "a/b".into(),
                version: "3".into()
            })
            .is_err()
        );
        assert!(
            d.apply(&Change::Unpin {
                label: "green".into()
            })
            .is_err()
        );
    }

    #[test]
    fn history_is_bounded_and_has_no_repeats() {
        let mut d = stable("0");
        for v in 1..40 {
            d = d
                .apply(&Change::Stable {
                    version: v.to_string(),
                })
                .unwrap();
        }
        d = d
            .apply(&Change::Stable {
                version: "5".into(),
            })
            .unwrap();
        assert_eq!(d.history.len(), HISTORY);
        assert_eq!(d.history.iter().filter(|v| *v == "5").count(), 0);
        // Again: idempotent.
        assert_eq!(
            d.apply(&Change::Stable {
                version: "5".into()
            }),
            Ok(d.clone())
        );
    }

    #[test]
    fn hostile_documents_are_refused() {
        let bad: Result<Deployment, _> = serde_json::from_str(r#"{"stable":"1","surprise":true}"#);
        assert!(bad.is_err());
        let d: Deployment =
            serde_json::from_str(r#"{"stable":"1","batching":{"max_batch":0,"max_wait_us":10}}"#)
                .unwrap();
        assert!(d.validate().is_err());
        let mut d = stable("1");
        d.limits.concurrency = Some(0);
        assert!(d.validate().is_err());
        d.limits.concurrency = Some(4);
        d.rollback.max_error_rate = Some(1.5);
        assert!(d.validate().is_err());
    }
}
