//! Reading config repos at commits: in place, over file:// and over smart HTTP.

use launchway_testkit::{GitHttpServer, GitRepo};

use super::*;

const ROOT: &str = "environments:\n  dev: {target: docker}\n";

fn repo_with_apps() -> GitRepo {
    let repo = GitRepo::init();
    repo.write(ROOT_FILE, ROOT)
        .write("apps/web.yaml", "services: {web: {image: example/web:1}}\n")
        .write("apps/batch/report.yml", "tasks: {}\n")
        .write("apps/README.md", "not a manifest\n")
        .write("docs/notes.yaml", "not under apps/\n");
    repo.commit("first");
    repo
}

fn paths(files: &[SourceFile]) -> Vec<&str> {
    let mut paths: Vec<&str> = files.iter().map(|file| file.path.as_str()).collect();
    paths.sort();
    paths
}

#[test]
fn reads_the_manifest_files_of_a_commit_without_a_work_tree() {
    let repo = repo_with_apps();
    let cache = tempfile::tempdir().expect("cache dir");
    let config = ConfigRepo::open(repo.path().to_str().expect("utf-8"), cache.path()).expect("opens");
    let head = config.resolve("HEAD").expect("HEAD resolves");
    assert_eq!(head.summary, "first");
    assert_eq!(head.author, "Test Author <author@example.com>");
    let files = config.manifest_files(&head).expect("files");
    assert_eq!(paths(&files), ["apps/batch/report.yml", "apps/web.yaml", "launchway.yaml"]);

    // Uncommitted edits are not desired state.
    repo.write("apps/web.yaml", "services: {web: {image: example/web:2}}\n");
    let files = config.manifest_files(&config.resolve("HEAD").expect("HEAD")).expect("files");
    let web = files.iter().find(|file| file.path == "apps/web.yaml").expect("web");
    assert!(String::from_utf8_lossy(&web.bytes).contains("web:1"));
}

#[test]
fn reading_commit_after_commit_gives_each_commits_own_files() {
    // Blobs read before are reused by id: what each commit says must still come back.
    let repo = repo_with_apps();
    repo.write("apps/api.yaml", "services: {api: {image: example/api:1}}\n");
    let first = repo.commit("api");
    repo.write("apps/web.yaml", "services: {web: {image: example/web:2}}\n");
    repo.write("apps/copy.yaml", "services: {web: {image: example/web:2}}\n");
    let second = repo.commit("web 2, and a file with the same content");
    let cache = tempfile::tempdir().expect("cache dir");
    let config = ConfigRepo::open(repo.path().to_str().expect("utf-8"), cache.path()).expect("opens");
    let contents = |commit: &str| -> Vec<(String, String)> {
        let files = config.manifest_files(&config.resolve(commit).expect("resolves")).expect("files");
        let mut contents: Vec<_> =
            files.into_iter().map(|file| (file.path, String::from_utf8(file.bytes).expect("utf-8"))).collect();
        contents.sort();
        contents
    };
    let at_first = contents(&first);
    let at_second = contents(&second);
    assert_eq!(contents(&first), at_first, "read again after another commit");
    assert_eq!(contents(&second), at_second);
    let web = |files: &[(String, String)]| files.iter().find(|(path, _)| path == "apps/web.yaml").unwrap().1.clone();
    assert!(web(&at_first).contains("web:1") && web(&at_second).contains("web:2"));
    assert_eq!(at_second.iter().filter(|(_, text)| text.contains("web:2")).count(), 2, "{at_second:?}");
    assert_eq!(at_first.len() + 1, at_second.len());
}

#[test]
fn resolves_branches_tags_and_older_commits() {
    let repo = repo_with_apps();
    let first = repo.git(&["rev-parse", "HEAD"]);
    repo.git(&["tag", "v1.0.0"]);
    repo.write("apps/web.yaml", "services: {web: {image: example/web:2}}\n");
    let second = repo.commit("second");
    let cache = tempfile::tempdir().expect("cache dir");
    let config = ConfigRepo::open(repo.path().to_str().expect("utf-8"), cache.path()).expect("opens");
    assert_eq!(config.resolve("main").expect("branch").id, second);
    assert_eq!(config.resolve("v1.0.0").expect("tag").id, first);
    assert_eq!(config.resolve(&first[..8]).expect("short id").id, first);
    assert!(matches!(config.resolve("no-such-branch"), Err(SourceError::UnknownRef { .. })));
}

#[test]
fn opening_a_folder_inside_the_repo_finds_the_repo() {
    let repo = repo_with_apps();
    let cache = tempfile::tempdir().expect("cache dir");
    let inside = repo.path().join("apps");
    let config = ConfigRepo::open(inside.to_str().expect("utf-8"), cache.path()).expect("opens");
    assert_eq!(config.resolve("HEAD").expect("HEAD").summary, "first");
}

#[test]
fn a_folder_that_is_not_a_repo_is_refused() {
    let dir = tempfile::tempdir().expect("dir");
    let cache = tempfile::tempdir().expect("cache dir");
    let Err(error) = ConfigRepo::open(dir.path().to_str().expect("utf-8"), cache.path()) else {
        panic!("a folder without a repo was opened")
    };
    assert!(matches!(error, SourceError::NotARepository { .. }), "{error}");
}

#[test]
fn mirrors_a_file_url_and_sees_new_commits_after_a_fetch() {
    let repo = repo_with_apps();
    let cache = tempfile::tempdir().expect("cache dir");
    let config = ConfigRepo::open(&repo.file_url(), cache.path()).expect("clones");
    assert_eq!(config.resolve("HEAD").expect("HEAD").summary, "first");
    repo.write("apps/web.yaml", "services: {web: {image: example/web:2}}\n");
    let second = repo.commit("second");
    assert_ne!(config.resolve("HEAD").expect("HEAD").id, second, "not fetched yet");
    config.fetch().expect("fetches");
    let head = config.resolve("HEAD").expect("HEAD");
    assert_eq!(head.id, second);
    let files = config.manifest_files(&head).expect("files");
    let web = files.iter().find(|file| file.path == "apps/web.yaml").expect("web");
    assert!(String::from_utf8_lossy(&web.bytes).contains("web:2"));

    // Opening again reuses the mirror.
    let again = ConfigRepo::open(&repo.file_url(), cache.path()).expect("reopens");
    assert_eq!(again.resolve("main").expect("main").id, second);
}

#[test]
fn mirrors_a_repo_over_smart_http() {
    let repo = repo_with_apps();
    let served = tempfile::tempdir().expect("served dir");
    let bare = served.path().join("config.git");
    let status = std::process::Command::new("git")
        .args(["clone", "--quiet", "--bare"])
        .arg(repo.path())
        .arg(&bare)
        .status()
        .expect("git clone runs");
    assert!(status.success());
    let server = GitHttpServer::serve(served.path().to_path_buf());
    let cache = tempfile::tempdir().expect("cache dir");
    let config = ConfigRepo::open(&server.url("config.git"), cache.path()).expect("clones over http");
    let head = config.resolve("HEAD").expect("HEAD");
    assert_eq!(head.summary, "first");
    assert_eq!(paths(&config.manifest_files(&head).expect("files")).len(), 3);
}

#[test]
fn a_huge_manifest_blob_is_refused_before_it_is_read() {
    let repo = GitRepo::init();
    repo.write(ROOT_FILE, &"#".repeat(MAX_FILE_BYTES + 10));
    repo.commit("huge");
    let cache = tempfile::tempdir().expect("cache dir");
    let config = ConfigRepo::open(repo.path().to_str().expect("utf-8"), cache.path()).expect("opens");
    let head = config.resolve("HEAD").expect("HEAD");
    let error = config.manifest_files(&head).expect_err("refused");
    assert!(matches!(error, SourceError::FileTooLarge { .. }), "{error}");
}

#[test]
fn reads_a_work_tree_or_a_single_file() {
    let repo = repo_with_apps();
    assert_eq!(
        paths(&read_work_tree(repo.path()).expect("reads")),
        ["apps/batch/report.yml", "apps/web.yaml", "launchway.yaml"]
    );
    let single = read_work_tree(&repo.path().join(ROOT_FILE)).expect("reads");
    assert_eq!(paths(&single), ["launchway.yaml"]);
}

#[test]
fn commits_written_without_a_work_tree_are_read_back() {
    let dir = tempfile::tempdir().expect("dir");
    let repo_path = dir.path().join("config.git");
    let first =
        commit_files(&repo_path, &[(ROOT_FILE, ROOT), ("apps/web.yaml", "services: {}\n")], "first").expect("commits");
    let second =
        commit_files(&repo_path, &[("apps/web.yaml", "services: {web: {image: a:2}}\n")], "second").expect("commits");
    let cache = tempfile::tempdir().expect("cache dir");
    let config = ConfigRepo::open(repo_path.to_str().expect("utf-8"), cache.path()).expect("opens");
    let head = config.resolve("HEAD").expect("HEAD");
    assert_eq!(head.id, second);
    assert_eq!(head.summary, "second");
    let files = config.manifest_files(&head).expect("files");
    assert_eq!(paths(&files), ["apps/web.yaml", "launchway.yaml"], "earlier files are kept");
    assert_eq!(config.resolve(&first).expect("first").summary, "first");
}

#[test]
fn lists_tags_with_their_commits_and_knows_the_default_branch() {
    let repo = repo_with_apps();
    repo.git(&["tag", "v1.0.0"]);
    repo.git(&["tag", "-a", "v1.1.0", "-m", "annotated"]);
    let cache = tempfile::tempdir().expect("cache dir");
    let local = ConfigRepo::open(repo.path().to_str().expect("utf-8"), cache.path()).expect("opens");
    let head = local.resolve("HEAD").expect("HEAD");
    let mut tags = local.tags().expect("tags");
    tags.sort_by(|a, b| a.name.cmp(&b.name));
    let names: Vec<&str> = tags.iter().map(|tag| tag.name.as_str()).collect();
    assert_eq!(names, ["v1.0.0", "v1.1.0"]);
    assert!(tags.iter().all(|tag| tag.commit == head), "annotated tags are peeled to their commit");
    assert_eq!(local.default_branch().as_deref(), Some("main"));

    let mirror = ConfigRepo::open(&repo.file_url(), cache.path()).expect("mirrored");
    assert_eq!(mirror.tags().expect("tags").len(), 2);
    assert_eq!(mirror.default_branch().as_deref(), Some("main"));
}

#[test]
fn finds_the_last_commit_that_changed_a_folder() {
    let repo = GitRepo::init();
    repo.write("services/web/main.rs", "v1").write("services/api/main.rs", "v1");
    let first = repo.commit("both services");
    repo.write("services/api/main.rs", "v2");
    let api_change = repo.commit("api only");
    repo.write("README.md", "docs");
    repo.commit("docs only");

    let web = last_change(&repo.path().join("services/web"), "HEAD").expect("web");
    assert_eq!(web.id, first, "later commits did not touch services/web");
    let api = last_change(&repo.path().join("services/api"), "HEAD").expect("api");
    assert_eq!((api.id.as_str(), api.summary.as_str()), (api_change.as_str(), "api only"));
    let file = last_change(&repo.path().join("services/web/main.rs"), "HEAD").expect("a file works too");
    assert_eq!(file.id, first);
    assert!(last_change(&repo.path().join("services"), "no-such-ref").is_err());
    let missing = last_change(&repo.path().join("never/existed"), "HEAD").expect_err("no such folder");
    assert!(matches!(missing, SourceError::NoSuchPath { .. }), "{missing}");
}

#[test]
fn a_repo_without_commits_says_so_instead_of_failing_to_peel_head() {
    let repo = GitRepo::init();
    repo.write(ROOT_FILE, ROOT);
    let cache = tempfile::tempdir().expect("cache dir");
    let config = ConfigRepo::open(repo.path().to_str().expect("utf-8"), cache.path()).expect("opens");
    let error = config.resolve("HEAD").expect_err("nothing to resolve");
    assert!(matches!(error, SourceError::NoCommits { .. }), "{error}");
    assert!(error.to_string().contains("has no commits yet"), "{error}");
    assert_eq!(
        config.work_dir().map(|dir| dir.canonicalize().expect("exists")),
        Some(repo.path().canonicalize().expect("exists"))
    );
}

#[test]
fn a_build_context_is_a_folder_of_a_commit_with_its_last_change() {
    let repo = GitRepo::init();
    repo.write("services/web/Dockerfile", "FROM scratch\n").write("services/web/bin/run", "#!/bin/sh\n");
    let run = repo.path().join("services/web/bin/run");
    std::fs::set_permissions(&run, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    let first = repo.commit("web");
    repo.write("README.md", "docs");
    let docs = repo.commit("docs only");
    // Uncommitted edits are not what is built.
    repo.write("services/web/Dockerfile", "FROM elsewhere\n");
    let cache = tempfile::tempdir().expect("cache dir");
    let config = ConfigRepo::open(repo.path().to_str().expect("utf-8"), cache.path()).expect("opens");

    assert_eq!(config.last_change_at(&docs, "services/web").expect("web").id, first);
    assert_eq!(config.last_change_at(&docs, "").expect("the whole repo").id, docs);
    assert!(config.last_change_at(&docs, "services/api").is_err(), "no such folder");

    let context = config.build_context(&docs, "services/web").expect("the context");
    let mut archive = tar::Archive::new(context.archive.as_slice());
    let mut entries: Vec<(String, u32, String)> = archive
        .entries()
        .expect("a tar archive")
        .map(|entry| {
            let mut entry = entry.expect("an entry");
            let path = entry.path().expect("a path").display().to_string();
            let mode = entry.header().mode().expect("a mode");
            let mut contents = String::new();
            std::io::Read::read_to_string(&mut entry, &mut contents).expect("contents");
            (path, mode, contents)
        })
        .collect();
    entries.sort();
    assert_eq!(
        entries,
        [
            ("Dockerfile".to_owned(), 0o644, "FROM scratch\n".to_owned()),
            ("bin/run".to_owned(), 0o755, "#!/bin/sh\n".to_owned()),
        ]
    );
    let again = config.build_context(&first, "services/web").expect("at the first commit");
    assert_eq!(again.tree, context.tree, "the same folder, the same tree");
    assert!(config.build_context(&docs, "README.md").is_err(), "a file is no context");

    // Asked commit after commit (as a server is), the answers stay those of a full walk:
    // a change, and a change back to the very same content, are each the last change.
    repo.write("services/web/Dockerfile", "FROM scratch\nLABEL two=2\n");
    let changed = repo.commit("web two");
    repo.write("README.md", "more docs");
    let more_docs = repo.commit("more docs");
    assert_eq!(config.last_change_at(&more_docs, "services/web").expect("web").id, changed);
    repo.write("services/web/Dockerfile", "FROM scratch\n");
    let reverted = repo.commit("web back to one");
    assert_eq!(config.last_change_at(&reverted, "services/web").expect("web").id, reverted);
    assert_eq!(config.last_change_at(&docs, "services/web").expect("web").id, first, "older commits still answer");
}
