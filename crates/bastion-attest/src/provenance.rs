//! SLSA provenance v1 (<https://slsa.dev/provenance/v1>) as an in-toto predicate.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::statement::{Statement, Subject};

pub const SLSA_PROVENANCE_V1: &str = "https://slsa.dev/provenance/v1";

/// A resource the build used or produced (SLSA's ResourceDescriptor).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ResourceDescriptor {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty", default)]
    pub digest: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub annotations: Option<Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Provenance {
    pub build_definition: BuildDefinition,
    pub run_details: RunDetails,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BuildDefinition {
    pub build_type: String,
    /// What the user controlled: pipeline configuration, hyper-parameters.
    pub external_parameters: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub internal_parameters: Option<Value>,
    /// Datasets, code commit, base model: everything the build consumed, by digest.
    #[serde(default)]
    pub resolved_dependencies: Vec<ResourceDescriptor>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RunDetails {
    pub builder: Builder,
    pub metadata: BuildMetadata,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub byproducts: Vec<ResourceDescriptor>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Builder {
    pub id: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub version: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BuildMetadata {
    pub invocation_id: String,
    /// RFC 3339 times.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_on: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_on: Option<String>,
}

impl Provenance {
    /// The statement that this provenance describes `subjects`.
    pub fn statement(&self, subjects: Vec<Subject>) -> Statement {
        // Plain data: converting to a JSON value cannot fail.
        let predicate = serde_json::to_value(self).unwrap_or(Value::Null);
        Statement::new(subjects, SLSA_PROVENANCE_V1, predicate)
    }

    /// Reads the provenance out of a statement.
    pub fn from_statement(statement: &Statement) -> Result<Self, String> {
        if statement.predicate_type != SLSA_PROVENANCE_V1 {
            return Err(format!(
                "predicateType is {:?}, expected {SLSA_PROVENANCE_V1:?}",
                statement.predicate_type
            ));
        }
        serde_json::from_value(statement.predicate.clone())
            .map_err(|e| format!("not a SLSA provenance v1 predicate: {e}"))
    }
}
