//! `bastion data … --server URL --token T` against a running `bastion server`: the same
//! commands, the same results as on a local home (the same content digests), downloads
//! checked against their digest, and refusals reported with the server's message.

use std::path::Path;
use std::process::Output;

mod common;

use common::{bastion, json_of};

use serde_json::Value;

struct Server {
    running: Option<common::Running>,
    url: String,
    token: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(r) = self.running.take() {
            r.stop();
        }
    }
}

/// Starts `bastion server` on a fresh home and reads its bootstrap admin token.
fn start(home: &Path) -> Server {
    let r = common::start_server(home, &[]);
    let token = r
        .stdout
        .split_whitespace()
        .find(|w| w.starts_with("bst_"))
        .expect("a bootstrap token")
        .to_owned();
    Server {
        url: r.url.clone(),
        running: Some(r),
        token,
    }
}

fn remote(s: &Server, client_home: &Path, args: &[&str]) -> Output {
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--server", &s.url, "--token", &s.token]);
    bastion(client_home, &all)
}

fn csv(n: usize, shift: f64) -> String {
    let mut s = String::from("id,score,city,email,label\n");
    for i in 0..n {
        let score = (i % 97) as f64 + shift;
        let city = ["oslo", "bergen", "tromso"][i % 3];
        s.push_str(&format!("{i},{score},{city},p{i}@example.org,{}\n", i % 2));
    }
    s
}

#[test]
fn remote_commands_match_the_local_ones() {
    let server_home = tempfile::tempdir().unwrap();
    let client_home = tempfile::tempdir().unwrap();
    let local_home = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("people.csv");
    std::fs::write(&file, csv(300, 0.0)).unwrap();
    let file = file.to_str().unwrap();
    let s = start(server_home.path());
    let ch = client_home.path();

    let added = json_of(&remote(&s, ch, &["data", "add", file, "--name", "people"]));
    assert_eq!(added["dataset"], "people@v1");
    assert_eq!(added["pii_columns"], 1);
    // A local ingest of the same file gives the same content digest.
    let local = json_of(&bastion(
        local_home.path(),
        &["data", "add", file, "--name", "people"],
    ));
    assert_eq!(added["version"]["digest"], local["version"]["digest"]);
    assert_eq!(
        added["version"]["source_digest"],
        local["version"]["source_digest"]
    );
    // The client home stays empty: everything went to the server.
    let none = json_of(&bastion(ch, &["data", "list"]));
    assert_eq!(none, Value::Array(vec![]));

    // A folder, as multipart.
    let dir = work.path().join("parts");
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::write(dir.join("a.csv"), csv(40, 0.0)).unwrap();
    std::fs::write(dir.join("sub/b.csv"), csv(60, 30.0)).unwrap();
    let folder = json_of(&remote(
        &s,
        ch,
        &["data", "add", dir.to_str().unwrap(), "--name", "people"],
    ));
    assert_eq!(folder["dataset"], "people@v2");
    assert_eq!(folder["version"]["rows"], 100);
    assert_eq!(folder["version"]["parent_version"], 1);

    let list = json_of(&remote(&s, ch, &["data", "list", "people"]));
    assert_eq!(list.as_array().unwrap().len(), 2);
    let shown = json_of(&remote(&s, ch, &["data", "show", "people@v1"]));
    assert!(shown["evidence"].to_string().contains("data.profile"));

    // get: digest-verified download.
    let out = work.path().join("v1.parquet");
    let got = json_of(&remote(
        &s,
        ch,
        &["data", "get", "people@v1", "-o", out.to_str().unwrap()],
    ));
    assert_eq!(got["dataset"], "people@v1");
    assert_eq!(got["digest"], added["version"]["digest"]);
    assert!(std::fs::read(&out).unwrap().starts_with(b"PAR1"));

    // profile (HTML), suggest, validate (exit 0 then 1), pii with a redacted copy, poison, diff.
    let html = work.path().join("p.html");
    let o = remote(
        &s,
        ch,
        &[
            "data",
            "profile",
            "people",
            "--format",
            "html",
            "-o",
            html.to_str().unwrap(),
        ],
    );
    assert!(o.status.success());
    assert!(std::fs::read_to_string(&html).unwrap().contains("<svg"));
    let suggested = work.path().join("c.toml");
    let o = remote(
        &s,
        ch,
        &[
            "data",
            "suggest",
            "people@v1",
            "-o",
            suggested.to_str().unwrap(),
        ],
    );
    assert!(o.status.success());
    let o = remote(
        &s,
        ch,
        &[
            "data",
            "validate",
            "people@v1",
            "-c",
            suggested.to_str().unwrap(),
        ],
    );
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let strict = work.path().join("strict.toml");
    std::fs::write(&strict, "[columns.score]\nmax = 50\n").unwrap();
    let o = remote(
        &s,
        ch,
        &[
            "data",
            "validate",
            "people@v1",
            "-c",
            strict.to_str().unwrap(),
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("FAILED columns.score"));
    let bad = work.path().join("bad.toml");
    std::fs::write(&bad, "[columns.score]\nmaximum = 50\n").unwrap();
    let o = remote(
        &s,
        ch,
        &["data", "validate", "people@v1", "-c", bad.to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("maximum"));

    let red = work.path().join("red.parquet");
    let pii = json_of(&remote(
        &s,
        ch,
        &[
            "data",
            "pii",
            "people@v1",
            "--redact",
            "hash",
            "-o",
            red.to_str().unwrap(),
        ],
    ));
    assert_eq!(pii["report"]["pii_columns"], 1);
    assert_eq!(pii["redacted"]["values_changed"], 300);
    let bytes = std::fs::read(&red).unwrap();
    assert!(bytes.starts_with(b"PAR1"));
    assert!(!bytes.windows(12).any(|w| w == b"@example.org"));

    let poison = json_of(&remote(
        &s,
        ch,
        &["data", "poison", "people@v2", "--label", "label"],
    ));
    assert_eq!(poison["class_balance"]["reference"], "people@v1");
    let diff = json_of(&remote(&s, ch, &["data", "diff", "people@v1", "people@v2"]));
    assert_eq!(diff["current"], "people@v2");
    assert!(diff["diff"]["drift"]["columns"].as_array().unwrap().len() >= 2);

    // Refusals carry the server's message; a command that could not run exits 2.
    let o = bastion(
        ch,
        &["data", "list", "--server", &s.url, "--token", "bst_wrong"],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("UNAUTHENTICATED"));
    let o = remote(&s, ch, &["data", "show", "people@v9"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("people"));
    let o = bastion(ch, &["data", "list", "--server", "ftp://x"]);
    assert_eq!(o.status.code(), Some(2));
}
