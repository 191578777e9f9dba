//! Steps on a world kept up by `vswitch up`: `vswitch step NAME` (a step
//! of the scenario file, by name) or `vswitch step -` (`[[step]]` tables on
//! standard input) asks the world's background process over a Unix socket
//! next to its run record; the process validates the steps against the
//! world as it now stands (the file without its own steps, plus every step
//! applied so far, plus the new ones), refuses what its backend cannot do,
//! and carries them out in order.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use toml_edit::DocumentMut;

use crate::backend::World;
use crate::run::execute::{EXIT_FAILED, EXIT_INVALID, EXIT_OK, EXIT_UNSUPPORTED};
use crate::run::steps::StepReport;
use crate::scenario::plan::BackendKind;
use crate::world::{RUN_DIR, RunId};

/// Errors of the step channel.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    /// The socket could not be bound, reached or used.
    #[error("step channel {path}: {source}")]
    Io {
        /// The socket.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The answer was not understood.
    #[error("step channel {path}: bad answer: {source}")]
    Protocol {
        /// The socket.
        path: PathBuf,
        /// Cause.
        source: serde_json::Error,
    },
}

/// The socket of a live world.
pub fn socket_path(run: &RunId) -> PathBuf {
    Path::new(RUN_DIR).join(format!("{run}.sock"))
}

/// What `vswitch step` asks.
#[derive(Debug, Serialize, Deserialize)]
pub struct StepRequest {
    /// A step of the scenario file, by name …
    pub name: Option<String>,
    /// … or `[[step]]` tables (TOML).
    pub tables: Option<String>,
}

/// What the world answers.
#[derive(Debug, Serialize, Deserialize)]
pub struct StepAnswer {
    /// Exit status for `vswitch step` (0 done, 1 failed, 2 invalid, 3 refused).
    pub code: i32,
    /// Why not, when not.
    pub error: Option<String>,
    /// The steps carried out.
    pub steps: Vec<StepReport>,
}

/// The world's side: the file's text and the steps applied so far.
struct Live {
    file: PathBuf,
    /// The scenario without its own `[[step]]` tables.
    base: String,
    /// The file's `[[step]]` tables, by name, as TOML.
    file_steps: Vec<(String, String)>,
    /// Steps applied so far, as TOML `[[step]]` tables.
    applied: Vec<String>,
    /// Names of the file's steps applied so far.
    applied_names: Vec<String>,
    backend: BackendKind,
}

/// Splits a scenario's text into everything but its steps and checks, and
/// its steps.
fn split_steps(text: &str) -> Result<(String, Vec<(String, String)>), String> {
    let mut doc: DocumentMut = text.parse().map_err(|e| format!("{e}"))?;
    // Checks are the run's, not the live world's (and name the file's steps).
    doc.remove("check");
    let mut steps = Vec::new();
    if let Some(item) = doc.remove("step")
        && let Some(arr) = item.as_array_of_tables()
    {
        for t in arr.iter() {
            let name = t
                .get("name")
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_string();
            let mut one = DocumentMut::new();
            let mut a = toml_edit::ArrayOfTables::new();
            a.push(t.clone());
            one.insert("step", toml_edit::Item::ArrayOfTables(a));
            steps.push((name, one.to_string()));
        }
    }
    Ok((doc.to_string(), steps))
}

impl Live {
    fn answer(&mut self, world: &mut World, req: StepRequest) -> StepAnswer {
        let fail = |code, e: String| StepAnswer {
            code,
            error: Some(e),
            steps: Vec::new(),
        };
        let by_name = req.name.clone();
        let (snippet, source) = match (req.name, req.tables) {
            (Some(n), None) if self.applied_names.contains(&n) => {
                return fail(
                    EXIT_INVALID,
                    format!("step {n:?} has already been applied to this world"),
                );
            }
            (Some(n), None) => match self.file_steps.iter().find(|(s, _)| *s == n) {
                Some((_, t)) => (t.clone(), self.file.clone()),
                None => {
                    let known: Vec<&str> =
                        self.file_steps.iter().map(|(s, _)| s.as_str()).collect();
                    return fail(
                        EXIT_INVALID,
                        format!(
                            "no step named {n:?} in {} (steps: {})",
                            self.file.display(),
                            known.join(", ")
                        ),
                    );
                }
            },
            (None, Some(t)) => (t, PathBuf::from("-")),
            _ => return fail(EXIT_INVALID, "give a step name or step tables".into()),
        };
        let mut text = self.base.clone();
        for a in &self.applied {
            text.push('\n');
            text.push_str(a);
        }
        text.push('\n');
        let lines_before = text.matches('\n').count();
        text.push_str(&snippet);
        let plan = match crate::scenario::parse_str(&source, &text) {
            Ok(p) => p,
            Err(mut e) => {
                // Locate errors in what was sent, not in the combined text.
                if e.line > lines_before {
                    e.line -= lines_before;
                    e.file = source;
                } else {
                    e.file = self.file.clone();
                }
                return fail(EXIT_INVALID, e.to_string());
            }
        };
        let k = self.applied.len();
        let mut refused: Vec<String> = crate::backend::steps::refusals(&plan, self.backend)
            .into_iter()
            .filter(|r| {
                plan.steps[k..]
                    .iter()
                    .any(|s| r.contains(&format!("`{}`", s.name)))
            })
            .collect();
        refused.dedup();
        if !refused.is_empty() {
            return fail(EXIT_UNSUPPORTED, refused.join("\n"));
        }
        let mut reports = Vec::new();
        let t0 = Instant::now();
        for (i, step) in plan.steps.iter().enumerate().skip(k) {
            let before = plan.after_steps(i);
            let after = plan.after_steps(i + 1);
            let at = t0.elapsed();
            let r = world.apply_step(&before, &after, &step.action);
            reports.push(StepReport {
                name: step.name.clone(),
                action: step.action.name().to_string(),
                detail: String::new(),
                at_ms: at.as_millis() as u64,
                took_ms: (t0.elapsed() - at).as_millis() as u64,
                error: r.as_ref().err().map(|e| e.to_string()),
            });
            if let Err(e) = r {
                return StepAnswer {
                    code: EXIT_FAILED,
                    error: Some(format!("step {:?}: {e}", step.name)),
                    steps: reports,
                };
            }
        }
        self.applied.push(snippet);
        self.applied_names.extend(by_name);
        StepAnswer {
            code: EXIT_OK,
            error: None,
            steps: reports,
        }
    }
}

/// Serves steps for `world` (built from the scenario `file`) until the
/// process ends. Never returns unless the socket cannot be bound.
pub fn serve(mut world: World, file: &Path, backend: BackendKind) -> Result<(), LiveError> {
    let path = socket_path(world.run());
    let io = |source| LiveError::Io {
        path: path.clone(),
        source,
    };
    let text = std::fs::read_to_string(file).map_err(io)?;
    let (base, file_steps) = split_steps(&text).map_err(|e| io(std::io::Error::other(e)))?;
    let mut live = Live {
        file: file.to_path_buf(),
        base,
        file_steps,
        applied: Vec::new(),
        applied_names: Vec::new(),
        backend,
    };
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).map_err(io)?;
    for conn in listener.incoming() {
        let Ok(mut conn) = conn else { continue };
        let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
        let mut line = String::new();
        if BufReader::new(&conn).read_line(&mut line).is_err() {
            continue;
        }
        let answer = match serde_json::from_str::<StepRequest>(&line) {
            Ok(req) => live.answer(&mut world, req),
            Err(e) => StepAnswer {
                code: EXIT_INVALID,
                error: Some(format!("bad request: {e}")),
                steps: Vec::new(),
            },
        };
        if let Ok(s) = serde_json::to_string(&answer) {
            let _ = writeln!(conn, "{s}");
        }
    }
    Ok(())
}

/// Asks a live world to carry out steps; waits for its answer.
pub fn request(run: &RunId, req: &StepRequest) -> Result<StepAnswer, LiveError> {
    let path = socket_path(run);
    let io = |source| LiveError::Io {
        path: path.clone(),
        source,
    };
    let mut s = UnixStream::connect(&path).map_err(io)?;
    let body = serde_json::to_string(req).map_err(|source| LiveError::Protocol {
        path: path.clone(),
        source,
    })?;
    writeln!(s, "{body}").map_err(io)?;
    let mut line = String::new();
    BufReader::new(&s).read_line(&mut line).map_err(io)?;
    serde_json::from_str(&line).map_err(|source| LiveError::Protocol {
        path: path.clone(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_split_from_the_rest_of_the_file() {
        let text = "name = \"x\"\n[[check]]\nkind = \"ping\"\nafter = \"a\"\n[[network]]\nname = \"n\"\n[[step]]\nname = \"a\"\nwait_ms = 1\n[[step]]\nname = \"b\"\nstop = \"c\"\n";
        let (base, steps) = split_steps(text).unwrap();
        assert!(!base.contains("[[step]]") && base.contains("[[network]]"));
        assert!(!base.contains("[[check]]"));
        assert_eq!(steps.len(), 2);
        assert_eq!(steps[1].0, "b");
        assert!(steps[1].1.contains("[[step]]") && steps[1].1.contains("stop = \"c\""));
    }
}
