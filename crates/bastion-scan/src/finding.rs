//! What a scan reports: findings with a severity, and whether each file could be scanned
//! completely. A file that could not be is an error, never clean.

use serde::{Deserialize, Serialize};

pub use bastion_core::severity::Severity;

/// One thing worth telling about a scanned file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    pub severity: Severity,
    /// A stable rule id, e.g. `pickle.dangerous-import` (SARIF's ruleId).
    pub rule: String,
    pub message: String,
    /// Where: the file, then `!member` for each container level (`model.pt!archive/data.pkl`).
    pub location: String,
    /// Byte offset within the innermost member, where meaningful.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    /// The callable or name involved, e.g. `os.system`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
}

impl Finding {
    pub fn new(severity: Severity, rule: &str, message: impl Into<String>, location: &str) -> Self {
        Self {
            severity,
            rule: rule.to_owned(),
            message: message.into(),
            location: location.to_owned(),
            offset: None,
            subject: None,
        }
    }

    pub fn at(mut self, offset: u64) -> Self {
        self.offset = Some(offset);
        self
    }

    pub fn about(mut self, subject: impl Into<String>) -> Self {
        self.subject = Some(subject.into());
        self
    }
}

/// Why a file (or a member of one) could not be scanned completely.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanError {
    pub location: String,
    pub message: String,
}

/// The result for one path given to the scanner (a file, or a folder's file).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FileReport {
    pub path: String,
    /// The formats found, outermost first (`zip`, `pytorch-zip`, `pickle`…).
    pub formats: Vec<String>,
    pub size: u64,
    pub findings: Vec<Finding>,
    pub errors: Vec<ScanError>,
}

impl FileReport {
    pub fn worst(&self) -> Option<Severity> {
        self.findings.iter().map(|f| f.severity).max()
    }
}

/// A whole scan.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Report {
    pub files: Vec<FileReport>,
}

impl Report {
    pub fn findings(&self) -> impl Iterator<Item = &Finding> {
        self.files.iter().flat_map(|f| f.findings.iter())
    }

    pub fn worst(&self) -> Option<Severity> {
        self.findings().map(|f| f.severity).max()
    }

    pub fn has_errors(&self) -> bool {
        self.files.iter().any(|f| !f.errors.is_empty())
    }

    /// The process exit code: 2 if anything could not be scanned, 1 if a finding reaches
    /// `fail_on`, 0 otherwise.
    pub fn exit_code(&self, fail_on: Severity) -> i32 {
        if self.has_errors() {
            2
        } else if self.worst().is_some_and(|w| w >= fail_on) {
            1
        } else {
            0
        }
    }
}
