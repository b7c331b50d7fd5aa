//! Keras models: the model configuration (JSON in `config.json` of a `.keras` archive, or an
//! attribute of a legacy HDF5 file). Lambda layers carry marshalled Python bytecode; other
//! objects name a module Keras imports while deserializing.

use std::io::{BufRead, Read};

use serde_json::Value;

use super::Found;
use crate::finding::Severity;
use crate::policy::{Policy, Verdict};

/// Largest configuration parsed.
const MAX_CONFIG: usize = 64 << 20;
/// Where a configuration may start inside an HDF5 file.
const STARTS: [&[u8]; 2] = [b"{\"class_name\"", b"{\"module\""];

/// Modules whose objects Keras deserializes as its own.
fn keras_module(m: &str) -> bool {
    ["keras", "tensorflow", "tf_keras"]
        .iter()
        .any(|k| m == *k || m.starts_with(&format!("{k}.")))
        || m == "builtins"
}

pub fn looks_like_config(head: &[u8]) -> bool {
    let text = String::from_utf8_lossy(head);
    let t = text.trim_start();
    t.starts_with('{')
        && t.contains("\"class_name\"")
        && (t.contains("\"config\"") || t.contains("\"layers\""))
}

fn walk(v: &Value, policy: &Policy, location: &str, found: &mut Found, depth: u32) {
    if depth > 256 {
        return;
    }
    match v {
        Value::Object(m) => {
            let class = m.get("class_name").and_then(Value::as_str);
            let name = m
                .get("config")
                .and_then(|c| c.get("name"))
                .and_then(Value::as_str)
                .unwrap_or("?");
            if class == Some("Lambda")
                || class == Some("__lambda__")
                || m.get("function_type").and_then(Value::as_str) == Some("lambda")
            {
                found.finding(
                    Severity::Critical,
                    "keras.lambda-layer",
                    format!("Lambda layer '{name}' holds Python bytecode that runs when the model is loaded or called"),
                    location,
                    Some(name.to_owned()),
                );
            }
            if let (Some(module), Some(class)) = (m.get("module").and_then(Value::as_str), class)
                && !keras_module(module)
                && let Verdict::Flagged { severity, reason } = policy.classify(module, class)
            {
                found.finding(
                    severity,
                    "keras.custom-object",
                    format!("the configuration makes Keras import {module}.{class}: {reason}"),
                    location,
                    Some(format!("{module}.{class}")),
                );
            }
            for child in m.values() {
                walk(child, policy, location, found, depth + 1);
            }
        }
        Value::Array(items) => {
            for child in items {
                walk(child, policy, location, found, depth + 1);
            }
        }
        _ => {}
    }
}

fn analyze(json: &[u8], policy: &Policy, location: &str, found: &mut Found) -> bool {
    match serde_json::from_slice::<Value>(json) {
        Ok(v) => {
            walk(&v, policy, location, found, 0);
            true
        }
        Err(_) => false,
    }
}

/// A `.keras` `config.json` (or any Keras JSON configuration).
pub fn scan_config<R: BufRead>(r: R, policy: &Policy, location: &str) -> Found {
    let mut found = Found::default();
    let mut json = Vec::new();
    match r.take(MAX_CONFIG as u64 + 1).read_to_end(&mut json) {
        Ok(n) if n > MAX_CONFIG => {
            found.error(location, "the model configuration is too large to scan")
        }
        Ok(_) => {
            if !analyze(&json, policy, location, &mut found) {
                found.error(location, "the model configuration is not valid JSON");
            }
        }
        Err(e) => found.error(location, format!("read failed: {e}")),
    }
    found
}

/// A legacy HDF5 Keras model: every JSON configuration stored in it (attributes are stored
/// uncompressed, so the JSON text is in the file as written).
pub fn scan_hdf5<R: BufRead>(mut r: R, policy: &Policy, location: &str) -> Found {
    let mut found = Found::default();
    // How much of each start pattern the last bytes match ('{' occurs only at their start,
    // so a mismatch restarts at 0 or 1).
    let mut progress = [0usize; STARTS.len()];
    let mut capture: Option<Capture> = None;
    loop {
        let buf = match r.fill_buf() {
            Ok(b) => b,
            Err(e) => {
                found.error(location, format!("read failed: {e}"));
                return found;
            }
        };
        if buf.is_empty() {
            break;
        }
        let n = buf.len();
        for &b in buf {
            if let Some(c) = &mut capture {
                match c.push(b) {
                    Step::More => continue,
                    Step::Done => {
                        let c = capture.take();
                        if let Some(c) = c {
                            analyze(&c.text, policy, location, &mut found);
                        }
                    }
                    Step::Abandon => capture = None,
                }
                continue;
            }
            for (k, start) in progress.iter_mut().zip(STARTS) {
                *k = if start[*k] == b {
                    *k + 1
                } else {
                    usize::from(b == b'{')
                };
                if *k == start.len() {
                    *k = 0;
                    capture = Some(Capture::new(start));
                }
            }
            if capture.is_some() {
                progress = [0; STARTS.len()];
            }
        }
        r.consume(n);
    }
    found
}

enum Step {
    More,
    Done,
    Abandon,
}

/// Collects a JSON object up to its matching closing brace.
struct Capture {
    text: Vec<u8>,
    depth: u32,
    in_string: bool,
    escaped: bool,
}

impl Capture {
    fn new(start: &[u8]) -> Self {
        Self {
            text: start.to_vec(),
            depth: 1,
            in_string: false,
            escaped: false,
        }
    }

    fn push(&mut self, b: u8) -> Step {
        if self.text.len() >= MAX_CONFIG || b == 0 {
            return Step::Abandon;
        }
        self.text.push(b);
        if self.in_string {
            if self.escaped {
                self.escaped = false;
            } else if b == b'\\' {
                self.escaped = true;
            } else if b == b'"' {
                self.in_string = false;
            }
            return Step::More;
        }
        match b {
            b'"' => self.in_string = true,
            b'{' | b'[' => self.depth += 1,
            b'}' | b']' => {
                self.depth -= 1;
                if self.depth == 0 {
                    return Step::Done;
                }
            }
            _ => {}
        }
        Step::More
    }
}
