//! Model serving without HTTP: the Open Inference Protocol's tensors (`tensor`), how a
//! request becomes a model's table and its prediction the response (`infer`), whether a
//! version may be served (`admission`), copying a version's package out of the blob store
//! (`fetch`), the set of loaded versions with alias resolution (`models`), and what
//! answers may reveal (`policy`).
//!
//! Nothing here runs model code: packages are parsed by `bastion-ml`, which reads
//! safetensors and checks ONNX graphs before ONNX Runtime sees them.

pub mod admission;
pub mod batch;
pub mod canary;
pub mod cost;
pub mod deployed;
pub mod deployment;
mod error;
pub mod events;
pub mod fetch;
pub mod guard;
pub mod infer;
pub mod integrity;
pub mod limits;
pub mod models;
pub mod pipeline;
pub mod policy;
pub mod tensor;

pub use error::ServeError;
pub use models::{Caller, Models, ServeConfig, Served};
