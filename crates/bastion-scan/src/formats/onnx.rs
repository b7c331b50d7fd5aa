//! ONNX models (protobuf), read field by field without holding tensor data: operators from
//! custom domains (they need a native custom-op library) and external-data paths that leave
//! the model's folder.

use std::io::BufRead;

use super::Found;
use super::protobuf::Pb;
use crate::finding::Severity;

/// Operator domains every ONNX runtime implements.
const STANDARD_DOMAINS: &[&str] = &[
    "",
    "ai.onnx",
    "ai.onnx.ml",
    "ai.onnx.training",
    "ai.onnx.preview.training",
    "com.microsoft",
    "com.microsoft.nchwc",
    "com.microsoft.mlfeaturizers",
    "org.pytorch.aten",
];
const MAX_NESTING: u32 = 32;

/// ModelProto starts with `ir_version` (field 1, varint) and then another known field.
pub fn looks_like(head: &[u8]) -> bool {
    head.len() >= 4
        && head[0] == 0x08
        && (3..=20).contains(&head[1])
        && matches!(head[2], 0x12 | 0x1a | 0x22 | 0x28 | 0x32 | 0x3a | 0x42)
}

struct Walk<'a> {
    location: &'a str,
    found: &'a mut Found,
    custom: std::collections::BTreeSet<String>,
}

impl Walk<'_> {
    fn domain(&mut self, d: &str) {
        if !STANDARD_DOMAINS.contains(&d) {
            self.custom.insert(d.to_owned());
        }
    }

    fn external_location(&mut self, path: &str) {
        let escapes = path.starts_with('/')
            || path.starts_with('\\')
            || path.contains("..")
            || path.as_bytes().get(1) == Some(&b':')
            || path.contains('\0')
            || path.contains("://");
        if escapes {
            self.found.finding(
                Severity::Critical,
                "onnx.external-data-path",
                format!("external tensor data at '{path}' lies outside the model's folder: loading reads that file"),
                self.location,
                Some(path.to_owned()),
            );
        }
    }

    fn graph<R: BufRead>(&mut self, pb: &mut Pb<R>, end: u64, depth: u32) -> Result<(), String> {
        if depth > MAX_NESTING {
            return Err("graphs nested too deep".into());
        }
        pb.fields(end, |pb, field, wire| match (field, wire) {
            (1, 2) => {
                let e = pb.message_end()?;
                self.node(pb, e, depth)
            }
            (5, 2) | (15, 2) => {
                let e = pb.message_end()?;
                self.tensor(pb, e)
            }
            _ => pb.skip_value(wire),
        })
    }

    fn node<R: BufRead>(&mut self, pb: &mut Pb<R>, end: u64, depth: u32) -> Result<(), String> {
        pb.fields(end, |pb, field, wire| match (field, wire) {
            (7, 2) => {
                let d = pb.text()?;
                self.domain(&d);
                Ok(())
            }
            (5, 2) => {
                let e = pb.message_end()?;
                self.attribute(pb, e, depth)
            }
            _ => pb.skip_value(wire),
        })
    }

    fn attribute<R: BufRead>(
        &mut self,
        pb: &mut Pb<R>,
        end: u64,
        depth: u32,
    ) -> Result<(), String> {
        pb.fields(end, |pb, field, wire| match (field, wire) {
            (6, 2) | (11, 2) => {
                let e = pb.message_end()?;
                self.graph(pb, e, depth + 1)
            }
            (5, 2) | (10, 2) => {
                let e = pb.message_end()?;
                self.tensor(pb, e)
            }
            _ => pb.skip_value(wire),
        })
    }

    fn tensor<R: BufRead>(&mut self, pb: &mut Pb<R>, end: u64) -> Result<(), String> {
        pb.fields(end, |pb, field, wire| match (field, wire) {
            (13, 2) => {
                let e = pb.message_end()?;
                let (mut key, mut value) = (String::new(), String::new());
                pb.fields(e, |pb, f, w| match (f, w) {
                    (1, 2) => {
                        key = pb.text()?;
                        Ok(())
                    }
                    (2, 2) => {
                        value = pb.text()?;
                        Ok(())
                    }
                    _ => pb.skip_value(w),
                })?;
                if key == "location" {
                    self.external_location(&value);
                }
                Ok(())
            }
            _ => pb.skip_value(wire),
        })
    }
}

pub fn scan<R: BufRead>(r: R, location: &str) -> Found {
    let mut found = Found::default();
    let mut pb = Pb::new(r);
    let mut walk = Walk {
        location,
        found: &mut found,
        custom: Default::default(),
    };
    let result = (|| -> Result<(), String> {
        loop {
            if pb.at_end()? {
                return Ok(());
            }
            let tag = pb.varint()?;
            match (tag >> 3, tag & 7) {
                (7, 2) => {
                    let e = pb.message_end()?;
                    walk.graph(&mut pb, e, 0)?;
                }
                (8, 2) => {
                    let e = pb.message_end()?;
                    pb.fields(e, |pb, f, w| match (f, w) {
                        (1, 2) => {
                            let d = pb.text()?;
                            walk.domain(&d);
                            Ok(())
                        }
                        _ => pb.skip_value(w),
                    })?;
                }
                (25, 2) => {
                    // Model-local functions: their nodes may use custom domains too.
                    let e = pb.message_end()?;
                    pb.fields(e, |pb, f, w| match (f, w) {
                        (7, 2) => {
                            let e = pb.message_end()?;
                            walk.node(pb, e, 1)
                        }
                        _ => pb.skip_value(w),
                    })?;
                }
                (_, w) => pb.skip_value(w)?,
            }
        }
    })();
    let custom = std::mem::take(&mut walk.custom);
    for d in custom {
        found.finding(
            Severity::Medium,
            "onnx.custom-domain",
            format!(
                "operators from the custom domain '{d}' need a native custom-op library to run"
            ),
            location,
            Some(d),
        );
    }
    if let Err(e) = result {
        found.error(
            location,
            format!("malformed ONNX model at byte {}: {e}", pb.offset),
        );
    }
    found
}
