//! The config repo: desired state read straight from commits, never from a work tree.
//!
//! A local repository is read in place. A remote one (`file://`, `http(s)://`, `ssh://`)
//! is mirrored into a bare repository under a cache directory and fetched on demand;
//! launchway never checks anything out. Everything here is blocking (gix is); async
//! callers run it on a blocking thread.

mod contexts;
mod history;
mod thread;
mod worktree;
mod write;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::AtomicBool;

use launchway_manifest::{APPS_DIR, MAX_FILE_BYTES, ROOT_FILE, RepoFiles, SAMPLE_FILE, SourceFile, is_manifest_path};
use sha2::{Digest, Sha256};

pub use contexts::BuildContext;
pub use history::{Tag, last_change};
pub use thread::RepoThread;
pub use worktree::{WorkTreeFiles, read_work_tree};
pub use write::commit_files;

/// Most manifest files read from one commit: beyond this the repo is not a config repo.
pub const MAX_FILES: usize = 10_000;

/// Where a remote repo's mirror keeps the remote's `HEAD`.
pub(crate) const REMOTE_HEAD: &str = "refs/launchway/remote-head";

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{location} is not a git repository")]
    NotARepository {
        location: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("could not fetch {url}")]
    Fetch {
        url: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error(
        "{location} has no commits yet: commit launchway.yaml first (`launchway validate` checks the files on disk, `launchway plan --work-tree` plans them)"
    )]
    NoCommits { location: String },
    #[error("{path} does not exist: give the folder (or file) the image is built from")]
    NoSuchPath { path: String },
    #[error("{reference:?} does not name a commit in {location}")]
    UnknownRef {
        reference: String,
        location: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("{path} is {size} bytes at commit {commit}; manifests are limited to {limit} bytes")]
    FileTooLarge { path: String, size: u64, commit: String, limit: usize },
    #[error("commit {commit} has more than {limit} manifest files")]
    TooManyFiles { commit: String, limit: usize },
    #[error("{path} is a symbolic link that leads outside the config repo; launchway reads only the repo's own files")]
    OutsideRepo { path: String },
    #[error("could not read {what}")]
    Read {
        what: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

pub type Result<T, E = SourceError> = std::result::Result<T, E>;

/// A commit of the config repo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commit {
    /// Full hex object id.
    pub id: String,
    /// First line of the message.
    pub summary: String,
    pub author: String,
    /// Seconds since the Unix epoch.
    pub time: i64,
}

impl Commit {
    pub fn short_id(&self) -> &str {
        &self.id[..self.id.len().min(10)]
    }
}

/// A config repo, local or mirrored.
pub struct ConfigRepo {
    pub(crate) repo: gix::ThreadSafeRepository,
    location: String,
    /// The URL to fetch from, for a mirrored remote.
    pub(crate) remote_url: Option<String>,
    /// Where mirrors are kept: other repositories a build's `source:` names go there too.
    pub(crate) cache_dir: PathBuf,
    /// The manifest files last read, by blob id: a commit that changes one app of a
    /// thousand reads one blob, not a thousand (`launchway server` reads every push).
    manifest_blobs: Mutex<HashMap<gix::ObjectId, Vec<u8>>>,
    /// The last changes of build contexts found so far (`last_change_at`).
    pub(crate) last_changes: history::LastChanges,
}

impl ConfigRepo {
    /// Opens the repo at `location`: a path (the repo or any folder inside it) or a URL,
    /// which is mirrored under `cache_dir` and fetched.
    pub fn open(location: &str, cache_dir: &Path) -> Result<ConfigRepo> {
        if is_url(location) {
            let mirror = mirror_path(cache_dir, location);
            let repo = if mirror.exists() {
                gix::open(&mirror).map_err(|source| not_a_repo(&mirror.display().to_string(), source))?
            } else {
                std::fs::create_dir_all(cache_dir).map_err(|source| SourceError::Read {
                    what: format!("cache directory {}", cache_dir.display()),
                    source: Box::new(source),
                })?;
                gix::init_bare(&mirror).map_err(|source| not_a_repo(&mirror.display().to_string(), source))?
            };
            let repo = ConfigRepo {
                repo: repo.into_sync(),
                location: location.to_owned(),
                remote_url: Some(location.to_owned()),
                cache_dir: cache_dir.to_path_buf(),
                manifest_blobs: Mutex::default(),
                last_changes: Mutex::default(),
            };
            repo.fetch()?;
            Ok(repo)
        } else {
            let repo = gix::discover(location).map_err(|source| not_a_repo(location, source))?;
            Ok(ConfigRepo {
                repo: repo.into_sync(),
                location: location.to_owned(),
                remote_url: None,
                cache_dir: cache_dir.to_path_buf(),
                manifest_blobs: Mutex::default(),
                last_changes: Mutex::default(),
            })
        }
    }

    pub fn location(&self) -> &str {
        &self.location
    }

    /// The folder a local repo is checked out in (none for a mirror or a bare repo).
    pub fn work_dir(&self) -> Option<PathBuf> {
        if self.remote_url.is_some() {
            return None;
        }
        self.repo.to_thread_local().workdir().map(Path::to_path_buf)
    }

    /// Brings a mirrored remote up to date (branches, tags and the remote's HEAD).
    /// Does nothing for a local repo, which is always current.
    pub fn fetch(&self) -> Result<()> {
        self.fetch_with(&[])
    }

    /// As [`ConfigRepo::fetch`], with more refspecs: a pull request's head, which forges
    /// keep outside branches (`+refs/pull/7/head:refs/launchway/pulls/7`). A refspec the
    /// remote has nothing for fetches nothing.
    pub fn fetch_with(&self, more: &[String]) -> Result<()> {
        let Some(url) = &self.remote_url else {
            return Ok(());
        };
        let fetch_error = |source: gix::Error| SourceError::Fetch { url: url.clone(), source: Box::new(source) };
        let repo = self.repo.to_thread_local();
        let remote = repo
            .remote_at(url.as_str())
            .map_err(fetch_error)?
            .with_fetch_tags(gix::remote::fetch::Tags::None)
            .with_refspecs(
                ["+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*", &format!("+HEAD:{REMOTE_HEAD}")]
                    .into_iter()
                    .chain(more.iter().map(String::as_str)),
                gix::remote::Direction::Fetch,
            )
            .map_err(fetch_error)?;
        let interrupt = AtomicBool::new(false);
        remote
            .connect(gix::remote::Direction::Fetch)
            .map_err(fetch_error)?
            .prepare_fetch(gix::progress::Discard, Default::default())
            .map_err(fetch_error)?
            .receive(gix::progress::Discard, &interrupt)
            .map_err(fetch_error)?;
        Ok(())
    }

    /// The commit a branch, tag, `HEAD` or commit id names.
    pub fn resolve(&self, reference: &str) -> Result<Commit> {
        let repo = self.repo.to_thread_local();
        // A mirror's own HEAD is meaningless; the remote's is kept under REMOTE_HEAD.
        let spec = if self.remote_url.is_some() && reference == "HEAD" { REMOTE_HEAD } else { reference };
        let unknown = |source: gix::Error| SourceError::UnknownRef {
            reference: reference.to_owned(),
            location: self.location.clone(),
            source: Box::new(source),
        };
        if reference == "HEAD" && repo.head().is_ok_and(|head| head.is_unborn()) {
            return Err(SourceError::NoCommits { location: self.location.clone() });
        }
        let id = repo.rev_parse_single(spec).map_err(unknown)?;
        let commit = id.object().map_err(unknown)?.peel_to_commit().map_err(unknown)?;
        describe_commit(&commit)
    }

    /// The manifest files at a commit: `launchway.yaml` and every `.yaml`/`.yml` under
    /// `apps/`, with paths relative to the repo root.
    pub fn manifest_files(&self, commit: &Commit) -> Result<Vec<SourceFile>> {
        let repo = self.repo.to_thread_local();
        let read = |what: &str, source: gix::Error| SourceError::Read {
            what: format!("{what} at commit {}", commit.short_id()),
            source: Box::new(source),
        };
        let id = gix::ObjectId::from_hex(commit.id.as_bytes()).map_err(|source| SourceError::Read {
            what: format!("commit id {}", commit.id),
            source: Box::new(source),
        })?;
        let tree =
            repo.find_commit(id).map_err(|error| read("commit", error))?.tree().map_err(|error| read("tree", error))?;
        let mut files = Vec::new();
        let mut pending: Vec<(String, gix::ObjectId)> = Vec::new();
        for entry in tree.iter() {
            let entry = entry.map_err(|error| read("tree", error))?;
            let name = entry.filename().to_string();
            if entry.mode().is_blob() && (name == ROOT_FILE || name == SAMPLE_FILE) {
                pending.push((name, entry.oid().to_owned()));
            } else if entry.mode().is_tree() && name == APPS_DIR {
                collect_blobs(&repo, entry.oid().to_owned(), APPS_DIR, &mut pending)?;
            }
            if pending.len() > MAX_FILES {
                return Err(SourceError::TooManyFiles { commit: commit.id.clone(), limit: MAX_FILES });
            }
        }
        let mut read_before = self.manifest_blobs.lock().expect("not poisoned");
        let mut read_now = HashMap::with_capacity(pending.len());
        for (path, oid) in pending {
            let bytes = match read_before.remove(&oid).or_else(|| read_now.get(&oid).cloned()) {
                Some(bytes) => bytes,
                None => {
                    // Refuse huge blobs from their header, before reading them into memory.
                    let size = repo.find_header(oid).map_err(|error| read(&path, error))?.size();
                    if size > MAX_FILE_BYTES as u64 {
                        return Err(SourceError::FileTooLarge {
                            path,
                            size,
                            commit: commit.id.clone(),
                            limit: MAX_FILE_BYTES,
                        });
                    }
                    repo.find_blob(oid).map_err(|error| read(&path, error))?.data.clone()
                }
            };
            files.push(SourceFile { path, bytes: bytes.clone() });
            read_now.insert(oid, bytes);
        }
        // Only this commit's blobs are kept: the cache never outgrows one manifest.
        *read_before = read_now;
        Ok(files)
    }
}

/// The files of one commit, for the manifest to read what it refers to.
pub struct CommitFiles<'a> {
    repo: &'a ConfigRepo,
    commit: gix::ObjectId,
}

impl ConfigRepo {
    /// The manifest at `commit`, read and validated, the files it refers to read from the
    /// same commit: the one way everyone reads desired state at a commit. The outer error
    /// is the repository's (it cannot be read), the inner one the manifest's problems.
    pub fn manifest_at(
        &self,
        commit: &Commit,
    ) -> Result<std::result::Result<launchway_manifest::Validated, Vec<launchway_manifest::Diagnostic>>> {
        let files = self.manifest_files(commit)?;
        let referenced = self.files_at(commit)?;
        Ok(launchway_manifest::load(&files, &referenced))
    }

    /// Every file of `commit`, readable by path.
    pub fn files_at(&self, commit: &Commit) -> Result<CommitFiles<'_>> {
        let id = gix::ObjectId::from_hex(commit.id.as_bytes()).map_err(|source| SourceError::Read {
            what: format!("commit id {}", commit.id),
            source: Box::new(source),
        })?;
        Ok(CommitFiles { repo: self, commit: id })
    }
}

impl RepoFiles for CommitFiles<'_> {
    fn read(&self, path: &str) -> Result<Option<Vec<u8>>, String> {
        let repo = self.repo.repo.to_thread_local();
        let tree = repo.find_commit(self.commit).and_then(|commit| commit.tree()).map_err(|error| error.to_string())?;
        let Some(entry) = tree.lookup_entry_by_path(path).map_err(|error| error.to_string())? else {
            return Ok(None);
        };
        if !entry.mode().is_blob() {
            return Ok(None);
        }
        let size = repo.find_header(entry.oid()).map_err(|error| error.to_string())?.size();
        if size > MAX_FILE_BYTES as u64 {
            return Err(format!("it is {size} bytes; files are limited to {MAX_FILE_BYTES} bytes"));
        }
        let blob = repo.find_blob(entry.oid()).map_err(|error| error.to_string())?;
        Ok(Some(blob.data.clone()))
    }
}

/// A gix commit as launchway describes it.
pub(crate) fn describe_commit(commit: &gix::Commit<'_>) -> Result<Commit> {
    let read =
        |source: gix::Error| SourceError::Read { what: format!("commit {}", commit.id), source: Box::new(source) };
    let author = commit.author().map_err(read)?;
    let author_name = format!("{} <{}>", author.name, author.email);
    let time = author.time().map(|time| time.seconds).unwrap_or_default();
    let message = commit.message().map_err(read)?;
    Ok(Commit { id: commit.id.to_string(), summary: message.summary().to_string(), author: author_name, time })
}

fn collect_blobs(
    repo: &gix::Repository,
    tree_id: gix::ObjectId,
    prefix: &str,
    found: &mut Vec<(String, gix::ObjectId)>,
) -> Result<()> {
    let read = |source: gix::Error| SourceError::Read { what: format!("folder {prefix}"), source: Box::new(source) };
    let tree = repo.find_tree(tree_id).map_err(read)?;
    for entry in tree.iter() {
        let entry = entry.map_err(read)?;
        let path = format!("{prefix}/{}", entry.filename());
        if entry.mode().is_tree() {
            collect_blobs(repo, entry.oid().to_owned(), &path, found)?;
        } else if entry.mode().is_blob() && is_manifest_path(&path) {
            found.push((path, entry.oid().to_owned()));
        }
        if found.len() > MAX_FILES {
            break;
        }
    }
    Ok(())
}

/// URLs and scp-like `user@host:path` addresses are remotes; anything else is a path.
fn is_url(location: &str) -> bool {
    location.contains("://")
        || location.split_once(':').is_some_and(|(before, _)| before.contains('@') && !before.contains('/'))
}

/// Each remote gets its own mirror, named by a hash of its URL.
fn mirror_path(cache_dir: &Path, url: &str) -> PathBuf {
    let digest = Sha256::digest(url.as_bytes());
    cache_dir.join(format!("{}.git", hex::encode(&digest[..8])))
}

fn not_a_repo(location: &str, source: impl std::error::Error + Send + Sync + 'static) -> SourceError {
    SourceError::NotARepository { location: location.to_owned(), source: Box::new(source) }
}

#[cfg(test)]
mod tests;
