//! `bastion user`, `bastion token`, `bastion grant`: the same store calls as the HTTP admin
//! API, made directly on this home's store and audited as the local operator.

use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result, bail};
use bastion_auth::{Permission, ResourceKind, Role};
use bastion_core::time;
use bastion_store::meta::{AuditContext, AuditDraft, MetaStore, hash_password};
use clap::Subcommand;
use serde_json::json;

use crate::config::FileConfig;
use crate::{StoreArgs, open_store, print_json};

#[derive(Subcommand)]
pub enum UserCommand {
    /// Create a user. With --password-stdin, reads a password for HTTP Basic from stdin.
    Create {
        name: String,
        #[arg(long)]
        role: Role,
        #[arg(long)]
        password_stdin: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    List {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Change a user's role.
    SetRole {
        name: String,
        role: Role,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Set a user's password, read from stdin.
    Passwd {
        name: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Stop every credential of a user at once.
    Disable {
        name: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    Enable {
        name: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Delete a user with their tokens and grants.
    Delete {
        name: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Mint a token; the secret is printed once.
    Create {
        #[arg(long)]
        user: String,
        #[arg(long, default_value = "")]
        description: String,
        /// Days until it expires (default: never).
        #[arg(long)]
        expires_in_days: Option<u32>,
        #[command(flatten)]
        store: StoreArgs,
    },
    List {
        #[arg(long)]
        user: Option<String>,
        #[command(flatten)]
        store: StoreArgs,
    },
    Revoke {
        token_id: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Subcommand)]
pub enum GrantCommand {
    /// Give `user:<name>` or `group:<name>` a permission on one experiment, registered model
    /// or dataset (`*`: all of that kind).
    Set {
        principal: String,
        kind: ResourceKind,
        resource: String,
        permission: Permission,
        #[command(flatten)]
        store: StoreArgs,
    },
    List {
        #[arg(long)]
        principal: Option<String>,
        #[command(flatten)]
        store: StoreArgs,
    },
    Revoke {
        principal: String,
        kind: ResourceKind,
        resource: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

/// The store, with every change recorded as this command run by the local operator.
async fn audited(
    home: &Path,
    file: &FileConfig,
    store: &StoreArgs,
    action: &str,
    resource: String,
) -> Result<MetaStore> {
    let meta = open_store(home, file, store).await?;
    let operator = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    Ok(meta.audited(AuditContext::new(AuditDraft {
        actor: format!("cli:{operator}"),
        action: action.into(),
        resource,
        request_id: String::new(),
        outcome: bastion_audit::Outcome::Success,
        body_sha256: None,
    })))
}

fn read_password() -> Result<String> {
    let mut text = String::new();
    std::io::stdin()
        .take(4096)
        .read_to_string(&mut text)
        .context("reading the password from stdin")?;
    let pw = text.trim_end_matches(['\n', '\r']).to_owned();
    if pw.is_empty() {
        bail!("no password on stdin");
    }
    Ok(pw)
}

pub async fn user(home: &Path, file: &FileConfig, cmd: UserCommand) -> Result<()> {
    match cmd {
        UserCommand::Create {
            name,
            role,
            password_stdin,
            store,
        } => {
            let meta = audited(home, file, &store, "users.create", format!("user:{name}")).await?;
            let hash = if password_stdin {
                Some(hash_password(read_password()?).await?)
            } else {
                None
            };
            let u = meta.create_user(&name, role, hash.as_deref()).await?;
            print_json(&json!({ "user": u }))
        }
        UserCommand::List { store } => {
            let meta = open_store(home, file, &store).await?;
            print_json(&json!({ "users": meta.list_users().await? }))
        }
        UserCommand::SetRole { name, role, store } => {
            let meta = audited(home, file, &store, "users.update", format!("user:{name}")).await?;
            print_json(&json!({ "user": meta.set_user_role(&name, role).await? }))
        }
        UserCommand::Passwd { name, store } => {
            let meta = audited(home, file, &store, "users.update", format!("user:{name}")).await?;
            let hash = hash_password(read_password()?).await?;
            meta.set_user_password(&name, Some(&hash)).await?;
            print_json(&json!({ "user": meta.get_user(&name).await? }))
        }
        UserCommand::Disable { name, store } => {
            let meta = audited(home, file, &store, "users.update", format!("user:{name}")).await?;
            print_json(&json!({ "user": meta.set_user_disabled(&name, true).await? }))
        }
        UserCommand::Enable { name, store } => {
            let meta = audited(home, file, &store, "users.update", format!("user:{name}")).await?;
            print_json(&json!({ "user": meta.set_user_disabled(&name, false).await? }))
        }
        UserCommand::Delete { name, store } => {
            let meta = audited(home, file, &store, "users.delete", format!("user:{name}")).await?;
            meta.delete_user(&name).await?;
            print_json(&json!({ "deleted": name }))
        }
    }
}

pub async fn token(home: &Path, file: &FileConfig, cmd: TokenCommand) -> Result<()> {
    match cmd {
        TokenCommand::Create {
            user,
            description,
            expires_in_days,
            store,
        } => {
            let meta = audited(home, file, &store, "tokens.create", format!("user:{user}")).await?;
            let expires = expires_in_days.map(|d| time::now_ms() + i64::from(d) * 86_400_000);
            let (secret, info) = meta.issue_token(&user, &description, expires).await?;
            print_json(&json!({ "token": secret, "info": info }))
        }
        TokenCommand::List { user, store } => {
            let meta = open_store(home, file, &store).await?;
            print_json(&json!({ "tokens": meta.list_tokens(user.as_deref()).await? }))
        }
        TokenCommand::Revoke { token_id, store } => {
            let meta = audited(
                home,
                file,
                &store,
                "tokens.revoke",
                format!("token:{token_id}"),
            )
            .await?;
            print_json(&json!({ "token": meta.revoke_token(&token_id).await? }))
        }
    }
}

pub async fn grant(home: &Path, file: &FileConfig, cmd: GrantCommand) -> Result<()> {
    match cmd {
        GrantCommand::Set {
            principal,
            kind,
            resource,
            permission,
            store,
        } => {
            let meta = audited(
                home,
                file,
                &store,
                "grants.set",
                format!("{kind}:{resource}"),
            )
            .await?;
            print_json(
                &json!({ "grant": meta.set_grant(&principal, kind, &resource, permission).await? }),
            )
        }
        GrantCommand::List { principal, store } => {
            let meta = open_store(home, file, &store).await?;
            print_json(&json!({ "grants": meta.list_grants(principal.as_deref()).await? }))
        }
        GrantCommand::Revoke {
            principal,
            kind,
            resource,
            store,
        } => {
            let meta = audited(
                home,
                file,
                &store,
                "grants.delete",
                format!("{kind}:{resource}"),
            )
            .await?;
            meta.delete_grant(&principal, kind, &resource).await?;
            print_json(
                &json!({ "revoked": { "principal": principal, "resource_kind": kind, "resource": resource } }),
            )
        }
    }
}
