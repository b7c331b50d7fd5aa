//! `bastion server`: wires settings, stores, keys and the identity provider into the app.

use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bastion_auth::Role;
use bastion_auth::oidc::{OidcSettings, OidcVerifier};
use bastion_server::{AppState, OidcConfig, RateLimit, ServerConfig};
use bastion_store::keys::load_or_create_audit_key;
use bastion_store::meta::{AuditContext, AuditDraft, MetaStore, MetaStoreOptions, redact};

use crate::config::{FileConfig, OidcFile, ServerArgs, ServerSettings};

fn limit(per_second: u32) -> Option<RateLimit> {
    (per_second > 0).then_some(RateLimit {
        per_second,
        burst: per_second.saturating_mul(2),
    })
}

pub async fn run(
    home: &Path,
    file: FileConfig,
    args: ServerArgs,
    preload: &[String],
) -> Result<()> {
    let settings = ServerSettings::resolve(args, file.server, &file.auth, &file.tls, home)?;
    // Before anything is created: a bad certificate must not cost the bootstrap token.
    let tls = match &settings.tls {
        Some(files) => Some((bastion_server::tls::server_config(files)?, files)),
        None => None,
    };

    let meta = MetaStore::connect(&MetaStoreOptions {
        uri: settings.backend_store_uri.clone(),
        max_connections: settings.db_connections,
        sqlite_sync: settings.sqlite_synchronous,
    })
    .await
    .with_context(|| {
        format!(
            "opening the metadata store {}",
            redact(&settings.backend_store_uri)
        )
    })?;
    let blobs =
        bastion_store::blob::open(&settings.artifacts_destination, settings.tmp_dir.clone())
            .with_context(|| {
                format!("opening the blob store {}", settings.artifacts_destination)
            })?;
    let audit_key = load_or_create_audit_key(home).context("loading the audit key")?;
    let attestor = bastion_evidence::Attestor::load_or_create(home)
        .context("loading the model-signing key")?;
    let oidc = match &file.auth.oidc {
        Some(o) => Some(oidc_config(o).await?),
        None => None,
    };

    if settings.insecure {
        tracing::warn!(
            "AUTHENTICATION IS OFF (--insecure): anyone who can reach this server acts as an admin"
        );
    } else {
        bootstrap(&meta).await?;
    }

    let config = ServerConfig {
        bind: settings.bind,
        allowed_hosts: settings.allowed_hosts.clone(),
        cors_origins: settings.cors_allowed_origins.clone(),
        max_json_bytes: settings.max_json_bytes,
        max_artifact_bytes: settings.max_artifact_bytes,
        max_infer_bytes: settings.max_infer_bytes,
        infer_body_timeout: Duration::from_secs(settings.infer_body_timeout),
        insecure: settings.insecure,
        rate_limit_per_ip: limit(settings.rate_limit_per_ip),
        rate_limit_per_principal: limit(settings.rate_limit_per_user),
        audit_sign_interval: Duration::from_secs(60),
        production_gate: settings.production_gate,
        production_policy: match &settings.production_policy {
            Some(path) => {
                let (policy, digest) = crate::gate::read_policy(path)?;
                tracing::info!(policy = %policy.name, sha256 = %digest.hex(), "production decisions must apply this policy");
                Some(digest)
            }
            None => None,
        },
        secure_cookies: tls.is_some(),
    };
    if !settings.production_gate {
        tracing::warn!(
            "the production gate is off: versions reach production without a gate decision"
        );
    }
    let jwks_url = file
        .auth
        .oidc
        .as_ref()
        .map(|o| o.jwks.clone())
        .filter(|j| j.starts_with("https://") || j.starts_with("http://"));
    let publisher = match &settings.nats {
        Some(n) => Some(Arc::new(
            bastion_nats::EventPublisher::connect(n)
                .await
                .context("opening the NATS event stream")?,
        )),
        None => None,
    };
    if let Some(n) = &settings.nats {
        tracing::info!(url = %n.url, stream = %n.stream, "publishing inference events to NATS");
    }
    let state = AppState::new(
        meta,
        Arc::from(blobs),
        config,
        bastion_server::prometheus(),
        oidc,
        Some(Arc::new(audit_key)),
        Arc::new(attestor),
    )
    .with_datasets(
        bastion_store::crypt::DatasetCipher::load(
            &home.join(bastion_store::crypt::DATASET_KEY_FILE),
        )
        .context("loading the dataset encryption key")?
        .map(Arc::new),
        home.join("tmp"),
    )
    .with_serving(bastion_serve::ServeConfig {
        require_gate: settings.serve_requires_gate,
        publisher,
        ..bastion_serve::ServeConfig::new(home.join("tmp").join("serve"))
    });
    if let (Some(url), Some(oidc_file)) = (jwks_url, file.auth.oidc.clone()) {
        tokio::spawn(refresh_jwks(state.clone(), url, oidc_file));
    }
    for reference in preload {
        let (name, version) = match reference.split_once('@') {
            Some((n, v)) => (n, Some(v)),
            None => (reference.as_str(), None),
        };
        let version = state
            .models
            .resolve(name, version)
            .await
            .with_context(|| format!("model {reference}"))?;
        state
            .models
            .get(
                name,
                &version,
                bastion_serve::Caller {
                    actor: "bastion serve",
                    request_id: "",
                },
            )
            .await
            .with_context(|| format!("model {reference}"))?;
        println!("Serving {name} version {version} at /v2/models/{name}/versions/{version}");
    }
    if let Some(path) = &settings.monitor_rules {
        let rules = crate::monitor::read_rules(path)?;
        let meta = state.meta.clone();
        let responder = crate::monitor::responder(home, meta.clone(), state.models.clone(), &rules);
        // Every replica runs a worker under this one name; the lease lets one read at a time.
        const CONSUMER: &str = "server";
        let source = crate::monitor::event_source(&meta, settings.nats.as_ref(), CONSUMER, 2000)
            .await
            .context("starting the monitor")?;
        let worker = bastion_watch::Worker::start(
            meta,
            state.models.clone(),
            source,
            CONSUMER,
            rules,
            responder,
        )
        .await
        .context("starting the monitor")?
        .with_lease(&crate::monitor::lease_holder(), crate::monitor::LEASE);
        tracing::info!(rules = %path.display(), "monitor running in the server");
        tokio::spawn(worker.run(Duration::from_secs(1), shutdown_signal()));
    }
    if !settings.bind.ip().is_loopback() {
        tracing::warn!(bind = %settings.bind, "listening on a non-loopback address: the server is reachable from the network");
    }
    let listener = tokio::net::TcpListener::bind(settings.bind)
        .await
        .with_context(|| format!("binding {}", settings.bind))?;
    let local = listener.local_addr()?;
    tracing::info!(
        address = %local,
        backend = %redact(&settings.backend_store_uri),
        artifacts = %state.blobs.describe(),
        "bastion server listening"
    );
    match tls {
        Some((tls, files)) => {
            let mutual = match (&files.client_ca, files.require_client_cert) {
                (None, _) => "",
                (Some(_), false) => " (client certificates accepted)",
                (Some(_), true) => " (client certificate required)",
            };
            println!("Bastion server listening on https://{local}{mutual}");
            bastion_server::serve_tls(listener, tls, state, shutdown_signal()).await
        }
        None => {
            println!("Bastion server listening on http://{local}");
            bastion_server::serve(listener, state, shutdown_signal()).await
        }
    }
    .context("serving")?;
    tracing::info!("bastion server stopped");
    Ok(())
}

/// On the first secure start (no users yet) creates the `admin` user and prints a token for it,
/// once. It is the only way in until more users and tokens exist.
async fn bootstrap(meta: &MetaStore) -> Result<()> {
    if meta.count_users().await? > 0 {
        return Ok(());
    }
    let audited = meta.audited(AuditContext::new(AuditDraft {
        actor: "system:bootstrap".into(),
        action: "users.bootstrap".into(),
        resource: "user:admin".into(),
        request_id: String::new(),
        outcome: bastion_audit::Outcome::Success,
        body_sha256: None,
    }));
    audited.create_user("admin", Role::Admin, None).await?;
    let (secret, info) = audited
        .issue_token("admin", "bootstrap token", None)
        .await?;
    println!("Created user 'admin' (role admin). Its API token, shown only this once:");
    println!("  {secret}");
    println!(
        "Use it as MLFLOW_TRACKING_TOKEN or 'Authorization: Bearer'; revoke it with 'bastion token revoke {}' once you have created your own users.",
        info.token_id
    );
    Ok(())
}

async fn fetch_jwks(url: &str) -> Result<String> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let resp = client.get(url).send().await?.error_for_status()?;
    Ok(resp.text().await?)
}

async fn oidc_config(o: &OidcFile) -> Result<OidcConfig> {
    let settings = OidcSettings {
        issuer: o.issuer.clone(),
        audience: o.audience.clone(),
        user_claim: o.user_claim.clone(),
        groups_claim: o.groups_claim.clone(),
        leeway_secs: o.leeway_secs,
    };
    let jwks = if o.jwks.starts_with("https://") || o.jwks.starts_with("http://") {
        fetch_jwks(&o.jwks)
            .await
            .with_context(|| format!("fetching the OIDC JWKS from {}", o.jwks))?
    } else {
        std::fs::read_to_string(&o.jwks)
            .with_context(|| format!("reading the OIDC JWKS {}", o.jwks))?
    };
    let verifier = OidcVerifier::new(settings.clone(), &jwks)
        .with_context(|| format!("the JWKS {}", o.jwks))?;
    let mut group_roles = Vec::new();
    for (g, r) in &o.group_roles {
        let role: Role = r.parse().map_err(anyhow::Error::msg)?;
        group_roles.push((g.clone(), role));
    }
    let default_role = match &o.default_role {
        Some(r) => Some(r.parse::<Role>().map_err(anyhow::Error::msg)?),
        None => None,
    };
    if o.issuer.is_empty() || o.audience.is_empty() {
        bail!("[auth.oidc] needs a non-empty issuer and audience");
    }
    tracing::info!(issuer = %o.issuer, keys = verifier.key_count(), "OIDC bearer tokens accepted");
    Ok(OidcConfig {
        verifier: RwLock::new(Arc::new(verifier)),
        settings,
        group_roles,
        default_role,
    })
}

/// Re-fetches a remote JWKS every hour, so the provider's key rotation is picked up; a failed
/// fetch keeps the keys already known.
async fn refresh_jwks(state: AppState, url: String, o: OidcFile) {
    let mut tick = tokio::time::interval(Duration::from_secs(3600));
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(oidc) = state.auth.credentials.oidc() else {
            return;
        };
        match fetch_jwks(&url).await.map(|text| {
            OidcVerifier::new(oidc.settings.clone(), &text).map_err(anyhow::Error::from)
        }) {
            Ok(Ok(v)) => {
                if let Ok(mut slot) = oidc.verifier.write() {
                    *slot = Arc::new(v);
                }
            }
            Ok(Err(e)) | Err(e) => {
                tracing::warn!(error = %e, url = %url, issuer = %o.issuer, "JWKS refresh failed; keeping the current keys")
            }
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown requested; draining in-flight requests");
}
