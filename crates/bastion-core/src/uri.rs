//! Artifact URIs. The server resolves only `mlflow-artifacts:` URIs (into its own artifact
//! namespace) and `runs:/` / `models:/` references (through the store); every other scheme is
//! stored as an opaque string for clients that talk to that store themselves. A local path or
//! `file:` URI is refused outright: it would be an invitation for the server to read its own
//! file system, which is how MLflow's registry CVEs began.

use crate::error::{Error, Result};
use crate::limits::truncate;
use crate::path::RelPath;

/// Schemes stored as given and never dereferenced by the server.
const REMOTE_SCHEMES: &[&str] = &[
    "s3", "gs", "wasbs", "abfss", "hdfs", "viewfs", "dbfs", "http", "https", "oss", "sftp", "ftp",
];

pub const ARTIFACTS_SCHEME: &str = "mlflow-artifacts:";

/// What a URI means to the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArtifactUri {
    /// A path in the server's own artifact namespace.
    Proxied(RelPath),
    /// `runs:/<run_id>/<path>`
    Run { run_id: String, path: RelPath },
    /// `models:/<name-or-id>[/...]`, resolved by the registry.
    Model(String),
    /// A remote store the server never touches.
    Remote(String),
}

/// Parses a URI a client gave as an experiment's `artifact_location` or a model version's
/// `source`; `field` names it in errors.
pub fn parse(field: &str, uri: &str) -> Result<ArtifactUri> {
    let shown = truncate(uri, 200);
    if uri.len() > 4096 {
        return Err(Error::invalid(format!("{field} is longer than 4096 bytes")));
    }
    if let Some(rest) = uri.strip_prefix(ARTIFACTS_SCHEME) {
        // mlflow-artifacts:/1/x, mlflow-artifacts:///1/x or mlflow-artifacts://host:port/1/x
        let path = match rest.strip_prefix("//") {
            Some(after_authority) => after_authority
                .find('/')
                .map(|i| &after_authority[i..])
                .unwrap_or(""),
            None => rest,
        };
        let rel = RelPath::parse(path.trim_start_matches('/'))
            .map_err(|e| Error::invalid(format!("Invalid {field} '{shown}': {e}")))?;
        return Ok(ArtifactUri::Proxied(rel));
    }
    if let Some(rest) = uri.strip_prefix("runs:/") {
        let rest = rest.trim_start_matches('/');
        let (run_id, path) = rest.split_once('/').unwrap_or((rest, ""));
        if !crate::ids::is_run_id(run_id) {
            return Err(Error::invalid(format!(
                "Invalid {field} '{shown}': '{}' is not a run id",
                truncate(run_id, 40)
            )));
        }
        let path = RelPath::parse(path)
            .map_err(|e| Error::invalid(format!("Invalid {field} '{shown}': {e}")))?;
        return Ok(ArtifactUri::Run {
            run_id: run_id.to_owned(),
            path,
        });
    }
    if let Some(rest) = uri.strip_prefix("models:/") {
        RelPath::parse(rest.trim_start_matches('/'))
            .map_err(|e| Error::invalid(format!("Invalid {field} '{shown}': {e}")))?;
        return Ok(ArtifactUri::Model(rest.trim_start_matches('/').to_owned()));
    }
    if let Some((scheme, rest)) = uri.split_once("://") {
        let scheme = scheme.to_ascii_lowercase();
        if REMOTE_SCHEMES.contains(&scheme.as_str()) && !rest.is_empty() {
            if rest.split('/').any(|s| s == "..") {
                return Err(Error::invalid(format!(
                    "Invalid {field} '{shown}': '..' segments are not allowed"
                )));
            }
            return Ok(ArtifactUri::Remote(uri.to_owned()));
        }
    }
    Err(Error::invalid(format!(
        "Invalid {field} '{shown}': the server does not read local paths or file: URIs. Use an mlflow-artifacts:/ URI (the server's artifact store), runs:/, models:/, or a remote store URI ({})",
        REMOTE_SCHEMES.join(", ")
    )))
}

/// `mlflow-artifacts:/<path>`
pub fn proxied(path: &RelPath) -> String {
    format!("{ARTIFACTS_SCHEME}/{path}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_forms() {
        assert_eq!(
            parse("f", "mlflow-artifacts:/1/abc").unwrap(),
            ArtifactUri::Proxied(RelPath::parse("1/abc").unwrap())
        );
        assert_eq!(
            parse("f", "mlflow-artifacts://h:5000/1").unwrap(),
            ArtifactUri::Proxied(RelPath::parse("1").unwrap())
        );
        let run = "346d85c6ca1443cbbdedc35b13406a11";
        assert_eq!(
            parse("f", &format!("runs:/{run}/model")).unwrap(),
            ArtifactUri::Run {
                run_id: run.into(),
                path: RelPath::parse("model").unwrap()
            }
        );
        assert_eq!(
            parse("f", "models:/m-1").unwrap(),
            ArtifactUri::Model("m-1".into())
        );
        assert!(matches!(
            parse("f", "s3://bucket/x").unwrap(),
            ArtifactUri::Remote(_)
        ));
    }

    #[test]
    fn refuses_local_and_traversal() {
        for bad in [
            "/etc/passwd",
            "file:///etc/passwd",
            "file:/etc",
            "relative/dir",
            "mlflow-artifacts:/../../etc",
            "mlflow-artifacts:/1/%2e%2e/x",
            "runs:/notarun/x",
            "runs:/346d85c6ca1443cbbdedc35b13406a11/../../x",
            "models:/../x",
            "s3://bucket/../x",
            "",
        ] {
            assert!(parse("source", bad).is_err(), "{bad}");
        }
    }
}
