//! safetensors: an 8-byte header length, a JSON header, raw tensor bytes. Nothing in it can
//! run code, but a header that lies (sizes, offsets, overlaps) can crash or mislead loaders.

use std::collections::BTreeMap;
use std::io::{self, BufRead, Read};

use serde::Deserialize;

use super::Found;
use crate::finding::Severity;

/// The reference implementation refuses headers above 100 MB.
const MAX_HEADER: u64 = 100_000_000;

#[derive(Deserialize)]
struct TensorInfo {
    dtype: String,
    shape: Vec<u64>,
    data_offsets: (u64, u64),
}

fn dtype_bits(d: &str) -> Option<u64> {
    Some(match d {
        "BOOL" | "U8" | "I8" | "F8_E5M2" | "F8_E4M3" | "F8_E8M0" => 8,
        "F4" => 4,
        "F6_E2M3" | "F6_E3M2" => 6,
        "I16" | "U16" | "F16" | "BF16" => 16,
        "I32" | "U32" | "F32" => 32,
        "I64" | "U64" | "F64" | "C64" => 64,
        _ => return None,
    })
}

pub fn scan<R: BufRead>(mut r: R, location: &str) -> Found {
    let mut found = Found::default();
    let mut n = [0u8; 8];
    if let Err(e) = r.read_exact(&mut n) {
        found.error(location, format!("read failed: {e}"));
        return found;
    }
    let len = u64::from_le_bytes(n);
    let bad = |found: &mut Found, msg: String| {
        found.finding(
            Severity::High,
            "safetensors.invalid-header",
            msg,
            location,
            None,
        )
    };
    if len > MAX_HEADER {
        bad(
            &mut found,
            format!("the header claims {len} bytes (limit {MAX_HEADER})"),
        );
        return found;
    }
    let mut header = Vec::new();
    if let Err(e) = (&mut r).take(len).read_to_end(&mut header) {
        found.error(location, format!("read failed: {e}"));
        return found;
    }
    if (header.len() as u64) < len {
        bad(
            &mut found,
            format!(
                "the header claims {len} bytes but the file ends after {}",
                header.len()
            ),
        );
        return found;
    }
    let data_len = match io::copy(&mut r, &mut io::sink()) {
        Ok(n) => n,
        Err(e) => {
            found.error(location, format!("read failed: {e}"));
            return found;
        }
    };
    let map: BTreeMap<String, serde_json::Value> = match serde_json::from_slice(&header) {
        Ok(m) => m,
        Err(e) => {
            bad(&mut found, format!("the header is not a JSON object: {e}"));
            return found;
        }
    };
    let mut spans = Vec::new();
    for (name, value) in map {
        if name == "__metadata__" {
            if !value
                .as_object()
                .is_some_and(|m| m.values().all(|v| v.is_string()))
            {
                bad(
                    &mut found,
                    "__metadata__ must map strings to strings".into(),
                );
            }
            continue;
        }
        let info: TensorInfo = match serde_json::from_value(value) {
            Ok(i) => i,
            Err(e) => {
                bad(&mut found, format!("tensor '{name}': {e}"));
                continue;
            }
        };
        let Some(bits) = dtype_bits(&info.dtype) else {
            bad(
                &mut found,
                format!("tensor '{name}': unknown dtype {}", info.dtype),
            );
            continue;
        };
        let elements = info
            .shape
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d));
        let bytes = elements
            .and_then(|e| e.checked_mul(bits))
            .map(|b| b.div_ceil(8));
        let (start, end) = info.data_offsets;
        if end < start || end > data_len {
            bad(
                &mut found,
                format!(
                    "tensor '{name}': offsets {start}..{end} outside the {data_len} data bytes"
                ),
            );
            continue;
        }
        if bytes != Some(end - start) {
            bad(
                &mut found,
                format!(
                    "tensor '{name}': {} {:?} needs {} bytes but spans {}",
                    info.dtype,
                    info.shape,
                    bytes.map_or("too many".into(), |b| b.to_string()),
                    end - start
                ),
            );
        }
        spans.push((start, end, name));
    }
    spans.sort();
    let mut covered = 0u64;
    for (start, end, name) in &spans {
        if *start < covered {
            bad(
                &mut found,
                format!("tensor '{name}' overlaps the tensor before it"),
            );
        } else if *start > covered {
            found.finding(
                Severity::Low,
                "safetensors.gap",
                format!(
                    "{} unused bytes before tensor '{name}' (data can hide there)",
                    start - covered
                ),
                location,
                Some(name.clone()),
            );
        }
        covered = covered.max(*end);
    }
    if covered < data_len {
        found.finding(
            Severity::Low,
            "safetensors.gap",
            format!(
                "{} bytes after the last tensor are not part of any tensor",
                data_len - covered
            ),
            location,
            None,
        );
    }
    found
}
