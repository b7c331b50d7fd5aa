//! Running `bastion` for the CLI tests, and starting `bastion server` on a free loopback
//! port.
#![allow(dead_code)] // each test binary uses part of it

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// `bastion --home HOME ARGS…`, isolated from the caller's Bastion and MLflow settings.
pub fn bastion(home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bastion"))
        .arg("--home")
        .arg(home)
        .args(args)
        .env_remove("BASTION_BACKEND_STORE_URI")
        .env_remove("BASTION_SERVER")
        .env_remove("BASTION_TOKEN")
        .env_remove("MLFLOW_TRACKING_TOKEN")
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap()
}

pub struct Running {
    child: Child,
    pub url: String,
    /// What the server printed on stdout up to its "listening" line.
    pub stdout: String,
    stderr: Arc<Mutex<String>>,
}

impl Running {
    /// Stops the server and returns everything it wrote to stderr.
    pub fn stop(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::thread::sleep(Duration::from_millis(100));
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

/// Starts the server on `home` and waits for it to listen. Both of its pipes keep being
/// drained, so it never blocks writing logs.
pub fn start_server(home: &Path, extra: &[&str]) -> Running {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .to_string();
    let mut child = Command::new(env!("CARGO_BIN_EXE_bastion"))
        .arg("--home")
        .arg(home)
        .args(["server", "--port", &port])
        .args(extra)
        .env_remove("BASTION_BACKEND_STORE_URI")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = Arc::new(Mutex::new(String::new()));
    let (err, sink) = (child.stderr.take().unwrap(), stderr.clone());
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines() {
            let Ok(line) = line else { break };
            if let Ok(mut s) = sink.lock() {
                s.push_str(&line);
                s.push('\n');
            }
        }
    });
    let out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut seen = String::new();
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            seen.push_str(&line);
            seen.push('\n');
            if line.contains("listening") {
                let _ = tx.send(seen.clone());
            }
        }
    });
    let stdout = rx.recv_timeout(Duration::from_secs(60)).unwrap_or_default();
    Running {
        child,
        url: format!("http://127.0.0.1:{port}"),
        stdout,
        stderr,
    }
}

/// A command's stdout as JSON, after asserting it succeeded.
pub fn json_of(out: &std::process::Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}
