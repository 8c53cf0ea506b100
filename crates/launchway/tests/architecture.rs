//! The rules ARCHITECTURE.md states, checked: which crate may depend on which, where
//! anyhow, the AWS SDK, Docker's client and SQL may appear, that the manifest does no IO,
//! and that no module imports one that imports it back. Each test names the rule it
//! checks; a rule that changes changes here and in ARCHITECTURE.md together.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("the workspace")
}

/// Each workspace crate's normal (not dev, not build) dependencies, from `cargo metadata`.
fn dependencies() -> BTreeMap<String, BTreeSet<String>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let output = std::process::Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--no-deps", "--offline"])
        .current_dir(workspace())
        .output()
        .expect("cargo metadata runs");
    assert!(output.status.success(), "cargo metadata: {}", String::from_utf8_lossy(&output.stderr));
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).expect("metadata is JSON");
    let mut crates = BTreeMap::new();
    for package in metadata["packages"].as_array().expect("packages") {
        let normal = package["dependencies"]
            .as_array()
            .expect("dependencies")
            .iter()
            .filter(|dependency| dependency["kind"].is_null())
            .map(|dependency| dependency["name"].as_str().expect("a name").to_owned())
            .collect();
        crates.insert(package["name"].as_str().expect("a name").to_owned(), normal);
    }
    crates
}

/// The launchway crates each crate may depend on. The binary wires everything and may
/// depend on any.
const ALLOWED: &[(&str, &[&str])] = &[
    ("launchway-manifest", &[]),
    ("launchway-secrets", &[]),
    ("launchway-proxy", &[]),
    ("launchway-store", &["launchway-manifest"]),
    ("launchway-store-sqlite", &["launchway-manifest", "launchway-store"]),
    ("launchway-target", &["launchway-manifest", "launchway-store"]),
    ("launchway-target-docker", &["launchway-manifest", "launchway-target", "launchway-proxy"]),
    ("launchway-target-ecs", &["launchway-manifest", "launchway-target", "launchway-secrets"]),
    ("launchway-source", &["launchway-manifest"]),
    ("launchway-notify", &["launchway-manifest", "launchway-store", "launchway-engine", "launchway-secrets"]),
    ("launchway-engine", &["launchway-manifest", "launchway-store", "launchway-target"]),
    // Still converts the engine's and the store's values itself (issue 23: the API is to
    // own its wire types and depend on no launchway crate).
    ("launchway-api", &["launchway-engine", "launchway-store"]),
    (
        "launchway-server",
        &[
            "launchway-api",
            "launchway-engine",
            "launchway-manifest",
            "launchway-notify",
            "launchway-secrets",
            "launchway-source",
            "launchway-store",
            "launchway-target",
        ],
    ),
    ("launchway-testkit", &["launchway-manifest", "launchway-target"]),
];

#[test]
fn each_crate_depends_only_on_the_launchway_crates_it_may() {
    let crates = dependencies();
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    let mut broken = Vec::new();
    for (name, dependencies) in &crates {
        if name == "launchway" {
            continue;
        }
        let Some(may) = allowed.get(name.as_str()) else {
            broken.push(format!("{name} is not in ALLOWED: say which launchway crates it may depend on"));
            continue;
        };
        for dependency in dependencies.iter().filter(|dependency| dependency.starts_with("launchway")) {
            if !may.contains(&dependency.as_str()) {
                broken.push(format!("{name} depends on {dependency}, which it may not"));
            }
        }
    }
    assert!(broken.is_empty(), "{}", broken.join("\n"));
}

/// Third-party crates only some crates may use: (crate name or prefix, who may).
const CONFINED: &[(&str, &[&str])] = &[
    // Errors that say what failed are types; anyhow is for the two programs' top level.
    ("anyhow", &["launchway", "launchway-server"]),
    // AWS is the ECS target's business alone.
    ("aws-", &["launchway-target-ecs"]),
    // Docker is the Docker target's business alone.
    ("bollard", &["launchway-target-docker"]),
    // SQL lives in the store backends.
    ("sqlx", &["launchway-store-sqlite"]),
    // git is read through the source crate.
    ("gix", &["launchway-source"]),
];

#[test]
fn anyhow_aws_docker_sql_and_git_stay_in_their_crates() {
    let crates = dependencies();
    let mut broken = Vec::new();
    for (name, dependencies) in &crates {
        for (confined, may) in CONFINED {
            let uses = dependencies.iter().filter(|dependency| dependency.starts_with(confined));
            for dependency in uses {
                if !may.contains(&name.as_str()) {
                    broken.push(format!("{name} depends on {dependency}: only {may:?} may"));
                }
            }
        }
    }
    assert!(broken.is_empty(), "{}", broken.join("\n"));
}

/// Every `.rs` file under `crates/<name>/src`, with its text.
fn sources(name: &str) -> Vec<(PathBuf, String)> {
    fn walk(folder: &Path, found: &mut Vec<(PathBuf, String)>) {
        for entry in std::fs::read_dir(folder).expect("a source folder").flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, found);
            } else if path.extension().is_some_and(|extension| extension == "rs") {
                let text = std::fs::read_to_string(&path).expect("a source file");
                found.push((path, text));
            }
        }
    }
    let mut found = Vec::new();
    walk(&workspace().join("crates").join(name).join("src"), &mut found);
    found.sort();
    found
}

fn crate_folders() -> Vec<String> {
    let mut folders: Vec<String> = std::fs::read_dir(workspace().join("crates"))
        .expect("crates")
        .flatten()
        .filter(|entry| entry.path().join("src").is_dir())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    folders.sort();
    folders
}

/// A file's code without its test modules (by convention, the end of the file from its
/// first `#[cfg(test)]`).
fn code(text: &str) -> &str {
    text.find("#[cfg(test)]").map_or(text, |start| &text[..start])
}

#[test]
fn sql_is_written_only_in_the_store_backends() {
    let statements = ["SELECT ", "INSERT INTO", "UPDATE ", "DELETE FROM", "CREATE TABLE", "sqlx::"];
    let mut broken = Vec::new();
    for folder in crate_folders().into_iter().filter(|folder| folder != "store-sqlite") {
        for (path, text) in sources(&folder) {
            for (number, line) in code(&text).lines().enumerate() {
                let in_string = line.trim_start().starts_with('"') || line.contains("(\"") || line.contains("= \"");
                let sql = statements.iter().any(|statement| {
                    line.contains(&format!("\"{statement}"))
                        || (in_string && *statement != "UPDATE " && line.contains(statement))
                        || (*statement == "sqlx::" && line.contains(statement))
                });
                if sql {
                    broken.push(format!("{}:{}: {}", path.display(), number + 1, line.trim()));
                }
            }
        }
    }
    assert!(broken.is_empty(), "SQL outside crates/store-sqlite:\n{}", broken.join("\n"));
}

#[test]
fn the_manifest_crate_does_no_io() {
    let io = ["std::fs", "std::net", "std::process", "tokio", "reqwest", "File::open", "std::env::var"];
    let mut broken = Vec::new();
    for (path, text) in sources("manifest") {
        for (number, line) in code(&text).lines().enumerate() {
            if line.trim_start().starts_with("//") {
                continue;
            }
            if let Some(what) = io.iter().find(|what| line.contains(*what)) {
                broken.push(format!("{}:{}: {what}", path.display(), number + 1));
            }
        }
    }
    assert!(broken.is_empty(), "IO in the manifest crate (files come through RepoFiles):\n{}", broken.join("\n"));
}

/// A crate's files as modules: `src/a/b.rs` and `src/a/b/mod.rs` are `a::b`; the crate
/// root (`lib.rs`, `main.rs`) is left out: it declares the modules and holds what they
/// share, so every module refers to it and it to them.
fn modules(name: &str) -> BTreeMap<Vec<String>, String> {
    let src = workspace().join("crates").join(name).join("src");
    let mut modules = BTreeMap::new();
    for (path, text) in sources(name) {
        let relative = path.strip_prefix(&src).expect("under src").with_extension("");
        let mut segments: Vec<String> =
            relative.components().map(|part| part.as_os_str().to_string_lossy().into_owned()).collect();
        if segments.last().is_some_and(|last| last == "mod") {
            segments.pop();
        }
        if segments == ["lib"] || segments == ["main"] || segments.is_empty() {
            continue;
        }
        modules.insert(segments, code(&text).to_owned());
    }
    modules
}

/// The paths a file names through `crate::…` and `super::…` (grouped `use` included),
/// each as segments from the crate root.
fn referenced_paths(module: &[String], text: &str) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    for (prefix, base) in [("crate::", Vec::new()), ("super::", module[..module.len().saturating_sub(1)].to_vec())] {
        let mut rest = text;
        while let Some(at) = rest.find(prefix) {
            let before = rest[..at].chars().last();
            rest = &rest[at + prefix.len()..];
            if before.is_some_and(|character| character.is_alphanumeric() || character == '_' || character == ':') {
                continue;
            }
            for path in paths_at(rest) {
                let mut full = base.clone();
                full.extend(path);
                found.push(full);
            }
        }
    }
    found
}

/// The paths at the start of `text`: `a::b::C` or a group `{a::b, c::{d, e}}`.
fn paths_at(text: &str) -> Vec<Vec<String>> {
    let identifier_end = |text: &str| {
        text.find(|character: char| !(character.is_alphanumeric() || character == '_')).unwrap_or(text.len())
    };
    if let Some(group) = text.strip_prefix('{') {
        // Items at depth one: their leading segments are what matters.
        let mut items = Vec::new();
        let (mut depth, mut start) = (0usize, 0usize);
        for (index, character) in group.char_indices() {
            match character {
                '{' => depth += 1,
                '}' if depth == 0 => {
                    items.push(&group[start..index]);
                    break;
                }
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    items.push(&group[start..index]);
                    start = index + 1;
                }
                _ => {}
            }
        }
        return items.into_iter().flat_map(|item| paths_at(item.trim())).collect();
    }
    let mut segments = Vec::new();
    let mut rest = text;
    loop {
        let end = identifier_end(rest);
        if end == 0 {
            break;
        }
        segments.push(rest[..end].to_owned());
        match rest[end..].strip_prefix("::") {
            Some(next) if next.starts_with('{') => {
                return paths_at(next)
                    .into_iter()
                    .map(|tail| segments.iter().cloned().chain(tail).collect())
                    .collect::<Vec<_>>()
                    .into_iter()
                    .chain(std::iter::once(segments.clone()))
                    .collect();
            }
            Some(next) => rest = next,
            None => break,
        }
    }
    vec![segments]
}

/// Which modules each module of a crate refers to (the longest module each path names).
fn module_graph(name: &str) -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
    graph_of(&modules(name))
}

/// The graph of `modules` (module → its code): an edge to each module a path names, but
/// none to the module itself or one that contains it (a child naming its parent).
fn graph_of(modules: &BTreeMap<Vec<String>, String>) -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
    let mut graph = BTreeMap::new();
    for (module, text) in modules {
        let mut targets = BTreeSet::new();
        for path in referenced_paths(module, text) {
            let longest = (1..=path.len())
                .rev()
                .map(|length| path[..length].to_vec())
                .find(|prefix| modules.contains_key(prefix));
            if let Some(target) = longest.filter(|target| target != module && !module.starts_with(target)) {
                targets.insert(target);
            }
        }
        graph.insert(module.clone(), targets);
    }
    graph
}

/// The cycles of a graph: its strongly connected components of more than one module.
fn cycles(graph: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>) -> Vec<BTreeSet<String>> {
    let reaches = |from: &Vec<String>| {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from.clone()];
        while let Some(module) = stack.pop() {
            for next in graph.get(&module).into_iter().flatten() {
                if seen.insert(next.clone()) {
                    stack.push(next.clone());
                }
            }
        }
        seen
    };
    let reach: BTreeMap<&Vec<String>, BTreeSet<Vec<String>>> =
        graph.keys().map(|module| (module, reaches(module))).collect();
    let mut found: Vec<BTreeSet<String>> = Vec::new();
    for module in graph.keys() {
        let component: BTreeSet<String> = graph
            .keys()
            .filter(|other| *other == module || (reach[module].contains(*other) && reach[*other].contains(module)))
            .map(|other| other.join("::"))
            .collect();
        if component.len() > 1 && !found.contains(&component) {
            found.push(component);
        }
    }
    found
}

/// Cycles tolerated for now, each to be taken apart: none today. A cycle not listed fails
/// the test, and so does a listed one that is gone (take it off the list).
const KNOWN_CYCLES: &[(&str, &[&str])] = &[];

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let mut unexpected = Vec::new();
    let mut gone = Vec::new();
    for folder in crate_folders() {
        let name = if folder == "launchway" { folder.clone() } else { format!("launchway-{folder}") };
        let found = cycles(&module_graph(&folder));
        let known: Vec<BTreeSet<String>> = KNOWN_CYCLES
            .iter()
            .filter(|(crate_name, _)| *crate_name == name)
            .map(|(_, modules)| modules.iter().map(|module| (*module).to_owned()).collect())
            .collect();
        for cycle in &found {
            if !known.contains(cycle) {
                unexpected.push(format!("{name}: {cycle:?}"));
            }
        }
        for cycle in known.iter().filter(|cycle| !found.contains(cycle)) {
            gone.push(format!("{name}: {cycle:?}"));
        }
    }
    assert!(unexpected.is_empty(), "modules importing each other (a cycle):\n{}", unexpected.join("\n"));
    assert!(gone.is_empty(), "cycles taken apart: take them off KNOWN_CYCLES\n{}", gone.join("\n"));
}

#[test]
fn the_cycle_finder_finds_a_cycle_through_grouped_and_relative_imports() {
    let modules_of = |files: &[(&str, &str)]| -> BTreeMap<Vec<String>, String> {
        files
            .iter()
            .map(|(module, text)| (module.split("::").map(str::to_owned).collect(), (*text).to_owned()))
            .collect()
    };
    let graph = graph_of(&modules_of(&[
        ("steps", "use crate::{Engine, steps::run::{Lease, Next}};"),
        ("steps::run", "use super::approval::gate;"),
        ("steps::approval", "fn f() -> crate::steps::run::Next { todo() }"),
        ("alone", "use crate::Engine;"),
    ]));
    let found = cycles(&graph);
    assert_eq!(found.len(), 1, "{graph:?}");
    assert_eq!(found[0], ["steps::approval", "steps::run"].map(str::to_owned).into_iter().collect());
}
