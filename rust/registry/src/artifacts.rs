//! The content-addressed artifact store: each model file lives once, under its sha256.
//! Writes go to a temporary file in the same folder, are fsynced, then renamed into place,
//! so a reader (or a crash) never sees half a file; new folders are fsynced into their
//! parents, so the rename survives a power loss too. Reads verify the hash. Folders are
//! created owner-only (0700) and files 0600: artifacts can be confidential.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};

use crate::error::{RegistryError, Result};

#[derive(Debug, Clone)]
pub struct ArtifactStore {
    root: PathBuf,
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

impl ArtifactStore {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        ArtifactStore { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Removes temporary files that a writer which died mid-write left behind (older than
    /// an hour, so a write in progress in another process is never touched). Returns how
    /// many it removed.
    pub fn clean_stale(&self) -> usize {
        let Ok(folders) = fs::read_dir(self.root.join("sha256")) else {
            return 0;
        };
        let stale_before = SystemTime::now() - Duration::from_secs(3600);
        let mut removed = 0;
        for folder in folders.flatten() {
            let Ok(files) = fs::read_dir(folder.path()) else {
                continue;
            };
            for file in files.flatten() {
                let name = file.file_name();
                let name = name.to_string_lossy();
                let old = file
                    .metadata()
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| t < stale_before);
                if name.starts_with('.')
                    && name.ends_with(".tmp")
                    && old
                    && fs::remove_file(file.path()).is_ok()
                {
                    removed += 1;
                }
            }
        }
        removed
    }

    /// Where the artifact with this hash lives.
    pub fn path(&self, sha256: &str) -> PathBuf {
        let head = sha256.get(..2).unwrap_or("");
        self.root
            .join("sha256")
            .join(head)
            .join(format!("{sha256}.onnx"))
    }

    /// Stores `data` and returns its sha256. Storing the same bytes twice keeps one file.
    pub fn put(&self, data: &[u8]) -> Result<String> {
        let sha = sha256_hex(data);
        let path = self.path(&sha);
        if path.is_file()
            && fs::metadata(&path)
                .map(|m| m.len() == data.len() as u64)
                .unwrap_or(false)
        {
            return Ok(sha);
        }
        let dir = path.parent().expect("artifact paths have a folder");
        crate::files::create_dirs_durably(dir).map_err(|e| {
            RegistryError::io(
                format!("cannot create artifact folder {}", dir.display()),
                e,
            )
        })?;
        let tmp = dir.join(format!(".{}.{}.tmp", sha, uuid::Uuid::new_v4().simple()));
        let written = (|| -> std::io::Result<()> {
            let mut file = crate::files::private_file(&tmp)?;
            file.write_all(data)?;
            file.sync_all()?;
            fs::rename(&tmp, &path)?;
            // make the rename itself durable
            fs::File::open(dir)?.sync_all()
        })();
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            let what = if e.raw_os_error() == Some(28) {
                "the disk is full: cannot write the model artifact; nothing was registered"
            } else {
                "cannot write the model artifact"
            };
            return Err(RegistryError::io(format!("{what} ({})", path.display()), e));
        }
        Ok(sha)
    }

    /// Reads the artifact and checks its hash; `label` names the version in errors.
    pub fn get(&self, sha256: &str, label: &str) -> Result<Vec<u8>> {
        if !is_sha256(sha256) {
            return Err(RegistryError::Integrity(format!(
                "the artifact hash of {label} is not a sha256 ({sha256:?}): its database row was altered"
            )));
        }
        let path = self.path(sha256);
        let data = fs::read(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => RegistryError::Integrity(format!(
                "the artifact of {label} is missing: expected {} (sha256 {sha256})",
                path.display()
            )),
            _ => RegistryError::io(
                format!("cannot read the artifact of {label} at {}", path.display()),
                e,
            ),
        })?;
        let found = sha256_hex(&data);
        if found != sha256 {
            return Err(RegistryError::Integrity(format!(
                "the artifact of {label} is corrupt: expected sha256 {sha256}, found {found} ({})",
                path.display()
            )));
        }
        Ok(data)
    }
}

/// 64 lower-case hexadecimal digits, as `sha256_hex` writes.
fn is_sha256(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tampered_hashes_are_errors_and_files_are_owner_only() {
        let dir = std::env::temp_dir().join(format!("ph-art-{}", uuid::Uuid::new_v4().simple()));
        let store = ArtifactStore::new(dir.join("a/b"));
        let sha = store.put(b"model bytes").unwrap();
        assert_eq!(store.get(&sha, "v1").unwrap(), b"model bytes");
        for bad in [
            "\u{e9}\u{e9}",
            "é0000",
            "../../etc/passwd",
            "",
            &sha.to_uppercase(),
        ] {
            let e = store.get(bad, "v1").unwrap_err().to_string();
            assert!(e.contains("not a sha256"), "{e}");
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&store.path(&sha)), 0o600);
            assert_eq!(mode(store.path(&sha).parent().unwrap()), 0o700);
            assert_eq!(mode(&dir.join("a")), 0o700);
        }
        // A temporary file from a writer that died: removed once it is old, not before.
        let folder = store.path(&sha).parent().unwrap().to_path_buf();
        let tmp = folder.join(".dead.tmp");
        fs::write(&tmp, b"half").unwrap();
        assert_eq!(store.clean_stale(), 0);
        let old = SystemTime::now() - Duration::from_secs(7200);
        fs::File::options()
            .write(true)
            .open(&tmp)
            .unwrap()
            .set_modified(old)
            .unwrap();
        assert_eq!(store.clean_stale(), 1);
        assert!(!tmp.exists() && store.path(&sha).exists());
        fs::remove_dir_all(&dir).unwrap();
    }
}
