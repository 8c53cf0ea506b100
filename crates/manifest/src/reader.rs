//! Typed reads from the spanned YAML tree that record a diagnostic instead of failing,
//! so one pass over a manifest reports every problem in it.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::Diagnostic;
use crate::node::{Node, Pos, Value};

/// Collects the diagnostics of one file while it is read.
pub(crate) struct Reader<'a> {
    pub file: &'a str,
    pub diagnostics: &'a mut Vec<Diagnostic>,
}

impl Reader<'_> {
    pub fn error(&mut self, pos: Pos, path: &str, message: impl Into<String>) {
        let message = message.into();
        let message = if path.is_empty() { message } else { format!("{path}: {message}") };
        self.diagnostics.push(Diagnostic::new(self.file, pos, message));
    }

    fn wrong_type(&mut self, node: &Node, path: &str, expected: &str) {
        let found = match &node.value {
            Value::Str(text) => format!("the string {text:?}"),
            other => other.kind().to_owned(),
        };
        self.error(node.pos, path, format!("expected {expected}, found {found}"));
    }

    /// Reads a mapping whose keys are fixed field names. Unknown keys are reported with
    /// a suggestion, duplicate keys with the first one's position. Returns `None` (after
    /// reporting) when the node is not a mapping.
    pub fn fields<'n>(&mut self, node: &'n Node, path: &str, known: &[&'static str]) -> Option<Fields<'n>> {
        let entries = self.entries(node, path)?;
        let mut seen: Vec<(String, Pos, &'n Node)> = Vec::new();
        for (key, value) in entries {
            let name = key.name.as_str();
            if !known.contains(&name) {
                let mut message = format!("unknown field {name:?}");
                match closest(name, known) {
                    Some(suggestion) => message.push_str(&format!(", did you mean {suggestion:?}?")),
                    None => message.push_str(&format!(", expected one of {}", quoted_list(known))),
                }
                self.error(key.pos, path, message);
                continue;
            }
            seen.push((key.name, key.pos, value));
        }
        Some(Fields { owner: node.pos, entries: seen })
    }

    /// Reads a mapping with user-chosen keys (app names, env variables…), reporting
    /// duplicates. Non-string keys are reported and skipped.
    pub fn named_entries<'n>(&mut self, node: &'n Node, path: &str) -> Vec<NamedEntry<'n>> {
        self.entries(node, path)
            .map(|entries| entries.into_iter().map(|(key, value)| NamedEntry { key, value }).collect())
            .unwrap_or_default()
    }

    fn entries<'n>(&mut self, node: &'n Node, path: &str) -> Option<Vec<(Key, &'n Node)>> {
        let pairs = match &node.value {
            Value::Map(pairs) => pairs,
            // `services:` with nothing under it means "none", not an error.
            Value::Null => return Some(Vec::new()),
            _ => {
                self.wrong_type(node, path, "a mapping");
                return None;
            }
        };
        let mut entries: Vec<(Key, &'n Node)> = Vec::with_capacity(pairs.len());
        for (key_node, value) in pairs {
            let name = match &key_node.value {
                Value::Str(text) => text.clone(),
                Value::Int(number) => number.to_string(),
                _ => {
                    self.wrong_type(key_node, path, "a string key");
                    continue;
                }
            };
            if let Some((first, _)) = entries.iter().find(|(existing, _)| existing.name == name) {
                let first = first.pos;
                self.error(
                    key_node.pos,
                    path,
                    format!("duplicate key {name:?} (first defined at {}:{})", first.line, first.column),
                );
                continue;
            }
            entries.push((Key { name, pos: key_node.pos }, value));
        }
        Some(entries)
    }

    pub fn string(&mut self, node: &Node, path: &str) -> Option<String> {
        match &node.value {
            Value::Str(text) => Some(text.clone()),
            _ => {
                self.wrong_type(node, path, "a string");
                None
            }
        }
    }

    /// A string where YAML users often write a bare number or boolean (environment
    /// variable values): those are taken as written, `1.10` staying `1.10`.
    pub fn scalar_as_string(&mut self, node: &Node, path: &str) -> Option<String> {
        match &node.value {
            Value::Str(text) => Some(text.clone()),
            Value::Int(_) | Value::Float(_) | Value::Bool(_) => match &node.raw {
                Some(raw) => Some(raw.trim().to_owned()),
                None => Some(scalar_text(&node.value)),
            },
            _ => {
                self.wrong_type(node, path, "a string");
                None
            }
        }
    }

    pub fn string_list(&mut self, node: &Node, path: &str) -> Option<Vec<String>> {
        let Value::Seq(items) = &node.value else {
            self.wrong_type(node, path, "a list of strings, like [\"serve\", \"--port\", \"8080\"]");
            return None;
        };
        let mut strings = Vec::with_capacity(items.len());
        let mut ok = true;
        for (index, item) in items.iter().enumerate() {
            match self.scalar_as_string(item, &format!("{path}[{index}]")) {
                Some(text) => strings.push(text),
                None => ok = false,
            }
        }
        ok.then_some(strings)
    }

    pub fn string_map(&mut self, node: &Node, path: &str) -> Option<BTreeMap<String, String>> {
        let mut map = BTreeMap::new();
        let mut ok = true;
        for entry in self.named_entries(node, path) {
            match self.scalar_as_string(entry.value, &format!("{path}.{}", entry.key.name)) {
                Some(value) => {
                    map.insert(entry.key.name, value);
                }
                None => ok = false,
            }
        }
        ok.then_some(map)
    }

    pub fn integer(&mut self, node: &Node, path: &str, min: i64, max: i64) -> Option<i64> {
        match &node.value {
            Value::Int(number) if (min..=max).contains(number) => Some(*number),
            Value::Int(number) => {
                self.error(node.pos, path, format!("{number} is out of range, expected {min} to {max}"));
                None
            }
            _ => {
                self.wrong_type(node, path, "an integer");
                None
            }
        }
    }

    /// An HTTP path, which must start with '/'.
    pub fn url_path(&mut self, node: &Node, path: &str) -> Option<String> {
        match self.string(node, path) {
            Some(value) if !value.starts_with('/') => {
                self.error(node.pos, path, format!("{value:?} must start with '/'"));
                None
            }
            other => other,
        }
    }

    pub fn boolean(&mut self, node: &Node, path: &str) -> Option<bool> {
        match node.value {
            Value::Bool(value) => Some(value),
            _ => {
                self.error(node.pos, path, "expected true or false");
                None
            }
        }
    }

    /// A number, integer or not (a threshold).
    pub fn number(&mut self, node: &Node, path: &str) -> Option<f64> {
        match &node.value {
            Value::Int(number) => Some(*number as f64),
            Value::Float(number) if number.is_finite() => Some(*number),
            _ => {
                self.wrong_type(node, path, "a number");
                None
            }
        }
    }

    pub fn duration(&mut self, node: &Node, path: &str) -> Option<Duration> {
        let Value::Str(text) = &node.value else {
            self.wrong_type(node, path, "a duration like \"10s\", \"500ms\" or \"2m\"");
            return None;
        };
        match humantime::parse_duration(text) {
            Ok(duration) => Some(duration),
            // humantime's own wording ("expected number at 0", "unknown time unit") is
            // about its parser; the user needs to know what to write.
            Err(_) => {
                self.error(
                    node.pos,
                    path,
                    format!(
                        "{text:?} is not a duration: write a number and a unit, like \"10s\", \"500ms\", \"2m\" or \"1h 30m\""
                    ),
                );
                None
            }
        }
    }
}

/// A key of a mapping, with where it is written.
#[derive(Debug, Clone)]
pub(crate) struct Key {
    pub name: String,
    pub pos: Pos,
}

pub(crate) struct NamedEntry<'n> {
    pub key: Key,
    pub value: &'n Node,
}

/// The known fields of one mapping, ready to be read by name.
pub(crate) struct Fields<'n> {
    owner: Pos,
    entries: Vec<(String, Pos, &'n Node)>,
}

impl<'n> Fields<'n> {
    pub fn get(&self, name: &str) -> Option<&'n Node> {
        self.entries.iter().find(|(key, _, _)| key == name).map(|(_, _, node)| *node)
    }

    /// Where the key `name` is written.
    pub fn key_pos(&self, name: &str) -> Option<Pos> {
        self.entries.iter().find(|(key, _, _)| key == name).map(|(_, pos, _)| *pos)
    }

    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Names the key that holds this mapping, so that "missing field" messages point at
    /// `web:` rather than at whatever field happens to come first under it.
    pub fn owned_by(mut self, key: Pos) -> Self {
        self.owner = key;
        self
    }

    /// Where the mapping is: its key when known, else its first entry.
    pub fn pos(&self) -> Pos {
        self.owner
    }
}

fn scalar_text(value: &Value) -> String {
    match value {
        Value::Bool(b) => b.to_string(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Str(s) => s.clone(),
        _ => String::new(),
    }
}

/// The known name closest to a misspelt one, if any is close enough to be a typo.
pub(crate) fn closest<'k>(name: &str, known: &[&'k str]) -> Option<&'k str> {
    known
        .iter()
        .map(|candidate| (strsim::jaro_winkler(name, candidate), *candidate))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, candidate)| candidate)
}

pub(crate) fn quoted_list(names: &[&str]) -> String {
    names.iter().map(|name| format!("{name:?}")).collect::<Vec<_>>().join(", ")
}
