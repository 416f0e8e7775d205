//! Regenerates `man/` and `completions/` at the workspace root from the clap definitions.

fn main() -> std::io::Result<()> {
    // A
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    ouro_cli::docs::generate(&root.join("man"), &root.join("completions"))?;
    println!("wrote man/ and completions/");
    Ok(())
}
