//! YAML text -> a node tree where every node keeps its line and column.
//!
//! Built on yaml-rust2's event parser (see DESIGN.md, "YAML parser"): serde
//! based parsers drop node positions, and we need one for every error. The
//! builder also enforces the limits that keep hostile input cheap: nesting
//! depth, total node count and alias expansion.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

use super::location::{DocPath, Location};

/// Deepest nesting of mappings and sequences we accept.
pub const MAX_DEPTH: usize = 100;
/// Most nodes one document may hold, aliases expanded.
pub const MAX_NODES: usize = 1_000_000;
/// Most nodes that aliases may add (the "billion laughs" guard).
pub const MAX_ALIAS_NODES: usize = 100_000;

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub value: Value,
    pub loc: Location,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Scalar(Scalar),
    Seq(Vec<Node>),
    Map(Vec<Entry>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Scalar {
    pub text: String,
    /// Plain (unquoted, not a block scalar): only these can be null/bool.
    pub plain: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub key: String,
    pub key_loc: Location,
    pub value: Node,
}

impl Node {
    /// `~`, `null` or nothing at all.
    pub fn is_null(&self) -> bool {
        matches!(&self.value, Value::Scalar(s) if s.plain && matches!(s.text.as_str(), "" | "~" | "null" | "Null" | "NULL"))
    }

    pub fn as_scalar(&self) -> Option<&str> {
        match &self.value {
            Value::Scalar(s) => Some(&s.text),
            _ => None,
        }
    }

    pub fn kind_name(&self) -> &'static str {
        match &self.value {
            Value::Scalar(_) if self.is_null() => "nothing (null)",
            Value::Scalar(_) => "a scalar",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }
}

/// A duplicate key, reported as a warning: the last value is kept, as
/// PyYAML and Jackson do.
#[derive(Debug, Clone, PartialEq)]
pub struct DuplicateKey {
    pub key: String,
    pub first: Location,
    pub second: Location,
    pub path: DocPath,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum YamlError {
    #[error("invalid YAML: {message}")]
    Syntax {
        loc: Location,
        message: String,
        hint: Option<String>,
    },
    #[error("the file holds no YAML document")]
    Empty,
    #[error("the file holds more than one YAML document (a second `---`)")]
    MultipleDocuments { loc: Location },
    #[error("nesting deeper than {MAX_DEPTH} levels")]
    TooDeep { loc: Location },
    #[error("the document expands to more than {limit} nodes")]
    TooManyNodes { loc: Location, limit: usize },
    #[error("alias `*` refers to an anchor that is not defined before it")]
    UnknownAlias { loc: Location },
    #[error("mapping keys must be strings, not {kind}")]
    ComplexKey { loc: Location, kind: &'static str },
}

impl YamlError {
    pub fn location(&self) -> Location {
        match self {
            YamlError::Syntax { loc, .. }
            | YamlError::MultipleDocuments { loc }
            | YamlError::TooDeep { loc }
            | YamlError::TooManyNodes { loc, .. }
            | YamlError::UnknownAlias { loc }
            | YamlError::ComplexKey { loc, .. } => *loc,
            YamlError::Empty => Location::new(1, 1),
        }
    }

    pub fn hint(&self) -> Option<String> {
        match self {
            YamlError::Syntax { hint, .. } => hint.clone(),
            YamlError::MultipleDocuments { .. } => {
                Some("keep one pipeline per file; a single leading `---` is fine".into())
            }
            YamlError::TooManyNodes { .. } => {
                Some("anchors and aliases that multiply each other are refused".into())
            }
            _ => None,
        }
    }
}

/// The parsed document and the duplicate keys found in it.
#[derive(Debug)]
pub struct Document {
    pub root: Node,
    pub duplicates: Vec<DuplicateKey>,
}

enum Frame {
    Seq {
        items: Vec<Node>,
        loc: Location,
        anchor: usize,
    },
    Map {
        entries: Vec<Entry>,
        key: Option<(String, Location)>,
        loc: Location,
        anchor: usize,
    },
}

struct Builder {
    stack: Vec<Frame>,
    anchors: HashMap<usize, Node>,
    nodes: usize,
    alias_nodes: usize,
    duplicates: Vec<DuplicateKey>,
    root: Option<Node>,
}

fn loc_of(mark: &Marker) -> Location {
    // yaml-rust2 counts columns from 0.
    Location::new(mark.line(), mark.col() + 1)
}

fn count_nodes(node: &Node) -> usize {
    match &node.value {
        Value::Scalar(_) => 1,
        Value::Seq(items) => 1 + items.iter().map(count_nodes).sum::<usize>(),
        Value::Map(entries) => 1 + entries.iter().map(|e| count_nodes(&e.value)).sum::<usize>(),
    }
}

impl Builder {
    fn path(&self) -> DocPath {
        let mut path = DocPath::root();
        for frame in &self.stack {
            path = match frame {
                Frame::Seq { items, .. } => path.index(items.len()),
                Frame::Map {
                    key: Some((k, _)), ..
                } => path.key(k),
                Frame::Map { key: None, .. } => path,
            };
        }
        path
    }

    fn open(&mut self, frame: Frame, loc: Location) -> Result<(), YamlError> {
        if self.stack.len() >= MAX_DEPTH {
            return Err(YamlError::TooDeep { loc });
        }
        self.count(1, loc)?;
        self.stack.push(frame);
        Ok(())
    }

    fn count(&mut self, n: usize, loc: Location) -> Result<(), YamlError> {
        self.nodes += n;
        if self.nodes > MAX_NODES {
            return Err(YamlError::TooManyNodes {
                loc,
                limit: MAX_NODES,
            });
        }
        Ok(())
    }

    /// Places a finished node into its parent (or makes it the root).
    fn place(&mut self, node: Node, anchor: usize) -> Result<(), YamlError> {
        if anchor != 0 {
            self.anchors.insert(anchor, node.clone());
        }
        let path = self.path();
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map {
                entries, key, loc, ..
            }) => match key.take() {
                None => {
                    // A block mapping's start event points at its first
                    // colon; the first key is where the mapping starts.
                    if entries.is_empty() && node.loc < *loc {
                        *loc = node.loc;
                    }
                    let text = match &node.value {
                        Value::Scalar(s) => s.text.clone(),
                        _ => {
                            return Err(YamlError::ComplexKey {
                                loc: node.loc,
                                kind: node.kind_name(),
                            })
                        }
                    };
                    *key = Some((text, node.loc));
                }
                Some((text, key_loc)) => {
                    if let Some(pos) = entries.iter().position(|e| e.key == text) {
                        let first = entries.remove(pos);
                        self.duplicates.push(DuplicateKey {
                            key: text.clone(),
                            first: first.key_loc,
                            second: key_loc,
                            path,
                        });
                    }
                    entries.push(Entry {
                        key: text,
                        key_loc,
                        value: node,
                    });
                }
            },
        }
        Ok(())
    }

    fn event(&mut self, event: Event, loc: Location) -> Result<(), YamlError> {
        match event {
            Event::Scalar(text, style, anchor, _) => {
                self.count(1, loc)?;
                let plain = style == TScalarStyle::Plain;
                let node = Node {
                    value: Value::Scalar(Scalar { text, plain }),
                    loc,
                };
                self.place(node, anchor)
            }
            Event::SequenceStart(anchor, _) => self.open(
                Frame::Seq {
                    items: Vec::new(),
                    loc,
                    anchor,
                },
                loc,
            ),
            Event::MappingStart(anchor, _) => self.open(
                Frame::Map {
                    entries: Vec::new(),
                    key: None,
                    loc,
                    anchor,
                },
                loc,
            ),
            Event::SequenceEnd | Event::MappingEnd => {
                let (node, anchor) = match self.stack.pop() {
                    Some(Frame::Seq { items, loc, anchor }) => (
                        Node {
                            value: Value::Seq(items),
                            loc,
                        },
                        anchor,
                    ),
                    Some(Frame::Map {
                        entries,
                        loc,
                        anchor,
                        ..
                    }) => (
                        Node {
                            value: Value::Map(merge_keys(entries)),
                            loc,
                        },
                        anchor,
                    ),
                    None => return Ok(()),
                };
                self.place(node, anchor)
            }
            Event::Alias(id) => {
                let Some(target) = self.anchors.get(&id).cloned() else {
                    return Err(YamlError::UnknownAlias { loc });
                };
                let size = count_nodes(&target);
                self.alias_nodes += size;
                if self.alias_nodes > MAX_ALIAS_NODES {
                    return Err(YamlError::TooManyNodes {
                        loc,
                        limit: MAX_ALIAS_NODES,
                    });
                }
                self.count(size, loc)?;
                let mut node = target;
                node.loc = loc;
                self.place(node, 0)
            }
            _ => Ok(()),
        }
    }
}

/// Applies YAML merge keys (`<<: *base` or `<<: [*a, *b]`): keys written
/// in the mapping win over merged ones, earlier sources over later ones.
fn merge_keys(entries: Vec<Entry>) -> Vec<Entry> {
    if !entries.iter().any(|e| e.key == "<<") {
        return entries;
    }
    let (merges, mut own): (Vec<Entry>, Vec<Entry>) =
        entries.into_iter().partition(|e| e.key == "<<");
    for merge in merges {
        let sources = match merge.value.value {
            Value::Map(_) => vec![merge.value],
            Value::Seq(items) => items,
            // Not a merge after all; the model will report the odd key.
            Value::Scalar(_) => {
                own.push(merge);
                continue;
            }
        };
        for source in sources {
            if let Value::Map(merged) = source.value {
                for entry in merged {
                    if !own.iter().any(|o| o.key == entry.key) {
                        own.push(entry);
                    }
                }
            }
        }
    }
    own
}

/// Parses one YAML document into a located node tree.
pub fn parse(src: &str) -> Result<Document, YamlError> {
    let src = src.strip_prefix('\u{feff}').unwrap_or(src);
    let mut parser = Parser::new_from_str(src);
    let mut builder = Builder {
        stack: Vec::new(),
        anchors: HashMap::new(),
        nodes: 0,
        alias_nodes: 0,
        duplicates: Vec::new(),
        root: None,
    };
    let mut documents = 0;
    loop {
        let (event, mark) = parser
            .next_token()
            .map_err(|e| syntax_error(src, e.marker(), e.info()))?;
        let loc = loc_of(&mark);
        match event {
            Event::StreamEnd => break,
            Event::DocumentStart => {
                documents += 1;
                if documents > 1 {
                    return Err(YamlError::MultipleDocuments { loc });
                }
            }
            other => builder.event(other, loc)?,
        }
    }
    match builder.root {
        Some(root) if !root.is_null() => Ok(Document {
            root,
            duplicates: builder.duplicates,
        }),
        _ => Err(YamlError::Empty),
    }
}

/// A scanner error, explained when a tab in the indentation caused it.
fn syntax_error(src: &str, mark: &Marker, info: &str) -> YamlError {
    let loc = loc_of(mark);
    if info.contains("recursion limit") {
        return YamlError::TooDeep { loc };
    }
    let tab_line = src
        .lines()
        .enumerate()
        .skip(loc.line.saturating_sub(2))
        .take(3)
        .find(|(_, l)| {
            l.chars()
                .take_while(|c| c.is_whitespace())
                .any(|c| c == '\t')
        });
    if let Some((index, line)) = tab_line {
        let column = line.chars().position(|c| c == '\t').unwrap_or(0) + 1;
        return YamlError::Syntax {
            loc: Location::new(index + 1, column),
            message: "tab character in indentation".into(),
            hint: Some("YAML indents with spaces only; replace the tabs with spaces".into()),
        };
    }
    YamlError::Syntax {
        loc,
        message: info.to_string(),
        hint: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map_get<'a>(node: &'a Node, key: &str) -> &'a Node {
        match &node.value {
            Value::Map(entries) => &entries.iter().find(|e| e.key == key).unwrap().value,
            _ => panic!("not a map"),
        }
    }

    #[test]
    fn nodes_carry_line_and_column() {
        let doc = parse("a:\n  b: [1, two]\n  c: |\n    text\n").unwrap();
        let a = map_get(&doc.root, "a");
        let b = map_get(a, "b");
        assert_eq!(b.loc, Location::new(2, 6));
        match &b.value {
            Value::Seq(items) => {
                assert_eq!(items[1].loc, Location::new(2, 10));
                assert_eq!(items[1].as_scalar(), Some("two"));
            }
            _ => panic!("b is not a list"),
        }
        assert_eq!(a.loc, Location::new(2, 3));
        assert_eq!(doc.root.loc, Location::new(1, 1));
        let c = map_get(a, "c");
        assert_eq!(c.as_scalar(), Some("text\n"));
        // A block scalar is located at its first line of content.
        assert_eq!(c.loc, Location::new(4, 5));
    }

    #[test]
    fn duplicate_keys_keep_the_last_and_are_reported() {
        let doc = parse("pipeline: 1\nother: x\npipeline: 2\n").unwrap();
        assert_eq!(map_get(&doc.root, "pipeline").as_scalar(), Some("2"));
        assert_eq!(doc.duplicates.len(), 1);
        assert_eq!(doc.duplicates[0].first, Location::new(1, 1));
        assert_eq!(doc.duplicates[0].second, Location::new(3, 1));
    }

    #[test]
    fn aliases_expand_and_keep_the_alias_location() {
        let doc = parse("a: &x {k: v}\nb: *x\n").unwrap();
        let b = map_get(&doc.root, "b");
        assert_eq!(map_get(b, "k").as_scalar(), Some("v"));
        assert_eq!(b.loc, Location::new(2, 4));
    }

    #[test]
    fn hostile_and_broken_inputs_are_clean_errors() {
        let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let prev = format!("*a{}", i - 1);
            let list = [prev.as_str(); 10].join(", ");
            bomb.push_str(&format!("a{i}: &a{i} [{list}]\n"));
        }
        let deep = format!("{}{}", "[".repeat(500), "]".repeat(500));
        type Check = fn(&YamlError) -> bool;
        let cases: Vec<(&str, String, Check)> = vec![
            ("bomb", bomb, |e| {
                matches!(e, YamlError::TooManyNodes { .. })
            }),
            ("deep", deep, |e| matches!(e, YamlError::TooDeep { .. })),
            ("empty", String::new(), |e| matches!(e, YamlError::Empty)),
            ("comments only", "# nothing\n".into(), |e| {
                matches!(e, YamlError::Empty)
            }),
            ("two documents", "a: 1\n---\nb: 2\n".into(), |e| {
                matches!(e, YamlError::MultipleDocuments { .. })
            }),
            (
                "tab",
                "a:\n\tb: 1\n".into(),
                |e| matches!(e, YamlError::Syntax { message, loc, .. } if message.contains("tab") && loc.line == 2),
            ),
            ("syntax", "a: [1, 2\n".into(), |e| {
                matches!(e, YamlError::Syntax { .. })
            }),
            ("unknown alias", "a: *nope\n".into(), |e| {
                matches!(e, YamlError::UnknownAlias { .. } | YamlError::Syntax { .. })
            }),
            ("complex key", "? [a]\n: 1\n".into(), |e| {
                matches!(e, YamlError::ComplexKey { .. })
            }),
        ];
        for (name, src, check) in cases {
            let err = parse(&src).expect_err(name);
            assert!(check(&err), "{name}: {err:?}");
        }
    }

    #[test]
    fn merge_keys_fill_in_missing_entries() {
        let doc =
            parse("base: &b {image: alpine, shell: Sh}\nstep:\n  <<: *b\n  shell: Bash\n").unwrap();
        let step = map_get(&doc.root, "step");
        assert_eq!(map_get(step, "image").as_scalar(), Some("alpine"));
        assert_eq!(map_get(step, "shell").as_scalar(), Some("Bash"));
        assert!(matches!(&step.value, Value::Map(e) if e.len() == 2));
    }

    #[test]
    fn leading_document_marker_and_bom_are_fine() {
        let doc = parse("\u{feff}---\na: 1\n").unwrap();
        assert_eq!(map_get(&doc.root, "a").as_scalar(), Some("1"));
    }
}
