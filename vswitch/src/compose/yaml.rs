//! YAML read into a small tree whose every node knows its line and column
//! (saphyr's marked loader underneath), with `<<` merge keys applied.

use saphyr::{LoadableYamlNode, MarkedYaml, Scalar, YamlData};

/// A YAML value.
#[derive(Clone, Debug)]
pub(crate) enum Val {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    /// Entries in document order: key, key position, value.
    Map(Vec<Entry>),
}

/// One mapping entry.
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    pub key: String,
    pub line: usize,
    pub col: usize,
    pub value: Node,
}

/// A value and where it starts (1-based line and column).
#[derive(Clone, Debug)]
pub(crate) struct Node {
    pub line: usize,
    pub col: usize,
    pub val: Val,
}

/// A syntax problem: line, column (1-based) and what.
#[derive(Clone, Debug)]
pub(crate) struct SyntaxError {
    pub line: usize,
    pub col: usize,
    pub message: String,
}

impl Node {
    /// Scalar as text (numbers and booleans as written in canonical form).
    pub fn text(&self) -> Option<String> {
        match &self.val {
            Val::Str(s) => Some(s.clone()),
            Val::Int(i) => Some(i.to_string()),
            Val::Float(f) => Some(f.to_string()),
            Val::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }

    /// The entries of a mapping.
    pub fn entries(&self) -> Option<&[Entry]> {
        match &self.val {
            Val::Map(m) => Some(m),
            _ => None,
        }
    }

    /// The value under `key` of a mapping.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.entries()?
            .iter()
            .find(|e| e.key == key)
            .map(|e| &e.value)
    }

    /// What kind of value this is, for messages.
    pub fn kind(&self) -> &'static str {
        match self.val {
            Val::Null => "null",
            Val::Bool(_) => "a boolean",
            Val::Int(_) => "an integer",
            Val::Float(_) => "a number",
            Val::Str(_) => "a string",
            Val::Seq(_) => "a list",
            Val::Map(_) => "a mapping",
        }
    }
}

fn scalar(s: &Scalar) -> Val {
    match s {
        Scalar::Null => Val::Null,
        Scalar::Boolean(b) => Val::Bool(*b),
        Scalar::Integer(i) => Val::Int(*i),
        Scalar::FloatingPoint(f) => Val::Float(f.into_inner()),
        Scalar::String(s) => Val::Str(s.to_string()),
    }
}

fn err(line: usize, col: usize, message: impl Into<String>) -> SyntaxError {
    SyntaxError {
        line,
        col,
        message: message.into(),
    }
}

fn key_text(k: &MarkedYaml) -> Result<String, SyntaxError> {
    let n = convert(k)?;
    n.text()
        .or_else(|| matches!(n.val, Val::Null).then(|| "null".to_string()))
        .ok_or_else(|| {
            err(
                n.line,
                n.col,
                format!("a mapping key must be a scalar, not {}", n.kind()),
            )
        })
}

/// Applies `<<: *anchor` (a mapping or a list of them): keys already present win.
fn merge(entries: &mut Vec<Entry>, from: &Node) -> Result<(), SyntaxError> {
    let sources: Vec<&Node> = match &from.val {
        Val::Map(_) => vec![from],
        Val::Seq(v) => v.iter().collect(),
        _ => {
            return Err(err(
                from.line,
                from.col,
                format!(
                    "`<<` merges a mapping or a list of mappings, not {}",
                    from.kind()
                ),
            ));
        }
    };
    for s in sources {
        let Some(es) = s.entries() else {
            return Err(err(s.line, s.col, "`<<` merges mappings only"));
        };
        for e in es {
            if !entries.iter().any(|x| x.key == e.key) {
                entries.push(e.clone());
            }
        }
    }
    Ok(())
}

fn convert(y: &MarkedYaml) -> Result<Node, SyntaxError> {
    let (line, col) = (y.span.start.line(), y.span.start.col() + 1);
    let val = match &y.data {
        YamlData::Value(s) => scalar(s),
        YamlData::Representation(text, style, tag) => {
            let v = MarkedYaml::value_from_cow_and_metadata(text.clone(), *style, tag.as_ref());
            return convert(&MarkedYaml {
                span: y.span,
                data: v.data,
            });
        }
        YamlData::Sequence(items) => Val::Seq(items.iter().map(convert).collect::<Result<_, _>>()?),
        YamlData::Mapping(m) => {
            let mut entries: Vec<Entry> = Vec::new();
            let mut merges = Vec::new();
            for (k, v) in m.iter() {
                let key = key_text(k)?;
                let value = convert(v)?;
                if key == "<<" {
                    merges.push(value);
                    continue;
                }
                entries.push(Entry {
                    key,
                    line: k.span.start.line(),
                    col: k.span.start.col() + 1,
                    value,
                });
            }
            for m in &merges {
                merge(&mut entries, m)?;
            }
            Val::Map(entries)
        }
        YamlData::Tagged(_, inner) => return convert(inner),
        YamlData::Alias(_) => return Err(err(line, col, "unknown alias")),
        YamlData::BadValue => return Err(err(line, col, "invalid value")),
    };
    Ok(Node { line, col, val })
}

/// Parses one YAML document.
pub(crate) fn parse(text: &str) -> Result<Node, SyntaxError> {
    let docs = MarkedYaml::load_from_str(text).map_err(|e| {
        err(
            e.marker().line(),
            e.marker().col() + 1,
            format!("invalid YAML: {}", e.info()),
        )
    })?;
    match docs.len() {
        0 => Ok(Node {
            line: 1,
            col: 1,
            val: Val::Null,
        }),
        1 => convert(&docs[0]),
        _ => Err(err(
            docs[1].span.start.line(),
            1,
            "a compose file holds one YAML document, this one has several",
        )),
    }
}
