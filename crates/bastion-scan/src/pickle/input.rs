//! The byte stream a pickle is read from, with its offset, bounded reads and skips (a pickled
//! array's gigabytes of raw bytes are skipped, never held).

use std::io::BufRead;

use super::PickleError;

/// Text arguments (protocol 0 lines) longer than this are refused.
pub const MAX_LINE: usize = 64 * 1024;
/// Longest string or bytes value kept; longer ones keep their length and this prefix.
pub const KEEP_BYTES: usize = 4 * 1024;

pub struct Input<R> {
    inner: R,
    offset: u64,
}

/// A read that was cut to [`KEEP_BYTES`]: the kept prefix and the full length.
pub struct Blob {
    pub kept: Vec<u8>,
    pub len: u64,
}

impl<R: BufRead> Input<R> {
    pub fn new(inner: R) -> Self {
        Self { inner, offset: 0 }
    }

    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// `None` at the end of the stream.
    pub fn peek(&mut self) -> Result<Option<u8>, PickleError> {
        let buf = fill(&mut self.inner, self.offset)?;
        Ok(buf.first().copied())
    }

    pub fn byte(&mut self) -> Result<u8, PickleError> {
        let Some(b) = self.peek()? else {
            return Err(PickleError::Truncated {
                offset: self.offset,
            });
        };
        self.inner.consume(1);
        self.offset += 1;
        Ok(b)
    }

    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], PickleError> {
        let mut out = [0u8; N];
        for b in &mut out {
            *b = self.byte()?;
        }
        Ok(out)
    }

    /// Reads `len` bytes, keeping at most [`KEEP_BYTES`] of them.
    pub fn blob(&mut self, len: u64) -> Result<Blob, PickleError> {
        let keep = len.min(KEEP_BYTES as u64) as usize;
        let mut kept = Vec::with_capacity(keep);
        while kept.len() < keep {
            let buf = fill(&mut self.inner, self.offset)?;
            if buf.is_empty() {
                return Err(PickleError::Truncated {
                    offset: self.offset,
                });
            }
            let n = buf.len().min(keep - kept.len());
            kept.extend_from_slice(&buf[..n]);
            self.inner.consume(n);
            self.offset += n as u64;
        }
        self.skip(len - keep as u64)?;
        Ok(Blob { kept, len })
    }

    pub fn skip(&mut self, mut len: u64) -> Result<(), PickleError> {
        while len > 0 {
            let buf = fill(&mut self.inner, self.offset)?;
            if buf.is_empty() {
                return Err(PickleError::Truncated {
                    offset: self.offset,
                });
            }
            let n = (buf.len() as u64).min(len) as usize;
            self.inner.consume(n);
            self.offset += n as u64;
            len -= n as u64;
        }
        Ok(())
    }

    /// Reads to the end of the stream; returns how many bytes that was.
    pub fn skip_to_end(&mut self) -> Result<u64, PickleError> {
        let start = self.offset;
        loop {
            let n = fill(&mut self.inner, self.offset)?.len();
            if n == 0 {
                return Ok(self.offset - start);
            }
            self.inner.consume(n);
            self.offset += n as u64;
        }
    }

    /// A protocol 0 argument: the bytes up to `\n` (consumed, not returned).
    pub fn line(&mut self) -> Result<Vec<u8>, PickleError> {
        let start = self.offset;
        let mut out = Vec::new();
        loop {
            let buf = fill(&mut self.inner, self.offset)?;
            if buf.is_empty() {
                return Err(PickleError::Truncated {
                    offset: self.offset,
                });
            }
            match buf.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    out.extend_from_slice(&buf[..i]);
                    self.inner.consume(i + 1);
                    self.offset += i as u64 + 1;
                    break;
                }
                None => {
                    let n = buf.len();
                    out.extend_from_slice(buf);
                    self.inner.consume(n);
                    self.offset += n as u64;
                }
            }
            if out.len() > MAX_LINE {
                return Err(PickleError::Malformed {
                    offset: start,
                    message: format!("a text argument longer than {MAX_LINE} bytes"),
                });
            }
        }
        if out.len() > MAX_LINE {
            return Err(PickleError::Malformed {
                offset: start,
                message: format!("a text argument longer than {MAX_LINE} bytes"),
            });
        }
        Ok(out)
    }
}

fn fill<R: BufRead>(inner: &mut R, offset: u64) -> Result<&[u8], PickleError> {
    inner.fill_buf().map_err(|e| PickleError::Io {
        offset,
        message: e.to_string(),
    })
}
