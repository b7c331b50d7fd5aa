//! The `bastion` binary takes its settings from a TOML file and environment variables, with
//! flags on top; a bad file is a clear error, not a crash.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn toml_then_env_then_flags() {
    let home = tempfile::tempdir().unwrap();
    let (file_port, env_port) = (free_port(), free_port());
    let config = home.path().join("custom.toml");
    std::fs::write(
        &config,
        format!("[server]\nport = {file_port}\nsqlite_synchronous = \"full\"\n"),
    )
    .unwrap();

    // The file's port is used...
    let mut child = Command::new(env!("CARGO_BIN_EXE_bastion"))
        .args(["--config", config.to_str().unwrap(), "server"])
        .env("BASTION_HOME", home.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let line = first_line(&mut child);
    assert!(line.contains(&format!("127.0.0.1:{file_port}")), "{line}");
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        home.path().join("bastion.db").exists(),
        "the database lives in BASTION_HOME"
    );

    // ...unless the environment says otherwise.
    let mut child = Command::new(env!("CARGO_BIN_EXE_bastion"))
        .args(["--config", config.to_str().unwrap(), "server"])
        .env("BASTION_HOME", home.path())
        .env("BASTION_PORT", env_port.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let line = first_line(&mut child);
    assert!(line.contains(&format!("127.0.0.1:{env_port}")), "{line}");
    child.kill().unwrap();
    child.wait().unwrap();
}

/// The "listening on" line (a first start prints the bootstrap token before it).
fn first_line(child: &mut std::process::Child) -> String {
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        loop {
            let mut line = String::new();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) if line.contains("listening") => {
                    let _ = tx.send(line);
                    break;
                }
                Ok(_) => {}
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(60)).unwrap_or_default()
}

#[test]
fn bad_configuration_is_a_clear_error() {
    let home = tempfile::tempdir().unwrap();
    let config = home.path().join("bad.toml");
    std::fs::write(&config, "[server]\nprot = 5000\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_bastion"))
        .args([
            "--home",
            home.path().to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
            "server",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("invalid configuration file") && err.contains("prot"),
        "{err}"
    );

    let out = Command::new(env!("CARGO_BIN_EXE_bastion"))
        .args([
            "--home",
            home.path().to_str().unwrap(),
            "server",
            "--backend-store-uri",
            "mysql://u:secret@h/db",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unsupported backend store URI"), "{err}");
    assert!(!err.contains("secret"), "passwords are redacted: {err}");
}

#[test]
fn tls_flags_serve_https_and_bad_tls_files_fail_before_anything_is_created() {
    let home = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let (cert_path, key_path) = (home.path().join("c.pem"), home.path().join("k.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();

    let missing = home.path().join("missing-ca.pem");
    let out = Command::new(env!("CARGO_BIN_EXE_bastion"))
        .args(["--home", home.path().to_str().unwrap(), "server"])
        .args(["--tls-cert", cert_path.to_str().unwrap()])
        .args(["--tls-key", key_path.to_str().unwrap()])
        .args(["--tls-client-ca", missing.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("client CA") && err.contains("missing-ca.pem"),
        "{err}"
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("Created user"));
    assert!(!home.path().join("bastion.db").exists());

    let out = Command::new(env!("CARGO_BIN_EXE_bastion"))
        .args(["--home", home.path().to_str().unwrap(), "server"])
        .args(["--tls-cert", cert_path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success(), "a certificate without its key");

    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_bastion"))
        .args(["--home", home.path().to_str().unwrap(), "server"])
        .args(["--port", &port.to_string()])
        .args(["--tls-cert", cert_path.to_str().unwrap()])
        .args(["--tls-key", key_path.to_str().unwrap()])
        .args(["--tls-client-ca", cert_path.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let line = first_line(&mut child);
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        line.contains(&format!(
            "https://127.0.0.1:{port} (client certificates accepted)"
        )),
        "{line}"
    );
}
