//! The content-addressed artifact store: each model file lives once, under its sha256.
//! Writes go to a temporary file in the same folder, are fsynced, then renamed into place,
//! so a reader (or a crash) never sees half a file. Reads verify the hash.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

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

    /// Where the artifact with this hash lives.
    pub fn path(&self, sha256: &str) -> PathBuf {
        let (head, _) = sha256.split_at(2.min(sha256.len()));
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
        fs::create_dir_all(dir).map_err(|e| {
            RegistryError::io(
                format!("cannot create artifact folder {}", dir.display()),
                e,
            )
        })?;
        let tmp = dir.join(format!(".{}.{}.tmp", sha, uuid::Uuid::new_v4().simple()));
        let written = (|| -> std::io::Result<()> {
            let mut file = fs::File::create(&tmp)?;
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
