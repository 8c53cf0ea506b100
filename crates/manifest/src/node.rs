//! A YAML document as a tree whose every node knows its line and column.
//!
//! serde's derived deserializers stop at the first problem; launchway reports every
//! problem in a manifest at once, so it first reads the YAML into this tree (serde-saphyr
//! does the parsing and enforces its budgets against alias bombs and deep nesting) and
//! then checks the tree against the schema by hand in `schema.rs`.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

use crate::Diagnostic;

/// Largest manifest file accepted. Real manifests are a few kilobytes; anything near
/// this is a mistake or an attack, and refusing it early keeps memory bounded.
pub const MAX_FILE_BYTES: usize = 4 * 1024 * 1024;

/// Deepest nesting accepted. The schema is at most about eight levels deep.
const MAX_DEPTH: usize = 32;

/// One-based line and column of a node in its file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Pos {
    pub line: u32,
    pub column: u32,
}

#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub value: Value,
    pub pos: Pos,
    /// The node's own source text, when it is a plain scalar: used to keep `1.10` as
    /// written when a number is given where a string is expected.
    pub raw: Option<String>,
}

#[derive(Debug, Clone)]
pub(crate) enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

impl Value {
    /// How a value is named in messages: "a string", "a mapping"…
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "nothing (null)",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }
}

/// Parses one file into a tree, or explains in one diagnostic why it cannot be read.
pub(crate) fn parse(file: &str, bytes: &[u8]) -> Result<Node, Diagnostic> {
    if bytes.len() > MAX_FILE_BYTES {
        return Err(Diagnostic::new(
            file,
            Pos { line: 1, column: 1 },
            format!("file is {} bytes; manifests are limited to {} bytes", bytes.len(), MAX_FILE_BYTES),
        ));
    }
    let text = std::str::from_utf8(bytes).map_err(|error| {
        let pos = position_of_byte(bytes, error.valid_up_to());
        Diagnostic::new(file, pos, "file is not valid UTF-8".to_owned())
    })?;
    let options = serde_saphyr::options! {
        // Duplicate keys reach the schema reader, which reports every one of them
        // with both locations instead of stopping at the first.
        duplicate_keys: serde_saphyr::options::DuplicateKeyPolicy::PassThrough,
        budget: serde_saphyr::budget! { max_depth: MAX_DEPTH, max_documents: 1 },
    };
    let tree: Spanned<RawNode> = serde_saphyr::from_str_with_options(text, options).map_err(|error| {
        let pos = error
            .location()
            .map(|location| Pos { line: location.line() as u32, column: location.column() as u32 })
            .unwrap_or(Pos { line: 1, column: 1 });
        Diagnostic::new(file, pos, describe_yaml_error(&error))
    })?;
    Ok(Node::from_raw(tree, text))
}

/// serde-saphyr renders errors with a snippet; launchway prints `file:line:col: message`
/// and leaves the snippet out, keeping only the first line of the message.
fn describe_yaml_error(error: &serde_saphyr::Error) -> String {
    let rendered = error.without_snippet().to_string();
    let first_line = rendered.lines().next().unwrap_or("invalid YAML");
    // "error: line 4 column 4: did not find expected key" → "did not find expected key"
    let message = first_line.trim_start_matches("error: ");
    let message = match message.split_once(": ") {
        Some((prefix, rest)) if prefix.starts_with("line ") => rest,
        _ => message,
    };
    // The position is printed separately, in front.
    let message = match message.rfind(" at line ") {
        Some(index) if message[index..].contains(", column ") => &message[..index],
        _ => message,
    };
    let message = message.replace("budget breached: Depth", "nesting is too deep: Depth");
    format!("invalid YAML: {message}")
}

fn position_of_byte(bytes: &[u8], offset: usize) -> Pos {
    let before = &bytes[..offset];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let line_start = before.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let column = String::from_utf8_lossy(&before[line_start..]).chars().count() + 1;
    Pos { line: line as u32, column: column as u32 }
}

impl Node {
    fn from_raw(spanned: Spanned<RawNode>, text: &str) -> Node {
        let location = spanned.referenced;
        let pos = Pos { line: location.line() as u32, column: location.column() as u32 };
        let span = location.span();
        let raw = match (span.byte_offset(), span.byte_len()) {
            (Some(start), Some(len)) => text.get(start as usize..(start + len) as usize).map(str::to_owned),
            _ => None,
        };
        let (value, raw) = match spanned.value {
            RawNode::Null => (Value::Null, None),
            RawNode::Bool(b) => (Value::Bool(b), raw),
            RawNode::Int(i) => (Value::Int(i), raw),
            RawNode::Float(f) => (Value::Float(f), raw),
            RawNode::Str(s) => (Value::Str(s), None),
            RawNode::Seq(items) => {
                (Value::Seq(items.into_iter().map(|item| Node::from_raw(item, text)).collect()), None)
            }
            RawNode::Map(entries) => (
                Value::Map(
                    entries
                        .into_iter()
                        .map(|(key, value)| (Node::from_raw(key, text), Node::from_raw(value, text)))
                        .collect(),
                ),
                None,
            ),
        };
        Node { value, pos, raw }
    }
}

/// What serde-saphyr hands over; converted into [`Node`] straight away.
enum RawNode {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Spanned<RawNode>>),
    Map(Vec<(Spanned<RawNode>, Spanned<RawNode>)>),
}

impl<'de> Deserialize<'de> for RawNode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(RawNodeVisitor)
    }
}

struct RawNodeVisitor;

impl<'de> Visitor<'de> for RawNodeVisitor {
    type Value = RawNode;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("any YAML value")
    }
    fn visit_unit<E>(self) -> Result<RawNode, E> {
        Ok(RawNode::Null)
    }
    fn visit_none<E>(self) -> Result<RawNode, E> {
        Ok(RawNode::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<RawNode, D::Error> {
        RawNode::deserialize(deserializer)
    }
    fn visit_bool<E>(self, value: bool) -> Result<RawNode, E> {
        Ok(RawNode::Bool(value))
    }
    fn visit_i64<E>(self, value: i64) -> Result<RawNode, E> {
        Ok(RawNode::Int(value))
    }
    fn visit_u64<E>(self, value: u64) -> Result<RawNode, E> {
        Ok(i64::try_from(value).map_or(RawNode::Float(value as f64), RawNode::Int))
    }
    fn visit_i128<E>(self, value: i128) -> Result<RawNode, E> {
        Ok(i64::try_from(value).map_or(RawNode::Float(value as f64), RawNode::Int))
    }
    fn visit_u128<E>(self, value: u128) -> Result<RawNode, E> {
        Ok(i64::try_from(value).map_or(RawNode::Float(value as f64), RawNode::Int))
    }
    fn visit_f64<E>(self, value: f64) -> Result<RawNode, E> {
        Ok(RawNode::Float(value))
    }
    fn visit_str<E>(self, value: &str) -> Result<RawNode, E> {
        Ok(RawNode::Str(value.to_owned()))
    }
    fn visit_string<E>(self, value: String) -> Result<RawNode, E> {
        Ok(RawNode::Str(value))
    }
    fn visit_bytes<E: de::Error>(self, value: &[u8]) -> Result<RawNode, E> {
        Ok(RawNode::Str(String::from_utf8_lossy(value).into_owned()))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut access: A) -> Result<RawNode, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = access.next_element()? {
            items.push(item);
        }
        Ok(RawNode::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<RawNode, A::Error> {
        let mut entries = Vec::new();
        while let Some(entry) = access.next_entry()? {
            entries.push(entry);
        }
        Ok(RawNode::Map(entries))
    }
}
