//! How bad something is, one scale for scan findings and monitoring alerts: ordered from
//! INFO to CRITICAL, written upper-case, read in any case.

use serde::{Deserialize, Deserializer, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

impl<'de> Deserialize<'de> for Severity {
    /// Through `FromStr`: any case, and its error names the choices.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
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
        let s: Severity = serde_json::from_str("\"High\"").unwrap();
        assert_eq!(s, Severity::High);
        let e = serde_json::from_str::<Severity>("\"severe\"").unwrap_err();
        assert!(
            e.to_string()
                .contains("use info, low, medium, high or critical"),
            "{e}"
        );
        assert_eq!("Critical".parse::<Severity>(), Ok(Severity::Critical));
        assert!("severe".parse::<Severity>().is_err());
    }
}
