//! Alert rules, a TOML file:
//!
//! ```toml
//! [[alert]]
//! name = "feature drift"
//! when = "drift.dataset = true"
//! for = 3                 # consecutive windows
//! severity = "high"       # info, low, medium, high or critical
//! cooldown = "30m"        # before the same alert may fire again
//! respond = ["log", "webhook", "rollback"]
//! model = "fraud"         # optional: only this model
//!
//! [window]                # optional: how live traffic is cut (default: tumbling, 1000 rows)
//! size = 1000             # rows, or a duration such as "5m" for time windows
//! step = 500              # sliding: a window every 500 rows ("1m" for time windows)
//!
//! [performance]           # optional: windows of labelled rows (feedback)
//! window = 500            # labelled rows per window (tumbling; this is the default)
//!
//! [integrity]             # optional: re-hashing served models' files
//! every = "5m"            # how often (default 5m)
//!
//! [respond]               # optional: how responses are carried out
//! webhook = "https://hooks.example.com/bastion"
//! webhook_secret_env = "BASTION_WEBHOOK_SECRET"   # the HMAC key's variable (this is the default)
//! throttle_rate = 1       # requests per second a throttled caller keeps
//! restrict_for = "1h"     # how long a block or throttle lasts (default: until lifted)
//! pipeline = "pipeline.toml"   # what `rerun_pipeline` runs
//! ```
//!
//! `when` is an expression of the gate's language over the window's signals; a misspelt
//! signal, a comparison its kind cannot make or an unknown response is an error with its
//! line when the file is read.

pub use bastion_core::severity::Severity;
use bastion_policy::expr::{self, Catalog, Expr};
use bastion_policy::policy::line_col;
use bastion_policy::{FactKind, Facts};
use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::error::{MonitorError, MonitorResult};
use crate::window::WindowSpec;

/// The signals a rule may name.
pub struct Signals;

const NUMBERS: &[(&str, &str)] = &[
    ("requests", "requests in the window"),
    ("rows", "rows in the window"),
    ("missing.rate", "share of live feature values missing"),
    (
        "out_of_range.rate",
        "share of live values outside the reference's range or categories",
    ),
    (
        "error.rate",
        "share of requests that failed (5xx or a model error)",
    ),
    (
        "rejected.rate",
        "share of requests the input guards rejected",
    ),
    ("flagged.rate", "share of requests the input guards flagged"),
    ("latency.p50_ms", "median latency"),
    ("latency.p99_ms", "99th percentile latency"),
    ("drift.share", "share of compared columns that drifted"),
    ("drift.columns", "columns that drifted"),
    (
        "prediction.score",
        "the prediction drift test's deciding value",
    ),
    ("canary.error_rate", "error rate of the canary's requests"),
    (
        "canary.latency_p99_ms",
        "99th percentile latency of the canary's requests",
    ),
    (
        "caller.requests",
        "a caller's requests since its last judgement",
    ),
    (
        "extraction.score",
        "1 - PRADA's Shapiro-Wilk W over a caller's query distances",
    ),
    (
        "probing.boundary_rate",
        "share of a caller's answers near the decision boundary",
    ),
    (
        "probing.flagged_rate",
        "share of a caller's requests the input guards flagged or rejected",
    ),
    (
        "abuse.limited_rate",
        "share of a caller's requests refused by limits or a block",
    ),
    (
        "abuse.auth_failures",
        "a caller's calls to infer refused for bad or locked-out credentials since its last judgement",
    ),
    (
        "abuse.volume_ratio",
        "a caller's request rate over its own earlier average",
    ),
    (
        "performance.labelled",
        "labelled rows in a performance window",
    ),
    (
        "performance.accuracy",
        "share of labelled answers that were right",
    ),
    (
        "performance.auc",
        "ROC AUC of the labelled answers' probabilities",
    ),
    (
        "performance.ece",
        "expected calibration error of the labelled answers",
    ),
    ("performance.mae", "mean absolute error (regressors)"),
    ("performance.rmse", "root mean squared error (regressors)"),
    (
        "performance.estimated_accuracy",
        "accuracy estimated from calibrated confidence, without labels",
    ),
    (
        "performance.estimated_auc",
        "ROC AUC estimated from calibrated probabilities (two classes)",
    ),
    (
        "performance.estimated_drop",
        "the reference's accuracy minus the estimated accuracy",
    ),
    (
        "integrity.mismatched_files",
        "files of a served version whose bytes no longer match their digest",
    ),
];
const BOOLS: &[(&str, &str)] = &[
    ("drift.dataset", "any column drifted (after correction)"),
    ("prediction.drift", "the answers' distribution drifted"),
    (
        "integrity.mismatch",
        "a served version's stored files no longer match their digests",
    ),
];
/// Per-column families: `drift.column.<column>`, `drift.score.<column>`.
const FAMILIES: &[(&str, FactKind)] = &[
    ("drift.column.", FactKind::Bool),
    ("drift.score.", FactKind::Number),
];

impl Catalog for Signals {
    fn kind_of(&self, name: &str) -> Option<FactKind> {
        if NUMBERS.iter().any(|(n, _)| *n == name) {
            return Some(FactKind::Number);
        }
        if BOOLS.iter().any(|(n, _)| *n == name) {
            return Some(FactKind::Bool);
        }
        FAMILIES
            .iter()
            .find(|(p, _)| name.len() > p.len() && name.starts_with(p))
            .map(|(_, k)| *k)
    }

    fn known_names(&self) -> String {
        let mut names: Vec<String> = NUMBERS
            .iter()
            .chain(BOOLS)
            .map(|(n, _)| (*n).to_owned())
            .collect();
        names.extend(FAMILIES.iter().map(|(p, _)| format!("{p}<column>")));
        names.join(", ")
    }

    fn noun(&self) -> &'static str {
        "signal"
    }
}

/// What to do when an alert fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Response {
    /// A log line (always written; naming it is for clarity).
    Log,
    /// POST the alert as JSON, signed with HMAC-SHA256.
    Webhook,
    /// Roll the model's deployment back to its previous version.
    Rollback,
    /// Serve the model version's answers as labels only.
    LabelOnly,
    /// Refuse to serve the model version until it is released.
    Quarantine,
    /// Refuse the actor that triggered the alert.
    BlockActor,
    /// Lower the actor's rate limit.
    ThrottleActor,
    /// Run the model's pipeline again (retraining goes through the same gates).
    RerunPipeline,
}

impl Response {
    pub const ALL: [Response; 8] = [
        Response::Log,
        Response::Webhook,
        Response::Rollback,
        Response::LabelOnly,
        Response::Quarantine,
        Response::BlockActor,
        Response::ThrottleActor,
        Response::RerunPipeline,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Response::Log => "log",
            Response::Webhook => "webhook",
            Response::Rollback => "rollback",
            Response::LabelOnly => "label_only",
            Response::Quarantine => "quarantine",
            Response::BlockActor => "block_actor",
            Response::ThrottleActor => "throttle_actor",
            Response::RerunPipeline => "rerun_pipeline",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct AlertRule {
    pub name: String,
    pub when: Expr,
    /// Consecutive windows the condition must hold.
    pub windows: usize,
    pub severity: Severity,
    pub cooldown_ms: i64,
    pub respond: Vec<Response>,
    pub model: Option<String>,
    pub line: usize,
}

impl AlertRule {
    /// Whether the rule's condition holds on these signals (an absent signal never holds:
    /// a window too small for a drift verdict does not count as drift, nor as its absence).
    pub fn holds(&self, signals: &Facts) -> Option<bool> {
        signals.get(&self.when.fact).map(|v| self.when.holds(v))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct AlertRules {
    pub rules: Vec<AlertRule>,
    pub window: WindowSpec,
    /// Labelled rows per performance window (tumbling).
    pub performance_window: usize,
    /// How often served versions' files are hashed again.
    pub integrity_every_ms: i64,
    pub respond: RespondSettings,
}

/// Labelled rows per performance window unless the file says otherwise.
pub const DEFAULT_PERFORMANCE_WINDOW: usize = 500;
/// How often served files are re-hashed unless the file says otherwise.
pub const DEFAULT_INTEGRITY_EVERY_MS: i64 = 5 * 60 * 1000;

/// How responses are carried out (the file's `[respond]` table).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RespondSettings {
    /// Where `webhook` posts.
    #[serde(default)]
    pub webhook: Option<String>,
    /// The environment variable holding the webhook's HMAC key.
    #[serde(default = "secret_env")]
    pub webhook_secret_env: String,
    /// Requests per second a throttled caller keeps.
    #[serde(default = "one_u32")]
    pub throttle_rate: u32,
    /// How long a block or throttle lasts, in ms (none: until lifted).
    #[serde(skip)]
    pub restrict_for_ms: Option<i64>,
    /// `restrict_for` as written in the file.
    #[serde(default)]
    pub restrict_for: Option<String>,
    /// The pipeline file `rerun_pipeline` runs.
    #[serde(default)]
    pub pipeline: Option<String>,
}

impl Default for RespondSettings {
    fn default() -> Self {
        Self {
            webhook: None,
            webhook_secret_env: secret_env(),
            throttle_rate: 1,
            restrict_for_ms: None,
            restrict_for: None,
            pipeline: None,
        }
    }
}

fn secret_env() -> String {
    "BASTION_WEBHOOK_SECRET".into()
}

fn one_u32() -> u32 {
    1
}

/// The default window: tumbling, 1000 rows.
pub const DEFAULT_WINDOW: WindowSpec = WindowSpec::Rows {
    size: 1000,
    step: 1000,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    #[serde(default)]
    alert: Vec<Spanned<RuleTable>>,
    #[serde(default)]
    window: Option<Spanned<WindowTable>>,
    #[serde(default)]
    respond: Option<Spanned<RespondSettings>>,
    #[serde(default)]
    performance: Option<Spanned<PerformanceTable>>,
    #[serde(default)]
    integrity: Option<Spanned<IntegrityTable>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PerformanceTable {
    window: usize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IntegrityTable {
    every: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WindowTable {
    size: Amount,
    #[serde(default)]
    step: Option<Amount>,
}

#[derive(Deserialize, Clone)]
#[serde(untagged)]
enum Amount {
    Rows(usize),
    Duration(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleTable {
    name: String,
    when: Spanned<String>,
    #[serde(rename = "for", default = "one")]
    windows: usize,
    #[serde(default = "medium")]
    severity: Severity,
    #[serde(default)]
    cooldown: Option<Spanned<String>>,
    #[serde(default)]
    respond: Vec<Spanned<String>>,
    #[serde(default)]
    model: Option<String>,
}

fn one() -> usize {
    1
}

fn medium() -> Severity {
    Severity::Medium
}

/// Default cool-down: an alert that keeps holding is repeated at most every 15 minutes.
pub const DEFAULT_COOLDOWN_MS: i64 = 15 * 60 * 1000;

impl AlertRules {
    pub fn parse(text: &str) -> MonitorResult<Self> {
        let file: RulesFile = toml::from_str(text).map_err(|e| {
            let line = e.span().map_or(1, |s| line_col(text, s.start).0);
            MonitorError::Rules {
                line,
                message: e.message().trim().to_owned(),
            }
        })?;
        let mut rules = Vec::new();
        for t in &file.alert {
            let line_of = |span: std::ops::Range<usize>| line_col(text, span.start).0;
            let table_line = line_of(t.span());
            let t = t.get_ref();
            let bad = |line: usize, message: String| MonitorError::Rules { line, message };
            if t.name.trim().is_empty() {
                return Err(bad(table_line, "an alert needs a name".into()));
            }
            if rules.iter().any(|r: &AlertRule| r.name == t.name) {
                return Err(bad(
                    table_line,
                    format!("an alert named '{}' is already defined", t.name),
                ));
            }
            let line = line_of(t.when.span());
            let when = expr::parse_in(t.when.get_ref(), &Signals).map_err(|e| {
                bad(
                    line,
                    format!("alert '{}': `{}`: {}", t.name, t.when.get_ref(), e.message),
                )
            })?;
            if t.windows == 0 || t.windows > 10_000 {
                return Err(bad(
                    table_line,
                    format!("alert '{}': `for` must be 1 to 10000 windows", t.name),
                ));
            }
            let cooldown_ms = match &t.cooldown {
                None => DEFAULT_COOLDOWN_MS,
                Some(c) => parse_duration_ms(c.get_ref()).ok_or_else(|| {
                    bad(
                        line_of(c.span()),
                        format!(
                            "alert '{}': cooldown '{}' is not a duration such as \"90s\", \"10m\" or \"2h\"",
                            t.name,
                            c.get_ref()
                        ),
                    )
                })?,
            };
            let mut respond = Vec::new();
            for r in &t.respond {
                let resp = Response::parse(r.get_ref()).ok_or_else(|| {
                    bad(
                        line_of(r.span()),
                        format!(
                            "alert '{}': unknown response '{}'; the responses are: {}",
                            t.name,
                            r.get_ref(),
                            Response::ALL.map(Response::as_str).join(", ")
                        ),
                    )
                })?;
                if !respond.contains(&resp) {
                    respond.push(resp);
                }
            }
            rules.push(AlertRule {
                name: t.name.clone(),
                when,
                windows: t.windows,
                severity: t.severity,
                cooldown_ms,
                respond,
                model: t.model.clone(),
                line,
            });
        }
        if rules.is_empty() {
            return Err(MonitorError::Rules {
                line: 1,
                message: "no [[alert]] tables: a monitor without rules would never alert".into(),
            });
        }
        let window = match &file.window {
            None => DEFAULT_WINDOW,
            Some(w) => window_of(w.get_ref()).map_err(|message| MonitorError::Rules {
                line: line_col(text, w.span().start).0,
                message,
            })?,
        };
        let respond = match file.respond {
            None => RespondSettings::default(),
            Some(r) => {
                let line = line_col(text, r.span().start).0;
                let mut r = r.into_inner();
                let bad = |message: String| MonitorError::Rules { line, message };
                if r.throttle_rate == 0 {
                    return Err(bad(
                        "[respond] throttle_rate must be at least 1 request per second (a block is `block_actor`)".into(),
                    ));
                }
                if let Some(url) = &r.webhook
                    && !(url.starts_with("https://") || url.starts_with("http://"))
                {
                    return Err(bad(format!(
                        "[respond] webhook '{url}' is not an http(s) URL"
                    )));
                }
                if let Some(d) = &r.restrict_for {
                    r.restrict_for_ms = Some(parse_duration_ms(d).ok_or_else(|| {
                        bad(format!(
                            "[respond] restrict_for '{d}' is not a duration such as \"1h\""
                        ))
                    })?);
                }
                r
            }
        };
        let performance_window = match &file.performance {
            None => DEFAULT_PERFORMANCE_WINDOW,
            Some(p) => {
                let n = p.get_ref().window;
                if !(20..=100_000).contains(&n) {
                    return Err(MonitorError::Rules {
                        line: line_col(text, p.span().start).0,
                        message: format!(
                            "[performance] window must be 20 to 100000 labelled rows, not {n}"
                        ),
                    });
                }
                n
            }
        };
        let integrity_every_ms = match &file.integrity {
            None => DEFAULT_INTEGRITY_EVERY_MS,
            Some(i) => parse_duration_ms(&i.get_ref().every)
                .filter(|ms| *ms >= 1_000)
                .ok_or_else(|| MonitorError::Rules {
                    line: line_col(text, i.span().start).0,
                    message: format!(
                        "[integrity] every '{}' is not a duration of at least 1s such as \"5m\"",
                        i.get_ref().every
                    ),
                })?,
        };
        Ok(Self {
            rules,
            window,
            performance_window,
            integrity_every_ms,
            respond,
        })
    }
}

fn window_of(w: &WindowTable) -> Result<WindowSpec, String> {
    let duration = |s: &str| {
        parse_duration_ms(s).ok_or_else(|| {
            format!("[window] '{s}' is not a duration such as \"5m\" (or give rows as a number)")
        })
    };
    let spec = match (&w.size, w.step.as_ref().unwrap_or(&w.size)) {
        (Amount::Rows(size), Amount::Rows(step)) => WindowSpec::Rows {
            size: *size,
            step: *step,
        },
        (Amount::Duration(size), Amount::Duration(step)) => WindowSpec::Time {
            size_ms: duration(size)?,
            step_ms: duration(step)?,
        },
        _ => {
            return Err(
                "[window] size and step must both be rows (numbers) or both durations (\"5m\")"
                    .into(),
            );
        }
    };
    spec.check().map_err(|e| e.to_string())?;
    Ok(spec)
}

/// "90s", "10m", "2h", "1d" or a number of seconds.
pub fn parse_duration_ms(s: &str) -> Option<i64> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => (&s[..i], s[i..].trim()),
        None => (s, "s"),
    };
    let n: i64 = num.parse().ok()?;
    let ms = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    n.checked_mul(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_rule_reads() {
        let r = AlertRules::parse(
            r#"
[[alert]]
name = "drift"
when = "drift.dataset = true"
for = 3
severity = "high"
cooldown = "10m"
respond = ["log", "webhook", "rollback", "log"]
model = "bc"

[[alert]]
name = "age"
when = "drift.score.age > 0.2"
"#,
        )
        .unwrap();
        let a = &r.rules[0];
        assert_eq!(
            (a.windows, a.severity, a.cooldown_ms),
            (3, Severity::High, 600_000)
        );
        assert_eq!(
            a.respond,
            vec![Response::Log, Response::Webhook, Response::Rollback]
        );
        assert_eq!(a.model.as_deref(), Some("bc"));
        assert_eq!(a.line, 4);
        let b = &r.rules[1];
        assert_eq!(
            (b.windows, b.severity, b.cooldown_ms),
            (1, Severity::Medium, DEFAULT_COOLDOWN_MS)
        );
    }

    #[test]
    fn window_and_respond_sections_read_and_default() {
        let rule = "[[alert]]\nname = \"x\"\nwhen = \"error.rate > 0.1\"\n";
        let r = AlertRules::parse(rule).unwrap();
        assert_eq!(r.window, DEFAULT_WINDOW);
        assert_eq!(r.respond.webhook_secret_env, "BASTION_WEBHOOK_SECRET");
        assert_eq!(
            (r.respond.throttle_rate, r.respond.restrict_for_ms),
            (1, None)
        );
        let r = AlertRules::parse(&format!(
            "{rule}[window]\nsize = \"10m\"\nstep = \"1m\"\n[respond]\nwebhook = \"http://127.0.0.1:9/h\"\nthrottle_rate = 5\nrestrict_for = \"2h\"\npipeline = \"p.toml\"\n"
        ))
        .unwrap();
        assert_eq!(
            r.window,
            WindowSpec::Time {
                size_ms: 600_000,
                step_ms: 60_000
            }
        );
        assert_eq!(r.respond.webhook.as_deref(), Some("http://127.0.0.1:9/h"));
        assert_eq!(
            (r.respond.throttle_rate, r.respond.restrict_for_ms),
            (5, Some(7_200_000))
        );
        assert_eq!(
            (r.performance_window, r.integrity_every_ms),
            (DEFAULT_PERFORMANCE_WINDOW, DEFAULT_INTEGRITY_EVERY_MS)
        );
        let r = AlertRules::parse(&format!(
            "{rule}[performance]\nwindow = 200\n[integrity]\nevery = \"30s\"\n"
        ))
        .unwrap();
        assert_eq!((r.performance_window, r.integrity_every_ms), (200, 30_000));
        let r = AlertRules::parse(&format!("{rule}[window]\nsize = 500\nstep = 100\n")).unwrap();
        assert_eq!(
            r.window,
            WindowSpec::Rows {
                size: 500,
                step: 100
            }
        );
        for (extra, line, needle) in [
            (
                "[window]\nsize = 100\nstep = 200\n",
                4,
                "step at most the size",
            ),
            ("[window]\nsize = 100\nstep = \"1m\"\n", 4, "both be rows"),
            ("[window]\nsize = \"soon\"\n", 4, "not a duration"),
            ("[respond]\nthrottle_rate = 0\n", 4, "at least 1"),
            (
                "[respond]\nwebhook = \"ftp://x\"\n",
                4,
                "not an http(s) URL",
            ),
            ("[respond]\nrestrict_for = \"ever\"\n", 4, "not a duration"),
            ("[respond]\npager = 1\n", 5, "unknown field"),
            ("[performance]\nwindow = 5\n", 4, "20 to 100000"),
            ("[integrity]\nevery = \"0s\"\n", 4, "at least 1s"),
        ] {
            let e = AlertRules::parse(&format!("{rule}{extra}")).unwrap_err();
            let text = e.to_string();
            assert!(text.contains(needle), "{extra}: {text}");
            assert!(
                matches!(e, MonitorError::Rules { line: l, .. } if l == line),
                "{extra}: {text}"
            );
        }
    }

    #[test]
    fn mistakes_are_reported_with_their_line() {
        let cases = [
            (
                "[[alert]]\nname = \"x\"\nwhen = \"drift.datset = true\"\n",
                3,
                "unknown signal 'drift.datset'",
            ),
            (
                "[[alert]]\nname = \"x\"\nwhen = \"drift.dataset > 1\"\n",
                3,
                "orders values",
            ),
            (
                "[[alert]]\nname = \"x\"\nwhen = \"error.rate > 0.1\"\nrespond = [\"page\"]\n",
                4,
                "unknown response 'page'",
            ),
            (
                "[[alert]]\nname = \"x\"\nwhen = \"error.rate > 0.1\"\ncooldown = \"soon\"\n",
                4,
                "not a duration",
            ),
            (
                "[[alert]]\nname = \"x\"\nwhen = \"error.rate > 0.1\"\nfor = 0\n",
                1,
                "`for` must be",
            ),
            (
                "[[alert]]\nname = \"x\"\nwhen = \"error.rate > 0.1\"\nsevere = 1\n",
                4,
                "unknown field",
            ),
            (
                "[[alert]]\nname = \"x\"\nwhen = \"error.rate > 0.1\"\n[[alert]]\nname = \"x\"\nwhen = \"rows > 1\"\n",
                4,
                "already defined",
            ),
            ("", 1, "no [[alert]]"),
            ("[[alert]\n", 1, ""),
        ];
        for (text, line, needle) in cases {
            match AlertRules::parse(text) {
                Err(MonitorError::Rules { line: l, message }) => {
                    assert_eq!(l, line, "{text}: {message}");
                    assert!(message.contains(needle), "{text}: {message}");
                }
                other => panic!("{text}: {other:?}"),
            }
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ms("90s"), Some(90_000));
        assert_eq!(parse_duration_ms("2h"), Some(7_200_000));
        assert_eq!(parse_duration_ms("45"), Some(45_000));
        assert_eq!(parse_duration_ms("1 m"), Some(60_000));
        assert_eq!(parse_duration_ms("m"), None);
        assert_eq!(parse_duration_ms("99999999999999999999s"), None);
    }
}
