//! `depends_on:` between apps: every name declared, no app waiting for itself, and no
//! cycle (which would keep every app in it waiting for ever), each reported where it is
//! written.

use std::collections::BTreeMap;

use crate::Diagnostic;
use crate::node::Pos;
use crate::reader::{self, Key};

/// One app's `depends_on:` as written.
pub(crate) struct DependencyDraft {
    pub app: String,
    pub file: String,
    /// `services.web.depends_on`, for messages.
    pub path: String,
    pub on: Vec<Key>,
}

pub(crate) fn check(
    drafts: &[DependencyDraft],
    declared_at: &BTreeMap<String, (String, Pos)>,
    diagnostics: &mut Vec<Diagnostic>,
) {
    let known: Vec<&str> = declared_at.keys().map(String::as_str).collect();
    let mut report = |draft: &DependencyDraft, pos: Pos, message: String| {
        diagnostics.push(Diagnostic::new(&draft.file, pos, format!("{}: {message}", draft.path)));
    };
    // The edges that name a declared app other than itself, where each is written.
    let mut edges: BTreeMap<&str, Vec<(&str, Pos)>> = BTreeMap::new();
    for draft in drafts {
        for key in &draft.on {
            if key.name == draft.app {
                report(draft, key.pos, format!("{} cannot depend on itself", draft.app));
            } else if !declared_at.contains_key(&key.name) {
                let mut message = format!("app {:?} is not declared", key.name);
                if let Some(suggestion) = reader::closest(&key.name, &known) {
                    message.push_str(&format!(", did you mean {suggestion:?}?"));
                }
                report(draft, key.pos, message);
            } else {
                edges.entry(draft.app.as_str()).or_default().push((key.name.as_str(), key.pos));
            }
        }
    }
    // Depth first: an edge back to an app still being visited closes a cycle, reported
    // once, at that edge.
    let (mut finished, mut cycles) = (Vec::new(), Vec::new());
    for draft in drafts {
        visit(draft.app.as_str(), &edges, &mut Vec::new(), &mut finished, &mut cycles);
    }
    for cycle in cycles {
        let draft = drafts.iter().find(|draft| draft.app == cycle.from).expect("an edge comes from a draft");
        report(
            draft,
            cycle.pos,
            format!("a cycle: {} (each waits for the next to deploy first)", cycle.apps.join(" → ")),
        );
    }
}

/// A cycle, closed by the edge `from` → `apps[0]` written at `pos`.
struct Cycle<'a> {
    from: &'a str,
    pos: Pos,
    apps: Vec<&'a str>,
}

fn visit<'a>(
    app: &'a str,
    edges: &BTreeMap<&'a str, Vec<(&'a str, Pos)>>,
    path: &mut Vec<&'a str>,
    finished: &mut Vec<&'a str>,
    cycles: &mut Vec<Cycle<'a>>,
) {
    if finished.contains(&app) {
        return;
    }
    path.push(app);
    for &(dependency, pos) in edges.get(app).map(Vec::as_slice).unwrap_or_default() {
        match path.iter().position(|on_path| *on_path == dependency) {
            Some(start) => {
                let apps = path[start..].iter().copied().chain([dependency]).collect();
                cycles.push(Cycle { from: app, pos, apps });
            }
            None => visit(dependency, edges, path, finished, cycles),
        }
    }
    path.pop();
    finished.push(app);
}
