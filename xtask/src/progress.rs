//! Progress output for long commands (`cargo xtask test`).
//!
//! Every result is a plain line. What is running *now* is shown too, so a
//! slow or hung step is visible at once:
//!
//! * on a terminal, as a status line at the bottom that counts the seconds
//!   and is redrawn in place (carriage return and "erase line"), then
//!   replaced by the result line;
//! * elsewhere (CI logs, pipes), as a plain `... NAME` line when the step
//!   starts and a `still running` line every [`NOTE_EVERY`], with no control
//!   codes at all.
//!
//! Several threads may print through one [`Console`]: lines never interleave
//! within a line, and the status line is redrawn below them.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often a plain (non-terminal) console repeats what is still running.
pub const NOTE_EVERY: Duration = Duration::from_secs(30);

/// A line-oriented console with one optional status line.
pub struct Console {
    tty: bool,
    state: Mutex<State>,
    stop: AtomicBool,
    /// Where the text goes instead of standard output (host tests).
    capture: Option<Mutex<String>>,
}

struct State {
    /// What runs now, since when, and when the next plain note is due.
    status: Option<(String, Instant, Instant)>,
    /// A status line is on the screen (terminal only)...
    drawn: bool,
    /// ... with this text.
    shown: String,
}

impl Console {
    /// A console on standard output; a terminal unless `TERM=dumb` or
    /// output is redirected. Starts the thread that redraws the status.
    pub fn stdout() -> Arc<Console> {
        let tty = std::io::stdout().is_terminal() && std::env::var("TERM").map_or(true, |t| t != "dumb");
        let console = Arc::new(Console::new(tty, false));
        let ticker = Arc::clone(&console);
        std::thread::spawn(move || {
            while !ticker.stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(500));
                ticker.tick(Instant::now());
            }
        });
        console
    }

    /// A plain console that keeps its text (for tests of code that prints).
    #[cfg(test)]
    pub fn captured() -> Console {
        Console::new(false, true)
    }

    fn new(tty: bool, capture: bool) -> Console {
        Console {
            tty,
            state: Mutex::new(State { status: None, drawn: false, shown: String::new() }),
            stop: AtomicBool::new(false),
            capture: capture.then(|| Mutex::new(String::new())),
        }
    }

    /// Writes `text` in one piece (called with the state locked).
    fn emit(&self, text: &str) {
        if text.is_empty() {
            return;
        }
        match &self.capture {
            Some(capture) => capture.lock().expect("console capture").push_str(text),
            None => {
                let mut out = std::io::stdout().lock();
                let _ = out.write_all(text.as_bytes());
                let _ = out.flush();
            }
        }
    }

    /// Prints `text` (one or more lines) above the status line.
    pub fn line(&self, text: &str) {
        let mut state = self.state.lock().expect("console");
        let mut out = self.clear(&mut state);
        out.push_str(text.trim_end_matches('\n'));
        out.push('\n');
        out.push_str(&self.draw(&mut state, Instant::now()));
        self.emit(&out);
    }

    /// Shows `what` as running from now on.
    pub fn begin(&self, what: String) {
        let now = Instant::now();
        let mut state = self.state.lock().expect("console");
        let mut out = self.clear(&mut state);
        if !self.tty {
            out.push_str(&format!("... {what}\n"));
        }
        state.status = Some((what, now, now + NOTE_EVERY));
        out.push_str(&self.draw(&mut state, now));
        self.emit(&out);
    }

    /// Ends the running step (its result line follows with [`Console::line`]).
    pub fn end(&self) {
        let mut state = self.state.lock().expect("console");
        let out = self.clear(&mut state);
        state.status = None;
        self.emit(&out);
    }

    /// Stops the redraw thread and removes the status line.
    pub fn finish(&self) {
        self.stop.store(true, Ordering::Relaxed);
        self.end();
    }

    fn tick(&self, now: Instant) {
        let mut state = self.state.lock().expect("console");
        let mut out = String::new();
        if self.tty {
            // Redraw only when the text changes (once a second).
            if let Some((what, since, _)) = &state.status
                && state.drawn
                && status_line(what, now.duration_since(*since), terminal_width()) == state.shown
            {
                return;
            }
            out = self.clear(&mut state);
            out.push_str(&self.draw(&mut state, now));
        } else if let Some((what, since, next)) = &mut state.status
            && now >= *next
        {
            out = format!("... still running after {} s: {what}\n", now.duration_since(*since).as_secs());
            *next = now + NOTE_EVERY;
        }
        self.emit(&out);
    }

    /// What erases the status line, if one is drawn.
    fn clear(&self, state: &mut State) -> String {
        if self.tty && state.drawn {
            state.drawn = false;
            "\r\x1b[K".into()
        } else {
            String::new()
        }
    }

    /// The status line to draw, if any (terminal only).
    fn draw(&self, state: &mut State, now: Instant) -> String {
        match (self.tty, &state.status) {
            (true, Some((what, since, _))) => {
                state.drawn = true;
                state.shown = status_line(what, now.duration_since(*since), terminal_width());
                state.shown.clone()
            }
            _ => String::new(),
        }
    }
}

/// `what (N s)`, cut to `width` columns so that it never wraps (a wrapped
/// line could not be erased in place).
fn status_line(what: &str, elapsed: Duration, width: usize) -> String {
    let suffix = format!(" ({} s)", elapsed.as_secs());
    let room = width.saturating_sub(suffix.len() + 1);
    let shown: String = if what.chars().count() > room {
        what.chars().take(room.saturating_sub(1)).chain(['…']).collect()
    } else {
        what.to_string()
    };
    format!("{shown}{suffix}")
}

fn terminal_width() -> usize {
    // SAFETY: TIOCGWINSZ writes one `winsize` into the struct we pass.
    let mut size: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: ioctl on standard output with a valid pointer to `size`.
    let ok = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut size) } == 0;
    if ok && size.ws_col > 0 { usize::from(size.ws_col) } else { 80 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_fit_the_terminal() {
        assert_eq!(status_line("build", Duration::from_secs(3), 80), "build (3 s)");
        let long = "x".repeat(200);
        let line = status_line(&long, Duration::from_secs(12), 40);
        assert!(line.chars().count() < 40, "{line}");
        assert!(line.ends_with("… (12 s)"));
    }

    fn captured(console: &Console) -> String {
        console.capture.as_ref().unwrap().lock().unwrap().clone()
    }

    #[test]
    fn a_plain_console_notes_a_long_step_with_no_control_codes() {
        let console = Console::new(false, true);
        console.begin("guest x".into());
        let start = console.state.lock().unwrap().status.as_ref().unwrap().1;
        console.tick(start + Duration::from_secs(1));
        assert_eq!(captured(&console), "... guest x\n", "no note before it is due");
        console.tick(start + NOTE_EVERY);
        console.line("result");
        console.end();
        assert_eq!(captured(&console), "... guest x\n... still running after 30 s: guest x\nresult\n");
    }

    #[test]
    fn a_terminal_console_redraws_the_status_below_each_line() {
        let console = Console::new(true, true);
        console.begin("guest x".into());
        console.line("result");
        console.end();
        let text = captured(&console);
        assert!(text.starts_with("guest x (0 s)\r\x1b[Kresult\nguest x (0 s)\r\x1b[K"), "{text:?}");
        console.line("after");
        assert!(captured(&console).ends_with("\r\x1b[Kafter\n"), "no status once the step ended");
    }
}
