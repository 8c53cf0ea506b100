//! `build:` — how an app's images are built from the config repo, per container:
//!
//! ```yaml
//! build:
//!   tag: ${context}            # or ${sha}, or ${env}-${sha}
//!   source: {repo: https://git.example.com/shop.git, ref: main}   # else the config repo
//!   images:
//!     web:                     # a container of the app
//!       context: services/web  # a folder of the config repo
//!       dockerfile: Dockerfile # inside the context (the default)
//!       target: runtime
//!       args: {GO_VERSION: "1.23"}
//!       secrets: {npm_token: "ssm:/ci/npm-token"}
//!       repository: 123456789012.dkr.ecr.eu-west-1.amazonaws.com/web
//! ```
//!
//! A built container's image is the reference the build will have
//! ([`AppBuild::reference`]), which the caller that reads git sets with
//! [`crate::Manifest::set_build_references`]; until then it is empty.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::node::{Node, Pos};
use crate::reader::{Fields, Reader};

const BUILD_FIELDS: &[&str] = &["tag", "source", "images"];
const SOURCE_FIELDS: &[&str] = &["repo", "ref"];
const IMAGE_BUILD_FIELDS: &[&str] = &["context", "dockerfile", "target", "args", "secrets", "repository"];

/// An app's `build:`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppBuild {
    pub tag: TagScheme,
    /// Where the contexts are: another repository at a ref; absent, the config repo at
    /// the commit deployed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<BuildSource>,
    /// By container name.
    pub images: BTreeMap<String, ImageBuild>,
}

/// Another git repository the contexts come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildSource {
    /// A path or a `file://`, `http(s)://` or `ssh://` URL, as `--repo` takes.
    pub repo: String,
    /// The branch, tag or commit followed.
    #[serde(rename = "ref")]
    pub git_ref: String,
    /// The commit `git_ref` named when the manifest was read (set with the references).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
}

/// What [`crate::Manifest::set_build_references`] asks of git.
pub trait BuildSources {
    /// The commit `git_ref` names in `repo` now.
    ///
    /// # Errors
    /// Why it cannot be said (the repository cannot be read, the ref names nothing).
    fn resolve(&mut self, repo: &str, git_ref: &str) -> Result<String, String>;
    /// The last commit, as of `commit`, that touched `folder` ("" for all of it) of `repo`
    /// (`None`: the config repo).
    ///
    /// # Errors
    /// Why it cannot be said (the folder is not in the commit…).
    fn last_change(&mut self, repo: Option<&str>, commit: &str, folder: &str) -> Result<String, String>;
}

/// How built images are tagged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TagScheme {
    /// `${context}`: the last commit that touched the context folder, so a change
    /// elsewhere neither rebuilds nor redeploys the image (the default).
    Context,
    /// `${sha}`: the commit deployed.
    Commit,
    /// `${env}-${sha}`: the environment and the commit deployed.
    EnvCommit,
}

impl TagScheme {
    const WRITTEN: [(&'static str, TagScheme); 3] =
        [("${context}", TagScheme::Context), ("${sha}", TagScheme::Commit), ("${env}-${sha}", TagScheme::EnvCommit)];
}

/// How one container's image is built.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageBuild {
    /// A folder of the config repo ("" for its root).
    pub context: String,
    /// The Dockerfile's path inside the context.
    pub dockerfile: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub args: BTreeMap<String, String>,
    /// Secret id → an `ssm:` or `env:` reference, for `RUN --mount=type=secret,id=…`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secrets: BTreeMap<String, String>,
    /// Where the image is pushed; absent, it stays on the engine that built it (Docker
    /// environments only), deployed by image id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
}

/// Images built locally, never pushed, are named under this.
pub const LOCAL_REPOSITORY_PREFIX: &str = "launchway";

/// Commit ids in tags are this long, as `launchway ci tag` writes them.
pub const TAG_COMMIT_LENGTH: usize = 10;

impl AppBuild {
    /// The reference a container's image is built as: its repository (or a local name),
    /// tagged by the scheme. `context_commit` is the last commit that touched the
    /// context folder, as of `commit`.
    pub fn reference(&self, app: &str, container: &str, env: &str, commit: &str, context_commit: &str) -> String {
        let repository = self.repository(app, container).unwrap_or_default();
        let short = |id: &str| id[..id.len().min(TAG_COMMIT_LENGTH)].to_owned();
        let tag = match self.tag {
            TagScheme::Context => short(context_commit),
            TagScheme::Commit => short(commit),
            TagScheme::EnvCommit => format!("{env}-{}", short(commit)),
        };
        format!("{repository}:{tag}")
    }
}

/// Reads `build:`, checking each secret is an `ssm:` or `env:` reference (a value
/// written in the repo would be no secret) and each path stays inside the repo.
pub(crate) fn read_build(reader: &mut Reader<'_>, fields: &Fields<'_>, path: &str) -> Option<Option<(Pos, AppBuild)>> {
    let Some(node) = fields.get("build") else {
        return Some(None);
    };
    let path = format!("{path}.build");
    let build_fields = reader.fields(node, &path, BUILD_FIELDS)?;
    let tag = match build_fields.get("tag") {
        None => Some(TagScheme::Context),
        Some(tag_node) => {
            let written = reader.string(tag_node, &format!("{path}.tag"))?;
            match TagScheme::WRITTEN.iter().find(|(text, _)| *text == written) {
                Some((_, scheme)) => Some(*scheme),
                None => {
                    let known: Vec<&str> = TagScheme::WRITTEN.iter().map(|(text, _)| *text).collect();
                    reader.error(
                        tag_node.pos,
                        &format!("{path}.tag"),
                        format!("unknown tag scheme {written:?}: use one of {}", known.join(", ")),
                    );
                    None
                }
            }
        }
    };
    let source = match build_fields.get("source") {
        Some(node) => read_source(reader, node, &format!("{path}.source")).map(Some),
        None => Some(None),
    };
    let Some(images_node) = build_fields.get("images") else {
        reader.error(node.pos, &path, "missing field \"images\" (the containers to build, by name)");
        return None;
    };
    let mut images = BTreeMap::new();
    let mut ok = true;
    for entry in reader.named_entries(images_node, &format!("{path}.images")) {
        let image_path = format!("{path}.images.{}", entry.key.name);
        match read_image_build(reader, entry.value, &image_path) {
            Some(image) => {
                images.insert(entry.key.name.clone(), image);
            }
            None => ok = false,
        }
    }
    if ok && images.is_empty() {
        reader.error(images_node.pos, &format!("{path}.images"), "declare at least one container to build");
        return None;
    }
    Some(Some((node.pos, AppBuild { tag: tag?, source: source?, images })).filter(|_| ok))
}

fn read_source(reader: &mut Reader<'_>, node: &Node, path: &str) -> Option<BuildSource> {
    let fields = reader.fields(node, path, SOURCE_FIELDS)?;
    let mut field = |name: &str, example: &str| match fields.get(name) {
        Some(node) => reader.string(node, &format!("{path}.{name}")),
        None => {
            reader.error(fields.pos(), path, format!("missing field \"{name}\" ({example})"));
            None
        }
    };
    let repo = field("repo", "the repository to build from, like https://git.example.com/shop.git");
    let git_ref = field("ref", "the branch, tag or commit to build, like main");
    Some(BuildSource { repo: repo?, git_ref: git_ref?, commit: None })
}

fn read_image_build(reader: &mut Reader<'_>, node: &Node, path: &str) -> Option<ImageBuild> {
    let fields = reader.fields(node, path, IMAGE_BUILD_FIELDS)?;
    // A path inside the repo, normalised ("./web/" → "web", "." → ""); `None` when not.
    let folder = |reader: &mut Reader<'_>, name: &str, default: &str| -> Option<String> {
        let Some(node) = fields.get(name) else {
            return Some(default.to_owned());
        };
        let field_path = format!("{path}.{name}");
        let text = reader.string(node, &field_path)?;
        let trimmed = text.trim_end_matches('/');
        let normalised = if trimmed == "." { "" } else { trimmed.strip_prefix("./").unwrap_or(trimmed) };
        let inside = !normalised.starts_with('/')
            && (normalised.is_empty() || normalised.split('/').all(|part| !part.is_empty() && part != ".."));
        if !inside || (name == "dockerfile" && normalised.is_empty()) {
            reader.error(node.pos, &field_path, format!("{text:?} must be a path inside the config repo"));
            return None;
        }
        Some(normalised.to_owned())
    };
    let context = match fields.get("context") {
        Some(_) => folder(reader, "context", ""),
        None => {
            reader.error(fields.pos(), path, "missing field \"context\" (the folder to build, like services/web)");
            None
        }
    };
    let dockerfile = folder(reader, "dockerfile", "Dockerfile");
    let target = match fields.get("target") {
        Some(node) => reader.string(node, &format!("{path}.target")),
        None => None,
    };
    let args = match fields.get("args") {
        Some(node) => reader.string_map(node, &format!("{path}.args")),
        None => Some(BTreeMap::new()),
    };
    let secrets = match fields.get("secrets") {
        Some(node) => read_secrets(reader, node, &format!("{path}.secrets")),
        None => Some(BTreeMap::new()),
    };
    let repository = match fields.get("repository") {
        Some(node) => {
            let written = reader.string(node, &format!("{path}.repository"));
            let untagged = written.as_deref().map(|written| {
                crate::image::parse(written).is_ok_and(|parsed| parsed.tag.is_none() && parsed.digest.is_none())
            });
            match untagged {
                Some(true) => written,
                Some(false) => {
                    reader.error(
                        node.pos,
                        &format!("{path}.repository"),
                        format!(
                            "{:?} is not a repository (like registry.example.com/team/web, without a tag: launchway tags the images it builds)",
                            written.unwrap_or_default()
                        ),
                    );
                    None
                }
                None => None,
            }
        }
        None => None,
    };
    let has_target = fields.get("target").is_none() || target.is_some();
    let has_repository = fields.get("repository").is_none() || repository.is_some();
    (has_target && has_repository).then_some(())?;
    Some(ImageBuild { context: context?, dockerfile: dockerfile?, target, args: args?, secrets: secrets?, repository })
}

fn read_secrets(reader: &mut Reader<'_>, node: &Node, path: &str) -> Option<BTreeMap<String, String>> {
    let secrets = reader.string_map(node, path)?;
    let mut ok = true;
    for entry in reader.named_entries(node, path) {
        let reference = &secrets[&entry.key.name];
        if !(reference.starts_with("ssm:") || reference.starts_with("env:")) {
            // The value itself is never echoed: it may be the secret.
            reader.error(
                entry.value.pos,
                &format!("{path}.{}", entry.key.name),
                "a build secret must be an `ssm:` or `env:` reference (a value written here would be in the repo)",
            );
            ok = false;
        }
    }
    ok.then_some(secrets)
}

impl AppBuild {
    /// The repository a container's image is built into (a local name when it is not pushed).
    pub fn repository(&self, app: &str, container: &str) -> Option<String> {
        let image = self.images.get(container)?;
        Some(image.repository.clone().unwrap_or_else(|| format!("{LOCAL_REPOSITORY_PREFIX}/{app}/{container}")))
    }

    /// Whether `image` is what [`AppBuild::reference`] makes for the container: an image
    /// to build (rather than one an environment's override or a publication sets).
    pub fn builds(&self, app: &str, container: &str, image: &str) -> bool {
        self.repository(app, container).is_some_and(|repository| {
            image
                .strip_prefix(&repository)
                .and_then(|rest| rest.strip_prefix(':'))
                .is_some_and(|tag| !tag.contains('@'))
        })
    }
}
