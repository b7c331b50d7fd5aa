//! `bastion scan PATH…`: scans model files, folders and archives without loading them.
//! Exit codes: 0 clean, 1 a finding at or above `--fail-on`, 2 something could not be scanned.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use bastion_scan::{Policy, Scanner, Severity, render};
use clap::{Args, ValueEnum};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum OutputFormat {
    Table,
    Json,
    Sarif,
}

#[derive(Debug, Args)]
pub struct ScanArgs {
    /// Files, folders (scanned recursively) and archives.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    #[arg(long, value_enum, default_value = "table")]
    pub format: OutputFormat,
    /// Exit with 1 when a finding is at least this severe (info, low, medium, high, critical).
    #[arg(long, default_value = "medium")]
    pub fail_on: Severity,
    /// Extra policy files (TOML, the layout of the built-in policy) extending its lists.
    #[arg(long)]
    pub policy: Vec<PathBuf>,
    /// Write the report here instead of stdout.
    #[arg(long)]
    pub output: Option<PathBuf>,
}

/// Runs the scan and returns the process exit code.
pub fn run(args: &ScanArgs) -> Result<i32> {
    let mut policy = Policy::builtin();
    for p in &args.policy {
        let text = std::fs::read_to_string(p)
            .with_context(|| format!("reading the policy file {}", p.display()))?;
        policy.extend(&p.display().to_string(), &text)?;
    }
    for p in &args.paths {
        if std::fs::symlink_metadata(p).is_err() {
            bail!("{} does not exist", p.display());
        }
    }
    let scanner = Scanner::new(policy);
    let progress = indicatif::ProgressBar::new_spinner();
    progress.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {pos} files, {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    let mut bytes = 0u64;
    let report = scanner.scan_paths_with(&args.paths, &mut |f| {
        bytes += f.size;
        progress.inc(1);
        progress.set_message(format!("{} MB", bytes / 1_000_000));
    });
    progress.finish_and_clear();
    let text = match args.format {
        OutputFormat::Table => render::table(&report),
        OutputFormat::Json => serde_json::to_string_pretty(&render::json(&report))?,
        OutputFormat::Sarif => {
            serde_json::to_string_pretty(&render::sarif(&report, env!("CARGO_PKG_VERSION")))?
        }
    };
    match &args.output {
        Some(path) => std::fs::write(path, text.as_bytes())
            .with_context(|| format!("writing {}", path.display()))?,
        None => println!("{}", text.trim_end()),
    }
    Ok(report.exit_code(args.fail_on))
}
