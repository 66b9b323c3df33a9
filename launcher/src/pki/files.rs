//! Writing key material to disk without ever losing or exposing it.
//!
//! Private keys (and kubeconfigs, which embed them) are created 0600 from
//! the first byte, never world-readable even for an instant. Every file is
//! written to a temporary name in the same directory, synced, then renamed,
//! so a crash leaves the old file or the new one, never half of one. An
//! existing file is replaced only when the caller says `--force`.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Errors of the PKI commands; each names the file and says why.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {action} failed: {source}")]
    Io {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} exists but {missing} does not; a certificate without its key (or the reverse) cannot be used, and replacing it would change an identity others may rely on. Restore the missing file or run again with --force to regenerate")]
    HalfPair { path: PathBuf, missing: PathBuf },
    #[error("{path} was signed by a CA that no longer exists ({ca} is being created anew); run again with --force to regenerate every certificate")]
    Orphaned { path: PathBuf, ca: PathBuf },
    #[error("{path}: not a usable {what}: {detail}")]
    Unusable {
        path: PathBuf,
        what: &'static str,
        detail: String,
    },
    #[error("no cluster CA in {dir} ({missing} is missing); run `kubernate pki init --dir {dir}` first")]
    NoCa { dir: PathBuf, missing: PathBuf },
    #[error("invalid {what} {value:?}: {reason}")]
    InvalidInput {
        what: &'static str,
        value: String,
        reason: String,
    },
    #[error("cannot generate {what}: {detail}")]
    Generate { what: String, detail: String },
}

/// Who may read a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// 0600: private keys and kubeconfigs.
    Secret,
    /// 0644: certificates and public keys.
    Public,
}

impl Mode {
    fn bits(self) -> u32 {
        match self {
            Mode::Secret => 0o600,
            Mode::Public => 0o644,
        }
    }
}

pub(crate) fn io_err<'a>(path: &'a Path, action: &'static str) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |source| Error::Io {
        path: path.to_path_buf(),
        action,
        source,
    }
}

/// Writes `contents` to `path` atomically with the given mode. The caller
/// has already decided the file may be (re)written.
pub fn write(path: &Path, contents: &[u8], mode: Mode) -> Result<(), Error> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io_err(dir, "creating the directory"))?;
    // NamedTempFile is created 0600, so a secret is never readable by others.
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io_err(dir, "creating a temporary file"))?;
    tmp.write_all(contents).map_err(io_err(path, "writing"))?;
    tmp.as_file().sync_all().map_err(io_err(path, "syncing"))?;
    set_mode(tmp.path(), mode).map_err(io_err(path, "setting permissions"))?;
    tmp.persist(path).map_err(|e| Error::Io {
        path: path.to_path_buf(),
        action: "renaming into place",
        source: e.error,
    })?;
    Ok(())
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: Mode) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode.bits()))
}

#[cfg(not(unix))]
fn set_mode(_: &Path, _: Mode) -> std::io::Result<()> {
    Ok(())
}

/// Reads a text file, naming it in the error.
pub fn read(path: &Path) -> Result<String, Error> {
    std::fs::read_to_string(path).map_err(io_err(path, "reading"))
}

/// What to do about a certificate/key pair on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PairState {
    /// Neither file exists.
    Absent,
    /// Both exist.
    Present,
}

/// Whether the pair exists, refusing a half pair.
pub fn pair_state(cert: &Path, key: &Path) -> Result<PairState, Error> {
    match (cert.exists(), key.exists()) {
        (false, false) => Ok(PairState::Absent),
        (true, true) => Ok(PairState::Present),
        (true, false) => Err(Error::HalfPair {
            path: cert.to_path_buf(),
            missing: key.to_path_buf(),
        }),
        (false, true) => Err(Error::HalfPair {
            path: key.to_path_buf(),
            missing: cert.to_path_buf(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn secrets_are_0600_and_public_files_0644() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("sub/a.key");
        write(&key, b"k", Mode::Secret).unwrap();
        let crt = dir.path().join("a.crt");
        write(&crt, b"c", Mode::Public).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&key), 0o600);
        assert_eq!(mode(&crt), 0o644);
        assert_eq!(std::fs::read(&key).unwrap(), b"k");
    }

    #[test]
    fn half_pairs_are_refused_naming_the_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let (c, k) = (dir.path().join("x.crt"), dir.path().join("x.key"));
        assert_eq!(pair_state(&c, &k).unwrap(), PairState::Absent);
        std::fs::write(&c, "c").unwrap();
        let err = pair_state(&c, &k).unwrap_err().to_string();
        assert!(err.contains("x.key does not"), "{err}");
    }
}
