//! The administrative commands end to end: the bootstrap token (printed once), `--insecure`'s
//! warning, `bastion user/token/grant`, and `bastion audit` log / sign / prove / check /
//! consistency / verify — including verify naming the first entry edited behind its back.

use std::path::Path;

mod common;

use common::{bastion, json_of};

use serde_json::Value;
use sqlx::Connection;

/// Starts the server, collects stdout up to the "listening" line, stops it; returns
/// (stdout, stderr).
fn start_and_stop(home: &Path, extra: &[&str]) -> (String, String) {
    let r = common::start_server(home, extra);
    let out = r.stdout.clone();
    (out, r.stop())
}

#[test]
fn bootstrap_token_is_printed_once_and_insecure_warns() {
    let home = tempfile::tempdir().unwrap();
    let (first, _) = start_and_stop(home.path(), &[]);
    assert!(first.contains("bst_"), "no bootstrap token: {first}");
    let (second, _) = start_and_stop(home.path(), &[]);
    assert!(!second.contains("bst_"), "token printed twice: {second}");
    assert!(second.contains("listening"));
    let (_, err) = start_and_stop(home.path(), &["--insecure"]);
    assert!(err.contains("AUTHENTICATION IS OFF"), "{err}");
    // The bootstrap user and token are in the store, hashed.
    let tokens = json_of(&bastion(home.path(), &["token", "list"]));
    let listed = tokens["tokens"].to_string();
    assert!(
        listed.contains("bootstrap token") && !listed.contains("bst_"),
        "{listed}"
    );
}

#[test]
fn identity_commands_and_audit_proofs() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let u = json_of(&bastion(
        h,
        &["user", "create", "ada", "--role", "data-scientist"],
    ));
    assert_eq!(u["user"]["role"], "data-scientist");
    let bad = bastion(h, &["user", "create", "bo", "--role", "root"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown role"));
    let dup = bastion(h, &["user", "create", "ada", "--role", "viewer"]);
    assert!(!dup.status.success());
    assert!(String::from_utf8_lossy(&dup.stderr).contains("already exists"));

    let t = json_of(&bastion(
        h,
        &[
            "token",
            "create",
            "--user",
            "ada",
            "--description",
            "ci",
            "--expires-in-days",
            "7",
        ],
    ));
    let token_id = t["info"]["token_id"].as_str().unwrap().to_owned();
    assert!(t["token"].as_str().unwrap().starts_with("bst_"));
    assert!(t["info"]["expires_time"].is_i64());
    let r = json_of(&bastion(h, &["token", "revoke", &token_id]));
    assert!(r["token"]["revoked_time"].is_i64());
    let g = json_of(&bastion(
        h,
        &["grant", "set", "user:ada", "experiment", "7", "MANAGE"],
    ));
    assert_eq!(g["grant"]["permission"], "MANAGE");
    let l = json_of(&bastion(h, &["grant", "list", "--principal", "user:ada"]));
    assert_eq!(l["grants"].as_array().unwrap().len(), 1);
    json_of(&bastion(h, &["user", "set-role", "ada", "viewer"]));
    json_of(&bastion(h, &["user", "disable", "ada"]));

    // Every change above is in the log, attributed to the local operator.
    let log = bastion(h, &["audit", "log"]);
    assert!(log.status.success());
    let entries: Vec<Value> = String::from_utf8_lossy(&log.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let actions: Vec<&str> = entries
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "users.create",
            "tokens.create",
            "tokens.revoke",
            "grants.set",
            "users.update",
            "users.update"
        ]
    );
    assert!(
        entries
            .iter()
            .all(|e| e["actor"].as_str().unwrap().starts_with("cli:"))
    );
    let filtered = bastion(h, &["audit", "log", "--resource", "user:ada"]);
    assert_eq!(String::from_utf8_lossy(&filtered.stdout).lines().count(), 4);

    // Proofs, checked offline with only the public key.
    let public = h.join("audit-ed25519.pub");
    let proof = h.join("proof.json");
    let first_head = json_of(&bastion(h, &["audit", "sign"]));
    assert_eq!(first_head["tree_head"]["size"], 6);
    assert!(
        bastion(
            h,
            &["audit", "prove", "3", "--out", proof.to_str().unwrap()]
        )
        .status
        .success()
    );
    let checked = json_of(&bastion(
        h,
        &[
            "audit",
            "check",
            proof.to_str().unwrap(),
            "--public-key",
            public.to_str().unwrap(),
        ],
    ));
    assert_eq!(checked["kind"], "inclusion");
    // An edited proof is rejected.
    let mut bundle: Value =
        serde_json::from_str(&std::fs::read_to_string(&proof).unwrap()).unwrap();
    bundle["entry"]["actor"] = "cli:mallory".into();
    std::fs::write(&proof, bundle.to_string()).unwrap();
    let rejected = bastion(
        h,
        &[
            "audit",
            "check",
            proof.to_str().unwrap(),
            "--public-key",
            public.to_str().unwrap(),
        ],
    );
    assert!(!rejected.status.success());

    json_of(&bastion(h, &["user", "enable", "ada"]));
    json_of(&bastion(h, &["audit", "sign"]));
    let cons = h.join("consistency.json");
    assert!(
        bastion(
            h,
            &[
                "audit",
                "consistency",
                "6",
                "7",
                "--out",
                cons.to_str().unwrap()
            ]
        )
        .status
        .success()
    );
    let checked = json_of(&bastion(
        h,
        &[
            "audit",
            "check",
            cons.to_str().unwrap(),
            "--public-key",
            public.to_str().unwrap(),
        ],
    ));
    assert_eq!(checked["kind"], "consistency");

    let ok = json_of(&bastion(h, &["audit", "verify"]));
    assert_eq!(ok["ok"], true);
    assert_eq!(ok["report"]["entries"], 7);

    // Edit entry 2 behind Bastion's back: verify fails and names it.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        sqlx::any::install_default_drivers();
        let url = format!("sqlite://{}", h.join("bastion.db").display());
        let mut conn = sqlx::AnyConnection::connect(&url).await.unwrap();
        sqlx::query("UPDATE audit_log SET actor = 'cli:someone-else' WHERE seq = 2")
            .execute(&mut conn)
            .await
            .unwrap();
    });
    let bad = bastion(h, &["audit", "verify"]);
    assert!(!bad.status.success());
    let report: Value = serde_json::from_slice(&bad.stdout).unwrap();
    assert_eq!(report["ok"], false);
    assert_eq!(report["first_bad_seq"], 2);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("first bad entry is 2"));
}
