//! Writing commits into a local repository, without a work tree: how `launchway demo`
//! makes its throwaway config repo on a machine where git may not even be configured.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use gix::object::tree::EntryKind;

use crate::{Result, SourceError};

/// Creates a bare repository at `path` (if none is there) and commits `files`
/// (path, contents) on top of `main`, replacing files of the same name. Returns the new
/// commit's id.
pub fn commit_files(path: &Path, files: &[(&str, &str)], message: &str) -> Result<String> {
    let write_error = |source: gix::Error| SourceError::Read {
        what: format!("a commit in {}", path.display()),
        source: Box::new(source),
    };
    let repo = if path.join("HEAD").exists() {
        gix::open(path).map_err(write_error)?
    } else {
        gix::init_bare(path).map_err(write_error)?
    };
    let parent = repo.find_reference("refs/heads/main").ok().and_then(|mut reference| reference.peel_to_commit().ok());
    let base_tree = match &parent {
        Some(commit) => commit.tree_id().map_err(write_error)?.detach(),
        None => repo.empty_tree().id,
    };
    let mut editor = repo.edit_tree(base_tree).map_err(write_error)?;
    for (file, contents) in files {
        let blob = repo.write_blob(contents.as_bytes()).map_err(write_error)?;
        editor.upsert(*file, EntryKind::Blob, blob).map_err(write_error)?;
    }
    let tree = editor.write().map_err(write_error)?;
    let seconds = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_secs());
    let time = format!("{seconds} +0000");
    let signature =
        gix::actor::SignatureRef { name: "launchway demo".into(), email: "demo@launchway.invalid".into(), time: &time };
    let parents: Vec<gix::ObjectId> = parent.iter().map(|commit| commit.id).collect();
    let id = repo.commit_as(signature, signature, "refs/heads/main", message, tree, parents).map_err(write_error)?;
    Ok(id.to_string())
}
