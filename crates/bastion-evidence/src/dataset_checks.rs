//! The data checks as one set of operations on dataset versions, shared by the CLI (on a home)
//! and the server (for its API): each runs a `bastion-data` check on the version's verified
//! Parquet off the async runtime and records its result as evidence on the version's digest.

use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use bastion_data::drift::{DatasetDiff, DriftOptions, diff_parquet};
use bastion_data::ingest::{IngestOptions, SourceFile};
use bastion_data::pii::{PiiReport, Redaction, redact_parquet, scan_parquet};
use bastion_data::poison::{PoisonOptions, check_parquet, class_balance};
use bastion_data::profile::{Profile, ProfileOptions, profile_parquet};
use bastion_data::validate::{Constraints, ValidationReport, suggest, validate_parquet};
use bastion_store::meta::DatasetVersion;
use serde::Serialize;
use serde_json::{Value, json};

use crate::datasets::{
    DATA_DRIFT, DATA_LINEAGE, DATA_PII, DATA_POISON, DATA_PROFILE, DATA_VALIDATION, DatasetError,
    Datasets, blocking,
};

/// A new version with the checks run at ingest.
#[derive(Debug, Serialize)]
pub struct Added {
    pub dataset: String,
    pub version: DatasetVersion,
    pub files: Vec<SourceFile>,
    pub pii_columns: usize,
    /// The content equalled the latest version, which is answered instead of a new one.
    pub unchanged: bool,
}

/// A version's record and the evidence recorded on it (newest first).
#[derive(Debug, Serialize)]
pub struct Shown {
    pub dataset: String,
    pub version: DatasetVersion,
    pub evidence: Vec<Value>,
}

/// `diff`'s result: the reference and the comparison, as recorded.
#[derive(Debug, Serialize)]
pub struct Diffed {
    pub reference: String,
    pub current: String,
    pub diff: DatasetDiff,
}

fn pii_verdict(r: &PiiReport) -> &'static str {
    if r.pii_columns == 0 {
        "clean"
    } else {
        "findings"
    }
}

impl Datasets<'_> {
    /// Ingests `input` as the next version of `name`, then profiles it and scans it for
    /// personal data (both recorded), reading the plaintext just written. With
    /// `reuse_unchanged`, content equal to the latest version answers that version (its
    /// checks were recorded when it was added).
    #[allow(clippy::too_many_arguments)]
    pub async fn add_checked(
        &self,
        input: &Path,
        name: &str,
        source: &str,
        actor: &str,
        opts: IngestOptions,
        reuse_unchanged: bool,
        progress: Arc<dyn Fn(u64) + Send + Sync>,
    ) -> Result<Added, DatasetError> {
        let (v, summary, local, unchanged) = self
            .add(input, name, source, actor, opts, reuse_unchanged, progress)
            .await?;
        if unchanged {
            // Its PII scan was recorded when it was added.
            let pii_columns = self
                .meta
                .evidence_for(&v.digest)
                .await?
                .into_iter()
                .find(|e| e.kind == DATA_PII)
                .and_then(|e| e.body["result"]["pii_columns"].as_u64())
                .unwrap_or(0) as usize;
            return Ok(Added {
                dataset: v.reference(),
                files: summary.files,
                pii_columns,
                unchanged: true,
                version: v,
            });
        }
        let path = local.path().to_path_buf();
        let (profile, pii) = blocking(move || {
            let p = profile_parquet(&path, ProfileOptions::default(), &|_| {})?;
            Ok((p, scan_parquet(&path)?))
        })
        .await?;
        self.record(&v, DATA_PROFILE, "pass", to_value(&profile), actor)
            .await?;
        self.record(&v, DATA_PII, pii_verdict(&pii), to_value(&pii), actor)
            .await?;
        Ok(Added {
            dataset: v.reference(),
            files: summary.files,
            pii_columns: pii.pii_columns,
            unchanged: false,
            version: v,
        })
    }

    /// A Parquet Bastion made from other versions (a split's part, a transform's result),
    /// added and checked like any ingest, with a `data.lineage` record naming the versions
    /// it came from (by digest) and how it was made.
    #[allow(clippy::too_many_arguments)]
    pub async fn derive(
        &self,
        parquet: &Path,
        name: &str,
        source: &str,
        actor: &str,
        inputs: &[&DatasetVersion],
        how: Value,
        reuse_unchanged: bool,
    ) -> Result<Added, DatasetError> {
        let opts = IngestOptions {
            format: Some(bastion_data::ingest::Format::Parquet),
            ..IngestOptions::default()
        };
        let added = self
            .add_checked(
                parquet,
                name,
                source,
                actor,
                opts,
                reuse_unchanged,
                Arc::new(|_| {}),
            )
            .await?;
        if added.unchanged {
            return Ok(added);
        }
        let from: Vec<Value> = inputs
            .iter()
            .map(|v| json!({"dataset": v.reference(), "digest": v.digest}))
            .collect();
        self.record(
            &added.version,
            DATA_LINEAGE,
            "pass",
            json!({"inputs": from, "how": how}),
            actor,
        )
        .await?;
        Ok(added)
    }

    pub async fn show(&self, v: DatasetVersion) -> Result<Shown, DatasetError> {
        let evidence = self
            .meta
            .evidence_for(&v.digest)
            .await?
            .into_iter()
            .map(|e| {
                json!({"kind": e.kind, "tool": e.tool, "verdict": e.verdict,
                       "created_by": e.created_by, "created_time": e.created_time})
            })
            .collect();
        Ok(Shown {
            dataset: v.reference(),
            version: v,
            evidence,
        })
    }

    /// Profiles the version and records the profile.
    pub async fn profile(
        &self,
        v: &DatasetVersion,
        actor: &str,
        progress: Arc<dyn Fn(u64) + Send + Sync>,
    ) -> Result<Profile, DatasetError> {
        let local = self.materialize(v).await?;
        let path = local.path().to_path_buf();
        let p = blocking(move || {
            Ok(profile_parquet(
                &path,
                ProfileOptions::default(),
                progress.as_ref(),
            )?)
        })
        .await?;
        self.record(v, DATA_PROFILE, "pass", to_value(&p), actor)
            .await?;
        Ok(p)
    }

    /// Checks the version against a constraints file's text and records the report (and the
    /// constraints it was checked against).
    pub async fn validate(
        &self,
        v: &DatasetVersion,
        constraints: &str,
        actor: &str,
    ) -> Result<ValidationReport, DatasetError> {
        let c = Constraints::parse(constraints)?;
        let local = self.materialize(v).await?;
        let path = local.path().to_path_buf();
        let r = blocking(move || Ok(validate_parquet(&path, &c, SystemTime::now())?)).await?;
        let verdict = if r.passed { "pass" } else { "fail" };
        let body = json!({ "constraints": constraints, "report": r });
        self.record(v, DATA_VALIDATION, verdict, body, actor)
            .await?;
        Ok(r)
    }

    /// Constraints (TOML) proposed from the version's profile; nothing is recorded.
    pub async fn suggest(&self, v: &DatasetVersion) -> Result<String, DatasetError> {
        let local = self.materialize(v).await?;
        let path = local.path().to_path_buf();
        let p = blocking(move || Ok(profile_parquet(&path, ProfileOptions::default(), &|_| {})?))
            .await?;
        Ok(format!(
            "# Constraints suggested from the profile of {}\n{}",
            v.reference(),
            suggest(&p).to_toml()
        ))
    }

    /// Scans the version for personal data and records the report.
    pub async fn pii(&self, v: &DatasetVersion, actor: &str) -> Result<PiiReport, DatasetError> {
        let local = self.materialize(v).await?;
        let path = local.path().to_path_buf();
        let r = blocking(move || Ok(scan_parquet(&path)?)).await?;
        self.record(v, DATA_PII, pii_verdict(&r), to_value(&r), actor)
            .await?;
        Ok(r)
    }

    /// Writes a copy of the version (Parquet) with every detected value masked or keyed-hashed
    /// to `out`; returns how many values changed. The hash key is fresh for each copy, so
    /// pseudonyms are consistent within one copy and cannot be linked across copies.
    pub async fn redact(
        &self,
        v: &DatasetVersion,
        how: Redaction,
        out: std::fs::File,
    ) -> Result<u64, DatasetError> {
        let local = self.materialize(v).await?;
        let path = local.path().to_path_buf();
        let key: [u8; 32] = rand::random();
        blocking(move || Ok(redact_parquet(&path, out, how, &key)?)).await
    }

    /// Duplicates, conflicting labels, outliers and label-noise candidates; with a label and a
    /// reference version (`against`, else the parent), the label's class-balance shift too.
    pub async fn poison(
        &self,
        v: &DatasetVersion,
        opts: PoisonOptions,
        against: Option<DatasetVersion>,
        actor: &str,
    ) -> Result<Value, DatasetError> {
        let local = self.materialize(v).await?;
        let path = local.path().to_path_buf();
        let label = opts.label.clone();
        let r = blocking(move || Ok(check_parquet(&path, &opts)?)).await?;
        let against = match (against, v.parent_version) {
            (Some(a), _) => Some(a),
            (None, Some(p)) => Some(self.meta.get_dataset_version(&v.name, Some(p)).await?),
            (None, None) => None,
        };
        let balance = match (label, against) {
            (Some(label), Some(prev)) => {
                let lp = self.materialize(&prev).await?;
                let (pa, pb) = (lp.path().to_path_buf(), local.path().to_path_buf());
                let b = blocking(move || Ok(class_balance(&pa, &pb, &label)?)).await?;
                Some((prev.reference(), b))
            }
            _ => None,
        };
        let flagged =
            r.counts.values().sum::<u64>() > 0 || balance.as_ref().is_some_and(|(_, b)| b.drift);
        let body = json!({
            "dataset": v.reference(),
            "report": r,
            "class_balance": balance.map(|(reference, label)| json!({ "reference": reference, "label": label })),
        });
        let verdict = if flagged { "findings" } else { "clean" };
        self.record(v, DATA_POISON, verdict, body.clone(), actor)
            .await?;
        Ok(body)
    }

    /// Schema and row-count changes from `a` to `b` and per-column drift, recorded on `b`.
    pub async fn diff(
        &self,
        a: &DatasetVersion,
        b: &DatasetVersion,
        opts: DriftOptions,
        actor: &str,
    ) -> Result<Diffed, DatasetError> {
        let (la, lb) = (self.materialize(a).await?, self.materialize(b).await?);
        let (pa, pb) = (la.path().to_path_buf(), lb.path().to_path_buf());
        let diff = blocking(move || Ok(diff_parquet(&pa, &pb, &opts)?)).await?;
        let verdict = if diff.drift.dataset_drift {
            "drift"
        } else {
            "no-drift"
        };
        let out = Diffed {
            reference: a.reference(),
            current: b.reference(),
            diff,
        };
        self.record(b, DATA_DRIFT, verdict, to_value(&out), actor)
            .await?;
        Ok(out)
    }
}

fn to_value(v: &impl Serialize) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}
