//! Policies over evidence.
//!
//! A policy is a TOML file of rules such as `model.metrics.auc >= 0.95` or
//! `model.scan.max_severity < "HIGH"` ([`policy`], [`expr`]). Each rule names a fact from a
//! fixed catalog ([`fact`]), so a misspelt name or a comparison that cannot mean anything is
//! an error with its line number when the file is read, not a silent failure at gate time.
//! [`decision`] evaluates a policy against the facts gathered about one model and
//! [`render`] prints the decision for people (a table) and CI systems (JUnit XML, SARIF).
//!
//! Nothing here reads files, a database or the network: the facts come in as values.

pub mod decision;
pub mod error;
pub mod expr;
pub mod fact;
pub mod policy;
pub mod render;

pub use decision::{Decision, RuleResult, Verdict, evaluate};
pub use error::PolicyError;
pub use fact::{FactKind, Facts, Value};
pub use policy::{Level, Policy, Rule};
