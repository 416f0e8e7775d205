//! `ouro`: git-like verbs on an OuroborosDB store, made for shells, scripts and cron.

mod commands;
mod exit;
mod interrupt;
mod malloc;
mod output;
mod progress;

use std::io::Write;

use clap::Parser;
use ouro_cli::cli::Cli;

fn main() {
    // A
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { exit::USAGE } else { 0 };
            let _ = e.print();
            std::process::exit(code);
        }
    };
    // Put's threads hand chunk buffers to each other: one heap arena keeps its peak memory
    // lower, and `put -r` fixed thresholds too (see malloc.rs). Where the restart fails it
    // goes on untuned.
    let tuning = match cli.command {
        ouro_cli::cli::Command::Put {
            recursive: true, ..
        } => &malloc::TREE_TUNING[..],
        ouro_cli::cli::Command::Put { .. } => &malloc::PUT_TUNING[..],
        _ => &[],
    };
    if !tuning.is_empty() && malloc::untuned() {
        let _ = malloc::restart_with(tuning);
    }
    // A node and a mount run for days: their log lines keep their times.
    let long_running = matches!(
        cli.command,
        ouro_cli::cli::Command::Node { .. } | ouro_cli::cli::Command::Mount { .. }
    );
    init_logging(cli.global.verbose, long_running);
    interrupt::install();
    let code = match commands::run(&cli) {
        Ok(code) => code,
        // The reader went away (`ouro ls | head -1`): stop quietly, as SIGPIPE would.
        Err(e) if output::is_pipe_closed(&e) => exit::PIPE_CLOSED,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "ouro: error: {}", message(&e));
            exit::code(&e)
        }
    };
    std::process::exit(code);
}

/// The error chain on one line. A cause that repeats what is already said (a context
/// naming the store, then the library's error naming it again) adds only what is new.
fn message(e: &anyhow::Error) -> String {
    // A
    let mut msg = format!("{e}");
    let mut last = msg.clone();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if msg.contains(&c) {
            continue;
        }
        match c.strip_prefix(last.as_str()) {
            Some(rest) if rest.starts_with(": ") => msg.push_str(rest),
            _ => {
                msg.push_str(": ");
                msg.push_str(&c);
            }
        }
        last = c;
    }
    msg
}

/// Logs to stderr: warnings by default, `-v` info, `-vv` debug; `RUST_LOG` overrides.
/// A short command's warnings (`waiting for the compaction ...`) read as messages, without
/// the time stamp a long-running one's log lines carry.
fn init_logging(verbose: u8, long_running: bool) {
    // A
    use tracing_subscriber::EnvFilter;
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false);
    let _ = match verbose == 0 && !long_running {
        // A short command's warnings read like its own: `ouro: warning: ...`.
        true => fmt.event_format(Plain).try_init(),
        false => fmt.try_init(),
    };
}

/// Log lines of a short command without `-v`: `ouro: warning: MESSAGE key=value`, like the
/// command's own messages (no time, no level column).
struct Plain;

impl<S, N> tracing_subscriber::fmt::FormatEvent<S, N> for Plain
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        // A
        let level = match *event.metadata().level() {
            tracing::Level::ERROR => "error",
            tracing::Level::WARN => "warning",
            tracing::Level::INFO => "note",
            _ => "debug",
        };
        write!(writer, "ouro: {level}: ")?;
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}
