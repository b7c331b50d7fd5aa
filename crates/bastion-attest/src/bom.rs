//! CycloneDX 1.6 ML-BOM: the model as a `machine-learning-model` component with its model
//! card (parameters, datasets, performance metrics, considerations), its files, and the
//! datasets it was trained on as `data` components, all identified by SHA-256.

use std::collections::BTreeMap;

use serde_json::{Value, json};

pub const SPEC_VERSION: &str = "1.6";

/// A dataset the model was built from.
#[derive(Debug, Clone, Default)]
pub struct DatasetRef {
    pub name: String,
    /// Hex SHA-256 of the dataset's content, when known.
    pub sha256: Option<String>,
    /// Another digest the dataset is known by (e.g. MLflow's dataset digest), recorded as a
    /// property since CycloneDX hashes name a fixed set of algorithms.
    pub other_digest: Option<String>,
    /// Where it came from (a URI).
    pub source: Option<String>,
    /// Its role: training, evaluation…
    pub context: Option<String>,
}

/// What the model card says beyond numbers.
#[derive(Debug, Clone, Default)]
pub struct Considerations {
    pub users: Vec<String>,
    pub use_cases: Vec<String>,
    pub technical_limitations: Vec<String>,
    pub ethical_considerations: Vec<String>,
}

/// Everything an ML-BOM records about one model.
#[derive(Debug, Clone, Default)]
pub struct ModelBom {
    pub name: String,
    pub version: String,
    pub description: Option<String>,
    /// The model's root digest (OpenSSF model-signing manifest).
    pub root_sha256: Option<String>,
    /// `(relative path, hex SHA-256)` of each file.
    pub files: Vec<(String, String)>,
    /// `modelCard.modelParameters.task` (e.g. "classification").
    pub task: Option<String>,
    /// `modelCard.modelParameters.architectureFamily` (e.g. "gradient-boosted trees").
    pub architecture: Option<String>,
    /// Hyper-parameters, recorded as properties.
    pub parameters: BTreeMap<String, String>,
    pub datasets: Vec<DatasetRef>,
    /// Performance metrics by name.
    pub metrics: BTreeMap<String, f64>,
    pub considerations: Considerations,
    /// Extra `name → value` properties (e.g. where the model is registered).
    pub properties: BTreeMap<String, String>,
    /// RFC 3339 time of the BOM.
    pub timestamp: String,
    /// `urn:uuid:…` serial number.
    pub serial_number: String,
}

fn sha256(hex: &str) -> Value {
    json!([{"alg": "SHA-256", "content": hex}])
}

impl ModelBom {
    /// The BOM as CycloneDX 1.6 JSON.
    pub fn to_json(&self) -> Value {
        let model_ref = format!("model:{}@{}", self.name, self.version);
        let data_refs: Vec<String> = self
            .datasets
            .iter()
            .enumerate()
            .map(|(i, d)| format!("data:{i}:{}", d.name))
            .collect();
        let mut model = json!({
            "type": "machine-learning-model",
            "bom-ref": model_ref,
            "name": self.name,
            "version": self.version,
        });
        if let Some(d) = &self.description {
            model["description"] = json!(d);
        }
        if let Some(root) = &self.root_sha256 {
            model["hashes"] = sha256(root);
        }
        let mut properties: Vec<Value> = self
            .parameters
            .iter()
            .map(|(k, v)| json!({"name": format!("bastion:parameter:{k}"), "value": v}))
            .collect();
        properties.extend(
            self.properties
                .iter()
                .map(|(k, v)| json!({"name": k, "value": v})),
        );
        if !properties.is_empty() {
            model["properties"] = json!(properties);
        }
        let mut model_parameters = json!({
            "datasets": data_refs.iter().map(|r| json!({"ref": r})).collect::<Vec<_>>(),
        });
        if let Some(t) = &self.task {
            model_parameters["task"] = json!(t);
        }
        if let Some(a) = &self.architecture {
            model_parameters["architectureFamily"] = json!(a);
        }
        let mut card = json!({
            "bom-ref": format!("{model_ref}#model-card"),
            "modelParameters": model_parameters,
        });
        if !self.metrics.is_empty() {
            card["quantitativeAnalysis"] = json!({
                "performanceMetrics": self.metrics.iter()
                    .map(|(k, v)| json!({"type": k, "value": v.to_string()}))
                    .collect::<Vec<_>>(),
            });
        }
        let c = &self.considerations;
        let mut considerations = serde_json::Map::new();
        if !c.users.is_empty() {
            considerations.insert("users".into(), json!(c.users));
        }
        if !c.use_cases.is_empty() {
            considerations.insert("useCases".into(), json!(c.use_cases));
        }
        if !c.technical_limitations.is_empty() {
            considerations.insert(
                "technicalLimitations".into(),
                json!(c.technical_limitations),
            );
        }
        if !c.ethical_considerations.is_empty() {
            considerations.insert(
                "ethicalConsiderations".into(),
                json!(
                    c.ethical_considerations
                        .iter()
                        .map(|e| json!({"name": e}))
                        .collect::<Vec<_>>()
                ),
            );
        }
        if !considerations.is_empty() {
            card["considerations"] = Value::Object(considerations);
        }
        model["modelCard"] = card;
        if !self.files.is_empty() {
            model["components"] = json!(
                self.files
                    .iter()
                    .map(|(path, digest)| json!({
                        "type": "file",
                        "bom-ref": format!("{model_ref}/{path}"),
                        "name": path,
                        "hashes": sha256(digest),
                    }))
                    .collect::<Vec<_>>()
            );
        }
        let mut components = vec![model];
        for (d, r) in self.datasets.iter().zip(&data_refs) {
            let mut data = json!({"type": "dataset", "name": d.name});
            if let Some(src) = &d.source {
                data["contents"] = json!({"url": src});
            }
            if let Some(ctx) = &d.context {
                data["description"] = json!(format!("{ctx} data"));
            }
            let mut component = json!({
                "type": "data",
                "bom-ref": r,
                "name": d.name,
                "data": [data],
            });
            if let Some(h) = &d.sha256 {
                component["hashes"] = sha256(h);
            }
            if let Some(other) = &d.other_digest {
                component["properties"] =
                    json!([{"name": "bastion:dataset-digest", "value": other}]);
            }
            components.push(component);
        }
        json!({
            "bomFormat": "CycloneDX",
            "specVersion": SPEC_VERSION,
            "serialNumber": self.serial_number,
            "version": 1,
            "metadata": {
                "timestamp": self.timestamp,
                "tools": {"components": [{
                    "type": "application",
                    "name": "bastion",
                    "version": env!("CARGO_PKG_VERSION"),
                }]},
                "component": {
                    "type": "machine-learning-model",
                    "bom-ref": format!("{model_ref}#subject"),
                    "name": self.name,
                    "version": self.version,
                },
            },
            "components": components,
            "dependencies": [{"ref": model_ref, "dependsOn": data_refs}],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_the_model_card_to_its_datasets() {
        let bom = ModelBom {
            name: "fraud".into(),
            version: "3".into(),
            root_sha256: Some("ab".repeat(32)),
            files: vec![("model.onnx".into(), "cd".repeat(32))],
            task: Some("classification".into()),
            parameters: BTreeMap::from([("lr".into(), "0.1".into())]),
            datasets: vec![DatasetRef {
                name: "train".into(),
                sha256: Some("ef".repeat(32)),
                context: Some("training".into()),
                ..DatasetRef::default()
            }],
            metrics: BTreeMap::from([("auc".into(), 0.9)]),
            timestamp: "2026-11-26T00:00:00.000Z".into(),
            serial_number: "urn:uuid:00000000-0000-4000-8000-000000000000".into(),
            ..ModelBom::default()
        }
        .to_json();
        assert_eq!(bom["specVersion"], "1.6");
        let model = &bom["components"][0];
        assert_eq!(model["type"], "machine-learning-model");
        assert_eq!(model["hashes"][0]["content"], "ab".repeat(32));
        assert_eq!(model["components"][0]["name"], "model.onnx");
        let data = &bom["components"][1];
        assert_eq!(data["type"], "data");
        assert_eq!(data["hashes"][0]["content"], "ef".repeat(32));
        let card = &model["modelCard"];
        assert_eq!(
            card["modelParameters"]["datasets"][0]["ref"],
            data["bom-ref"]
        );
        assert_eq!(card["modelParameters"]["task"], "classification");
        assert_eq!(
            card["quantitativeAnalysis"]["performanceMetrics"][0]["value"],
            "0.9"
        );
        assert_eq!(bom["dependencies"][0]["dependsOn"][0], data["bom-ref"]);
    }
}
