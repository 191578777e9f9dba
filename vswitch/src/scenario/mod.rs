//! Scenario files: TOML model, validation, IPAM, and the resolved plan.
//!
//! [`parse_str`] turns the text of a scenario (format version 1.1, see
//! `shared/scenario-format.md`) into a [`plan::Plan`] with every default
//! applied, every name resolved to an index and every address allocated, or
//! into one [`ScenarioError`] that names file, line, column and field.

mod addr;
mod builtin;
mod checks;
mod container_opts;
mod containers;
mod ipam;
mod model;
mod networks;
pub mod plan;
mod services;
pub(crate) mod span;
mod steps;
mod validate;

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::de::DeTable;

use span::{Issue, Seg};

/// A scenario problem, located in its file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}:{line}:{column}: {field}: {message}", file.display())]
pub struct ScenarioError {
    /// The scenario file (`-` for standard input).
    pub file: PathBuf,
    /// 1-based line (0 when the file could not be read).
    pub line: usize,
    /// 1-based column in characters (0 when the file could not be read).
    pub column: usize,
    /// Offending field, e.g. `network[1].subnet` (0-based indices).
    pub field: String,
    /// What is wrong.
    pub message: String,
}

/// Reads and validates a scenario file ("-" reads standard input).
pub fn load_file(path: &Path) -> Result<plan::Plan, ScenarioError> {
    let mut bytes = Vec::new();
    let read = if path.as_os_str() == "-" {
        std::io::stdin().read_to_end(&mut bytes).map(|_| ())
    } else {
        std::fs::read(path).map(|b| bytes = b)
    };
    if let Err(e) = read {
        return Err(ScenarioError {
            file: path.to_path_buf(),
            line: 0,
            column: 0,
            field: "file".into(),
            message: format!("cannot read scenario: {e}"),
        });
    }
    match String::from_utf8(bytes) {
        Ok(text) => parse_str(path, &text),
        Err(e) => {
            let valid = e.utf8_error().valid_up_to();
            let prefix = String::from_utf8_lossy(&e.as_bytes()[..valid]);
            let (line, column) = span::line_col(&prefix, valid);
            Err(ScenarioError {
                file: path.to_path_buf(),
                line,
                column,
                field: "file".into(),
                message: "scenario is not valid UTF-8".into(),
            })
        }
    }
}

/// Validates scenario text; `source` is only used in messages and Plan::source.
pub fn parse_str(source: &Path, text: &str) -> Result<plan::Plan, ScenarioError> {
    let located = |offset: usize, field: String, message: String| {
        let (line, column) = span::line_col(text, offset);
        ScenarioError {
            file: source.to_path_buf(),
            line,
            column,
            field,
            message,
        }
    };
    let (root, errors) = DeTable::parse_recoverable(text);
    if let Some(e) = errors.first() {
        let offset = e.span().map_or(0, |s| s.start);
        let mut path = span::path_at(&root, offset);
        if path.0.is_empty() {
            path = span::path_before(&root, offset);
        }
        let field = if path.0.is_empty() {
            "toml".to_string()
        } else {
            path.to_string()
        };
        return Err(located(
            offset,
            field,
            format!("invalid TOML: {}", clean(e.message())),
        ));
    }
    let def = match model::ScenarioDef::deserialize(toml::de::Deserializer::from(root.clone())) {
        Ok(def) => def,
        Err(e) => {
            let offset = e.span().map_or(0, |s| s.start);
            let mut path = span::path_at(&root, offset);
            let message = clean(e.message());
            if let Some(missing) = backticked(&message, "missing field `") {
                path.0.push(Seg::Key(missing));
            } else if let Some(unknown) = backticked(&message, "unknown field `") {
                // The span is the key itself; make sure the field names it.
                if path.0.last() != Some(&Seg::Key(unknown.clone())) {
                    path.0.push(Seg::Key(unknown));
                }
            }
            let field = if path.0.is_empty() {
                "toml".to_string()
            } else {
                path.to_string()
            };
            return Err(located(offset, field, message));
        }
    };
    let pos = |p: &span::FieldPath| span::locate(&root, p, false).start;
    validate::build(source, def, &pos).map_err(|issue: Issue| {
        let range = span::locate(&root, &issue.path, issue.at_key);
        located(range.start, issue.path.to_string(), issue.message)
    })
}

/// Error text on one line, with serde's Rust type names in the format's words.
fn clean(message: &str) -> String {
    let mut m = message.trim().replace('\n', " ");
    for (rust, words) in [
        ("expected i64", "expected an integer"),
        ("expected f64", "expected a number"),
        ("expected a sequence", "expected a list"),
        ("expected a map", "expected a table"),
    ] {
        m = m.replace(rust, words);
    }
    m
}

/// The name in "`prefix`name`...".
fn backticked(message: &str, prefix: &str) -> Option<String> {
    let rest = message.strip_prefix(prefix)?;
    Some(rest.split('`').next()?.to_string())
}
#[cfg(test)]
mod tests;
