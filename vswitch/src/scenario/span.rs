//! Field paths and source locations.
//!
//! Validation reports problems against a [`FieldPath`] (`network[1].subnet`);
//! this module turns such a path, or a byte offset from the TOML parser, into
//! a 1-based line and column by walking the spanned document that `toml`
//! parsed.

use std::fmt;
use std::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// One step of a [`FieldPath`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Seg {
    /// A table key.
    Key(String),
    /// A 0-based array index.
    Index(usize),
}

/// Where in the document a problem is: `check[3].kind`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct FieldPath(pub(crate) Vec<Seg>);

impl FieldPath {
    /// The document root.
    pub(crate) fn root() -> Self {
        FieldPath(Vec::new())
    }

    /// This path followed by a key.
    pub(crate) fn k(&self, key: &str) -> Self {
        let mut v = self.0.clone();
        v.push(Seg::Key(key.to_string()));
        FieldPath(v)
    }

    /// This path followed by an array index.
    pub(crate) fn i(&self, index: usize) -> Self {
        let mut v = self.0.clone();
        v.push(Seg::Index(index));
        FieldPath(v)
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("(document)");
        }
        for (n, s) in self.0.iter().enumerate() {
            match s {
                Seg::Key(k) => {
                    if n > 0 {
                        f.write_str(".")?;
                    }
                    let bare = !k.is_empty()
                        && k.chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                    if bare {
                        f.write_str(k)?;
                    } else {
                        write!(f, "{k:?}")?;
                    }
                }
                Seg::Index(i) => write!(f, "[{i}]")?,
            }
        }
        Ok(())
    }
}

/// A validation problem, before it is located in the text.
#[derive(Clone, Debug)]
pub(crate) struct Issue {
    /// Offending field.
    pub(crate) path: FieldPath,
    /// What is wrong and what to do.
    pub(crate) message: String,
    /// Point at the key rather than its value (for keys that must not be there).
    pub(crate) at_key: bool,
}

impl Issue {
    /// A problem with the value at `path`.
    pub(crate) fn new(path: FieldPath, message: impl Into<String>) -> Self {
        Issue {
            path,
            message: message.into(),
            at_key: false,
        }
    }

    /// A problem with the presence of the key at `path`.
    pub(crate) fn key(path: FieldPath, message: impl Into<String>) -> Self {
        Issue {
            path,
            message: message.into(),
            at_key: true,
        }
    }
}

/// Result of a validation step.
pub(crate) type VResult<T> = Result<T, Issue>;

/// Byte range of the value (or key) at `path`; falls back to the deepest
/// existing ancestor when the path does not exist (a missing key).
pub(crate) fn locate(root: &Spanned<DeTable<'_>>, path: &FieldPath, at_key: bool) -> Range<usize> {
    let mut best = root.span();
    let mut table: Option<&DeTable<'_>> = Some(root.get_ref());
    let mut array: Option<&[Spanned<DeValue<'_>>]> = None;
    let last = path.0.len().saturating_sub(1);
    for (n, seg) in path.0.iter().enumerate() {
        let next: &Spanned<DeValue<'_>> = match seg {
            Seg::Key(k) => {
                let Some((key, value)) = table.and_then(|t| t.get_key_value(k.as_str())) else {
                    break;
                };
                if n == last && at_key {
                    return key.span();
                }
                value
            }
            Seg::Index(i) => match array.and_then(|a| a.get(*i)) {
                Some(v) => v,
                None => break,
            },
        };
        best = next.span();
        table = next.get_ref().as_table();
        array = next.get_ref().as_array().map(|a| &a[..]);
    }
    best
}

/// The deepest path whose key or value contains byte `offset`.
pub(crate) fn path_at(root: &Spanned<DeTable<'_>>, offset: usize) -> FieldPath {
    let mut path = FieldPath::root();
    let mut best = FieldPath::root();
    search_table(root.get_ref(), offset, &mut path, &mut best);
    best
}

/// The path of the last key that starts before byte `offset` (for syntax
/// errors such as a duplicate key, which no parsed span contains).
pub(crate) fn path_before(root: &Spanned<DeTable<'_>>, offset: usize) -> FieldPath {
    let mut best = (0, FieldPath::root());
    before_table(root.get_ref(), offset, &mut FieldPath::root(), &mut best);
    best.1
}

fn before_table(
    t: &DeTable<'_>,
    offset: usize,
    path: &mut FieldPath,
    best: &mut (usize, FieldPath),
) {
    for (k, v) in t.iter() {
        path.0.push(Seg::Key(k.get_ref().to_string()));
        let start = k.span().start;
        if start < offset && (best.1.0.is_empty() || start >= best.0) {
            *best = (start, path.clone());
        }
        before_value(v.get_ref(), offset, path, best);
        path.0.pop();
    }
}

fn before_value(
    v: &DeValue<'_>,
    offset: usize,
    path: &mut FieldPath,
    best: &mut (usize, FieldPath),
) {
    match v {
        DeValue::Table(t) => before_table(t, offset, path, best),
        DeValue::Array(a) => {
            for (i, e) in a.iter().enumerate() {
                path.0.push(Seg::Index(i));
                before_value(e.get_ref(), offset, path, best);
                path.0.pop();
            }
        }
        _ => {}
    }
}

fn contains(r: &Range<usize>, offset: usize) -> bool {
    r.start <= offset && offset < r.end.max(r.start + 1)
}

fn search_table(t: &DeTable<'_>, offset: usize, path: &mut FieldPath, best: &mut FieldPath) {
    for (k, v) in t.iter() {
        path.0.push(Seg::Key(k.get_ref().to_string()));
        if (contains(&k.span(), offset) || contains(&v.span(), offset))
            && path.0.len() > best.0.len()
        {
            *best = path.clone();
        }
        search_value(v.get_ref(), offset, path, best);
        path.0.pop();
    }
}

fn search_value(v: &DeValue<'_>, offset: usize, path: &mut FieldPath, best: &mut FieldPath) {
    match v {
        DeValue::Table(t) => search_table(t, offset, path, best),
        DeValue::Array(a) => {
            for (i, e) in a.iter().enumerate() {
                path.0.push(Seg::Index(i));
                if contains(&e.span(), offset) && path.0.len() > best.0.len() {
                    *best = path.clone();
                }
                search_value(e.get_ref(), offset, path, best);
                path.0.pop();
            }
        }
        _ => {}
    }
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut off = offset.min(text.len());
    while !text.is_char_boundary(off) {
        off -= 1;
    }
    let before = &text[..off];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |p| p + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_from_one() {
        assert_eq!(line_col("ab\ncd", 0), (1, 1));
        assert_eq!(line_col("ab\ncd", 4), (2, 2));
        assert_eq!(line_col("é\nx", 3), (2, 1));
        assert_eq!(line_col("é", 1), (1, 1));
        assert_eq!(line_col("", 9), (1, 1));
    }

    #[test]
    fn path_display() {
        let p = FieldPath::root().k("network").i(1).k("subnet");
        assert_eq!(p.to_string(), "network[1].subnet");
        assert_eq!(FieldPath::root().k("lan").to_string(), "lan");
    }

    #[test]
    fn locate_and_path_at_agree() {
        let text = "name = \"x\"\n[[network]]\nname = \"a\"\n\n[[network]]\nname = \"b\"\nsubnet = [\"10.0.0.0/24\", \"10.1.0.0/24\"]\n";
        let root = DeTable::parse(text).unwrap();
        let p = FieldPath::root().k("network").i(1).k("subnet").i(1);
        let r = locate(&root, &p, false);
        assert_eq!(line_col(text, r.start), (7, 26));
        assert_eq!(path_at(&root, r.start), p);
        let k = locate(
            &root,
            &FieldPath::root().k("network").i(1).k("subnet"),
            true,
        );
        assert_eq!(line_col(text, k.start), (7, 1));
        // Missing key: falls back to its table.
        let m = locate(
            &root,
            &FieldPath::root().k("network").i(0).k("driver"),
            false,
        );
        let (l, _) = line_col(text, m.start);
        assert!(l == 2 || l == 3, "{l}");
    }
}
