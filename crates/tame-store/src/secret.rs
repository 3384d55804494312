//! The audit secret kept in a file beside a database (`<db>.secret`): read, or created with 32 random bytes (mode 0600).

use std::io::Write;
use std::path::Path;

use crate::{StoreError, StoreResult};

/// Reads the audit secret from `path` (hex), or creates a random 32-byte
/// one there (mode 0600) when the file does not exist.
pub fn load_or_create_secret(path: &Path) -> StoreResult<Vec<u8>> {
    let io_err = |e: std::io::Error| StoreError::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    };
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let key = hex::decode(text.trim())
                .map_err(|e| StoreError::Secret(format!("`{}` is not hex: {e}", path.display())))?;
            if key.len() < 16 {
                return Err(StoreError::Secret(format!(
                    "`{}` holds {} bytes, at least 16 are needed",
                    path.display(),
                    key.len()
                )));
            }
            Ok(key)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut key = vec![0u8; 32];
            getrandom::fill(&mut key)
                .map_err(|e| StoreError::Secret(format!("no randomness for a new secret: {e}")))?;
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                options.mode(0o600);
            }
            let mut file = options.open(path).map_err(io_err)?;
            file.write_all(hex::encode(&key).as_bytes()).map_err(io_err)?;
            file.sync_all().map_err(io_err)?;
            Ok(key)
        }
        Err(e) => Err(io_err(e)),
    }
}
