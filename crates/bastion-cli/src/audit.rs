//! `bastion audit`: read the log, verify all of it, and produce or check proofs. Proof files
//! are checked with nothing but the public key (`audit check`), so an auditor needs neither
//! the database nor the server.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use bastion_audit::proof::{ConsistencyBundle, InclusionBundle};
use bastion_store::keys::{AUDIT_PUBLIC_KEY_FILE, load_or_create_audit_key, read_public_key};
use bastion_store::meta::AuditQuery;
use clap::Subcommand;
use serde_json::{Value, json};

use crate::config::FileConfig;
use crate::{StoreArgs, open_store, print_json};

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Print entries as JSON lines, oldest first.
    Log {
        #[arg(long)]
        actor: Option<String>,
        #[arg(long)]
        resource: Option<String>,
        /// Only entries at or after this time (milliseconds since the epoch).
        #[arg(long)]
        since_ms: Option<i64>,
        #[arg(long)]
        until_ms: Option<i64>,
        #[arg(long)]
        after_seq: Option<u64>,
        #[arg(long, default_value_t = 1000)]
        limit: i64,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Recompute every hash, the chain and every signed tree head; name the first bad entry.
    Verify {
        /// Public key (hex); default: the one in the Bastion home.
        #[arg(long)]
        public_key: Option<PathBuf>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Sign a tree head over the log as it is now.
    Sign {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List the signed tree heads.
    Heads {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// An inclusion proof for entry SEQ (signing a new tree head first if none covers it).
    Prove {
        seq: u64,
        /// Write the proof here instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// A consistency proof between the signed tree heads of sizes FROM and TO.
    Consistency {
        from: u64,
        to: u64,
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Check a proof file offline with only the public key.
    Check {
        proof: PathBuf,
        #[arg(long)]
        public_key: PathBuf,
    },
}

fn emit(v: &Value, out: Option<&Path>) -> Result<()> {
    match out {
        Some(path) => std::fs::write(path, serde_json::to_string_pretty(v)?)
            .with_context(|| format!("writing {}", path.display())),
        None => print_json(v),
    }
}

pub async fn run(home: &Path, file: &FileConfig, cmd: AuditCommand) -> Result<()> {
    match cmd {
        AuditCommand::Log {
            actor,
            resource,
            since_ms,
            until_ms,
            after_seq,
            limit,
            store,
        } => {
            if !(1..=1_000_000).contains(&limit) {
                bail!("--limit must be between 1 and 1000000");
            }
            let meta = open_store(home, file, &store).await?;
            let entries = meta
                .audit_entries(&AuditQuery {
                    actor,
                    resource,
                    since_ms,
                    until_ms,
                    after_seq,
                    limit,
                })
                .await?;
            for e in entries {
                println!("{}", serde_json::to_string(&e)?);
            }
            Ok(())
        }
        AuditCommand::Verify { public_key, store } => {
            let key_path = public_key.unwrap_or_else(|| home.join(AUDIT_PUBLIC_KEY_FILE));
            let key = read_public_key(&key_path)
                .with_context(|| format!("reading the audit public key {}", key_path.display()))?;
            let meta = open_store(home, file, &store).await?;
            let started = std::time::Instant::now();
            match meta.verify_audit(&key).await? {
                Ok(report) => {
                    let secs = started.elapsed().as_secs_f64();
                    print_json(&json!({
                        "ok": true,
                        "report": report,
                        "seconds": secs,
                        "entries_per_second": if secs > 0.0 { report.entries as f64 / secs } else { 0.0 },
                    }))
                }
                Err(t) => {
                    print_json(
                        &json!({ "ok": false, "first_bad_seq": t.first_bad_seq(), "problem": t.to_string() }),
                    )?;
                    bail!(
                        "the audit log has been tampered with: first bad entry is {} ({t})",
                        t.first_bad_seq()
                    )
                }
            }
        }
        AuditCommand::Sign { store } => {
            let key = load_or_create_audit_key(home)?;
            let meta = open_store(home, file, &store).await?;
            print_json(&json!({ "tree_head": meta.sign_audit_head(&key).await? }))
        }
        AuditCommand::Heads { store } => {
            let meta = open_store(home, file, &store).await?;
            print_json(&json!({ "tree_heads": meta.audit_tree_heads().await? }))
        }
        AuditCommand::Prove { seq, out, store } => {
            let meta = open_store(home, file, &store).await?;
            let covered = meta
                .audit_tree_heads()
                .await?
                .iter()
                .any(|h| h.head.size > seq);
            if !covered {
                let key = load_or_create_audit_key(home)?;
                meta.sign_audit_head(&key).await?;
            }
            let (entry, head, proof) = meta.audit_inclusion_proof(seq).await?;
            emit(
                &serde_json::to_value(InclusionBundle::new(entry, head, proof))?,
                out.as_deref(),
            )
        }
        AuditCommand::Consistency {
            from,
            to,
            out,
            store,
        } => {
            let meta = open_store(home, file, &store).await?;
            let (a, b, proof) = meta.audit_consistency_proof(from, to).await?;
            emit(
                &serde_json::to_value(ConsistencyBundle::new(a, b, proof))?,
                out.as_deref(),
            )
        }
        AuditCommand::Check { proof, public_key } => {
            let key = read_public_key(&public_key)?;
            let text = std::fs::read_to_string(&proof)
                .with_context(|| format!("reading {}", proof.display()))?;
            let v: Value = serde_json::from_str(&text).context("the proof is not JSON")?;
            let result = if v.get("entry").is_some() {
                let b: InclusionBundle =
                    serde_json::from_value(v).context("not an inclusion proof")?;
                b.verify(&key).map(|()| json!({ "ok": true, "kind": "inclusion", "seq": b.entry.seq, "tree_size": b.tree_head.head.size }))
            } else {
                let b: ConsistencyBundle =
                    serde_json::from_value(v).context("not a consistency proof")?;
                b.verify(&key).map(|()| json!({ "ok": true, "kind": "consistency", "from": b.old.head.size, "to": b.new.head.size }))
            };
            match result {
                Ok(v) => print_json(&v),
                Err(e) => {
                    print_json(&json!({ "ok": false, "problem": e.to_string() }))?;
                    bail!("proof rejected: {e}")
                }
            }
        }
    }
}
