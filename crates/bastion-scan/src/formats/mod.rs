//! Analyzers for model formats other than pickle: each reads the format's structure (never
//! its code) and reports what would let loading it run code, touch files or misbehave.

pub mod gguf;
pub mod keras;
pub mod npy;
pub mod onnx;
mod protobuf;
pub mod safetensors;
pub mod savedmodel;

use crate::finding::{Finding, ScanError, Severity};

/// What an analyzer found in one stream.
#[derive(Debug, Default)]
pub struct Found {
    pub findings: Vec<Finding>,
    pub errors: Vec<ScanError>,
}

impl Found {
    pub fn finding(
        &mut self,
        severity: Severity,
        rule: &str,
        message: impl Into<String>,
        location: &str,
        subject: Option<String>,
    ) {
        self.findings.push(Finding {
            subject,
            ..Finding::new(severity, rule, message, location)
        });
    }

    pub fn error(&mut self, location: &str, message: impl Into<String>) {
        self.errors.push(ScanError {
            location: location.to_owned(),
            message: message.into(),
        });
    }
}

/// What kind of model a zip holds, from its member names (the members themselves are
/// detected by content).
pub fn zip_kind(names: &[String]) -> Option<&'static str> {
    if names
        .iter()
        .any(|n| n == "data.pkl" || n.ends_with("/data.pkl"))
    {
        return Some("pytorch-zip");
    }
    if names.iter().any(|n| n == "config.json")
        && names
            .iter()
            .any(|n| n == "metadata.json" || n.ends_with(".weights.h5"))
    {
        return Some("keras-v3");
    }
    if names.iter().all(|n| n.ends_with(".npy")) && !names.is_empty() {
        return Some("npz");
    }
    None
}
