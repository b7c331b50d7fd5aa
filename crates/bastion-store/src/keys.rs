//! The audit signing key, kept in the Bastion home. The private key file is created with mode
//! 0600 and refused if anyone else can read it; the public key is written beside it for
//! offline verifiers.

use std::io::Write;
use std::path::{Path, PathBuf};

use ed25519_dalek::{SigningKey, VerifyingKey};

pub const AUDIT_KEY_FILE: &str = "audit-ed25519.key";
pub const AUDIT_PUBLIC_KEY_FILE: &str = "audit-ed25519.pub";

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}: the key file is readable by other users (mode {1:o}); run chmod 600 on it")]
    Permissions(PathBuf, u32),
    #[error("{0}: not a hex-encoded 32-byte ed25519 key")]
    Malformed(PathBuf),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> KeyError + '_ {
    move |source| KeyError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Loads the audit key from `home`, creating it (from the OS random source) on first use.
pub fn load_or_create_audit_key(home: &Path) -> Result<SigningKey, KeyError> {
    let path = home.join(AUDIT_KEY_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            check_private(&path)?;
            let key = parse_private(&path, &text)?;
            write_public(home, &key.verifying_key())?;
            Ok(key)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut seed = [0u8; 32];
            getrandom_fill(&mut seed).map_err(io(&path))?;
            let key = SigningKey::from_bytes(&seed);
            write_private(&path, hex::encode(seed).as_bytes())?;
            write_public(home, &key.verifying_key())?;
            Ok(key)
        }
        Err(e) => Err(io(&path)(e)),
    }
}

fn getrandom_fill(buf: &mut [u8]) -> std::io::Result<()> {
    use rand::TryRngCore;
    rand::rngs::OsRng
        .try_fill_bytes(buf)
        .map_err(std::io::Error::other)
}

/// Creates `path` (which must not exist) readable and writable by its owner only, and writes
/// the secret `bytes` to disk before returning.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), KeyError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(io(path))?;
    file.write_all(bytes).map_err(io(path))?;
    file.sync_all().map_err(io(path))
}

/// Refuses a private key file that users other than its owner may read.
pub fn check_private(path: &Path) -> Result<(), KeyError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .map_err(io(path))?
            .permissions()
            .mode()
            & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeyError::Permissions(path.to_path_buf(), mode));
        }
    }
    Ok(())
}

fn parse_private(path: &Path, text: &str) -> Result<SigningKey, KeyError> {
    let mut seed = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut seed)
        .map_err(|_| KeyError::Malformed(path.to_path_buf()))?;
    Ok(SigningKey::from_bytes(&seed))
}

fn write_public(home: &Path, key: &VerifyingKey) -> Result<(), KeyError> {
    let path = home.join(AUDIT_PUBLIC_KEY_FILE);
    std::fs::write(&path, hex::encode(key.as_bytes())).map_err(io(&path))
}

/// Reads a public key written by [`load_or_create_audit_key`] (hex of 32 bytes).
pub fn read_public_key(path: &Path) -> Result<VerifyingKey, KeyError> {
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut bytes)
        .map_err(|_| KeyError::Malformed(path.to_path_buf()))?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| KeyError::Malformed(path.to_path_buf()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_private_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let a = load_or_create_audit_key(dir.path()).unwrap();
        let b = load_or_create_audit_key(dir.path()).unwrap();
        assert_eq!(a.to_bytes(), b.to_bytes());
        let public = read_public_key(&dir.path().join(AUDIT_PUBLIC_KEY_FILE)).unwrap();
        assert_eq!(public, a.verifying_key());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let path = dir.path().join(AUDIT_KEY_FILE);
            assert_eq!(
                std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            assert!(matches!(
                load_or_create_audit_key(dir.path()),
                Err(KeyError::Permissions(..))
            ));
        }
    }
}
