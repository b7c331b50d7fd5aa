//! NumPy `.npy` headers: whether the array holds Python objects (which are pickled).

use std::io::BufRead;

/// Longest header accepted (format 2 allows 4 GiB; real ones are a few hundred bytes).
const MAX_HEADER: u32 = 1 << 20;

pub struct Header {
    pub descr: String,
    pub object: bool,
}

/// Reads the magic and header, leaving `r` at the array data.
pub fn header<R: BufRead>(r: &mut R) -> Result<Header, String> {
    let mut fixed = [0u8; 8];
    r.read_exact(&mut fixed).map_err(|e| e.to_string())?;
    if &fixed[..6] != b"\x93NUMPY" {
        return Err("bad magic".into());
    }
    let len = match fixed[6] {
        1 => {
            let mut b = [0u8; 2];
            r.read_exact(&mut b).map_err(|e| e.to_string())?;
            u32::from(u16::from_le_bytes(b))
        }
        2 | 3 => {
            let mut b = [0u8; 4];
            r.read_exact(&mut b).map_err(|e| e.to_string())?;
            u32::from_le_bytes(b)
        }
        v => return Err(format!("unknown format version {v}")),
    };
    if len > MAX_HEADER {
        return Err(format!("a header of {len} bytes"));
    }
    let mut text = vec![0u8; len as usize];
    r.read_exact(&mut text).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&text);
    let descr = text
        .split_once("'descr':")
        .map(|(_, rest)| {
            let rest = rest.trim_start();
            // A structured dtype is a list up to the matching bracket; a plain one a string.
            if rest.starts_with('[') {
                rest.split_once("], ").map_or(rest, |(d, _)| d).to_owned() + "]"
            } else {
                rest.split(',').next().unwrap_or("").trim().to_owned()
            }
        })
        .ok_or("no 'descr' in the header")?;
    let object = descr.contains("'O'") || descr.contains("|O");
    Ok(Header { descr, object })
}
