//! Bastion's models. So far: evaluation metrics with scikit-learn's definitions (`metrics`),
//! cross-validation splits and slices (`split`), preprocessing saved with a model
//! (`preprocess`), and deterministic linear models fitted with
//! L-BFGS or exactly (`linear`, `lbfgs`), which expose input gradients. Numbers in, numbers
//! out: this crate knows nothing of the registry, SQL or HTTP.

pub mod builtin;
pub mod error;
pub mod evaluate;
pub mod forest;
pub mod gbdt;
pub mod lbfgs;
pub mod linear;
pub mod link;
pub mod metrics;
pub mod mlp;
pub mod onnx;
pub mod package;
pub mod predictor;
pub mod preprocess;
pub mod report;
pub mod split;
pub mod task;
pub mod train;
pub mod tree;
pub mod tune;

pub use error::{MlError, MlResult};
