//! A registered model version's ML-BOM (CycloneDX 1.6), from what the registry records:
//! its files and root digest, the training run's parameters, metrics and datasets, and the
//! model card's considerations from tags. The CLI's `bastion attest bom` and the dashboard's
//! download both build it here.

use std::collections::BTreeMap;

use bastion_attest::bom::{Considerations, DatasetRef, ModelBom};
use bastion_store::MetaStore;

use crate::EvidenceError;

fn is_sha256(digest: &str) -> bool {
    digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Tags that fill the model card's considerations (one entry per line of the value).
const CONSIDERATION_TAGS: [&str; 4] = [
    "bastion.model_card.users",
    "bastion.model_card.use_cases",
    "bastion.model_card.limitations",
    "bastion.model_card.ethical_considerations",
];

/// The ML-BOM of `name`/`version`.
pub async fn model_version_bom(
    meta: &MetaStore,
    name: &str,
    version: &str,
) -> Result<ModelBom, EvidenceError> {
    let (name, version) = (name.to_owned(), version.to_owned());
    let mv = meta.get_model_version(&name, &version).await?;
    let rm = meta.get_registered_model(&name).await?;
    let run = if mv.run_id.is_empty() {
        None
    } else {
        meta.get_run(&mv.run_id).await.ok()
    };
    let root = meta.model_version_root_digest(&name, &version).await?;
    // A version whose files this server does not store has none to list.
    let files = crate::version_files(meta, &name, &version)
        .await?
        .map(|listed| listed.files)
        .unwrap_or_default();
    let mut tags: BTreeMap<String, String> = BTreeMap::new();
    for t in rm
        .tags
        .iter()
        .chain(run.iter().flat_map(|r| r.data.tags.iter()))
        .chain(mv.tags.iter())
    {
        tags.insert(t.key.clone(), t.value.clone());
    }
    let lines = |key: &str| -> Vec<String> {
        tags.get(key)
            .map(|v| {
                v.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    };
    let [users, use_cases, limitations, ethical] = CONSIDERATION_TAGS.map(lines);
    let mut properties = BTreeMap::from([(
        "bastion:registry".to_owned(),
        format!("models:/{name}/{version}"),
    )]);
    properties.insert("bastion:source".to_owned(), mv.source.clone());
    if let Some(q) = meta.model_version_quarantine(&name, &version).await? {
        properties.insert("bastion:quarantine".to_owned(), q);
    }
    let description = [
        mv.description.as_str(),
        rm.description.as_deref().unwrap_or(""),
    ]
    .into_iter()
    .find(|d| !d.is_empty())
    .map(str::to_owned);
    Ok(ModelBom {
        name: name.clone(),
        version: version.clone(),
        description,
        root_sha256: root.map(|r| r.hex()),
        files: files
            .iter()
            .map(|f| (f.path.clone(), f.digest.hex()))
            .collect(),
        task: tags.get("bastion.task").cloned(),
        architecture: tags.get("bastion.architecture").cloned(),
        parameters: run
            .iter()
            .flat_map(|r| r.data.params.iter())
            .map(|p| (p.key.clone(), p.value.clone()))
            .collect(),
        datasets: run
            .iter()
            .flat_map(|r| r.inputs.dataset_inputs.iter())
            .map(|d| DatasetRef {
                name: d.dataset.name.clone(),
                sha256: is_sha256(&d.dataset.digest).then(|| d.dataset.digest.clone()),
                other_digest: (!is_sha256(&d.dataset.digest) && !d.dataset.digest.is_empty())
                    .then(|| d.dataset.digest.clone()),
                source: d.dataset.source_uri(),
                context: d
                    .tags
                    .iter()
                    .find(|t| t.key == "mlflow.data.context")
                    .map(|t| t.value.clone()),
            })
            .collect(),
        metrics: run
            .iter()
            .flat_map(|r| r.data.metrics.iter())
            .map(|m| (m.key.clone(), m.value.0))
            .collect(),
        considerations: Considerations {
            users,
            use_cases,
            technical_limitations: limitations,
            ethical_considerations: ethical,
        },
        properties,
        ..ModelBom::default()
    })
}
