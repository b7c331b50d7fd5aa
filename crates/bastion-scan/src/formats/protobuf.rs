//! Just enough protobuf wire format to walk ONNX and TensorFlow messages field by field.

use std::io::BufRead;

/// Longer strings are skipped, not read.
const MAX_STRING: u64 = 1 << 20;

/// A protobuf reader over a stream: fields are visited in order and values skipped without
/// being held, so a message of any size is read in constant memory.
pub struct Pb<R> {
    r: R,
    /// Bytes consumed so far.
    pub offset: u64,
}

impl<R: BufRead> Pb<R> {
    pub fn new(r: R) -> Self {
        Self { r, offset: 0 }
    }
    pub fn at_end(&mut self) -> Result<bool, String> {
        Ok(self.r.fill_buf().map_err(|e| e.to_string())?.is_empty())
    }
    /// A length-delimited string (cut to nothing past [`MAX_STRING`] bytes).
    pub fn text(&mut self) -> Result<String, String> {
        let n = self.varint()?;
        self.string(n)
    }
    fn byte(&mut self) -> Result<u8, String> {
        let b = self
            .r
            .fill_buf()
            .map_err(|e| e.to_string())?
            .first()
            .copied()
            .ok_or("truncated")?;
        self.r.consume(1);
        self.offset += 1;
        Ok(b)
    }
    pub fn varint(&mut self) -> Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("varint too long".into())
    }
    pub fn skip(&mut self, mut n: u64) -> Result<(), String> {
        while n > 0 {
            let buf = self.r.fill_buf().map_err(|e| e.to_string())?;
            if buf.is_empty() {
                return Err("truncated".into());
            }
            let k = (buf.len() as u64).min(n) as usize;
            self.r.consume(k);
            self.offset += k as u64;
            n -= k as u64;
        }
        Ok(())
    }
    fn string(&mut self, n: u64) -> Result<String, String> {
        if n > MAX_STRING {
            self.skip(n)?;
            return Ok(String::new());
        }
        let mut out = Vec::with_capacity(n as usize);
        for _ in 0..n {
            out.push(self.byte()?);
        }
        Ok(String::from_utf8_lossy(&out).into_owned())
    }
    pub fn skip_value(&mut self, wire: u64) -> Result<(), String> {
        match wire {
            0 => self.varint().map(|_| ()),
            1 => self.skip(8),
            2 => {
                let n = self.varint()?;
                self.skip(n)
            }
            5 => self.skip(4),
            w => Err(format!("unknown wire type {w}")),
        }
    }
    /// Calls `f(field, wire, pb)` for each field until `end`; `f` must consume the value.
    pub fn fields(
        &mut self,
        end: u64,
        mut f: impl FnMut(&mut Self, u64, u64) -> Result<(), String>,
    ) -> Result<(), String> {
        while self.offset < end {
            let tag = self.varint()?;
            f(self, tag >> 3, tag & 7)?;
        }
        if self.offset != end {
            return Err("a field runs past its message".into());
        }
        Ok(())
    }
    pub fn message_end(&mut self) -> Result<u64, String> {
        let n = self.varint()?;
        Ok(self.offset.saturating_add(n))
    }
}
