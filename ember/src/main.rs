//! `ember`, the binary: the command line, the one pipeline loop, and the commands. Stages
//! **sample → aggregate → symbolize → store → query → render/export**; this crate holds
//! aggregate, the loop and the commands, the other stages live in their own crates.
//!
//! `main` parses the command line, sets up logging, runs, and turns the outcome into an
//! exit status.
//!
//! - [`profiler_sampler`] loads the eBPF program and drains its maps
//!   ([`profiler_sampler::RawSample`]s).
//! - [`aggregate`] symbolizes each drain (through the `symbolizer` crate) into a
//!   [`profiler_model::Profile`].
//! - [`pipeline`] is the one loop (sample → aggregate → symbolize → a sink) that `record`
//!   and `agent` both drive.
//! - [`record`] is `ember record`: one capture written as folded stacks, an SVG, pprof or
//!   speedscope.
//! - [`agent`] is `ember agent`: continuous sampling into windows in the store
//!   ([`profiler_store`], on disk with SQLite and zstd, with retention).
//! - [`export`] is `ember export`: a stored time range as folded, pprof, SVG or speedscope.
//! - [`output`] is where `record` and `export` write: a file or stdout, in a format from
//!   `--format` or the file name, through `profiler-render` (the writer the API uses).
//! - [`diff`] is `ember diff`: two profiles compared, with regression gates for CI.
//! - [`doctor`] is `ember doctor`: what the node offers and what Ember will use.
//! - [`cli`] holds the command-line types.

mod agent;
mod aggregate;
mod cli;
mod diff;
mod doctor;
#[expect(
    unreachable_pub,
    reason = "`ember export` is being reworked on another branch; its `pub` become \
              `pub(crate)` once that lands, as in the other modules"
)]
mod export;
mod launch;
mod output;
mod pipeline;
mod record;
mod signals;

use profiler_model::human;
use profiler_model::time::now_unix_ns;

use std::process::ExitCode;

use agent::AgentConfig;
use anyhow::Context as _;
use clap::Parser as _;
use cli::{Cli, Command, GlobalArgs};
use diff::DiffConfig;
use export::ExportConfig;
use profiler_store::StoreConfig;
use record::RecordConfig;
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
        Command::Agent(args) => {
            if args.drain.drain_interval > args.window {
                anyhow::bail!(
                    "--drain-interval {:?} is longer than --window {:?}: a window would close \
                     between two drains; drain at least once a window",
                    args.drain.drain_interval,
                    args.window
                );
            }
            let debuginfod = args.debuginfod.config(
                std::env::var(symbolizer::DEBUGINFOD_URLS).ok().as_deref(),
                args.data_dir.join("debuginfod"),
            );
            let copy_dir = args.data_dir.clone();
            let config = AgentConfig {
                frequency_hz: args.frequency,
                window: args.window,
                drain_interval: args.drain.drain_interval,
                stop_grace: args.stop_grace,
                data_dir: args.data_dir,
                store: StoreConfig::default()
                    .with_retention(args.retention)
                    .with_max_bytes(args.store_max_size),
                counts_entries: args.drain.counts_map_entries,
                stacks_entries: args.drain.stacks_map_entries,
                unwind: args.drain.unwind_config(),
                off_cpu: args.off_cpu.config(),
                listen: args.listen.0,
                api: agent::ApiAccess {
                    token_file: args.api_token_file,
                    token_env: std::env::var("EMBER_API_TOKEN").ok(),
                    allowed_hosts: args.api_allowed_hosts,
                    tls: args.tls_cert.zip(args.tls_key),
                    insecure_listen: args.insecure_listen,
                },
                symbolizer: symbolizer::Config::default()
                    .with_cache_bytes(args.symbol_cache)
                    .with_debug_dirs(args.debug_dirs)
                    .with_debuginfod(debuginfod)
                    // Decompressed debug files and this boot's table of kernel symbols
                    // are mapped, not built on the heap.
                    .with_copy_dir(Some(copy_dir)),
                push: agent::PushSettings::from_args(&args.push).context("ember agent")?,
            };
            let summary = agent::run(&config).context("ember agent")?;
            if cli.global.quiet == 0 {
                eprintln!(
                    "ember: agent stopped after {} windows, {} samples ({} lost by the sampler, \
                     {} windows of {} samples lost by the store)",
                    summary.windows,
                    summary.samples,
                    summary.stats.lost(),
                    summary.writes.windows_lost,
                    summary.writes.samples_lost
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Export(args) => {
            let config = ExportConfig::from_args(args)?;
            let profile = export::run(&config).context("ember export")?;
            if cli.global.quiet == 0 && config.output != std::path::Path::new("-") {
                eprintln!(
                    "ember: wrote {} of {} to {}",
                    human::samples(profile.total(), profile.meta.frequency_hz),
                    human::range(config.from_unix_ns, config.to_unix_ns),
                    config.output.display()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Diff(args) => Ok(run_diff(args.into(), cli.global.quiet > 0)),
        Command::Doctor(args) => {
            let report = doctor::report(&doctor::DoctorConfig {
                data_dir: args.data_dir,
                debug_dirs: args.debug_dirs,
            });
            if args.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", doctor::render(&report));
            }
            Ok(if report.ready {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Record(args) => {
            let config = RecordConfig::from_args(args, cli.global.quiet > 0)?;
            let outcome = record::run(&config).context("ember record")?;
            if cli.global.quiet == 0 && config.output != std::path::Path::new("-") {
                eprintln!(
                    "ember: wrote {} to {}",
                    match outcome.profile.meta.kind {
                        profiler_model::ProfileKind::Cpu => human::samples(
                            outcome.profile.total(),
                            outcome.profile.meta.frequency_hz
                        ),
                        profiler_model::ProfileKind::OffCpu => format!(
                            "{} µs ({}) off CPU",
                            outcome.profile.total(),
                            human::duration(outcome.profile.total().saturating_mul(1000))
                        ),
                    },
                    config.output.display()
                );
            }
            Ok(outcome.exit_status.map_or(ExitCode::SUCCESS, |s| {
                ExitCode::from(record::exit_code_of(s))
            }))
        }
    }
}

/// `ember diff`, with its own exit codes: 0 pass, 1 a gate tripped, 2 an error.
fn run_diff(config: DiffConfig, quiet: bool) -> ExitCode {
    let outcome = match diff::run(&config) {
        Ok(o) => o,
        Err(err) => {
            eprintln!("ember: error: {:#}", anyhow::Error::from(err));
            return ExitCode::from(diff::EXIT_ERROR);
        }
    };
    {
        // Not `print!`, which panics on a closed pipe (`ember diff … | head -3`); a reader
        // that went away only misses the rest of the table, the gates still decide.
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        if let Err(err) = out
            .write_all(outcome.table.as_bytes())
            .and_then(|()| out.flush())
            && err.kind() != std::io::ErrorKind::BrokenPipe
        {
            eprintln!("ember: error: cannot write the table to stdout: {err}");
            return ExitCode::from(diff::EXIT_ERROR);
        }
    }
    for f in &outcome.failures {
        eprintln!("ember: gate tripped: {f}");
    }
    if !outcome.failures.is_empty() {
        return ExitCode::from(diff::EXIT_GATE);
    }
    if !quiet && !config.gates.is_empty() {
        eprintln!("ember: {} gate(s) passed", config.gates.len());
    }
    ExitCode::from(diff::EXIT_PASS)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.global);
    match run(cli) {
        Ok(code) => code,
        // The reader of stdout went away (`| head`, or Ctrl-C reaching it first): the
        // output is no longer wanted, so the run ends quietly, as other tools do.
        Err(err) if output::is_broken_pipe(err.as_ref()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("ember: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
