//! SHA-256 content digests: the address of every artifact Bastion stores.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest as _, Sha256};

#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest([u8; 32]);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    #[error(
        "digest must be 64 hexadecimal characters, optionally prefixed by 'sha256:' (got {0} characters)"
    )]
    Length(usize),
    #[error("digest contains a character that is not lowercase hexadecimal")]
    NotHex,
}

impl Digest {
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }
    pub fn of(data: &[u8]) -> Self {
        Self(Sha256::digest(data).into())
    }
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
    /// 64 lowercase hex characters, no prefix.
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }
}

/// Incremental hashing for streamed content.
#[derive(Default, Clone)]
pub struct Hasher(Sha256);

impl Hasher {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }
    pub fn finish(self) -> Digest {
        Digest(self.0.finalize().into())
    }
}

/// `std::io::copy(&mut reader, &mut hasher)` hashes a stream.
impl std::io::Write for Hasher {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A writer that hashes what passes through it on the way to `inner`, so what is written
/// need not be read again to learn its digest.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Hasher,
    bytes: u64,
}

impl<W> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: Hasher::new(),
            bytes: 0,
        }
    }
    /// The digest and size of everything written.
    pub fn finish(self) -> (Digest, u64) {
        (self.hasher.finish(), self.bytes)
    }
}

impl<W: std::io::Write> std::io::Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

impl FromStr for Digest {
    type Err = DigestError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let hex_part = s.strip_prefix("sha256:").unwrap_or(s);
        if hex_part.len() != 64 {
            return Err(DigestError::Length(hex_part.len()));
        }
        // Only lowercase is canonical; accepting both would give one blob two names.
        if !hex_part
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(DigestError::NotHex);
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(hex_part, &mut out).map_err(|_| DigestError::NotHex)?;
        Ok(Self(out))
    }
}

/// As JSON a digest is its `sha256:<hex>` string.
impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashing_writer_and_copy_agree_with_of() {
        use std::io::Write;
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 253) as u8).collect();
        let mut w = HashingWriter::new(Vec::new());
        w.write_all(&data).expect("write");
        let (d, n) = w.finish();
        assert_eq!((d, n), (Digest::of(&data), data.len() as u64));
        let mut h = Hasher::new();
        std::io::copy(&mut &data[..], &mut h).expect("copy");
        assert_eq!(h.finish(), Digest::of(&data));
    }

    #[test]
    fn known_vector_and_round_trip() {
        let d = Digest::of(b"abc");
        assert_eq!(
            d.hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let parsed: Digest = d.to_string().parse().unwrap();
        assert_eq!(parsed, d);
        let bare: Digest = d.hex().parse().unwrap();
        assert_eq!(bare, d);
    }

    #[test]
    fn incremental_equals_one_shot() {
        let mut h = Hasher::new();
        h.update(b"a");
        h.update(b"bc");
        assert_eq!(h.finish(), Digest::of(b"abc"));
    }

    #[test]
    fn rejects_malformed() {
        assert_eq!("abc".parse::<Digest>(), Err(DigestError::Length(3)));
        let upper = "BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD";
        assert_eq!(upper.parse::<Digest>(), Err(DigestError::NotHex));
        let bad = "z".repeat(64);
        assert_eq!(bad.parse::<Digest>(), Err(DigestError::NotHex));
    }
}
