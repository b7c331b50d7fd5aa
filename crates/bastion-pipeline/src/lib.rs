//! Declarative pipelines.
//!
//! [`spec`] reads a pipeline file: named steps of known kinds, each with its parameters, which
//! may refer to an earlier step's outputs as `${step.output}`; the references and explicit
//! `needs` make a DAG, checked for unknown steps and cycles, with every error on its line.
//! [`refs`] substitutes references; [`cache`] computes a step's cache key from its kind,
//! its resolved parameters and the digests of the files it reads, and keeps the state of
//! the last run so an unchanged step is not run again.
//!
//! Nothing here runs a step: the CLI maps each kind to its command.

pub mod cache;
pub mod error;
pub mod refs;
pub mod spec;

pub use cache::{State, StepRecord, cache_key};
pub use error::PipelineError;
pub use spec::{Kind, Pipeline, Step};
