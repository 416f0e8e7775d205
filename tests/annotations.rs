//! Review annotations, as the original design asks: every non-test function carries its
//! review status (`// A`, `// PA`, or a human reviewer's) as the first line of its body, and
//! SECURITY.md's table of `// PA` functions is what `scripts/pa-table` prints.

use std::path::{Path, PathBuf};

/// The workspace root (this package's manifest directory).
fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Rust sources that hold non-test code: the library, the binary, the mount, the node,
/// examples and benches (not the integration tests, not the fuzz targets).
fn sources() -> Vec<PathBuf> {
    let mut out = Vec::new();
    for dir in [
        "src",
        "cli/src",
        "cli/examples",
        "fuse/src",
        "cluster/src",
        "examples",
        "benches",
    ] {
        collect(&root().join(dir), &mut out);
    }
    out.sort();
    out
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            collect(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// `(line, function)` of every function in `text` whose body does not start with a review
/// status. Code after a `#[cfg(test)]` (or a file's `#![cfg(test)]`: a test module of its
/// own) at the start of a line is test code and skipped.
fn unannotated(text: &str) -> Vec<(usize, String)> {
    let lines: Vec<&str> = text.lines().collect();
    let end = lines
        .iter()
        .position(|l| l.starts_with("#[cfg(test)]") || l.starts_with("#![cfg(test)]"))
        .unwrap_or(lines.len());
    let mut missing = Vec::new();
    let mut i = 0;
    while i < end {
        let l = lines[i].trim_start();
        let is_fn = !l.starts_with("//")
            && l.split("fn ")
                .next()
                .is_some_and(|before| before.split_whitespace().all(is_fn_qualifier))
            && l.contains("fn ")
            && l.split("fn ")
                .nth(1)
                .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_lowercase() || c == '_'));
        if !is_fn {
            i += 1;
            continue;
        }
        // The signature ends at the first line ending in `{` (a body) or `;` (none).
        let mut j = i;
        while j < end && !lines[j].trim_end().ends_with('{') && !lines[j].trim_end().ends_with(';')
        {
            j += 1;
        }
        if j < end && lines[j].trim_end().ends_with('{') {
            let first = lines.get(j + 1).map(|s| s.trim()).unwrap_or("");
            if !is_status(first) {
                let name = l.split("fn ").nth(1).unwrap_or("").split(['(', '<']).next();
                missing.push((i + 1, name.unwrap_or("").to_string()));
            }
        }
        i = j + 1;
    }
    missing
}

/// Words that may stand before `fn` in a function's signature.
fn is_fn_qualifier(w: &str) -> bool {
    matches!(w, "pub" | "const" | "async" | "unsafe" | "extern" | "\"C\"")
        || (w.starts_with("pub(") && w.ends_with(')'))
}

/// A review status line: `// ` then 1-3 capital letters (A, PA, H, HC, AC, ...).
fn is_status(line: &str) -> bool {
    line.strip_prefix("// ")
        .is_some_and(|s| (1..=3).contains(&s.len()) && s.chars().all(|c| c.is_ascii_uppercase()))
}

#[test]
fn every_non_test_function_carries_its_review_status() {
    let mut missing = Vec::new();
    for path in sources() {
        let text = std::fs::read_to_string(&path).unwrap();
        for (line, name) in unannotated(&text) {
            let rel = path.strip_prefix(root()).unwrap_or(&path);
            missing.push(format!("{}:{line} fn {name}", rel.display()));
        }
    }
    assert!(
        missing.is_empty(),
        "functions without `// A` or `// PA` as the first line of their body:\n{}",
        missing.join("\n")
    );
}

#[test]
fn the_scanner_finds_what_it_should() {
    let text = "fn good() {\n    // A\n}\npub(crate) fn bad(x: u8)\n    -> u8 {\n    x\n}\n\
                fn decl();\n// fn commented() {\nconst fn risky() {\n    // PA\n}\n\
                #[cfg(test)]\nfn in_tests() {\n}\n";
    assert_eq!(unannotated(text), vec![(4, "bad".to_string())]);
    let module = "//! Tests of their own.\n#![cfg(test)]\nfn helper() {\n}\n";
    assert!(unannotated(module).is_empty());
}

#[test]
fn security_md_lists_exactly_the_pa_functions() {
    if std::process::Command::new("git")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipped: scripts/pa-table needs git, which this machine lacks");
        return;
    }
    let out = std::process::Command::new("bash")
        .arg(root().join("scripts/pa-table"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8(out.stdout).unwrap();
    let security = std::fs::read_to_string(root().join("SECURITY.md")).unwrap();
    assert!(
        security.contains(table.trim_end()),
        "SECURITY.md's table of `// PA` functions is stale: run scripts/pa-table --write"
    );
}
