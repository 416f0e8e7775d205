//! The parts of the `ouro` command shared by the binary and by the generator of its man
//! pages and shell completions: the clap definitions and global options.

pub mod cli;
pub mod docs;
