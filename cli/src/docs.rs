//! Man pages and shell completions, generated from the clap definitions so they never drift:
//! `cargo run -p ouro-cli --example gen-docs` rewrites `man/` and `completions/`, and a test
//! fails when the checked-in files are stale.

use std::path::Path;

use clap::CommandFactory;
use clap_complete::Shell;

use crate::cli::Cli;

/// Writes `ouro.1` and one page per subcommand into `man_dir`, and bash, zsh and fish
/// completions into `completions_dir`.
pub fn generate(man_dir: &Path, completions_dir: &Path) -> std::io::Result<()> {
    // A
    std::fs::create_dir_all(man_dir)?;
    std::fs::create_dir_all(completions_dir)?;
    clap_mangen::generate_to(Cli::command(), man_dir)?;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        clap_complete::generate_to(shell, &mut Cli::command(), "ouro", completions_dir)?;
    }
    Ok(())
}
