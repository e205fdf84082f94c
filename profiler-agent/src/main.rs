//! `ember`: parse the command line, set up logging, run, and turn the outcome into an exit
//! status. Everything else lives in the library.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser as _;
use profiler_agent::cli::{Cli, Command, GlobalArgs};
use profiler_agent::record::{self, RecordConfig};
use tracing_subscriber::EnvFilter;

fn init_logging(global: &GlobalArgs) {
    let level = match (global.quiet, global.verbose) {
        (q, _) if q > 0 => "error",
        (_, 0) => "warn",
        (_, 1) => "info",
        (_, 2) => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .without_time()
        .init();
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Record(args) => {
            let config = RecordConfig::from_args(args, cli.global.quiet > 0)?;
            let outcome = record::run(&config).context("ember record")?;
            if cli.global.quiet == 0 && config.output != std::path::Path::new("-") {
                eprintln!(
                    "ember: wrote {} samples to {}",
                    outcome.profile.total(),
                    config.output.display()
                );
            }
            Ok(outcome.exit_status.map_or(ExitCode::SUCCESS, |s| {
                ExitCode::from(record::exit_code_of(s))
            }))
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.global);
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("ember: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
