//! What a byte stream is, judged by its first bytes and structure, never by its name.

/// Bytes looked at to decide.
pub const HEAD: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Zip,
    Tar,
    Gzip,
    Zlib,
    Bzip2,
    Xz,
    /// The legacy `.lzma` ("alone") format joblib writes.
    Lzma,
    Lz4,
    SevenZip,
    Npy,
    Hdf5,
    Gguf,
    Safetensors,
    /// A pickle of protocol 2 or later (announced by PROTO).
    Pickle,
    /// Starts with a byte that is a protocol 0/1 opcode: a pickle only if it parses as one.
    MaybePickle,
    Unknown,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Self::Zip => "zip",
            Self::Tar => "tar",
            Self::Gzip => "gzip",
            Self::Zlib => "zlib",
            Self::Bzip2 => "bzip2",
            Self::Xz => "xz",
            Self::Lzma => "lzma",
            Self::Lz4 => "lz4",
            Self::SevenZip => "7z",
            Self::Npy => "npy",
            Self::Hdf5 => "hdf5",
            Self::Gguf => "gguf",
            Self::Safetensors => "safetensors",
            Self::Pickle | Self::MaybePickle => "pickle",
            Self::Unknown => "unknown",
        }
    }
}

fn is_tar(head: &[u8]) -> bool {
    if head.len() < 512 {
        return false;
    }
    if &head[257..262] == b"ustar" {
        return true;
    }
    // Old (v7) tar: no magic, but the header checksum must add up.
    let stored = std::str::from_utf8(&head[148..156])
        .ok()
        .map(|s| s.trim_matches(|c: char| c == '\0' || c == ' '))
        .and_then(|s| u32::from_str_radix(s, 8).ok());
    let Some(stored) = stored else {
        return false;
    };
    let sum: u32 = head[..512]
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                32
            } else {
                u32::from(b)
            }
        })
        .sum();
    sum == stored && head[0] != 0
}

fn is_safetensors(head: &[u8]) -> bool {
    if head.len() < 9 {
        return false;
    }
    let mut n = [0u8; 8];
    n.copy_from_slice(&head[..8]);
    let len = u64::from_le_bytes(n);
    // Any declared length: an absurd one is for the analyzer to report, not a reason to
    // call the file unknown.
    len >= 2
        && head[8] == b'{'
        && head[9..]
            .iter()
            .find(|b| !b.is_ascii_whitespace())
            .is_none_or(|&b| b == b'"' || b == b'}')
}

pub fn detect(head: &[u8]) -> Format {
    let starts = |magic: &[u8]| head.starts_with(magic);
    if starts(b"PK\x03\x04") || starts(b"PK\x05\x06") || starts(b"PK\x07\x08") {
        return Format::Zip;
    }
    if starts(b"\x1f\x8b") {
        return Format::Gzip;
    }
    if starts(b"BZh") && head.get(3).is_some_and(|d| (b'1'..=b'9').contains(d)) {
        return Format::Bzip2;
    }
    if starts(b"\xfd7zXZ\x00") {
        return Format::Xz;
    }
    if starts(b"\x04\x22\x4d\x18") {
        return Format::Lz4;
    }
    if starts(b"7z\xbc\xaf\x27\x1c") {
        return Format::SevenZip;
    }
    if starts(b"\x93NUMPY") {
        return Format::Npy;
    }
    if starts(b"\x89HDF\r\n\x1a\n") {
        return Format::Hdf5;
    }
    if starts(b"GGUF") {
        return Format::Gguf;
    }
    if head.len() >= 2 && head[0] == 0x80 && head[1] <= 5 {
        return Format::Pickle;
    }
    if is_tar(head) {
        return Format::Tar;
    }
    if is_safetensors(head) {
        return Format::Safetensors;
    }
    // zlib with the 32 KiB window every writer uses (smaller windows start with bytes that
    // are also pickle opcodes), and a header checksum divisible by 31.
    if head.len() >= 2
        && head[0] == 0x78
        && ((u16::from(head[0]) << 8) | u16::from(head[1])) % 31 == 0
    {
        return Format::Zlib;
    }
    // .lzma: the usual properties byte and a power-of-two-ish dictionary size.
    if head.len() >= 13 && head[0] == 0x5d && head[1] == 0 {
        return Format::Lzma;
    }
    if head.first().is_some_and(|&b| crate::pickle::is_opcode(b)) {
        return Format::MaybePickle;
    }
    Format::Unknown
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic_bytes_decide_not_names() {
        assert_eq!(detect(b"PK\x03\x04rest"), Format::Zip);
        assert_eq!(detect(b"\x80\x04\x95"), Format::Pickle);
        assert_eq!(detect(b"\x80\x09"), Format::MaybePickle);
        assert_eq!(detect(b"cos\nsystem\n"), Format::MaybePickle);
        assert_eq!(detect(b"\x78\x9c\x01\x02"), Format::Zlib);
        assert_eq!(detect(b"\x93NUMPY\x01\x00"), Format::Npy);
        let mut st = 20u64.to_le_bytes().to_vec();
        st.extend(b"{\"__metadata__\":{}}");
        assert_eq!(detect(&st), Format::Safetensors);
        assert_eq!(detect(b""), Format::Unknown);
        assert_eq!(detect(b"\x00\x01"), Format::Unknown);
        // '(' 'S' passes zlib's header checksum; it is a protocol 0 pickle.
        assert_eq!(detect(b"(S'x'\nios\nsystem\n."), Format::MaybePickle);
        let mut huge = 1_000_000_000_000u64.to_le_bytes().to_vec();
        huge.extend(b"{}");
        assert_eq!(detect(&huge), Format::Safetensors);
    }
}
