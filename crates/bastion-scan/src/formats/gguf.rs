//! GGUF (llama.cpp models): header sanity, and chat templates — Jinja templates rendered by
//! the serving stack — that reach for Python internals (server-side template injection).

use std::io::{BufRead, Read};

use super::Found;
use crate::finding::Severity;

const MAX_COUNT: u64 = 1 << 24;
const MAX_STRING: u64 = 16 << 20;
const MAX_ARRAY: u64 = 1 << 26;

/// Template fragments that only an exploit needs: object internals, module access, the
/// classic Jinja sandbox escapes.
const TEMPLATE_GADGETS: &[&str] = &[
    "__class__",
    "__globals__",
    "__subclasses__",
    "__builtins__",
    "__import__",
    "__mro__",
    "__base__",
    "__init__",
    "__getattribute__",
    "__dict__",
    "__code__",
    "popen",
    "os.system",
    "subprocess",
    "eval(",
    "exec(",
    "import os",
    "lipsum",
    "cycler",
    "joiner",
    "self._TemplateReference",
    "request.application",
    "config.from",
];

struct Reader<R> {
    r: R,
}

impl<R: Read> Reader<R> {
    fn bytes<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let mut b = [0u8; N];
        self.r
            .read_exact(&mut b)
            .map_err(|e| format!("truncated header: {e}"))?;
        Ok(b)
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.bytes()?))
    }
    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.bytes()?))
    }
    fn count(&mut self, v1: bool) -> Result<u64, String> {
        if v1 {
            self.u32().map(u64::from)
        } else {
            self.u64()
        }
    }
    fn string(&mut self, v1: bool) -> Result<String, String> {
        let n = self.count(v1)?;
        if n > MAX_STRING {
            return Err(format!("a string of {n} bytes"));
        }
        let mut s = Vec::new();
        (&mut self.r)
            .take(n)
            .read_to_end(&mut s)
            .map_err(|e| e.to_string())?;
        if (s.len() as u64) < n {
            return Err("truncated string".into());
        }
        Ok(String::from_utf8_lossy(&s).into_owned())
    }
    fn skip(&mut self, n: u64) -> Result<(), String> {
        let copied = std::io::copy(&mut (&mut self.r).take(n), &mut std::io::sink())
            .map_err(|e| e.to_string())?;
        if copied < n {
            Err("truncated value".into())
        } else {
            Ok(())
        }
    }
    /// Reads a value of type `t`; returns it when it is a string.
    fn value(&mut self, t: u32, v1: bool, depth: u32) -> Result<Option<String>, String> {
        match t {
            0 | 1 | 7 => self.skip(1)?,
            2 | 3 => self.skip(2)?,
            4..=6 => self.skip(4)?,
            10..=12 => self.skip(8)?,
            8 => return self.string(v1).map(Some),
            9 => {
                if depth > 2 {
                    return Err("arrays nested too deep".into());
                }
                let inner = self.u32()?;
                let n = self.count(v1)?;
                if n > MAX_ARRAY {
                    return Err(format!("an array of {n} values"));
                }
                for _ in 0..n {
                    self.value(inner, v1, depth + 1)?;
                }
            }
            other => return Err(format!("unknown value type {other}")),
        }
        Ok(None)
    }
}

pub fn scan<R: BufRead>(r: R, location: &str) -> Found {
    let mut found = Found::default();
    let mut rd = Reader { r };
    let result = (|| -> Result<(), String> {
        let _magic: [u8; 4] = rd.bytes()?;
        let version = rd.u32()?;
        if !(1..=3).contains(&version) {
            return Err(format!("unknown GGUF version {version}"));
        }
        let v1 = version == 1;
        let tensors = rd.count(v1)?;
        let kvs = rd.count(v1)?;
        if tensors > MAX_COUNT || kvs > MAX_COUNT {
            return Err(format!(
                "implausible counts: {tensors} tensors, {kvs} metadata keys"
            ));
        }
        for _ in 0..kvs {
            let key = rd.string(v1)?;
            let t = rd.u32()?;
            if let Some(text) = rd.value(t, v1, 0)?
                && key.starts_with("tokenizer.chat_template")
            {
                let lower = text.to_ascii_lowercase();
                let hits: Vec<&str> = TEMPLATE_GADGETS
                    .iter()
                    .copied()
                    .filter(|g| lower.contains(&g.to_ascii_lowercase()))
                    .collect();
                if !hits.is_empty() {
                    found.finding(
                        Severity::Critical,
                        "gguf.template-injection",
                        format!("chat template '{key}' reaches for interpreter internals ({}): rendering it can run code", hits.join(", ")),
                        location,
                        Some(key.clone()),
                    );
                }
            }
        }
        Ok(())
    })();
    if let Err(e) = result {
        found.finding(
            Severity::High,
            "gguf.invalid-header",
            format!("malformed GGUF header: {e}"),
            location,
            None,
        );
    }
    found
}
