//! Human and JSON renderings of results. The JSON field names are a stable interface
//! (documented in the man page): add fields, never rename them.

use ouroboros_db::{format_time, VersionInfo};
use serde_json::{json, Value};

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
pub fn print_json(v: &Value) {
    // A
    println!(
        "{}",
        serde_json::to_string_pretty(v).unwrap_or_else(|_| "null".into())
    );
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
