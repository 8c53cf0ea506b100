//! Manifest files from a folder on disk, for `launchway validate` before a commit.

use std::path::Path;

use std::path::PathBuf;

use launchway_manifest::{APPS_DIR, MAX_FILE_BYTES, ROOT_FILE, RepoFiles, SAMPLE_FILE, SourceFile, is_manifest_path};

use crate::{MAX_FILES, Result, SourceError};

/// Reads the manifest files under `dir` (a config repo's work tree), or the single file
/// `dir` names, which is then read as the root manifest (`deployment.yaml` by that name
/// is read as the gitops sample's format).
///
/// Symbolic links are followed only while they stay inside `dir`: a link that leads out
/// of the repo is an error, never read (a commit cannot hold such a file either).
pub fn read_work_tree(dir: &Path) -> Result<Vec<SourceFile>> {
    if dir.is_file() {
        let name = if dir.file_name().is_some_and(|name| name == SAMPLE_FILE) { SAMPLE_FILE } else { ROOT_FILE };
        return Ok(vec![SourceFile { path: name.to_owned(), bytes: read_limited(dir, name)? }]);
    }
    let root = canonical_root(dir)?;
    let mut files = Vec::new();
    for name in [ROOT_FILE, SAMPLE_FILE] {
        let file = dir.join(name);
        if file.is_file() {
            files.push(SourceFile { path: name.to_owned(), bytes: read_limited(&within(&root, &file, name)?, name)? });
        }
    }
    walk(&root, &dir.join(APPS_DIR), APPS_DIR, &mut files)?;
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(files)
}

/// The files of a work tree, for the manifest to read what it refers to.
pub struct WorkTreeFiles {
    pub root: PathBuf,
}

impl RepoFiles for WorkTreeFiles {
    fn read(&self, path: &str) -> std::result::Result<Option<Vec<u8>>, String> {
        let file = self.root.join(path);
        if !file.is_file() {
            return Ok(None);
        }
        let inside = canonical_root(&self.root).and_then(|root| within(&root, &file, path));
        inside.and_then(|file| read_limited(&file, path)).map(Some).map_err(|error| error.to_string())
    }
}

fn canonical_root(dir: &Path) -> Result<PathBuf> {
    std::fs::canonicalize(dir).map_err(|source| io_error(&dir.display().to_string(), source))
}

/// `file` with every link followed, when that stays inside `root` (canonical).
fn within(root: &Path, file: &Path, display: &str) -> Result<PathBuf> {
    let resolved = std::fs::canonicalize(file).map_err(|source| io_error(display, source))?;
    if resolved.starts_with(root) { Ok(resolved) } else { Err(SourceError::OutsideRepo { path: display.to_owned() }) }
}

fn walk(root: &Path, dir: &Path, prefix: &str, files: &mut Vec<SourceFile>) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for entry in entries {
        let entry = entry.map_err(|source| io_error(&dir.display().to_string(), source))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = format!("{prefix}/{name}");
        let file_type = entry.file_type().map_err(|source| io_error(&path, source))?;
        if file_type.is_dir() {
            walk(root, &entry.path(), &path, files)?;
        } else if (file_type.is_file() || file_type.is_symlink()) && is_manifest_path(&path) {
            let file = within(root, &entry.path(), &path)?;
            if !file.is_file() {
                continue;
            }
            if files.len() >= MAX_FILES {
                return Err(SourceError::TooManyFiles { commit: "the work tree".to_owned(), limit: MAX_FILES });
            }
            files.push(SourceFile { bytes: read_limited(&file, &path)?, path });
        }
    }
    Ok(())
}

fn read_limited(file: &Path, display: &str) -> Result<Vec<u8>> {
    let size = std::fs::metadata(file).map_err(|source| io_error(display, source))?.len();
    if size > MAX_FILE_BYTES as u64 {
        return Err(SourceError::FileTooLarge {
            path: display.to_owned(),
            size,
            commit: "the work tree".to_owned(),
            limit: MAX_FILE_BYTES,
        });
    }
    std::fs::read(file).map_err(|source| io_error(display, source))
}

fn io_error(what: &str, source: std::io::Error) -> SourceError {
    SourceError::Read { what: what.to_owned(), source: Box::new(source) }
}
