//! The tracking and registry data model. Field names and JSON shapes are MLflow's (protobuf
//! JSON with `preserving_proto_field_name`), because the MLflow client parses them; empty lists
//! and absent optionals are omitted, as protobuf's JSON printer does.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};

fn is_empty<T>(v: &[T]) -> bool {
    v.is_empty()
}

/// A `key`/`value` pair: tags and params everywhere in MLflow's API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyValue {
    pub key: String,
    #[serde(default)]
    pub value: String,
}

impl KeyValue {
    pub fn new(key: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            value: value.into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LifecycleStage {
    Active,
    Deleted,
}

impl LifecycleStage {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Deleted => "deleted",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(Self::Active),
            "deleted" => Some(Self::Deleted),
            _ => None,
        }
    }
}

/// Which lifecycle stages a search returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ViewType {
    #[default]
    ActiveOnly,
    DeletedOnly,
    All,
}

impl ViewType {
    /// MLflow accepts the enum name or its number (1, 2, 3).
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "ACTIVE_ONLY" | "1" => Ok(Self::ActiveOnly),
            "DELETED_ONLY" | "2" => Ok(Self::DeletedOnly),
            "ALL" | "3" => Ok(Self::All),
            other => Err(Error::invalid(format!(
                "Invalid value '{}' for parameter 'run_view_type'/'view_type': expected ACTIVE_ONLY, DELETED_ONLY or ALL",
                crate::limits::truncate(other, 32)
            ))),
        }
    }
    pub fn stages(self) -> &'static [&'static str] {
        match self {
            Self::ActiveOnly => &["active"],
            Self::DeletedOnly => &["deleted"],
            Self::All => &["active", "deleted"],
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Experiment {
    pub experiment_id: String,
    pub name: String,
    pub artifact_location: String,
    pub lifecycle_stage: LifecycleStage,
    pub last_update_time: i64,
    pub creation_time: i64,
    #[serde(skip_serializing_if = "is_empty")]
    pub tags: Vec<KeyValue>,
    pub workspace: &'static str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum RunStatus {
    Running,
    Scheduled,
    Finished,
    Failed,
    Killed,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "RUNNING",
            Self::Scheduled => "SCHEDULED",
            Self::Finished => "FINISHED",
            Self::Failed => "FAILED",
            Self::Killed => "KILLED",
        }
    }
    /// The enum name, or its protobuf number as some clients send it.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "RUNNING" | "1" => Ok(Self::Running),
            "SCHEDULED" | "2" => Ok(Self::Scheduled),
            "FINISHED" | "3" => Ok(Self::Finished),
            "FAILED" | "4" => Ok(Self::Failed),
            "KILLED" | "5" => Ok(Self::Killed),
            other => Err(Error::invalid(format!(
                "Invalid run status '{}': expected RUNNING, SCHEDULED, FINISHED, FAILED or KILLED",
                crate::limits::truncate(other, 32)
            ))),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunInfo {
    pub run_uuid: String,
    pub experiment_id: String,
    pub run_name: String,
    pub user_id: String,
    pub status: RunStatus,
    pub start_time: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_time: Option<i64>,
    pub artifact_uri: String,
    pub lifecycle_stage: LifecycleStage,
    pub run_id: String,
}

/// A metric value. MLflow's JSON carries non-finite values as the strings `"NaN"`,
/// `"Infinity"` and `"-Infinity"` (protobuf JSON), so they survive the round trip.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct MetricValue(pub f64);

impl Serialize for MetricValue {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let v = self.0;
        if v.is_nan() {
            s.serialize_str("NaN")
        } else if v == f64::INFINITY {
            s.serialize_str("Infinity")
        } else if v == f64::NEG_INFINITY {
            s.serialize_str("-Infinity")
        } else {
            s.serialize_f64(v)
        }
    }
}

impl<'de> Deserialize<'de> for MetricValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Num(f64),
            Str(String),
        }
        match Raw::deserialize(d)? {
            Raw::Num(n) => Ok(Self(n)),
            Raw::Str(s) => parse_metric_str(&s).map(Self).ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "invalid metric value '{}'",
                    crate::limits::truncate(&s, 32)
                ))
            }),
        }
    }
}

/// A metric value written as text (a query parameter, or protobuf JSON's string forms).
pub fn parse_metric_str(s: &str) -> Option<f64> {
    match s {
        "NaN" | "nan" => Some(f64::NAN),
        "Infinity" | "inf" | "+Infinity" => Some(f64::INFINITY),
        "-Infinity" | "-inf" => Some(f64::NEG_INFINITY),
        other => other.trim().parse::<f64>().ok(),
    }
}

impl fmt::Display for MetricValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Metric {
    pub key: String,
    pub value: MetricValue,
    pub timestamp: i64,
    pub step: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct RunData {
    #[serde(skip_serializing_if = "is_empty")]
    pub metrics: Vec<Metric>,
    #[serde(skip_serializing_if = "is_empty")]
    pub params: Vec<KeyValue>,
    #[serde(skip_serializing_if = "is_empty")]
    pub tags: Vec<KeyValue>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dataset {
    pub name: String,
    pub digest: String,
    pub source_type: String,
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
}

impl Dataset {
    /// Where the data came from, as a URI: MLflow clients write `source` as JSON
    /// (`{"uri": "s3://…"}`) or as a plain URI. `None` when it names no URI.
    pub fn source_uri(&self) -> Option<String> {
        let text = self.source.trim();
        let candidate = match serde_json::from_str::<serde_json::Value>(text) {
            Ok(v) => ["uri", "url", "path"]
                .iter()
                .find_map(|k| v.get(*k).and_then(|u| u.as_str()).map(str::to_owned))?,
            Err(_) => text.to_owned(),
        };
        let scheme = candidate.split_once(':').map(|(s, _)| s)?;
        let valid = !scheme.is_empty()
            && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
            && !candidate
                .chars()
                .any(|c| c.is_whitespace() || c.is_control());
        valid.then_some(candidate)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetInput {
    #[serde(default, skip_serializing_if = "is_empty")]
    pub tags: Vec<KeyValue>,
    pub dataset: Dataset,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelRef {
    pub model_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct RunInputs {
    #[serde(skip_serializing_if = "is_empty")]
    pub dataset_inputs: Vec<DatasetInput>,
    #[serde(skip_serializing_if = "is_empty")]
    pub model_inputs: Vec<ModelRef>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct RunOutputs {
    #[serde(skip_serializing_if = "is_empty")]
    pub model_outputs: Vec<ModelRef>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Run {
    pub info: RunInfo,
    pub data: RunData,
    pub inputs: RunInputs,
    pub outputs: RunOutputs,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Alias {
    pub alias: String,
    pub version: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RegisteredModel {
    pub name: String,
    pub creation_timestamp: i64,
    pub last_updated_timestamp: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "is_empty")]
    pub latest_versions: Vec<ModelVersion>,
    #[serde(skip_serializing_if = "is_empty")]
    pub tags: Vec<KeyValue>,
    #[serde(skip_serializing_if = "is_empty")]
    pub aliases: Vec<Alias>,
}

/// The registry's (deprecated but still used) stages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    None,
    Staging,
    Production,
    Archived,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "None",
            Self::Staging => "Staging",
            Self::Production => "Production",
            Self::Archived => "Archived",
        }
    }
    /// Case-insensitive, as MLflow's `get_canonical_stage`.
    pub fn parse(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "none" => Ok(Self::None),
            "staging" => Ok(Self::Staging),
            "production" => Ok(Self::Production),
            "archived" => Ok(Self::Archived),
            _ => Err(Error::invalid(format!(
                "Invalid Model Version stage: {}. Value must be one of None, Staging, Production, Archived.",
                crate::limits::truncate(s, 32)
            ))),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelVersion {
    pub name: String,
    pub version: String,
    pub creation_timestamp: i64,
    pub last_updated_timestamp: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    pub current_stage: String,
    pub description: String,
    pub source: String,
    pub run_id: String,
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_message: Option<String>,
    #[serde(skip_serializing_if = "is_empty")]
    pub tags: Vec<KeyValue>,
    pub run_link: String,
    #[serde(skip_serializing_if = "is_empty")]
    pub aliases: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_id: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoggedModelStatus {
    Pending,
    Ready,
    UploadFailed,
}

impl LoggedModelStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "LOGGED_MODEL_PENDING",
            Self::Ready => "LOGGED_MODEL_READY",
            Self::UploadFailed => "LOGGED_MODEL_UPLOAD_FAILED",
        }
    }
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "LOGGED_MODEL_PENDING" | "1" => Ok(Self::Pending),
            "LOGGED_MODEL_READY" | "2" => Ok(Self::Ready),
            "LOGGED_MODEL_UPLOAD_FAILED" | "3" => Ok(Self::UploadFailed),
            other => Err(Error::invalid(format!(
                "Invalid logged model status '{}': expected LOGGED_MODEL_PENDING, LOGGED_MODEL_READY or LOGGED_MODEL_UPLOAD_FAILED",
                crate::limits::truncate(other, 40)
            ))),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoggedModelInfo {
    pub model_id: String,
    pub experiment_id: String,
    pub name: String,
    pub creation_timestamp_ms: i64,
    pub last_updated_timestamp_ms: i64,
    pub artifact_uri: String,
    pub status: String,
    pub model_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_run_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_message: Option<String>,
    #[serde(skip_serializing_if = "is_empty")]
    pub tags: Vec<KeyValue>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct LoggedModelData {
    #[serde(skip_serializing_if = "is_empty")]
    pub params: Vec<KeyValue>,
    #[serde(skip_serializing_if = "is_empty")]
    pub metrics: Vec<Metric>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoggedModel {
    pub info: LoggedModelInfo,
    pub data: LoggedModelData,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_values_round_trip_non_finite() {
        for (v, text) in [
            (f64::INFINITY, "\"Infinity\""),
            (f64::NEG_INFINITY, "\"-Infinity\""),
            (1.5, "1.5"),
        ] {
            assert_eq!(serde_json::to_string(&MetricValue(v)).unwrap(), text);
            let back: MetricValue = serde_json::from_str(text).unwrap();
            assert_eq!(back.0, v);
        }
        assert_eq!(
            serde_json::to_string(&MetricValue(f64::NAN)).unwrap(),
            "\"NaN\""
        );
        let nan: MetricValue = serde_json::from_str("\"NaN\"").unwrap();
        assert!(nan.0.is_nan());
        assert!(serde_json::from_str::<MetricValue>("\"abc\"").is_err());
    }

    #[test]
    fn stages_parse_case_insensitively() {
        assert_eq!(Stage::parse("staging").unwrap(), Stage::Staging);
        assert!(Stage::parse("prod").is_err());
        assert_eq!(ViewType::parse("3").unwrap(), ViewType::All);
    }
}

#[cfg(test)]
mod dataset_tests {
    use super::Dataset;

    fn with_source(source: &str) -> Dataset {
        Dataset {
            name: "d".into(),
            digest: "x".into(),
            source_type: "s3".into(),
            source: source.into(),
            schema: None,
            profile: None,
        }
    }

    #[test]
    fn source_uri_reads_mlflow_json_and_plain_uris() {
        assert_eq!(
            with_source(r#"{"uri": "s3://b/k.csv"}"#)
                .source_uri()
                .as_deref(),
            Some("s3://b/k.csv")
        );
        assert_eq!(
            with_source("https://x/y").source_uri().as_deref(),
            Some("https://x/y")
        );
        assert_eq!(with_source("a local file").source_uri(), None);
        assert_eq!(with_source(r#"{"tags": 1}"#).source_uri(), None);
        assert_eq!(with_source("").source_uri(), None);
    }
}
