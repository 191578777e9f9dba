//! Progress of long work (creating hundreds of namespaces or containers,
//! running many checks, bench repetitions).
//!
//! On a terminal, with progress switched on by the CLI ([`enable`]), it is
//! an indicatif bar on standard error. Otherwise it is plain: nothing while
//! the work goes on — standard error of a CI job or a test stays a readable
//! log of the run's own progress lines, which the callers print anyway —
//! and one line at the end of work of at least [`PLAIN_MIN`] items when
//! progress is on, saying how many and how long.
//!
//! The library never turns it on by itself, so tests and library users see
//! no bars.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Below this many items, plain output says nothing at the end.
pub const PLAIN_MIN: u64 = 50;

/// Switches progress on (the CLI does, unless `-q`). Bars are drawn only
/// when standard error is a terminal.
pub fn enable(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

/// Whether progress is on.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// How progress of one piece of work is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Nothing at all.
    Off,
    /// A bar on the terminal.
    Bar,
    /// A line at the end, for long work.
    Plain,
}

/// The mode for work of `total` items, given whether progress is on and
/// whether standard error is a terminal.
pub fn mode(on: bool, tty: bool, total: u64) -> Mode {
    match (on, tty) {
        (false, _) => Mode::Off,
        (true, true) if total > 1 => Mode::Bar,
        (true, true) => Mode::Off,
        (true, false) if total >= PLAIN_MIN => Mode::Plain,
        (true, false) => Mode::Off,
    }
}

/// Progress of one piece of work; shared by reference between threads.
/// [`Progress::finish`] clears the bar and prints the plain line.
#[derive(Debug)]
pub struct Progress {
    bar: Option<ProgressBar>,
    mode: Mode,
    what: String,
    total: u64,
    started: Instant,
}

impl Progress {
    /// Starts progress of `total` items of `what` ("namespaces").
    pub fn start(what: &str, total: u64) -> Progress {
        let mode = mode(enabled(), std::io::stderr().is_terminal(), total);
        let bar = (mode == Mode::Bar).then(|| {
            let b = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            let style = ProgressStyle::with_template(
                "{spinner} {msg:<12} [{bar:32}] {pos}/{len} ({elapsed}, eta {eta})",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
            b.set_style(style);
            b.set_message(what.to_string());
            b
        });
        Progress {
            bar,
            mode,
            what: what.to_string(),
            total,
            started: Instant::now(),
        }
    }

    /// One more item done.
    pub fn inc(&self) {
        if let Some(b) = &self.bar {
            b.inc(1);
        }
    }

    /// Prints a line without tearing the bar (plain `eprintln!` otherwise).
    pub fn println(&self, line: &str) {
        match &self.bar {
            Some(b) => b.println(line),
            None => eprintln!("{line}"),
        }
    }

    /// Ends the work: the bar goes, the plain line is printed.
    pub fn finish(self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
        if self.mode == Mode::Plain {
            eprintln!(
                "vswitch: {} {} done in {:.1} s",
                self.total,
                self.what,
                self.started.elapsed().as_secs_f64()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes() {
        assert_eq!(mode(false, true, 500), Mode::Off);
        assert_eq!(mode(true, true, 500), Mode::Bar);
        assert_eq!(mode(true, true, 1), Mode::Off);
        assert_eq!(mode(true, false, 10), Mode::Off);
        assert_eq!(mode(true, false, PLAIN_MIN), Mode::Plain);
    }

    #[test]
    fn off_by_default_and_silent() {
        assert!(!enabled());
        let p = Progress::start("things", 1000);
        assert!(p.bar.is_none());
        assert_eq!(p.mode, Mode::Off);
        p.inc();
        p.finish();
    }
}
