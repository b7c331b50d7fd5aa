//! Encryption at rest for dataset blobs, in the age format (X25519 recipients), so the
//! standard `age` tool decrypts a stored blob with the home's key file:
//! `age -d -i dataset-key.txt <blob>`. Encryption and decryption stream; age authenticates
//! every 64 KiB chunk, so a changed byte or a wrong key is an error, never wrong plaintext.

use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use age::secrecy::ExposeSecret;

use crate::keys::{KeyError, check_private, write_private};

/// The key file in the home: its presence turns dataset encryption on.
pub const DATASET_KEY_FILE: &str = "dataset-key.txt";

#[derive(Debug, thiserror::Error)]
pub enum CryptError {
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("{0}: not an age X25519 identity (AGE-SECRET-KEY-1…)")]
    Malformed(PathBuf),
    #[error("decrypting: {0}")]
    Decrypt(String),
    #[error("encrypting: {0}")]
    Encrypt(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// The home's dataset key: an age X25519 identity; blobs are encrypted to its public key.
pub struct DatasetCipher {
    identity: age::x25519::Identity,
    recipients: Vec<age::x25519::Recipient>,
}

impl std::fmt::Debug for DatasetCipher {
    /// Never the key itself.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatasetCipher")
            .field("recipients", &self.recipients.len())
            .finish_non_exhaustive()
    }
}

impl DatasetCipher {
    /// The key at `path` if it exists (mode 0600 required), else `None`: encryption is off.
    pub fn load(path: &Path) -> Result<Option<Self>, CryptError> {
        if !path.exists() {
            return Ok(None);
        }
        check_private(path)?;
        let text = std::fs::read_to_string(path).map_err(|source| KeyError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let line = text
            .lines()
            .map(str::trim)
            .find(|l| l.starts_with("AGE-SECRET-KEY-"))
            .ok_or_else(|| CryptError::Malformed(path.to_path_buf()))?;
        let identity = age::x25519::Identity::from_str(line)
            .map_err(|_| CryptError::Malformed(path.to_path_buf()))?;
        let recipients = vec![identity.to_public()];
        Ok(Some(Self {
            identity,
            recipients,
        }))
    }

    /// Creates a new key file in the format `age-keygen` writes (refusing to overwrite one).
    pub fn create(path: &Path) -> Result<Self, CryptError> {
        if path.exists() {
            return Err(CryptError::Encrypt(format!(
                "{} already exists; remove it first if you mean to replace the key (blobs encrypted to it then become unreadable)",
                path.display()
            )));
        }
        let identity = age::x25519::Identity::generate();
        let public = identity.to_public();
        let text = format!(
            "# created: by bastion data keygen\n# public key: {public}\n{}\n",
            identity.to_string().expose_secret()
        );
        write_private(path, text.as_bytes())?;
        Ok(Self {
            identity,
            recipients: vec![public],
        })
    }

    /// The public key (`age1…`) blobs are encrypted to.
    pub fn public_key(&self) -> String {
        self.identity.to_public().to_string()
    }

    pub fn encrypt(&self, mut input: impl Read, output: impl Write) -> Result<(), CryptError> {
        let encryptor = age::Encryptor::with_recipients(
            self.recipients.iter().map(|r| r as &dyn age::Recipient),
        )
        .map_err(|e| CryptError::Encrypt(e.to_string()))?;
        let mut w = encryptor.wrap_output(output)?;
        std::io::copy(&mut input, &mut w)?;
        w.finish()?;
        Ok(())
    }

    /// Streams the plaintext of an age file into `output`.
    pub fn decrypt(&self, input: impl Read, mut output: impl Write) -> Result<u64, CryptError> {
        let d = age::Decryptor::new(BufReader::new(input))
            .map_err(|e| CryptError::Decrypt(e.to_string()))?;
        let mut r = d
            .decrypt(std::iter::once(&self.identity as &dyn age::Identity))
            .map_err(|e| match e {
                age::DecryptError::NoMatchingKeys => CryptError::Decrypt(
                    "the blob was encrypted to another key (no matching key)".into(),
                ),
                other => CryptError::Decrypt(other.to_string()),
            })?;
        // age reports a failed chunk authentication as an I/O error of kind InvalidData.
        std::io::copy(&mut r, &mut output).map_err(|e| {
            if e.kind() == std::io::ErrorKind::InvalidData {
                CryptError::Decrypt(
                    "the ciphertext failed authentication (changed or truncated)".into(),
                )
            } else {
                CryptError::Io(e)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_wrong_key_and_tampering() {
        let d = tempfile::tempdir().expect("tempdir");
        let c = DatasetCipher::create(&d.path().join("k.txt")).expect("create");
        assert!(DatasetCipher::create(&d.path().join("k.txt")).is_err());
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let mut ct = Vec::new();
        c.encrypt(&data[..], &mut ct).expect("encrypt");
        assert!(ct.starts_with(b"age-encryption.org/v1\n"));
        let mut pt = Vec::new();
        c.decrypt(&ct[..], &mut pt).expect("decrypt");
        assert_eq!(pt, data);
        let loaded = DatasetCipher::load(&d.path().join("k.txt"))
            .expect("load")
            .expect("some");
        assert_eq!(loaded.public_key(), c.public_key());

        let other = DatasetCipher::create(&d.path().join("other.txt")).expect("create");
        let e = other.decrypt(&ct[..], Vec::new()).expect_err("wrong key");
        assert!(e.to_string().contains("another key"), "{e}");

        let mut bad = ct.clone();
        let n = bad.len();
        bad[n - 100] ^= 1;
        let e = c.decrypt(&bad[..], Vec::new()).expect_err("tampered");
        assert!(e.to_string().contains("authentication"), "{e}");
        let e = c
            .decrypt(&ct[..ct.len() - 10], Vec::new())
            .expect_err("truncated");
        assert!(e.to_string().contains("authentication"), "{e}");
        assert!(
            DatasetCipher::load(&d.path().join("absent"))
                .expect("absent")
                .is_none()
        );
    }
}
