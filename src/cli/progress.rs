//! How a build shows what it does, on stderr (stdout carries results):
//!
//! - `tty`: a live line per step with a spinner and its elapsed time; a
//!   running RUN step shows its last output lines under it, and the step
//!   collapses to one line when it is done, as BuildKit's display does.
//! - `plain`: one line per step and every output line as it comes, for CI
//!   logs and pipes.
//! - `json`: one JSON object per line (docs/cli.md, "Progress"), for tools.
//! - `auto`: `tty` when stderr is a terminal, `plain` otherwise.
//!
//! `--quiet` silences all of it but errors and warnings.

use hoist_engine::Event;
use hoist_engine::shared_cache::{CacheHit, CacheReport};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;
use std::collections::VecDeque;
use std::io::IsTerminal;
use std::time::Duration;

/// `--progress`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Mode {
    #[default]
    Auto,
    Tty,
    Plain,
    Json,
}

/// How many output lines a running step shows on a terminal.
const WINDOW: usize = 6;

/// What the closing summary says.
pub struct Summary {
    pub image: String,
    pub digest: String,
    pub seconds: f64,
    pub layers: usize,
    pub bytes: u64,
    pub steps: usize,
    pub cached_steps: usize,
    pub files_read: u64,
    pub blocks_reused: usize,
    /// Where cached steps came from, bytes fetched, cache exports.
    pub cache: CacheReport,
    /// Bytes the build's pushes and cache exports uploaded.
    pub bytes_uploaded: u64,
}

/// The display of one build.
pub struct Display {
    style: Style,
}

enum Style {
    Quiet,
    Plain {
        /// A step's line stays open until it is done; RUN output closes it.
        line_open: bool,
    },
    Tty {
        running: Option<Running>,
    },
    Json,
}

/// A step on the terminal while it runs.
struct Running {
    bar: ProgressBar,
    header: String,
    lines: VecDeque<String>,
    started: std::time::Instant,
}

impl Running {
    /// Ends the step's live lines with one final line of ours, written
    /// with a newline (indicatif's last frame would stay padded to its
    /// idea of the terminal's width, with a spinner column).
    fn finish(self, mark: &str, tail: &str) {
        self.bar.finish_and_clear();
        eprintln!("{mark} {} {}", self.header, dim(tail));
    }
}

/// Whether colours and dimming are wanted: not with `NO_COLOR` set
/// (no-color.org).
fn colors() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

impl Display {
    pub fn new(mode: Mode, quiet: bool) -> Display {
        let style = match (quiet, mode) {
            (true, _) => Style::Quiet,
            (false, Mode::Json) => Style::Json,
            (false, Mode::Tty) => Style::Tty { running: None },
            (false, Mode::Plain) => Style::Plain { line_open: false },
            // A dumb terminal (or none named) cannot redraw lines: plain
            // lines, as BuildKit falls back to.
            (false, Mode::Auto) if std::io::stderr().is_terminal() && !dumb_terminal() => {
                Style::Tty { running: None }
            }
            (false, Mode::Auto) => Style::Plain { line_open: false },
        };
        Display { style }
    }

    /// Shows one event of the build.
    pub fn event(&mut self, event: Event) {
        match &mut self.style {
            Style::Quiet => {}
            Style::Plain { line_open } => plain_event(line_open, event),
            Style::Tty { running } => tty_event(running, event),
            Style::Json => json_line(&event_json(&event)),
        }
    }

    /// Says which platform the steps that follow build, when a build
    /// makes several.
    pub fn platform(&mut self, platform: &str, number: usize, total: usize) {
        self.close_line();
        match self.style {
            Style::Quiet => {}
            Style::Json => json_line(
                &json!({"type": "platform", "platform": platform, "number": number, "total": total}),
            ),
            _ => eprintln!("platform {platform} ({number}/{total})"),
        }
    }

    /// Shows a warning (even when quiet).
    pub fn warning(&mut self, text: &str) {
        self.close_line();
        match self.style {
            Style::Json => json_line(&json!({"type": "warning", "message": text})),
            _ => eprintln!("warning: {text}"),
        }
    }

    /// Shows why the build failed (even when quiet): the error, the
    /// Dockerfile lines it is about (` N | text`, a caret line), its causes
    /// and the hint.
    pub fn error(&mut self, message: &str, excerpt: &str, causes: &[String], hint: Option<&str>) {
        if let Style::Tty { running } = &mut self.style
            && let Some(step) = running.take()
        {
            let seconds = step.started.elapsed().as_secs_f64();
            step.finish("✘", &format!("{seconds:.2}s"));
        }
        self.close_line();
        match self.style {
            Style::Json => json_line(&json!({
                "type": "error",
                "message": message,
                "excerpt": excerpt,
                "causes": causes,
                "hint": hint,
            })),
            _ => {
                eprintln!("error: {message}");
                eprint!("{excerpt}");
                for cause in causes {
                    eprintln!("  caused by: {cause}");
                }
                if let Some(hint) = hint {
                    eprintln!("  hint: {hint}");
                }
            }
        }
    }

    /// The closing summary.
    pub fn summary(&mut self, s: &Summary) {
        match self.style {
            Style::Quiet => {}
            Style::Json => json_line(&json!({
                "type": "summary",
                "image": s.image,
                "digest": s.digest,
                "seconds": s.seconds,
                "layers": s.layers,
                "bytes": s.bytes,
                "steps": s.steps,
                "cached_steps": s.cached_steps,
                "files_read": s.files_read,
                "blocks_reused": s.blocks_reused,
                "cached_from": {
                    "local": s.cache.local,
                    "registry": s.cache.registry,
                    "directory": s.cache.directory,
                },
                "bytes_downloaded": s.cache.bytes_downloaded,
                "bytes_uploaded": s.bytes_uploaded,
                "cache_exports": s.cache.exports.iter().map(|e| json!({
                    "cache": e.name,
                    "written": e.written,
                    "kept": e.kept,
                    "bytes_uploaded": e.bytes_uploaded,
                })).collect::<Vec<_>>(),
            })),
            _ => {
                self.close_line();
                let reused = match s.blocks_reused {
                    0 => String::new(),
                    n => format!(", {n} compressed blocks reused"),
                };
                eprintln!(
                    "built {} ({}) in {:.2}s: {} layers, {}, {}/{} steps cached, {} files read{reused}",
                    s.image,
                    short_digest(&s.digest),
                    s.seconds,
                    s.layers,
                    super::build::human_bytes(s.bytes),
                    s.cached_steps,
                    s.steps,
                    s.files_read
                );
                if let Some(line) = transfer_line(s) {
                    eprintln!("{line}");
                }
            }
        }
    }

    fn close_line(&mut self) {
        if let Style::Plain { line_open } = &mut self.style
            && std::mem::take(line_open)
        {
            eprintln!();
        }
    }
}

/// `sha256:` and the first 12 hex digits, as Docker shortens image IDs.
/// Where the cached steps came from and what moved, when a shared cache
/// or a registry was involved: `cached: 2 local, 5 registry; 1.2 MB
/// downloaded, 0 B uploaded; registry cache R: 7 entries written, 2 kept`.
fn transfer_line(s: &Summary) -> Option<String> {
    let c = &s.cache;
    if c.registry + c.directory == 0
        && c.exports.is_empty()
        && c.bytes_downloaded == 0
        && s.bytes_uploaded == 0
    {
        return None;
    }
    let mut origins = vec![format!("{} local", c.local)];
    if c.registry > 0 {
        origins.push(format!("{} registry", c.registry));
    }
    if c.directory > 0 {
        origins.push(format!("{} directory", c.directory));
    }
    let mut line = format!(
        "cached: {}; {} downloaded, {} uploaded",
        origins.join(", "),
        super::build::human_bytes(c.bytes_downloaded),
        super::build::human_bytes(s.bytes_uploaded)
    );
    for export in &c.exports {
        line.push_str(&format!(
            "; {}: {} entries written, {} kept",
            export.name, export.written, export.kept
        ));
    }
    Some(line)
}

fn short_digest(digest: &str) -> &str {
    let end = digest.find(':').map_or(0, |i| i + 1) + 12;
    digest.get(..end).unwrap_or(digest)
}

/// `#N/TOTAL [stage] FROM ...` for a stage's first step, `#N/TOTAL TEXT`
/// after it.
fn step_header(number: usize, total: usize, stage: Option<&str>, text: &str) -> String {
    match stage {
        Some(stage) => format!("#{number}/{total} [{stage}] {text}"),
        None => format!("#{number}/{total} {text}"),
    }
}

fn done_text(cached: Option<CacheHit>, layer_bytes: Option<u64>, seconds: f64) -> String {
    let what = match cached {
        Some(hit) => format!("CACHED ({})", hit.label()),
        None => format!("{seconds:.2}s"),
    };
    match layer_bytes {
        Some(b) => format!("{what}, layer {}", super::build::human_bytes(b)),
        None => what,
    }
}

fn plain_event(line_open: &mut bool, event: Event) {
    match event {
        Event::Step {
            number,
            total,
            stage,
            opens_stage,
            text,
        } => {
            let stage = opens_stage.then_some(stage.as_str());
            eprint!("{}", step_header(number, total, stage, &text));
            *line_open = true;
        }
        Event::Output { line, .. } => {
            if std::mem::take(line_open) {
                eprintln!();
            }
            eprintln!("  | {line}");
        }
        Event::Done {
            number,
            cached,
            layer_bytes,
            seconds,
        } => {
            if !std::mem::take(line_open) {
                eprint!("#{number}");
            }
            eprintln!(" ... {}", done_text(cached, layer_bytes, seconds));
        }
        Event::Warning(message) => {
            if std::mem::take(line_open) {
                eprintln!();
            }
            eprintln!("warning: {message}");
        }
        Event::Isolation { mode, reason } => {
            if std::mem::take(line_open) {
                eprintln!();
            }
            eprintln!("{}", isolation_text(mode, reason.as_deref()));
        }
        Event::Emulated { platform, handler } => {
            if std::mem::take(line_open) {
                eprintln!();
            }
            eprintln!("{}", emulation_text(&platform, &handler));
        }
    }
}

/// Whether `$TERM` says the terminal cannot move the cursor.
fn dumb_terminal() -> bool {
    std::env::var("TERM").map_or(true, |t| t.is_empty() || t == "dumb")
}

/// The line that says RUN steps of a platform run emulated.
fn emulation_text(platform: &str, handler: &str) -> String {
    format!(
        "note: RUN steps for {platform} run emulated through QEMU ({handler}), several times slower than native ones; cross-compiling from a `FROM --platform=$BUILDPLATFORM` stage avoids it (docs/platforms.md)"
    )
}

/// The line that says how RUN steps are isolated.
fn isolation_text(mode: &str, reason: Option<&str>) -> String {
    let mode = if mode == "namespaces" {
        "namespace"
    } else {
        mode
    };
    match reason {
        None => format!("note: RUN steps run with {mode} isolation"),
        Some(why) => format!(
            "note: RUN steps run with {mode} isolation, as namespaces cannot be made here ({why}); docs/run.md says what it keeps apart"
        ),
    }
}

fn tty_event(running: &mut Option<Running>, event: Event) {
    match event {
        Event::Step {
            number,
            total,
            stage,
            opens_stage,
            text,
        } => {
            if let Some(previous) = running.take() {
                previous.bar.finish_and_clear();
            }
            let stage = opens_stage.then_some(stage.as_str());
            let header = fit(&step_header(number, total, stage, &text));
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            // The elapsed time stays on the step's line; the output window
            // (the message) comes below it.
            let template = if colors() {
                "{spinner:.cyan} {prefix} {elapsed:.dim}{msg}"
            } else {
                "{spinner} {prefix} {elapsed}{msg}"
            };
            bar.set_style(
                ProgressStyle::with_template(template)
                    .expect("a valid template")
                    .tick_chars("⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏ "),
            );
            bar.set_prefix(header.clone());
            bar.enable_steady_tick(Duration::from_millis(100));
            *running = Some(Running {
                bar,
                header,
                lines: VecDeque::new(),
                started: std::time::Instant::now(),
            });
        }
        Event::Output { line, .. } => {
            if let Some(step) = running {
                if step.lines.len() == WINDOW {
                    step.lines.pop_front();
                }
                step.lines.push_back(fit(&format!("  │ {line}")));
                let mut message = String::new();
                for line in &step.lines {
                    message.push('\n');
                    message.push_str(line);
                }
                step.bar.set_message(message);
            }
        }
        Event::Done {
            cached,
            layer_bytes,
            seconds,
            ..
        } => {
            if let Some(step) = running.take() {
                step.finish("✔", &done_text(cached, layer_bytes, seconds));
            }
        }
        Event::Warning(message) => match running {
            Some(step) => step.bar.suspend(|| eprintln!("warning: {message}")),
            None => eprintln!("warning: {message}"),
        },
        Event::Isolation { mode, reason } => {
            let text = isolation_text(mode, reason.as_deref());
            match running {
                Some(step) => step.bar.suspend(|| eprintln!("{text}")),
                None => eprintln!("{text}"),
            }
        }
        Event::Emulated { platform, handler } => {
            let text = emulation_text(&platform, &handler);
            match running {
                Some(step) => step.bar.suspend(|| eprintln!("{text}")),
                None => eprintln!("{text}"),
            }
        }
    }
}

/// `text` dimmed, unless colours are off.
fn dim(text: &str) -> String {
    if colors() {
        format!("\x1b[2m{text}\x1b[0m")
    } else {
        text.to_owned()
    }
}

/// Cuts a line to the terminal's width so that a redraw never wraps.
fn fit(line: &str) -> String {
    super::inspect::ellipsis(line, terminal_width().saturating_sub(16).max(20))
}

fn terminal_width() -> usize {
    // SAFETY: TIOCGWINSZ fills a winsize struct we own; stderr is fd 2.
    let mut size: libc::winsize = unsafe { std::mem::zeroed() };
    let ok = unsafe { libc::ioctl(2, libc::TIOCGWINSZ, &mut size) } == 0;
    if ok && size.ws_col > 0 {
        usize::from(size.ws_col)
    } else {
        80
    }
}

fn event_json(event: &Event) -> serde_json::Value {
    match event {
        Event::Step {
            number,
            total,
            stage,
            text,
            ..
        } => json!({
            "type": "step",
            "step": number,
            "total": total,
            "stage": stage,
            "instruction": text,
        }),
        Event::Output { number, line } => json!({
            "type": "output",
            "step": number,
            "line": line,
        }),
        Event::Done {
            number,
            cached,
            layer_bytes,
            seconds,
        } => json!({
            "type": "done",
            "step": number,
            "cached": cached.is_some(),
            "cache": cached.map(CacheHit::label),
            "layer_bytes": layer_bytes,
            "seconds": seconds,
        }),
        Event::Warning(message) => json!({
            "type": "warning",
            "message": message,
        }),
        Event::Isolation { mode, reason } => json!({
            "type": "isolation",
            "mode": mode,
            "reason": reason,
        }),
        Event::Emulated { platform, handler } => json!({
            "type": "emulated",
            "platform": platform,
            "handler": handler,
        }),
    }
}

/// The version of the JSON events' schema (docs/cli.md), in every line.
const JSON_SCHEMA: u32 = 1;

fn json_line(value: &serde_json::Value) {
    let mut value = value.clone();
    if let Some(object) = value.as_object_mut() {
        object.insert("version".to_owned(), JSON_SCHEMA.into());
    }
    eprintln!("{value}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_digests_keep_the_algorithm_and_twelve_digits() {
        assert_eq!(
            short_digest("sha256:0123456789abcdef0123456789abcdef"),
            "sha256:0123456789ab"
        );
        assert_eq!(short_digest("sha256:0123"), "sha256:0123");
    }

    #[test]
    fn step_headers_name_the_stage_on_its_first_step() {
        assert_eq!(
            step_header(2, 9, Some("build"), "FROM a AS build"),
            "#2/9 [build] FROM a AS build"
        );
        assert_eq!(step_header(3, 9, None, "RUN make"), "#3/9 RUN make");
    }

    #[test]
    fn json_events_are_one_object_per_line_with_a_type() {
        let v = event_json(&Event::Done {
            number: 3,
            cached: Some(CacheHit::Registry),
            layer_bytes: None,
            seconds: 0.0,
        });
        assert_eq!(v["type"], "done");
        assert_eq!(v["step"], 3);
        assert_eq!(v["cached"], true);
        assert_eq!(v["cache"], "registry");
        assert_eq!(
            done_text(Some(CacheHit::Local), Some(2048), 0.0),
            "CACHED (local), layer 2.0 kB"
        );
        assert!(!v.to_string().contains('\n'));
    }
}
