//! `ouro`: git-like verbs on an OuroborosDB store, made for shells, scripts and cron.

mod cli;
mod commands;
mod exit;
mod output;
mod progress;

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Parser;
use ouroboros_db::{Cas, Identity};

use crate::cli::{Cli, Global};

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
    let code = match commands::run(&cli) {
        Ok(code) => code,
        Err(e) => {
            let mut msg = format!("{e}");
            for cause in e.chain().skip(1) {
                let c = cause.to_string();
                if !msg.contains(&c) {
                    msg.push_str(": ");
                    msg.push_str(&c);
                }
            }
            let _ = writeln!(std::io::stderr(), "ouro: error: {msg}");
            exit::code(&e)
        }
    };
    std::process::exit(code);
}

/// `$XDG_DATA_HOME/ouro` or `~/.local/share/ouro`.
fn default_store() -> Result<PathBuf> {
    // A
    xdg_dir("XDG_DATA_HOME", ".local/share").map(|d| d.join("ouro"))
}

/// `$XDG_CONFIG_HOME/ouro/identity.txt` or `~/.config/ouro/identity.txt`.
fn default_identity() -> Result<PathBuf> {
    // A
    xdg_dir("XDG_CONFIG_HOME", ".config").map(|d| d.join("ouro").join("identity.txt"))
}

fn xdg_dir(var: &str, fallback: &str) -> Result<PathBuf> {
    // A
    if let Some(v) = std::env::var_os(var).filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(v));
    }
    let home = std::env::var_os("HOME").filter(|h| !h.is_empty()).context(
        "HOME is not set: pass --store and --identity (or OURO_STORE and OURO_IDENTITY)",
    )?;
    Ok(PathBuf::from(home).join(fallback))
}

impl Global {
    /// The store directory in use.
    pub fn store_dir(&self) -> Result<PathBuf> {
        // A
        match &self.store {
            Some(s) => Ok(s.clone()),
            None => default_store(),
        }
    }

    /// The identity file in use.
    pub fn identity_path(&self) -> Result<PathBuf> {
        // A
        match &self.identity {
            Some(s) => Ok(s.clone()),
            None => default_identity(),
        }
    }

    /// Opens the store without keys (metadata commands).
    pub fn open(&self) -> Result<Cas> {
        // A
        let dir = self.store_dir()?;
        Cas::open(&dir).with_context(|| format!("opening store {}", dir.display()))
    }

    /// Opens the store and unlocks it with the identity.
    pub fn open_unlocked(&self) -> Result<Cas> {
        // A
        let mut cas = self.open()?;
        let path = self.identity_path()?;
        let id = Identity::load(&path)?;
        cas.unlock(&id)
            .with_context(|| format!("unlocking the store with {}", path.display()))?;
        Ok(cas)
    }
}
