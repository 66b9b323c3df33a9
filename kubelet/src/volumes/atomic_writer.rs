//! Writes a volume's files so that a reader never sees a half-updated
//! set, the way upstream's AtomicWriter does for configMap, secret,
//! downwardAPI and projected volumes:
//!
//! ```text
//! <dir>/..2026_11_26_12_00_00.123456789/<files>   one generation
//! <dir>/..data -> ..2026_11_26_12_00_00.123456789 the current one
//! <dir>/<name> -> ..data/<name>                   what users open
//! ```
//!
//! An update writes a new generation, then swaps `..data` with one
//! `rename` (atomic), then removes the old generation. A container sees
//! the volume's directory through a bind mount, so it sees the swap too.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path};

const DATA: &str = "..data";

/// One file of a volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File {
    pub data: Vec<u8>,
    pub mode: u32,
}

/// Checks a path a user gave for a file in a volume: relative, without
/// `..`, not starting with `..`.
pub fn check_path(path: &str) -> Result<(), String> {
    let p = Path::new(path);
    if path.is_empty() || p.is_absolute() {
        return Err(format!("{path:?}: must be a relative path"));
    }
    if p.components().any(|c| !matches!(c, Component::Normal(_))) || path.starts_with("..") {
        return Err(format!("{path:?}: must not contain '..'"));
    }
    Ok(())
}

/// Whether the current generation already holds exactly `files`.
fn unchanged(dir: &Path, files: &BTreeMap<String, File>) -> bool {
    let current = dir.join(DATA);
    if std::fs::read_link(&current).is_err() {
        return false;
    }
    let mut count = 0;
    let mut stack = vec![current.clone()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            return false;
        };
        for e in entries.filter_map(|e| e.ok()) {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(e.path());
            } else {
                count += 1;
            }
        }
    }
    count == files.len()
        && files.iter().all(|(path, file)| {
            let p = current.join(path);
            std::fs::read(&p).is_ok_and(|d| d == file.data)
                && std::fs::metadata(&p).is_ok_and(|m| m.permissions().mode() & 0o7777 == file.mode)
        })
}

/// Makes `dir` hold exactly `files`; returns whether anything changed.
pub fn write(dir: &Path, files: &BTreeMap<String, File>) -> std::io::Result<bool> {
    for path in files.keys() {
        check_path(path).map_err(std::io::Error::other)?;
    }
    std::fs::create_dir_all(dir)?;
    if unchanged(dir, files) {
        return Ok(false);
    }
    let old = std::fs::read_link(dir.join(DATA)).ok();
    let stamp = client::api::timestamp_now()
        .strftime("%Y_%m_%d_%H_%M_%S.%f")
        .to_string();
    let generation = format!("..{stamp}");
    let target = dir.join(&generation);
    std::fs::create_dir_all(&target)?;
    for (path, file) in files {
        let p = target.join(path);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&p, &file.data)?;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(file.mode))?;
    }
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(&generation, &tmp)?;
    std::fs::rename(&tmp, dir.join(DATA))?;
    // The names users open: one link per top-level entry.
    let top: std::collections::BTreeSet<String> = files
        .keys()
        .filter_map(|p| p.split('/').next())
        .map(str::to_string)
        .collect();
    for name in &top {
        let link = dir.join(name);
        if std::fs::read_link(&link).is_err() {
            std::os::unix::fs::symlink(Path::new(DATA).join(name), &link)?;
        }
    }
    for entry in std::fs::read_dir(dir)?.filter_map(|e| e.ok()) {
        let name = entry.file_name().to_string_lossy().to_string();
        if !name.starts_with("..") && !top.contains(&name) && std::fs::read_link(entry.path()).is_ok() {
            std::fs::remove_file(entry.path())?;
        }
    }
    // Only ever a generation of ours: a bare `..<stamp>` name.
    let ours = |o: &Path| {
        let name = o.to_string_lossy();
        o.components().count() == 1 && name.starts_with("..") && name.len() > 2 && name != DATA && name != generation
    };
    if let Some(old) = old.filter(|o| ours(o)) {
        let _ = std::fs::remove_dir_all(dir.join(old));
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(data: &str, mode: u32) -> File {
        File {
            data: data.as_bytes().to_vec(),
            mode,
        }
    }

    #[test]
    fn generations_swap_and_stale_names_go() {
        let dir = std::env::temp_dir().join(format!("atomic-writer-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut files = BTreeMap::from([
            ("a".to_string(), file("one", 0o644)),
            ("sub/b".to_string(), file("two", 0o400)),
        ]);
        assert!(write(&dir, &files).unwrap());
        assert_eq!(std::fs::read_to_string(dir.join("a")).unwrap(), "one");
        assert_eq!(std::fs::read_to_string(dir.join("sub/b")).unwrap(), "two");
        let mode = std::fs::metadata(dir.join("sub/b")).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o400);
        assert!(!write(&dir, &files).unwrap(), "the same files are no change");
        files.remove("sub/b");
        files.insert("a".into(), file("uno", 0o644));
        assert!(write(&dir, &files).unwrap());
        assert_eq!(std::fs::read_to_string(dir.join("a")).unwrap(), "uno");
        assert!(!dir.join("sub").exists());
        let generations = std::fs::read_dir(&dir)
            .unwrap()
            .filter(|e| {
                let n = e.as_ref().unwrap().file_name().to_string_lossy().to_string();
                n.starts_with("..") && n != "..data"
            })
            .count();
        assert_eq!(generations, 1, "the old generation is removed");
        assert!(write(&dir, &BTreeMap::from([("../x".to_string(), file("", 0o644))])).is_err());
        assert!(check_path("/etc/passwd").is_err());
        assert!(check_path("..data/x").is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
