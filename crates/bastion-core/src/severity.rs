//! How bad something is, one scale for scan findings and monitoring alerts: ordered from
//! INFO to CRITICAL, written upper-case, read in any case.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Severity {
    #[serde(alias = "info")]
    Info,
    #[serde(alias = "low")]
    Low,
    #[serde(alias = "medium")]
    Medium,
    #[serde(alias = "high")]
    High,
    #[serde(alias = "critical")]
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Info => "INFO",
            Self::Low => "LOW",
            Self::Medium => "MEDIUM",
            Self::High => "HIGH",
            Self::Critical => "CRITICAL",
        }
    }
}

impl std::str::FromStr for Severity {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_uppercase().as_str() {
            "INFO" => Ok(Self::Info),
            "LOW" => Ok(Self::Low),
            "MEDIUM" => Ok(Self::Medium),
            "HIGH" => Ok(Self::High),
            "CRITICAL" => Ok(Self::Critical),
            other => Err(format!(
                "unknown severity '{other}': use info, low, medium, high or critical"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordered_written_upper_read_in_any_case() {
        assert!(Severity::Critical > Severity::High && Severity::Low > Severity::Info);
        assert_eq!(serde_json::to_string(&Severity::High).unwrap(), "\"HIGH\"");
        let s: Severity = serde_json::from_str("\"medium\"").unwrap();
        assert_eq!(s, Severity::Medium);
        assert_eq!("Critical".parse::<Severity>(), Ok(Severity::Critical));
        assert!("severe".parse::<Severity>().is_err());
    }
}
