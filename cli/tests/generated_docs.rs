//! The checked-in man pages and completions must match the clap definitions.

use std::path::Path;

fn compare_dirs(fresh: &Path, committed: &Path) {
    let mut names: Vec<_> = std::fs::read_dir(fresh)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    for n in &names {
        let want = std::fs::read(fresh.join(n)).unwrap();
        let have = std::fs::read(committed.join(n)).unwrap_or_default();
        assert!(
            want == have,
            "{} is stale: run `cargo run -p ouro-cli --example gen-docs` and commit the result",
            committed.join(n).display()
        );
    }
    let committed_count = std::fs::read_dir(committed).map(|d| d.count()).unwrap_or(0);
    assert_eq!(
        committed_count,
        names.len(),
        "{} has extra or missing files: regenerate",
        committed.display()
    );
}

#[test]
fn man_pages_and_completions_are_fresh() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let tmp = tempfile::tempdir().unwrap();
    ouro_cli::docs::generate(&tmp.path().join("man"), &tmp.path().join("completions")).unwrap();
    compare_dirs(&tmp.path().join("man"), &root.join("man"));
    compare_dirs(&tmp.path().join("completions"), &root.join("completions"));
    let main = std::fs::read_to_string(root.join("man/ouro.1")).unwrap();
    assert!(
        main.contains("Exit codes") && main.contains("JSON"),
        "man page documents exit codes and JSON"
    );
}
