//! Human and JSON renderings of results. The JSON field names are a stable interface
//! (documented in the man page): add fields, never rename them.

use std::io::Write;

use ouroboros_db::{format_time, VersionInfo};
use serde_json::{json, Value};

/// The reader of the output went away (`ouro ls | head -1`, or a FIFO given to `get -o`
/// whose reader exited): main exits 141 without a message, as a program stopped by SIGPIPE
/// would. Rust ignores SIGPIPE, so the write fails with EPIPE and becomes this instead of a
/// panic in `println!`.
#[derive(Debug)]
pub struct PipeClosed;

impl std::fmt::Display for PipeClosed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A
        f.write_str("the reader of the output went away")
    }
}

impl std::error::Error for PipeClosed {}

/// True when `err` is, or was caused by, a closed output pipe.
pub fn is_pipe_closed(err: &anyhow::Error) -> bool {
    // A
    err.chain()
        .any(|c| c.downcast_ref::<PipeClosed>().is_some())
}

/// An error writing to `what`: [`PipeClosed`] when its reader went away, else the error
/// with context naming the output (so a full disk names the file, not the store).
pub fn output_error(e: std::io::Error, what: &str) -> anyhow::Error {
    // A
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        return PipeClosed.into();
    }
    anyhow::Error::new(e).context(format!("writing {what}"))
}

/// Writes formatted text to stdout: what `print!` does, with failures returned.
pub fn write_out(args: std::fmt::Arguments) -> anyhow::Result<()> {
    // A
    std::io::stdout()
        .lock()
        .write_fmt(args)
        .map_err(|e| output_error(e, "to stdout"))
}

/// `println!` that returns an error ([`PipeClosed`] when the reader went away) instead of
/// panicking: use as `outln!("{x}")?`.
macro_rules! outln {
    () => {
        $crate::output::write_out(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::output::write_out(format_args!("{}\n", format_args!($($arg)*)))
    };
}
pub(crate) use outln;

/// The output of a command whose change is already committed: a reader that went away is
/// no failure there, since the exit code must say that the change was made (`ouro put K F |
/// true` exits 0, not 141, and a script does not store it again).
pub fn committed(printed: anyhow::Result<()>) -> anyhow::Result<()> {
    // A
    match printed {
        Err(e) if is_pipe_closed(&e) => Ok(()),
        other => other,
    }
}

/// A version as JSON: `hash`, `key`, `parents`, `created` (RFC 3339), `created_ns`, `size`,
/// `kind`, `removed`.
pub fn version_json(v: &VersionInfo) -> Value {
    // A
    json!({
        "hash": v.hash.to_hex(),
        "key": v.key,
        "parents": v.parents.iter().map(|p| p.to_hex()).collect::<Vec<_>>(),
        "created": format_time(v.created),
        "created_ns": v.created,
        "size": v.size,
        "kind": v.kind.as_str(),
        "removed": v.removed,
    })
}

/// Prints a JSON document on stdout.
pub fn print_json(v: &Value) -> anyhow::Result<()> {
    // A
    outln!("{}", pretty(v))
}

/// `v` as indented JSON, as every `--json` output prints it.
fn pretty(v: &Value) -> String {
    // A
    serde_json::to_string_pretty(v).unwrap_or_else(|_| "null".into())
}

/// Writes a JSON array to stdout one element at a time, byte for byte as [`print_json`]
/// prints the whole array, so a listing of a million keys never holds them all.
#[derive(Default)]
pub struct JsonArray {
    items: usize,
}

impl JsonArray {
    /// Writes the next element.
    pub fn item(&mut self, v: &Value) -> anyhow::Result<()> {
        // A
        let text = pretty(v);
        let mut out = String::with_capacity(text.len() + text.len() / 8 + 4);
        out.push_str(if self.items == 0 { "[\n" } else { ",\n" });
        for (i, line) in text.lines().enumerate() {
            if i > 0 {
                out.push('\n');
            }
            out.push_str("  ");
            out.push_str(line);
        }
        self.items += 1;
        write_out(format_args!("{out}"))
    }

    /// Ends the array (`[]` when it had no element).
    pub fn end(self) -> anyhow::Result<()> {
        // A
        if self.items == 0 {
            outln!("[]")
        } else {
            outln!("\n]")
        }
    }
}

/// One line per version: `<short hash> <time> <size> [merge] [removed]`.
pub fn version_line(v: &VersionInfo) -> String {
    // A
    let mut s = format!(
        "{} {} {:>10}",
        v.hash.short(),
        format_time(v.created),
        human_bytes(v.size)
    );
    if v.parents.len() > 1 {
        s.push_str(" merge");
    }
    if v.removed {
        s.push_str(" (removed)");
    }
    s
}

/// Full `log` entry, git style.
pub fn version_block(v: &VersionInfo) -> String {
    // A
    let mut s = format!("version {}\n", v.hash);
    if v.parents.len() > 1 {
        let ps: Vec<String> = v.parents.iter().map(|p| p.short()).collect();
        s.push_str(&format!("Merge:   {}\n", ps.join(" ")));
    } else if let Some(p) = v.parents.first() {
        s.push_str(&format!("Parent:  {}\n", p.short()));
    }
    s.push_str(&format!("Date:    {}\n", format_time(v.created)));
    s.push_str(&format!(
        "Size:    {} ({} bytes){}\n",
        human_bytes(v.size),
        v.size,
        if v.removed { " (removed)" } else { "" }
    ));
    s
}

/// 1.5 MiB style sizes.
pub fn human_bytes(n: u64) -> String {
    // A
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}
