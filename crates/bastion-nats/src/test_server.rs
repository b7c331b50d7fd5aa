//! A `nats-server` with JetStream for tests (feature `test-server`): the one CI started
//! (`BASTION_TEST_NATS_URL`), or a throwaway one. Each handle has a stream of its own, so
//! tests sharing a server do not see each other's events.

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::NatsSettings;

pub struct NatsServer {
    pub url: String,
    stream: String,
    child: Option<Child>,
    _dir: Option<tempfile::TempDir>,
}

impl NatsServer {
    /// Settings for this handle's own stream, on its server.
    pub fn settings(&self) -> NatsSettings {
        NatsSettings {
            stream: self.stream.clone(),
            subject: format!("bastion.{}", self.stream.to_lowercase()),
            ..NatsSettings::new(&self.url)
        }
    }

    /// The server at `BASTION_TEST_NATS_URL`, or `nats-server` (from `PATH`) started on a
    /// free loopback port. `None` when neither is there, unless
    /// `BASTION_TEST_REQUIRE_BACKENDS` is set: then CI must not skip.
    pub fn start() -> Option<Self> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let stream = format!(
            "TEST_{}_{}_{nanos}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        if let Ok(url) = std::env::var("BASTION_TEST_NATS_URL") {
            return Some(Self {
                url,
                stream,
                child: None,
                _dir: None,
            });
        }
        Self::spawn(stream)
    }

    fn spawn(stream: String) -> Option<Self> {
        let installed = Command::new("nats-server")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !installed {
            assert!(
                std::env::var_os("BASTION_TEST_REQUIRE_BACKENDS").is_none(),
                "BASTION_TEST_REQUIRE_BACKENDS is set but nats-server is not installed"
            );
            eprintln!("nats-server is not installed: NATS tests skipped");
            return None;
        }
        let dir = tempfile::tempdir().ok()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .ok()?
            .port();
        let child = Command::new("nats-server")
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "nats-server did not start on port {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(Self {
            url: format!("nats://127.0.0.1:{port}"),
            stream,
            child: Some(child),
            _dir: Some(dir),
        })
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
