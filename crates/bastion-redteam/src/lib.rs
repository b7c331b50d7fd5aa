//! Attacks on a model before it ships, so a policy can decide on measured numbers:
//!
//! - evasion in the model's feature space under tabular realism (`space`): white-box FGSM
//!   and PGD (`gradient`), decision-based HopSkipJump (`hopskipjump`) and score-based
//!   Square (`square`), each counting its queries (`oracle`);
//! - privacy: membership inference by loss threshold and by shadow model (`membership`),
//!   label-only model extraction (`extraction`);
//! - poisoning resistance by retraining with flipped labels (`campaign`);
//! - a campaign that runs a plan and reports flat metric names (`campaign`), and the report
//!   as HTML with the robustness curve (`report`).
//!
//! Deterministic for a seed. Numbers in, numbers out: nothing here knows the registry, SQL
//! or HTTP, and nothing runs model code: models are Bastion's own predictors.

pub mod campaign;
pub mod error;
pub mod extraction;
pub mod gradient;
pub mod hopskipjump;
pub mod membership;
pub mod norm;
pub mod oracle;
pub mod report;
pub mod retrain;
pub mod space;
pub mod square;

pub use campaign::{Check, Example, Plan, Report, Retrain, Subject, run};
pub use error::{RedteamError, RedteamResult};
pub use norm::Norm;
pub use space::Space;
