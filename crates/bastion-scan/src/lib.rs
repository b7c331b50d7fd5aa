//! Bastion's model-file scanner. It reads model files and archives as data — detecting each
//! format by its content — and reports what loading them would import, call or execute. It
//! never loads, unpickles or runs anything it scans.

pub mod detect;
pub mod finding;
pub mod formats;
pub mod pickle;
pub mod policy;
pub mod render;
pub mod walk;

pub use finding::{FileReport, Finding, Report, ScanError, Severity};
pub use policy::{Policy, PolicyError, Verdict};
pub use walk::{Limits, Scanner};
