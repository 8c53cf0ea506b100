//! What the server and CI ask of history: tags, the default branch, and the last commit
//! that changed a folder.

use std::path::Path;

use crate::{Commit, ConfigRepo, REMOTE_HEAD, Result, SourceError, describe_commit, not_a_repo};

/// A tag and the commit it points to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tag {
    pub name: String,
    pub commit: Commit,
}

impl ConfigRepo {
    /// Every tag that points (directly or through an annotated tag) to a commit.
    pub fn tags(&self) -> Result<Vec<Tag>> {
        let repo = self.repo.to_thread_local();
        let read = |source: gix::Error| SourceError::Read { what: "tags".to_owned(), source: Box::new(source) };
        let platform = repo.references().map_err(read)?;
        let mut tags = Vec::new();
        for reference in platform.tags().map_err(read)? {
            let Ok(mut reference) = reference else { continue };
            let name = reference.name().shorten().to_string();
            // A tag of a tree or blob is not a release.
            if let Ok(commit) = reference.peel_to_commit() {
                tags.push(Tag { name, commit: describe_commit(&commit)? });
            }
        }
        Ok(tags)
    }

    /// The branch the repo's HEAD names: for a mirror, the remote's (the branch at the
    /// remote HEAD's commit, `main` or `master` first when several are).
    pub fn default_branch(&self) -> Option<String> {
        let repo = self.repo.to_thread_local();
        if self.remote_url.is_none() {
            let name = repo.head_name().ok()??;
            return Some(name.shorten().to_string().trim_start_matches("heads/").to_owned());
        }
        let head = repo.rev_parse_single(REMOTE_HEAD).ok()?.detach();
        let platform = repo.references().ok()?;
        let mut candidates: Vec<String> = platform
            .local_branches()
            .ok()?
            .filter_map(|reference| {
                let mut reference = reference.ok()?;
                let id = reference.peel_to_id().ok()?.detach();
                (id == head).then(|| reference.name().shorten().to_string())
            })
            .collect();
        candidates.sort_by_key(|name| (name != "main", name != "master", name.clone()));
        candidates.into_iter().next()
    }
}

/// The last commit reachable from `reference` (following first parents) that changed
/// what is at `path`: the image tag that changes only when that folder does.
pub fn last_change(path: &Path, reference: &str) -> Result<Commit> {
    let location = path.display().to_string();
    if !path.exists() {
        return Err(SourceError::NoSuchPath { path: location });
    }
    // A file is looked up from its folder.
    let folder = if path.is_file() { path.parent().unwrap_or(path) } else { path };
    let repo = gix::discover(folder).map_err(|source| not_a_repo(&location, source))?;
    let read = |what: &str, source: gix::Error| SourceError::Read { what: what.to_owned(), source: Box::new(source) };
    let relative = relative_to_work_dir(&repo, path)?;
    let tip = repo
        .rev_parse_single(reference)
        .map_err(|source| SourceError::UnknownRef {
            reference: reference.to_owned(),
            location: location.clone(),
            source: Box::new(source),
        })?
        .object()
        .map_err(|error| read("the starting commit", error))?
        .peel_to_commit()
        .map_err(|error| read("the starting commit", error))?;
    last_change_from(&tip, &relative, reference, None)
}

/// What was found before, by (path, commit): the last change of the path as of the
/// commit. A walk that reaches a commit found before stops there, so a server asked
/// about each new commit walks one or two commits, not the whole history.
pub(crate) type LastChanges = std::sync::Mutex<std::collections::HashMap<(std::path::PathBuf, gix::ObjectId), Commit>>;

/// Entries kept in [`LastChanges`] before it starts again (a few bytes each).
const LAST_CHANGES_KEPT: usize = 100_000;

/// The newest commit, walking first parents back from `tip`, after which the entry at
/// `relative` (a folder or file; "" for the whole tree) stayed as it is at `tip`.
pub(crate) fn last_change_from(
    tip: &gix::Commit<'_>,
    relative: &Path,
    reference: &str,
    memo: Option<&LastChanges>,
) -> Result<Commit> {
    let remember = |found: Commit| -> Result<Commit> {
        if let Some(memo) = memo {
            let mut memo = memo.lock().expect("not poisoned");
            if memo.len() >= LAST_CHANGES_KEPT {
                memo.clear();
            }
            memo.insert((relative.to_path_buf(), tip.id), found.clone());
        }
        Ok(found)
    };
    let repo = tip.repo;
    let read = |what: &str, source: gix::Error| SourceError::Read { what: what.to_owned(), source: Box::new(source) };
    let entry_at = |commit: &gix::Commit<'_>| -> Result<Option<gix::ObjectId>> {
        let tree = commit.tree().map_err(|error| read("a tree", error))?;
        if relative.as_os_str().is_empty() {
            return Ok(Some(tree.id));
        }
        let entry = tree.lookup_entry_by_path(relative).map_err(|error| read("a tree", error))?;
        Ok(entry.map(|entry| entry.oid().to_owned()))
    };
    let walk = repo.rev_walk([tip.id]).first_parent_only().all().map_err(|error| read("history", error))?;
    let mut newest: Option<(gix::Commit<'_>, Option<gix::ObjectId>)> = None;
    for info in walk {
        let info = info.map_err(|error| read("history", error))?;
        let commit = info.object().map_err(|error| read("a commit", error))?;
        let entry = entry_at(&commit)?;
        if let Some((candidate, candidate_entry)) = &newest {
            if *candidate_entry != entry {
                return remember(describe_commit(candidate)?);
            }
        } else if entry.is_none() {
            return Err(SourceError::Read {
                what: format!("{} at {reference}", relative.display()),
                source: "it is not in the repository at that commit".into(),
            });
        }
        // Unchanged from here to the tip: what was found for this commit holds for it.
        let known =
            memo.and_then(|memo| memo.lock().expect("not poisoned").get(&(relative.to_path_buf(), commit.id)).cloned());
        if let Some(known) = known {
            return remember(known);
        }
        newest = Some((commit, entry));
    }
    // It has been there, unchanged, since the first commit.
    let (first, _) = newest.expect("the walk starts at the tip");
    remember(describe_commit(&first)?)
}

fn relative_to_work_dir(repo: &gix::Repository, path: &Path) -> Result<std::path::PathBuf> {
    let Some(work_dir) = repo.workdir() else {
        return Err(SourceError::Read {
            what: path.display().to_string(),
            source: "the repository has no work tree to resolve the path in".into(),
        });
    };
    let canonical = |path: &Path| {
        path.canonicalize()
            .map_err(|source| SourceError::Read { what: path.display().to_string(), source: Box::new(source) })
    };
    let (work_dir, path) = (canonical(work_dir)?, canonical(path)?);
    Ok(path.strip_prefix(&work_dir).map(Path::to_path_buf).unwrap_or_default())
}
