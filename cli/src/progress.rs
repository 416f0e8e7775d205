//! Progress bars on stderr, only for people: hidden when stderr is not a terminal, with
//! `--quiet` or with `--json`.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

use ouro_cli::cli::Global;

/// An indicatif bar that the library drives through [`ouroboros_db::Progress`].
pub struct Bar(ProgressBar);

impl Bar {
    /// A byte-counting bar (`bytes`) or an item-counting one, visible only when useful.
    pub fn new(global: &Global, bytes: bool, what: &str) -> Self {
        // A
        let visible = !global.quiet && !global.json && std::io::stderr().is_terminal();
        let pb = if visible {
            ProgressBar::new(0)
        } else {
            ProgressBar::hidden()
        };
        let template = if bytes {
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}"
        } else {
            "{msg} [{bar:30}] {pos}/{len} ETA {eta}"
        };
        if let Ok(style) = ProgressStyle::with_template(template) {
            pb.set_style(style.progress_chars("=> "));
        }
        pb.set_message(what.to_string());
        Bar(pb)
    }

    /// Removes the bar from the terminal.
    pub fn finish(&self) {
        // A
        self.0.finish_and_clear();
    }
}

impl ouroboros_db::Progress for Bar {
    fn set_total(&self, total: u64) {
        // A
        self.0.set_length(total);
    }

    fn advance(&self, n: u64) {
        // A
        self.0.inc(n);
    }

    fn waiting(&self, why: &str) {
        // A
        self.0.println(format!("ouro: waiting: {why}"));
    }
}
