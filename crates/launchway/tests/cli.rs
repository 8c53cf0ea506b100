//! The command line's conventions (issue 11): completions, version, a closed pipe,
//! `plan --detailed-exitcode` and planning the work tree. The real binary, a real git
//! repo and, where a plan needs live state, the local Docker engine.

mod support;

use std::process::{Command, Stdio};

use support::server::web_manifest;
use support::{World, binary};

/// One web service of one replica in the test's environment.
fn web() -> String {
    web_manifest("", 1)
}

#[test]
fn completions_generate_for_bash_zsh_and_fish() {
    for shell in ["bash", "zsh", "fish"] {
        let output = Command::new(binary()).args(["completion", shell]).output().expect("launchway starts");
        assert!(output.status.success(), "{shell}: {output:?}");
        let script = String::from_utf8(output.stdout).expect("utf-8");
        for word in ["launchway", "rollback", "detailed-exitcode"] {
            assert!(script.contains(word), "{shell}'s script does not mention {word}");
        }
    }
    let unknown = Command::new(binary()).args(["completion", "tcsh"]).output().expect("launchway starts");
    assert_eq!(unknown.status.code(), Some(2), "an unknown shell is a usage error");
}

#[test]
fn version_prints_the_version() {
    let output = Command::new(binary()).arg("version").output().expect("launchway starts");
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), format!("launchway {}", env!("CARGO_PKG_VERSION")));
    let json = Command::new(binary()).args(["version", "--output", "json"]).output().expect("launchway starts");
    let value: serde_json::Value = serde_json::from_slice(&json.stdout).expect("JSON");
    assert_eq!(value["version"], env!("CARGO_PKG_VERSION"));
}

/// `launchway history | head -1`: the reader is gone before launchway writes. It ends
/// as a process killed by the closed pipe does (141), with no panic and no stack trace.
#[test]
fn a_closed_pipe_ends_the_command_quietly() {
    let db = tempfile::tempdir().expect("dir");
    for args in [vec!["completion", "bash"], vec!["history"], vec!["version"]] {
        let (reader, writer) = std::io::pipe().expect("a pipe");
        drop(reader);
        let output = Command::new(binary())
            .args(&args)
            .env("LAUNCHWAY_DB", db.path().join("launchway.db"))
            .stdout(Stdio::from(writer))
            .stderr(Stdio::piped())
            .output()
            .expect("launchway starts");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(141), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

#[tokio::test]
async fn plan_with_detailed_exitcode_says_whether_anything_would_change() {
    let world = World::new().await;
    world.commit(&web(), "web");
    let before = world.launchway(&["plan", "--detailed-exitcode"]).await;
    before.assert_exit(2);
    assert!(before.stdout().contains("1 of 1 app would change"), "{}", before.stdout());
    assert!(!before.stdout().contains('\u{1b}'), "no colour outside a terminal: {}", before.stdout());
    world.launchway(&["plan"]).await.assert_exit(0);

    world.launchway(&["deploy"]).await.assert_exit(0);
    let after = world.launchway(&["plan", "--detailed-exitcode"]).await;
    after.assert_exit(0);
    assert!(after.stdout().contains("0 of 1 app would change"), "{}", after.stdout());

    // Colour when asked for in a pipe, and never with NO_COLOR.
    world.write(&web_manifest("", 2));
    let mut forced = world.command(&["plan", "--work-tree"]);
    forced.env("CLICOLOR_FORCE", "1").env_remove("NO_COLOR");
    let coloured = String::from_utf8(forced.output().unwrap().stdout).unwrap();
    assert!(coloured.contains("\u{1b}[33m~ replicas: 1 → 2"), "{coloured}");
    let mut plain = world.command(&["plan", "--work-tree"]);
    plain.env("CLICOLOR_FORCE", "1").env("NO_COLOR", "1");
    assert!(!String::from_utf8(plain.output().unwrap().stdout).unwrap().contains('\u{1b}'));
}

#[tokio::test]
async fn plan_warns_about_uncommitted_edits_and_plans_them_with_work_tree() {
    let world = World::new().await;
    world.commit(&web(), "web");
    world.launchway(&["deploy"]).await.assert_exit(0);
    world.write(&web().replace("port: 8080", "port: 8081"));

    let of_head = world.launchway(&["plan"]).await;
    of_head.assert_exit(0);
    assert!(
        of_head.stderr().contains("warning: uncommitted edits to launchway.yaml are not in this plan"),
        "{}",
        of_head.stderr()
    );
    assert!(of_head.stdout().contains("0 of 1 app would change"), "{}", of_head.stdout());

    let on_disk = world.launchway(&["plan", "--work-tree"]).await;
    on_disk.assert_exit(0);
    assert!(on_disk.stdout().contains("uncommitted edits included"), "{}", on_disk.stdout());
    assert!(on_disk.stdout().contains("~ containers.web.port: 8080 → 8081"), "{}", on_disk.stdout());
    world.launchway(&["plan", "--work-tree", "--ref", "HEAD~1"]).await.assert_exit(1);
}

#[test]
fn a_repo_without_commits_is_explained_in_plain_words() {
    let repo = launchway_testkit::GitRepo::init();
    repo.write("launchway.yaml", "environments:\n  dev: {target: docker}\n");
    let db = tempfile::tempdir().expect("dir");
    let output = Command::new(binary())
        .args(["plan", "--repo", repo.path().to_str().unwrap()])
        .env("LAUNCHWAY_DB", db.path().join("launchway.db"))
        .output()
        .expect("launchway starts");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("has no commits yet: commit launchway.yaml first"), "{stderr}");
    assert!(!stderr.contains("peel"), "{stderr}");
}
