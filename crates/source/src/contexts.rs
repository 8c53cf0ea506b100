//! Build contexts: a folder of the config repo at a commit, as the tar archive an image
//! builder takes, and the commit that last changed it (what `${context}` tags name).
//! Read from git objects, never from a work tree, so what is built is exactly what was
//! committed.

use std::collections::HashMap;
use std::path::Path;

use launchway_manifest::BuildSources;

use crate::history::last_change_from;
use crate::{Commit, ConfigRepo, Result, SourceError};

/// A folder of a commit, ready to build from.
pub struct BuildContext {
    /// The folder's tree id: the same id, the same context, whatever the commit.
    pub tree: String,
    /// A tar archive of the folder's files (modes kept, symbolic links as links).
    pub archive: Vec<u8>,
}

impl ConfigRepo {
    /// The last commit, as of `commit`, that changed `folder` ("" for the whole repo).
    ///
    /// # Errors
    /// When the folder is not in the commit.
    pub fn last_change_at(&self, commit: &str, folder: &str) -> Result<Commit> {
        let repo = self.repo.to_thread_local();
        let tip = find_commit(&repo, commit)?;
        last_change_from(&tip, Path::new(folder), &commit[..commit.len().min(10)], Some(&self.last_changes))
    }

    /// Sets the image of every container the manifest (read at `commit`) builds to the
    /// reference its build will have ([`launchway_manifest::Manifest::set_build_references`]):
    /// contexts of this repo at the commit, or of another repository at its ref (opened,
    /// and for a URL mirrored and fetched, beside this one's mirrors).
    ///
    /// # Errors
    /// A context folder that is not in its commit, or a source that cannot be read, at
    /// the `build:` concerned.
    pub fn set_build_references(
        &self,
        commit: &Commit,
        manifest: &mut launchway_manifest::Manifest,
    ) -> std::result::Result<(), launchway_manifest::Diagnostic> {
        let mut sources = Sources { config: self, others: HashMap::new(), allowed: None };
        manifest.set_build_references(&commit.id, &mut sources)
    }

    /// As [`ConfigRepo::set_build_references`], contacting no other repository than
    /// those of `allowed`: a pull request's head is read so, with the repositories its
    /// base branch already builds from, so that what a request adds reaches out nowhere
    /// before it is merged. Another is refused at its `build:`.
    ///
    /// # Errors
    /// As [`ConfigRepo::set_build_references`], and a build source not in `allowed`.
    pub fn set_build_references_within(
        &self,
        commit: &Commit,
        manifest: &mut launchway_manifest::Manifest,
        allowed: &std::collections::BTreeSet<String>,
    ) -> std::result::Result<(), launchway_manifest::Diagnostic> {
        let mut sources = Sources { config: self, others: HashMap::new(), allowed: Some(allowed) };
        manifest.set_build_references(&commit.id, &mut sources)
    }

    /// `folder` at `commit` as a build context.
    ///
    /// # Errors
    /// When the folder is not a folder of the commit, or an object cannot be read.
    pub fn build_context(&self, commit: &str, folder: &str) -> Result<BuildContext> {
        let repo = self.repo.to_thread_local();
        let read = |what: String, source: gix::Error| SourceError::Read { what, source: Box::new(source) };
        let root = find_commit(&repo, commit)?.tree().map_err(|error| read(format!("commit {commit}"), error))?;
        let tree_id = if folder.is_empty() {
            root.id
        } else {
            let entry = root
                .lookup_entry_by_path(folder)
                .map_err(|error| read(format!("{folder} at {commit}"), error))?
                .filter(|entry| entry.mode().is_tree())
                .ok_or_else(|| SourceError::Read {
                    what: format!("build context {folder:?}"),
                    source: format!("it is not a folder of commit {}", &commit[..commit.len().min(10)]).into(),
                })?;
            entry.oid().to_owned()
        };
        let mut archive = tar::Builder::new(Vec::new());
        append_tree(&repo, tree_id, "", &mut archive)?;
        let archive = archive.into_inner().map_err(|error| SourceError::Read {
            what: format!("build context {folder:?}"),
            source: Box::new(error),
        })?;
        Ok(BuildContext { tree: tree_id.to_string(), archive })
    }
}

fn find_commit<'r>(repo: &'r gix::Repository, commit: &str) -> Result<gix::Commit<'r>> {
    let unknown = |source: Box<dyn std::error::Error + Send + Sync>| SourceError::UnknownRef {
        reference: commit.to_owned(),
        location: repo.git_dir().display().to_string(),
        source,
    };
    let id = gix::ObjectId::from_hex(commit.as_bytes()).map_err(|error| unknown(Box::new(error)))?;
    repo.find_commit(id).map_err(|error| unknown(Box::new(error)))
}

/// Adds the tree's files under `prefix`, depth first. Submodules have no content here
/// and are left out, as `docker build` of a checkout without them would see them.
fn append_tree(
    repo: &gix::Repository,
    tree: gix::ObjectId,
    prefix: &str,
    archive: &mut tar::Builder<Vec<u8>>,
) -> Result<()> {
    let read = |what: String, source: Box<dyn std::error::Error + Send + Sync>| SourceError::Read { what, source };
    let tree = repo.find_tree(tree).map_err(|error| read(format!("folder {prefix:?}"), Box::new(error)))?;
    for entry in tree.iter() {
        let entry = entry.map_err(|error| read(format!("folder {prefix:?}"), Box::new(error)))?;
        let path = format!("{prefix}{}", entry.filename());
        let mode = entry.mode();
        let oid = entry.oid().to_owned();
        if mode.is_tree() {
            append_tree(repo, oid, &format!("{path}/"), archive)?;
            continue;
        }
        if !(mode.is_blob() || mode.is_link()) {
            continue;
        }
        let blob = repo.find_blob(oid).map_err(|error| read(path.clone(), Box::new(error)))?;
        let mut header = tar::Header::new_gnu();
        header.set_mtime(0);
        let appended = if mode.is_link() {
            header.set_entry_type(tar::EntryType::Symlink);
            header.set_mode(0o777);
            header.set_size(0);
            let target = String::from_utf8_lossy(&blob.data).into_owned();
            archive.append_link(&mut header, &path, target)
        } else {
            header.set_entry_type(tar::EntryType::Regular);
            header.set_mode(if mode.is_executable() { 0o755 } else { 0o644 });
            header.set_size(blob.data.len() as u64);
            archive.append_data(&mut header, &path, blob.data.as_slice())
        };
        appended.map_err(|error| read(path, Box::new(error)))?;
    }
    Ok(())
}

/// The config repo and the other repositories builds name, each opened once.
struct Sources<'a> {
    config: &'a ConfigRepo,
    others: HashMap<String, ConfigRepo>,
    /// The other repositories that may be contacted; `None`: any.
    allowed: Option<&'a std::collections::BTreeSet<String>>,
}

impl Sources<'_> {
    fn repo(&mut self, location: Option<&str>) -> Result<&ConfigRepo> {
        let Some(location) = location else {
            return Ok(self.config);
        };
        if self.allowed.is_some_and(|allowed| !allowed.contains(location)) {
            return Err(SourceError::Read {
                what: format!("build source {location}"),
                source: "the base branch builds from no such repository, and launchway contacts none a pull request adds before it is merged".into(),
            });
        }
        if !self.others.contains_key(location) {
            let opened = ConfigRepo::open(location, &self.config.cache_dir)?;
            self.others.insert(location.to_owned(), opened);
        }
        Ok(&self.others[location])
    }
}

impl BuildSources for Sources<'_> {
    fn resolve(&mut self, repo: &str, git_ref: &str) -> std::result::Result<String, String> {
        let resolved = self.repo(Some(repo)).and_then(|opened| opened.resolve(git_ref));
        resolved.map(|commit| commit.id).map_err(|error| with_causes(&error))
    }

    fn last_change(&mut self, repo: Option<&str>, commit: &str, folder: &str) -> std::result::Result<String, String> {
        let last = self.repo(repo).and_then(|opened| opened.last_change_at(commit, folder));
        last.map(|commit| commit.id).map_err(|error| with_causes(&error))
    }
}

/// An error and its causes, on one line.
fn with_causes(error: &SourceError) -> String {
    let mut message = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        message.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    message
}
