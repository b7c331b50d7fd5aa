//! in-toto Statement v1, and the OpenSSF model-signing predicate that carries a manifest.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::manifest::{HASH_TYPE, Manifest, Method, Resource, Serialization};

pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
/// The predicate type of an OpenSSF model signature.
pub const MODEL_SIGNATURE_PREDICATE: &str = "https://model_signing/signature/v1.0";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Statement {
    #[serde(rename = "_type")]
    pub type_: String,
    pub subject: Vec<Subject>,
    #[serde(rename = "predicateType")]
    pub predicate_type: String,
    pub predicate: Value,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Subject {
    pub name: String,
    pub digest: BTreeMap<String, String>,
}

impl Subject {
    pub fn sha256(name: impl Into<String>, hex_digest: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            digest: BTreeMap::from([("sha256".to_owned(), hex_digest.into())]),
        }
    }
}

impl Statement {
    pub fn new(subject: Vec<Subject>, predicate_type: &str, predicate: Value) -> Self {
        Self {
            type_: STATEMENT_TYPE.to_owned(),
            subject,
            predicate_type: predicate_type.to_owned(),
            predicate,
        }
    }

    /// The model-signing statement over `manifest`: one subject (the model's name and root
    /// digest) and the resources in canonical order.
    pub fn for_manifest(manifest: &Manifest) -> Self {
        let s = &manifest.serialization;
        let mut serialization = json!({
            "method": match s.method { Method::Files => "files", Method::Shards { .. } => "shards" },
            "hash_type": HASH_TYPE,
            "allow_symlinks": s.allow_symlinks,
        });
        if !s.ignore_paths.is_empty() {
            serialization["ignore_paths"] = json!(s.ignore_paths);
        }
        if let Method::Shards { shard_size } = s.method {
            // An integer: model_signing 1.1.1 writes a float here and then cannot read it.
            serialization["shard_size"] = json!(shard_size);
        }
        let algorithm = resource_algorithm(s.method);
        let resources: Vec<Value> = manifest
            .resources()
            .iter()
            .map(|r| json!({"name": r.name(), "algorithm": algorithm, "digest": hex::encode(r.digest)}))
            .collect();
        Self::new(
            vec![Subject::sha256(
                manifest.model_name.clone(),
                manifest.root_digest_hex(),
            )],
            MODEL_SIGNATURE_PREDICATE,
            json!({"serialization": serialization, "resources": resources}),
        )
    }

    /// The manifest a model-signing statement carries, after checking that its subject's
    /// root digest is the digest of its resources as listed.
    pub fn to_manifest(&self) -> Result<Manifest, String> {
        if self.type_ != STATEMENT_TYPE {
            return Err(format!(
                "statement _type is {:?}, expected {STATEMENT_TYPE:?}",
                self.type_
            ));
        }
        if self.predicate_type != MODEL_SIGNATURE_PREDICATE {
            return Err(format!(
                "predicateType is {:?}, expected {MODEL_SIGNATURE_PREDICATE:?}",
                self.predicate_type
            ));
        }
        let [subject] = &self.subject[..] else {
            return Err(format!(
                "expected exactly one subject, found {}",
                self.subject.len()
            ));
        };
        let root = subject
            .digest
            .get("sha256")
            .ok_or("subject has no sha256 digest")?;
        let serialization = parse_serialization(
            self.predicate
                .get("serialization")
                .ok_or("predicate has no serialization")?,
        )?;
        let listed = self
            .predicate
            .get("resources")
            .and_then(Value::as_array)
            .ok_or("predicate.resources is not a list")?;
        let mut resources = Vec::with_capacity(listed.len());
        for (i, r) in listed.iter().enumerate() {
            let field = |k: &str| {
                r.get(k).and_then(Value::as_str).ok_or_else(|| {
                    format!("predicate.resources[{i}].{k} is missing or not a string")
                })
            };
            let name = field("name")?;
            let algorithm = field("algorithm")?;
            if algorithm != HASH_TYPE && algorithm != resource_algorithm(serialization.method) {
                return Err(format!(
                    "predicate.resources[{i}] ({name}) uses {algorithm:?}; expected {:?}",
                    resource_algorithm(serialization.method)
                ));
            }
            let digest = hex::decode(field("digest")?)
                .ok()
                .and_then(|d| <[u8; 32]>::try_from(d).ok())
                .ok_or_else(|| {
                    format!("predicate.resources[{i}] ({name}): digest is not 64 hex characters")
                })?;
            let (components, range) = Resource::parse_name(name, serialization.method)?;
            resources.push(Resource {
                components,
                range,
                digest,
            });
        }
        let manifest = Manifest::in_given_order(subject.name.clone(), serialization, resources);
        let computed = manifest.root_digest_hex();
        if !computed.eq_ignore_ascii_case(root) {
            return Err(format!(
                "the manifest is inconsistent: the subject's root digest is {root} but the listed resources hash to {computed}"
            ));
        }
        Ok(Manifest::new(
            manifest.model_name.clone(),
            manifest.serialization.clone(),
            manifest.resources().to_vec(),
        ))
    }
}

/// The algorithm name `model_signing` gives each resource: the hash for whole files, the hash
/// and shard size for shards (its verifier compares the name too).
fn resource_algorithm(method: Method) -> String {
    match method {
        Method::Files => HASH_TYPE.to_owned(),
        Method::Shards { shard_size } => format!("{HASH_TYPE}-sharded-{shard_size}"),
    }
}

fn parse_serialization(v: &Value) -> Result<Serialization, String> {
    let method = v
        .get("method")
        .and_then(Value::as_str)
        .ok_or("serialization.method is missing")?;
    let hash_type = v
        .get("hash_type")
        .and_then(Value::as_str)
        .ok_or("serialization.hash_type is missing")?;
    if hash_type != HASH_TYPE {
        return Err(format!(
            "serialization.hash_type {hash_type:?} is not supported (only sha256)"
        ));
    }
    let allow_symlinks = v
        .get("allow_symlinks")
        .and_then(Value::as_bool)
        .ok_or("serialization.allow_symlinks is missing or not a boolean")?;
    let ignore_paths = match v.get("ignore_paths") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|p| {
                p.as_str()
                    .map(str::to_owned)
                    .ok_or("serialization.ignore_paths holds a non-string")
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err("serialization.ignore_paths is not a list".into()),
    };
    let method = match method {
        "files" => Method::Files,
        "shards" => {
            let size = v
                .get("shard_size")
                .ok_or("serialization.shard_size is missing")?;
            // Written as an integer by Bastion and as a float by model_signing 1.1.1.
            let shard_size = size
                .as_u64()
                .or_else(|| {
                    size.as_f64()
                        .filter(|f| f.fract() == 0.0 && *f >= 1.0 && *f < 9.0e15)
                        .map(|f| f as u64)
                })
                .filter(|s| *s > 0)
                .ok_or("serialization.shard_size is not a positive integer")?;
            Method::Shards { shard_size }
        }
        other => return Err(format!("serialization.method {other:?} is not supported")),
    };
    Ok(Serialization {
        method,
        allow_symlinks,
        ignore_paths,
    })
}
