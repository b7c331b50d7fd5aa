//! Personal data in tables: e-mail addresses, phone numbers, payment-card numbers (Luhn),
//! IBANs (ISO 13616 mod-97), US social security numbers, IP addresses and dates of birth —
//! whole columns of them, or mentions inside free text — and redaction of what was found.
//!
//! Detection favours precision: a number must pass its checksum or structural rules, phone
//! numbers need phone formatting (a `+`, parentheses or separators), dates count as dates of
//! birth only in a column whose name says so.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, LazyLock};

use arrow::array::{ArrayRef, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use regex::Regex;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::error::DataResult;
use crate::read::ParquetData;
use crate::schema::Kind;
use crate::values::as_text;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PiiKind {
    Email,
    Phone,
    PaymentCard,
    Iban,
    UsSsn,
    IpAddress,
    DateOfBirth,
}

impl PiiKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Email => "email",
            Self::Phone => "phone",
            Self::PaymentCard => "payment_card",
            Self::Iban => "iban",
            Self::UsSsn => "us_ssn",
            Self::IpAddress => "ip_address",
            Self::DateOfBirth => "date_of_birth",
        }
    }
}

/// A column counts as a PII column when at least this share of its values are of one kind.
pub const COLUMN_SHARE: f64 = 0.5;
const EXAMPLES: usize = 3;

static EMAIL: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)\b[a-z0-9][a-z0-9._%+-]{0,63}@[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?)*\.[a-z]{2,24}\b",
    )
});
static PHONE: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?:\+\d{1,3}[\s.-]?)?(?:\(\d{1,4}\)[\s.-]?|\d{1,4}[\s.-])\d{2,4}[\s.-]?\d{2,4}(?:[\s.-]?\d{2,4})?|\+\d{8,15}",
    )
});
static CARD: LazyLock<Regex> = LazyLock::new(|| re(r"\b(?:\d[ -]?){12,18}\d\b"));
static IBAN: LazyLock<Regex> =
    LazyLock::new(|| re(r"\b[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]{4}){2,7}(?:[ ]?[A-Z0-9]{1,4})?\b"));
static SSN: LazyLock<Regex> = LazyLock::new(|| re(r"\b(\d{3})-(\d{2})-(\d{4})\b"));
static IPV4: LazyLock<Regex> = LazyLock::new(|| re(r"\b\d{1,3}(?:\.\d{1,3}){3}\b"));
static IPV6: LazyLock<Regex> = LazyLock::new(|| re(r"(?i)(?:[0-9a-f]{0,4}:){2,7}[0-9a-f]{0,4}"));
static DATE: LazyLock<Regex> = LazyLock::new(|| {
    re(r"^\s*(?:(\d{4})-(\d{1,2})-(\d{1,2})|(\d{1,2})[./](\d{1,2})[./](\d{4}))(?:[T ].*)?$")
});
static DOB_NAME: LazyLock<Regex> = LazyLock::new(|| {
    re(r"(?i)(^|_|\b)(dob|birth|birthday|birthdate|date_of_birth|geburtsdatum)($|_|\b)")
});

fn re(s: &str) -> Regex {
    // The patterns are constants checked by the tests; an invalid one is a programming error
    // caught on the first test run, so falling back to a never-matching regex is unreachable.
    Regex::new(s).unwrap_or_else(|_| Regex::new(r"[^\s\S]").unwrap_or_else(|_| unreachable!()))
}

/// Luhn checksum over the digits of `s`.
pub fn luhn_valid(digits: &[u8]) -> bool {
    let mut sum = 0u32;
    for (i, &d) in digits.iter().rev().enumerate() {
        let mut v = (d - b'0') as u32;
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    sum.is_multiple_of(10)
}

/// A payment card: 13–19 digits, a known issuer prefix, and a valid Luhn checksum.
pub fn is_card(s: &str) -> bool {
    let digits: Vec<u8> = s.bytes().filter(u8::is_ascii_digit).collect();
    if !(13..=19).contains(&digits.len()) || digits.iter().all(|&d| d == digits[0]) {
        return false;
    }
    let p2 = (digits[0] - b'0') as u32 * 10 + (digits[1] - b'0') as u32;
    let len = digits.len();
    // Issuer prefixes with the lengths each issues.
    let issuer = match digits[0] {
        b'4' => matches!(len, 13 | 16 | 19),
        b'5' => (51..=55).contains(&p2) && len == 16,
        b'2' => (22..=27).contains(&p2) && len == 16,
        b'3' => match p2 {
            34 | 37 => len == 15,
            30 | 36 | 38 => len == 14,
            35 => (16..=19).contains(&len),
            _ => false,
        },
        b'6' => (16..=19).contains(&len),
        _ => false,
    };
    issuer && luhn_valid(&digits)
}

/// An IBAN: country letters, check digits, a length within ISO 13616's 15–34, and the
/// mod-97 remainder 1.
pub fn is_iban(s: &str) -> bool {
    let compact: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if !(15..=34).contains(&compact.len())
        || !compact[..2].iter().all(u8::is_ascii_uppercase)
        || !compact[2..4].iter().all(u8::is_ascii_digit)
    {
        return false;
    }
    let mut rem = 0u32;
    for &b in compact[4..].iter().chain(&compact[..4]) {
        let v = match b {
            b'0'..=b'9' => (b - b'0') as u32,
            b'A'..=b'Z' => (b - b'A') as u32 + 10,
            _ => return false,
        };
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    rem == 1
}

/// A US SSN in its dashed form, with the SSA's never-issued areas, groups and serials
/// refused (area 000, 666, 900–999; group 00; serial 0000).
pub fn is_ssn(area: &str, group: &str, serial: &str) -> bool {
    let a: u32 = area.parse().unwrap_or(0);
    a != 0 && a != 666 && a < 900 && group != "00" && serial != "0000"
}

/// Ten to fifteen digits (eight with a leading `+`), and not a card number.
fn phone_ok(m: &str) -> bool {
    let digits = m.bytes().filter(u8::is_ascii_digit).count();
    let min = if m.starts_with('+') { 8 } else { 10 };
    (min..=15).contains(&digits) && !is_card(m)
}

/// A phone candidate must stand alone: the run of digits and separators around it holds at
/// most 15 digits and is not glued to letters (as in an IBAN or an order code).
fn phone_context_ok(value: &str, r: &std::ops::Range<usize>) -> bool {
    let b = value.as_bytes();
    let sep = |c: u8| c.is_ascii_digit() || matches!(c, b' ' | b'.' | b'-' | b'(' | b')' | b'+');
    let mut start = r.start;
    while start > 0 && sep(b[start - 1]) {
        start -= 1;
    }
    let mut end = r.end;
    while end < b.len() && sep(b[end]) {
        end += 1;
    }
    let glued = (start > 0 && b[start - 1].is_ascii_alphanumeric() && b[start].is_ascii_digit())
        || (end < b.len() && b[end].is_ascii_alphanumeric() && b[end - 1].is_ascii_digit());
    let digits = b[start..end].iter().filter(|c| c.is_ascii_digit()).count();
    !glued && digits <= 15
}

fn plausible_dob(s: &str) -> bool {
    let Some(c) = DATE.captures(s) else {
        return false;
    };
    let num = |i: usize| c.get(i).and_then(|m| m.as_str().parse::<u32>().ok());
    let (y, m, d) = match (num(1), num(2), num(3)) {
        (Some(y), Some(m), Some(d)) => (y, m, d),
        _ => match (num(6), num(5), num(4)) {
            (Some(y), Some(a), Some(b)) => (y, a.min(b), a.max(b)),
            _ => return false,
        },
    };
    (1900..=2030).contains(&y) && (1..=12).contains(&m) && (1..=31).contains(&d)
}

/// The PII found in one value: each kind with the matched text.
pub fn detect(value: &str, dob_column: bool) -> Vec<(PiiKind, std::ops::Range<usize>)> {
    let mut out = Vec::new();
    for m in EMAIL.find_iter(value) {
        out.push((PiiKind::Email, m.range()));
    }
    for m in IBAN.find_iter(value) {
        if is_iban(m.as_str()) {
            out.push((PiiKind::Iban, m.range()));
        }
    }
    for m in CARD.find_iter(value) {
        if is_card(m.as_str()) {
            out.push((PiiKind::PaymentCard, m.range()));
        }
    }
    for c in SSN.captures_iter(value) {
        if let (Some(all), Some(a), Some(g), Some(s)) = (c.get(0), c.get(1), c.get(2), c.get(3))
            && is_ssn(a.as_str(), g.as_str(), s.as_str())
        {
            out.push((PiiKind::UsSsn, all.range()));
        }
    }
    for m in IPV4.find_iter(value) {
        if m.as_str().parse::<std::net::Ipv4Addr>().is_ok() {
            out.push((PiiKind::IpAddress, m.range()));
        }
    }
    if value.contains(':') {
        for m in IPV6.find_iter(value) {
            if m.as_str().matches(':').count() >= 2
                && m.as_str().parse::<std::net::Ipv6Addr>().is_ok()
            {
                out.push((PiiKind::IpAddress, m.range()));
            }
        }
    }
    for m in PHONE.find_iter(value) {
        let overlaps = out
            .iter()
            .any(|(_, r)| r.start < m.end() && m.start() < r.end);
        if !overlaps
            && phone_ok(m.as_str())
            && phone_context_ok(value, &m.range())
            && !DATE.is_match(m.as_str())
        {
            out.push((PiiKind::Phone, m.range()));
        }
    }
    if dob_column && plausible_dob(value) {
        out.push((PiiKind::DateOfBirth, 0..value.len()));
    }
    out
}

/// Masks a value for a report: the first character and the last few, the rest as `*`.
pub fn mask(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    let keep_end = if chars.len() > 8 { 4 } else { 1 };
    chars
        .iter()
        .enumerate()
        .map(|(i, &c)| {
            if i == 0 || i + keep_end >= chars.len() || !c.is_alphanumeric() {
                c
            } else {
                '*'
            }
        })
        .collect()
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct KindFinding {
    pub kind: PiiKind,
    /// Values holding at least one match.
    pub values: u64,
    pub share: f64,
    pub masked_examples: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ColumnPii {
    pub column: String,
    pub non_null: u64,
    pub findings: Vec<KindFinding>,
    /// The column as a whole holds this kind (≥ 50% of values); otherwise the matches are
    /// mentions inside free text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column_kind: Option<PiiKind>,
    pub free_text: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PiiReport {
    pub rows: u64,
    pub columns: Vec<ColumnPii>,
    /// Columns with any finding.
    pub pii_columns: usize,
}

struct ColumnScan {
    name: String,
    dob: bool,
    non_null: u64,
    kinds: BTreeMap<PiiKind, (u64, Vec<String>)>,
    long_values: u64,
}

fn scannable(t: &DataType) -> bool {
    matches!(Kind::of(t), Kind::Text)
        || matches!(
            t,
            DataType::Int64 | DataType::UInt64 | DataType::Date32 | DataType::Date64
        )
}

/// Scans every text (and integer, and date) column of a canonical Parquet file.
pub fn scan_parquet(path: &Path) -> DataResult<PiiReport> {
    let data = ParquetData::open(path)?;
    let schema = data.schema();
    let mut cols: Vec<(usize, ColumnScan)> = schema
        .fields()
        .iter()
        .enumerate()
        .filter(|(_, f)| scannable(f.data_type()))
        .map(|(i, f)| {
            (
                i,
                ColumnScan {
                    name: f.name().clone(),
                    dob: DOB_NAME.is_match(f.name()),
                    non_null: 0,
                    kinds: BTreeMap::new(),
                    long_values: 0,
                },
            )
        })
        .collect();
    let mut rows = 0u64;
    for batch in data.batches(None)? {
        let batch = batch?;
        rows += batch.num_rows() as u64;
        use rayon::prelude::*;
        cols.par_iter_mut()
            .map(|(i, scan)| -> DataResult<()> {
                let text = as_text(batch.column(*i))?;
                for v in text.iter().flatten() {
                    scan.non_null += 1;
                    if v.split_whitespace().nth(3).is_some() {
                        scan.long_values += 1;
                    }
                    let mut seen = [false; 7];
                    for (kind, range) in detect(v, scan.dob) {
                        let e = scan.kinds.entry(kind).or_default();
                        if !seen[kind as usize] {
                            seen[kind as usize] = true;
                            e.0 += 1;
                        }
                        if e.1.len() < EXAMPLES {
                            e.1.push(mask(&v[range]));
                        }
                    }
                }
                Ok(())
            })
            .collect::<DataResult<Vec<()>>>()?;
    }
    let columns: Vec<ColumnPii> = cols
        .into_iter()
        .map(|(_, s)| {
            let findings: Vec<KindFinding> = s
                .kinds
                .into_iter()
                .map(|(kind, (values, ex))| KindFinding {
                    kind,
                    values,
                    share: if s.non_null == 0 {
                        0.0
                    } else {
                        values as f64 / s.non_null as f64
                    },
                    masked_examples: ex,
                })
                .collect();
            let column_kind = findings
                .iter()
                .filter(|f| f.share >= COLUMN_SHARE)
                .max_by(|a, b| a.share.total_cmp(&b.share))
                .map(|f| f.kind);
            ColumnPii {
                column: s.name,
                non_null: s.non_null,
                free_text: s.non_null > 0 && s.long_values * 2 >= s.non_null,
                column_kind,
                findings,
            }
        })
        .collect();
    let pii_columns = columns.iter().filter(|c| !c.findings.is_empty()).count();
    Ok(PiiReport {
        rows,
        columns,
        pii_columns,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Redaction {
    /// Each match becomes `[KIND]`.
    Mask,
    /// Each match becomes `kind:` + the first 16 hex digits of HMAC-SHA256 under a key: the
    /// same value gives the same pseudonym (joins still work), but it cannot be reversed by
    /// hashing guesses without the key.
    Hash,
}

fn hmac_sha256(key: &[u8; 32], msg: &[u8]) -> [u8; 32] {
    use hmac::Mac;
    // HMAC takes keys of any length, so building it from 32 bytes cannot fail.
    let Ok(mut mac) = <hmac::Hmac<Sha256> as Mac>::new_from_slice(key) else {
        unreachable!("HMAC accepts keys of any length")
    };
    mac.update(msg);
    mac.finalize().into_bytes().into()
}

pub fn redact_value(v: &str, dob: bool, how: Redaction, key: &[u8; 32]) -> Option<String> {
    let mut found = detect(v, dob);
    if found.is_empty() {
        return None;
    }
    found.sort_by_key(|(_, r)| (r.start, std::cmp::Reverse(r.end)));
    let mut out = String::with_capacity(v.len());
    let mut pos = 0usize;
    for (kind, r) in found {
        if r.start < pos {
            continue;
        }
        out.push_str(&v[pos..r.start]);
        match how {
            Redaction::Mask => {
                out.push('[');
                out.push_str(&kind.as_str().to_ascii_uppercase());
                out.push(']');
            }
            Redaction::Hash => {
                let mac = hmac_sha256(key, v[r.clone()].as_bytes());
                out.push_str(kind.as_str());
                out.push(':');
                out.push_str(&hex_prefix(&mac));
            }
        }
        pos = r.end;
    }
    out.push_str(&v[pos..]);
    Some(out)
}

fn hex_prefix(b: &[u8]) -> String {
    b.iter().take(8).map(|x| format!("{x:02x}")).collect()
}

/// Writes a copy of the file with every detected value redacted; columns holding PII become
/// text. Returns the number of values changed.
pub fn redact_parquet(
    path: &Path,
    out: impl std::io::Write + Send,
    how: Redaction,
    key: &[u8; 32],
) -> DataResult<u64> {
    let data = ParquetData::open(path)?;
    let schema = data.schema();
    let targets: Vec<bool> = schema
        .fields()
        .iter()
        .map(|f| scannable(f.data_type()))
        .collect();
    let dob: Vec<bool> = schema
        .fields()
        .iter()
        .map(|f| DOB_NAME.is_match(f.name()))
        .collect();
    let out_schema = Arc::new(Schema::new(
        schema
            .fields()
            .iter()
            .zip(&targets)
            .map(|(f, &t)| {
                if t {
                    Field::new(f.name(), DataType::Utf8, f.is_nullable())
                } else {
                    f.as_ref().clone()
                }
            })
            .collect::<Vec<_>>(),
    ));
    let mut w = crate::write::parquet_writer(out, out_schema.clone())?;
    let mut changed = 0u64;
    for batch in data.batches(None)? {
        let batch = batch?;
        let mut cols: Vec<ArrayRef> = Vec::with_capacity(batch.num_columns());
        for (i, col) in batch.columns().iter().enumerate() {
            if !targets[i] {
                cols.push(col.clone());
                continue;
            }
            let text = as_text(col)?;
            let new: StringArray = text
                .iter()
                .map(|v| {
                    v.map(|s| match redact_value(s, dob[i], how, key) {
                        Some(r) => {
                            changed += 1;
                            r
                        }
                        None => s.to_string(),
                    })
                })
                .collect();
            cols.push(Arc::new(new));
        }
        w.write(&RecordBatch::try_new(out_schema.clone(), cols)?)?;
    }
    w.close()?;
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(v: &str) -> Vec<PiiKind> {
        detect(v, false).into_iter().map(|(k, _)| k).collect()
    }

    #[test]
    fn finds_each_kind() {
        assert_eq!(kinds("jane.doe@example.co.uk"), vec![PiiKind::Email]);
        assert_eq!(kinds("4111 1111 1111 1111"), vec![PiiKind::PaymentCard]);
        assert_eq!(kinds("3782 822463 10005"), vec![PiiKind::PaymentCard]);
        assert_eq!(kinds("DE89 3704 0044 0532 0130 00"), vec![PiiKind::Iban]);
        assert_eq!(kinds("GB82WEST12345698765432"), vec![PiiKind::Iban]);
        assert_eq!(kinds("123-45-6789"), vec![PiiKind::UsSsn]);
        assert_eq!(kinds("192.168.10.1"), vec![PiiKind::IpAddress]);
        assert_eq!(kinds("2001:db8::8a2e:370:7334"), vec![PiiKind::IpAddress]);
        assert_eq!(kinds("+1 (415) 555-2671"), vec![PiiKind::Phone]);
        assert_eq!(kinds("+44 20 7946 0958"), vec![PiiKind::Phone]);
        assert_eq!(detect("1987-04-12", true)[0].0, PiiKind::DateOfBirth);
    }

    #[test]
    fn tricky_negatives_are_not_pii() {
        // Luhn fails, or no issuer prefix.
        assert!(kinds("4111 1111 1111 1112").is_empty());
        assert!(kinds("1234567812345678").is_empty());
        assert!(kinds("0000 0000 0000 0000").is_empty());
        // mod-97 fails.
        assert!(kinds("DE89 3704 0044 0532 0130 01").is_empty());
        // never-issued SSN areas/groups/serials.
        assert!(kinds("000-12-3456").is_empty());
        assert!(kinds("666-12-3456").is_empty());
        assert!(kinds("912-12-3456").is_empty());
        assert!(kinds("123-00-4567").is_empty());
        // not an address: octet over 255, version numbers, no domain.
        assert!(kinds("999.1.1.1").is_empty());
        assert!(kinds("user@localhost").is_empty());
        // plain numbers and dates are not phones; times are not IPv6.
        assert!(kinds("1234567890").is_empty());
        assert!(kinds("2024-01-15").is_empty());
        assert!(kinds("12:30:45").is_empty());
        assert!(detect("1987-04-12", false).is_empty());
        assert!(detect("1850-04-12", true).is_empty());
    }

    #[test]
    fn free_text_mentions_are_found() {
        let k = kinds(
            "please call +1 415 555 2671 or mail bob@corp.example.com, card 5555555555554444",
        );
        assert!(
            k.contains(&PiiKind::Phone)
                && k.contains(&PiiKind::Email)
                && k.contains(&PiiKind::PaymentCard),
            "{k:?}"
        );
    }

    #[test]
    fn masking_and_redaction() {
        assert_eq!(mask("4111 1111 1111 1111"), "4*** **** **** 1111");
        let key = [7u8; 32];
        let r = redact_value(
            "mail bob@corp.example.com now",
            false,
            Redaction::Mask,
            &key,
        );
        assert_eq!(r.as_deref(), Some("mail [EMAIL] now"));
        let a = redact_value("bob@corp.example.com", false, Redaction::Hash, &key);
        let b = redact_value("bob@corp.example.com", false, Redaction::Hash, &key);
        assert_eq!(a, b);
        assert!(
            a.as_deref()
                .is_some_and(|s| s.starts_with("email:") && s.len() == 22)
        );
        let other = redact_value("bob@corp.example.com", false, Redaction::Hash, &[8u8; 32]);
        assert_ne!(a, other);
    }

    #[test]
    fn keyed_hash_is_hmac_sha256() {
        // Python: hmac.new(bytes(range(32)), b"what do ya want for nothing?", "sha256")
        let key: [u8; 32] = std::array::from_fn(|i| i as u8);
        let mac = hmac_sha256(&key, b"what do ya want for nothing?");
        assert_eq!(hex_prefix(&mac), "099805f4ac310786");
    }
}
