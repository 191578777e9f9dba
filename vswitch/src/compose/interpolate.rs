//! Compose variable interpolation in values: `$VAR`, `${VAR}`,
//! `${VAR:-default}`, `${VAR-default}`, `${VAR:+alt}`, `${VAR+alt}`,
//! `${VAR:?message}`, `${VAR?message}` and `$$` for a literal `$`.
//! Values come from the environment; an unset variable with no default
//! becomes the empty string, as Compose does, and is reported.

use super::yaml::{Node, SyntaxError, Val};

/// Looks a variable up.
pub(crate) type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

fn is_name_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_name(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The end of a `${…}` body starting at `start` (the index after `{`),
/// allowing nested braces in defaults.
fn closing(chars: &[char], start: usize) -> Option<usize> {
    let mut depth = 1;
    for (i, &c) in chars.iter().enumerate().skip(start) {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

struct Sub<'a> {
    env: Env<'a>,
    line: usize,
    col: usize,
    unset: &'a mut Vec<(usize, String)>,
}

impl Sub<'_> {
    fn err(&self, message: String) -> SyntaxError {
        SyntaxError {
            line: self.line,
            col: self.col,
            message,
        }
    }

    /// `${body}`.
    fn braced(&mut self, body: &str) -> Result<String, SyntaxError> {
        let name_len = body.chars().take_while(|&c| is_name(c)).count();
        let (name, rest) = body.split_at(name_len);
        if name.is_empty() || !name.starts_with(is_name_start) {
            return Err(self.err(format!("invalid interpolation ${{{body}}}")));
        }
        let value = (self.env)(name);
        let empty = value.as_deref().is_none_or(str::is_empty);
        let (op, arg) = if let Some(a) = rest.strip_prefix(":-") {
            (":-", a)
        } else if let Some(a) = rest.strip_prefix(":?") {
            (":?", a)
        } else if let Some(a) = rest.strip_prefix(":+") {
            (":+", a)
        } else if rest.is_empty() {
            ("", "")
        } else {
            rest.split_at(1)
        };
        match op {
            "" => Ok(self.plain(name, value)),
            ":-" if empty => self.text(arg),
            "-" if value.is_none() => self.text(arg),
            ":-" | "-" => Ok(value.unwrap_or_default()),
            ":?" if empty => Err(self.err(format!(
                "required variable {name} is missing a value: {arg}"
            ))),
            "?" if value.is_none() => Err(self.err(format!(
                "required variable {name} is missing a value: {arg}"
            ))),
            ":?" | "?" => Ok(value.unwrap_or_default()),
            ":+" if !empty => self.text(arg),
            "+" if value.is_some() => self.text(arg),
            ":+" | "+" => Ok(String::new()),
            _ => Err(self.err(format!("invalid interpolation ${{{body}}}"))),
        }
    }

    fn plain(&mut self, name: &str, value: Option<String>) -> String {
        value.unwrap_or_else(|| {
            self.unset.push((self.line, name.to_string()));
            String::new()
        })
    }

    fn text(&mut self, s: &str) -> Result<String, SyntaxError> {
        let chars: Vec<char> = s.chars().collect();
        let mut out = String::new();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            if c != '$' {
                out.push(c);
                i += 1;
                continue;
            }
            match chars.get(i + 1) {
                Some('$') => {
                    out.push('$');
                    i += 2;
                }
                Some('{') => {
                    let end = closing(&chars, i + 2)
                        .ok_or_else(|| self.err(format!("unclosed ${{ in {s:?}")))?;
                    let body: String = chars[i + 2..end].iter().collect();
                    out.push_str(&self.braced(&body)?);
                    i = end + 1;
                }
                Some(&n) if is_name_start(n) => {
                    let len = chars[i + 1..].iter().take_while(|&&c| is_name(c)).count();
                    let name: String = chars[i + 1..i + 1 + len].iter().collect();
                    let v = (self.env)(&name);
                    out.push_str(&self.plain(&name, v));
                    i += 1 + len;
                }
                _ => {
                    out.push('$');
                    i += 1;
                }
            }
        }
        Ok(out)
    }
}

/// Interpolates every string value under `node` (keys are left alone).
/// Unset variables are pushed to `unset` with their line.
pub(crate) fn interpolate(
    node: &mut Node,
    env: Env,
    unset: &mut Vec<(usize, String)>,
) -> Result<(), SyntaxError> {
    match &mut node.val {
        Val::Str(s) if s.contains('$') => {
            let mut sub = Sub {
                env,
                line: node.line,
                col: node.col,
                unset,
            };
            *s = sub.text(s)?;
        }
        Val::Seq(items) => {
            for it in items {
                interpolate(it, env, unset)?;
            }
        }
        Val::Map(entries) => {
            for e in entries {
                interpolate(&mut e.value, env, unset)?;
            }
        }
        _ => {}
    }
    Ok(())
}
