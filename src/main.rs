//! The `cwtap` binary: parse the command line, call the library, map errors to
//! exit codes (2 for usage and configuration errors, 1 for the rest).

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use cwtap::app::{self, AppError, BackfillRequest};
use cwtap::cli::{Cli, Command, LogFormat};
use cwtap::config::Config;
use cwtap::shutdown;
use cwtap::time::{now_ms, parse_instant};

/// jemalloc rather than the system allocator: an event is many small
/// allocations (its fields, its parsed properties, its output line) freed
/// in another order than they were made, across threads, and with glibc's
/// malloc that churn was 30% of a backfill's CPU; with jemalloc the same
/// backfill takes about a third less CPU (BENCHMARKS.md). The benches use it too.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read before `main`: one arena instead of four per
/// CPU, as the threads that allocate most (tokio's workers, the SQLite
/// thread) are few and the thread caches take the contention; it held a
/// backfill's peak RSS at ~100 MB instead of ~150 MB for the same CPU. Freed
/// pages go back to the system after a second unused instead of ten (and
/// at once rather than through the "muzzy" stage): a traced backfill peaks
/// ~10 MB lower, and neither it nor a live run spends measurably more CPU
/// (purging at once, `dirty_decay_ms:0`, doubled the system time). The
/// `_RJEM_MALLOC_CONF` environment variable still overrides it.
#[unsafe(export_name = "_rjem_malloc_conf")]
static MALLOC_CONF: &[u8; 47] = b"narenas:1,dirty_decay_ms:1000,muzzy_decay_ms:0\0";

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = init_logging(&cli) {
        cwtap::errln!("cwtap: error: {e}");
        return ExitCode::from(e.exit_code() as u8);
    }
    let json_logs = cli.log_format == LogFormat::Json;
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            // With JSON logs the last word is a JSON line too, for whatever
            // collects them.
            if json_logs {
                tracing::error!(exit_code = e.exit_code(), "{e}");
            } else {
                cwtap::errln!("cwtap: error: {e}");
            }
            ExitCode::from(e.exit_code() as u8)
        }
    }
}

/// Sets up logging at `--log-level`, or at `RUST_LOG` when that is set and
/// makes sense (else a warning, and `--log-level`). A bad `--log-level` is a
/// usage error: a misspelt level would otherwise read as a target name and
/// silence every line.
fn init_logging(cli: &Cli) -> Result<(), AppError> {
    let from_env = std::env::var("RUST_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .map(|v| log_filter(&v).map_err(|e| format!("RUST_LOG={v:?}: {e}")));
    let (filter, warning) = match from_env {
        Some(Ok(filter)) => (filter, None),
        Some(Err(e)) => (
            log_filter(&quiet_sdk(&cli.log_level)).map_err(AppError::Usage)?,
            Some(e),
        ),
        None => (
            log_filter(&quiet_sdk(&cli.log_level)).map_err(AppError::Usage)?,
            None,
        ),
    };
    // A log line that cannot be written (standard error closed: a reader
    // that went away) is lost quietly. The default reports it with
    // `eprintln!`, which panics on that same closed standard error.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .log_internal_errors(false);
    match cli.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
    }
    if let Some(warning) = warning {
        tracing::warn!("{warning}; logging at --log-level {}", cli.log_level);
    }
    Ok(())
}

/// `--log-level` as a filter: at `info` and quieter, the AWS SDK's
/// warning that the instance metadata gave no Region (off AWS, a page of
/// its internals) is left out: cwtap says what to set when a call needs one.
/// So is the warning that a credentials provider failed (with its debug
/// dump): cwtap says so when none gave any. At `info` the SDK's own info
/// lines (which credentials it loaded, with the access key id) are left out
/// too. `debug` and `trace` are cwtap's own lines; the libraries' stay at
/// `info`.
fn quiet_sdk(level: &str) -> String {
    // The chain's warning that a credentials provider failed: cwtap says
    // so in words when none gave any.
    // So is the certificate verifier's own error line: the failed request's
    // error names the certificate problem.
    const QUIET: &str = "aws_config::imds::region=error,aws_config::meta::credentials::chain=error,rustls_platform_verifier=off";
    let level = level.trim();
    if level.eq_ignore_ascii_case("info") {
        format!("{level},aws_config=warn,{QUIET}")
    } else if ["error", "warn"]
        .iter()
        .any(|l| l.eq_ignore_ascii_case(level))
    {
        format!("{level},{QUIET}")
    } else if ["debug", "trace"]
        .iter()
        .any(|l| l.eq_ignore_ascii_case(level))
    {
        // cwtap's own lines: the SDK's and the HTTP stack's debug lines
        // (request dumps, the access key id) stay out unless a filter
        // names their targets.
        format!("info,cwtap={level},aws_config=warn,{QUIET}")
    } else {
        level.to_string()
    }
}

/// A log filter from a level (`error`, `warn`, `info`, `debug`, `trace`,
/// `off`) or comma-separated `target=level` directives. A directive without
/// `=` must be a level.
fn log_filter(text: &str) -> Result<tracing_subscriber::EnvFilter, String> {
    const LEVELS: [&str; 6] = ["error", "warn", "info", "debug", "trace", "off"];
    for directive in text.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        if !directive.contains('=') && !LEVELS.iter().any(|l| l.eq_ignore_ascii_case(directive)) {
            return Err(format!(
                "log level {directive:?}: expected one of {} or target=level",
                LEVELS.join(", ")
            ));
        }
    }
    tracing_subscriber::EnvFilter::try_new(text).map_err(|e| format!("log level {text:?}: {e}"))
}

fn load(path: &std::path::Path) -> Result<Config, AppError> {
    Ok(Config::load(path)?)
}

fn read_stdin() -> Result<String, AppError> {
    use std::io::Read;
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .map_err(|e| AppError::Usage(format!("cannot read standard input: {e}")))?;
    Ok(text)
}

fn runtime() -> Result<tokio::runtime::Runtime, AppError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| AppError::Failed(format!("cannot start the async runtime: {e}")))
}

/// SIGTERM and SIGINT request a clean shutdown; a second one exits at once.
/// SIGHUP asks `run` to reload its config (other commands log and go on).
fn install_signals() -> Result<(shutdown::Shutdown, app::Reload), AppError> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let (trigger, listener) = shutdown::channel();
    let (reload, reloads) = tokio::sync::watch::channel(0u64);
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])
        .map_err(|e| AppError::Failed(format!("cannot install signal handlers: {e}")))?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let mut seen = 0;
            for signal in signals.forever() {
                if signal == SIGHUP {
                    tracing::info!("SIGHUP: reloading the config");
                    reload.send_modify(|n| *n += 1);
                    continue;
                }
                seen += 1;
                if seen == 1 {
                    tracing::info!(signal, "shutdown requested");
                    trigger.trigger();
                } else {
                    cwtap::errln!("cwtap: second signal, exiting now");
                    std::process::exit(130);
                }
            }
        })
        .map_err(|e| AppError::Failed(format!("cannot start the signal thread: {e}")))?;
    Ok((listener, reloads))
}

fn run(cli: Cli) -> Result<ExitCode, AppError> {
    match cli.command {
        Command::Ops(command) => {
            let (shutdown, _) = install_signals()?;
            let code = runtime()?.block_on(cwtap::ops::execute(command, shutdown))?;
            Ok(ExitCode::from(code))
        }
        Command::Completions { shell } => {
            use clap::CommandFactory;
            use std::io::Write;
            let mut command = Cli::command();
            // Into memory first: the generator panics on a write error (a
            // closed pipe), writing the buffer does not.
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut command, "cwtap", &mut script);
            match std::io::stdout().write_all(&script) {
                // `| head` closed the pipe: what it wanted was written.
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                    return Err(AppError::Failed(format!("cannot write the script: {e}")));
                }
                _ => {}
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Man { dir } => {
            use clap::CommandFactory;
            let command = Cli::command();
            match dir {
                None => match clap_mangen::Man::new(command).render(&mut std::io::stdout()) {
                    Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                        return Err(AppError::Failed(format!("cannot write the man page: {e}")));
                    }
                    _ => {}
                },
                Some(dir) => {
                    std::fs::create_dir_all(&dir)
                        .map_err(|e| AppError::Usage(format!("--dir {}: {e}", dir.display())))?;
                    clap_mangen::generate_to(command, &dir).map_err(|e| {
                        AppError::Failed(format!(
                            "cannot write man pages into {}: {e}",
                            dir.display()
                        ))
                    })?;
                    cwtap::outln!("man pages written to {}", dir.display());
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Health { url } => {
            let body = runtime()?.block_on(app::health(&url))?;
            cwtap::outln!("ok: {url} answered 200: {}", body.trim());
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve { config } => {
            let (shutdown, _) = install_signals()?;
            let config = load(&config.resolve())?;
            let _lock = app::lock_state(&config)?;
            runtime()?.block_on(app::serve(config, shutdown))?;
            tracing::info!("stopped cleanly");
            Ok(ExitCode::SUCCESS)
        }
        Command::Subscribe {
            config,
            destination_arn,
            role_arn,
            groups,
            prefixes,
            filter_name,
            filter_pattern,
            dry_run,
        } => {
            use cwtap::cloudwatch::admin::{
                destination_arn_problem, group_name_problem, role_arn_problem,
            };
            // Checked before any call: a typo would otherwise be retried
            // against AWS, or put a filter that can never deliver.
            if let Some(problem) = destination_arn_problem(&destination_arn) {
                return Err(AppError::Usage(format!("--destination-arn: {problem}")));
            }
            if let Some(problem) = role_arn_problem(&role_arn) {
                return Err(AppError::Usage(format!("--role-arn: {problem}")));
            }
            for g in &groups {
                if let Some(problem) = group_name_problem(g, false) {
                    return Err(AppError::Usage(format!("--group {g:?}: {problem}")));
                }
            }
            let (shutdown, _) = install_signals()?;
            // Named groups can do without a config file: then the AWS
            // settings come from the environment.
            let named = !groups.is_empty() || !prefixes.is_empty();
            let config = match config.resolve_optional() {
                None if named => None,
                path => Some(load(&path.unwrap_or_else(|| config.resolve()))?),
            };
            let request = app::SubscribeRequest {
                destination_arn,
                role_arn,
                groups,
                prefixes,
                filter_name,
                filter_pattern,
                dry_run,
            };
            let results =
                runtime()?.block_on(app::subscribe(config.as_ref(), &request, &shutdown))?;
            let verb = if request.dry_run {
                "would subscribe"
            } else {
                "subscribed"
            };
            let mut failures = 0;
            for (group, result) in &results {
                match result {
                    Ok(()) => cwtap::outln!(
                        "{verb} {group} -> {} (filter {})",
                        request.destination_arn,
                        request.filter_name
                    ),
                    Err(e) => {
                        failures += 1;
                        cwtap::errln!("cwtap: {group}: {e}");
                    }
                }
            }
            if results.is_empty() {
                cwtap::errln!("cwtap: no log group selected");
                return Ok(ExitCode::from(1));
            }
            Ok(if failures > 0 {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Check { config, online } => {
            let config = load(&config.resolve())?;
            cwtap::out!("{}", app::describe(&config));
            if !online {
                return Ok(ExitCode::SUCCESS);
            }
            let (shutdown, _) = install_signals()?;
            let report = runtime()?.block_on(app::check_online(&config, &shutdown));
            cwtap::out!("{}", report.text);
            if report.failures.is_empty() {
                cwtap::outln!("online check passed");
                Ok(ExitCode::SUCCESS)
            } else {
                for failure in &report.failures {
                    cwtap::errln!("cwtap: check failed: {failure}");
                }
                Ok(ExitCode::from(1))
            }
        }
        Command::Status {
            config,
            json,
            watch,
            interval,
        } => {
            // Only the state file is read: a config that does not load as
            // a whole (a secret's variable unset where `status` runs) still
            // gives its state path, with a warning.
            let path = config.resolve();
            let state_path = match load(&path) {
                Ok(config) => config.agent.state_path,
                Err(e) => match Config::state_path_only(&path) {
                    Some(state_path) => {
                        cwtap::errln!(
                            "cwtap: warning: {e}; reading the state file it names anyway"
                        );
                        state_path
                    }
                    None => return Err(e),
                },
            };
            if watch {
                let every = cwtap::time::parse_duration(&interval)
                    .map_err(|e| AppError::Usage(format!("--interval: {e}")))?;
                if every < std::time::Duration::from_secs(1) {
                    return Err(AppError::Usage(format!(
                        "--interval {interval}: at least 1s (each redraw reads the state file)"
                    )));
                }
                let (shutdown, _) = install_signals()?;
                return runtime()?
                    .block_on(app::watch_status(&state_path, every, &shutdown))
                    .map(|()| ExitCode::SUCCESS);
            }
            cwtap::out!("{}", app::status(&state_path, json)?);
            if json {
                cwtap::outln!();
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::ParseTest {
            config,
            group,
            input,
            json,
        } => {
            let config = load(&config.resolve())?;
            let text = match input.as_deref() {
                None => read_stdin()?,
                Some(p) if p.as_os_str() == "-" => read_stdin()?,
                Some(p) => cwtap::replay::fixture::read_text(p).map_err(AppError::Usage)?,
            };
            let report = runtime()?.block_on(app::parse_test(&config, &group, &text, json))?;
            cwtap::out!("{report}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Run { config } => {
            // Handlers first: a SIGTERM that arrives while cwtap starts is a
            // clean shutdown too.
            let (shutdown, reload) = install_signals()?;
            let config = load(&config.resolve())?;
            let _lock = app::lock_state(&config)?;
            runtime()?.block_on(app::run(config, shutdown, reload))?;
            tracing::info!("stopped cleanly");
            Ok(ExitCode::SUCCESS)
        }
        Command::Backfill {
            config,
            since,
            until,
            groups,
            no_progress,
        } => {
            let config = load(&config.resolve())?;
            let now = now_ms();
            let since =
                parse_instant(&since, now).map_err(|e| AppError::Usage(format!("--since: {e}")))?;
            let until = match until {
                Some(u) => {
                    let until = parse_instant(&u, now)
                        .map_err(|e| AppError::Usage(format!("--until: {e}")))?;
                    if until > now {
                        return Err(AppError::Usage(format!(
                            "--until {}: in the future (now is {}); a backfill delivers the past and exits, `cwtap run` follows new events",
                            cwtap::time::format_ms(until),
                            cwtap::time::format_ms(now)
                        )));
                    }
                    until
                }
                None => now,
            };
            let request = BackfillRequest {
                since,
                until,
                groups,
                interactive: !no_progress && std::io::stderr().is_terminal(),
            };
            app::check_backfill(&config, &request)?;
            let (shutdown, _) = install_signals()?;
            let _lock = app::lock_state(&config)?;
            let report = runtime()?.block_on(app::backfill(config, request, shutdown))?;
            for (group, error) in &report.groups_failed {
                cwtap::errln!("cwtap: backfill of {group} failed: {error}");
            }
            if report.interrupted {
                cwtap::errln!(
                    "cwtap: backfill interrupted; run it again to continue from the checkpoint"
                );
                return Ok(ExitCode::from(1));
            }
            if !report.groups_failed.is_empty() {
                return Ok(ExitCode::from(1));
            }
            tracing::info!(groups = report.groups_done.len(), "backfill complete");
            Ok(ExitCode::SUCCESS)
        }
    }
}
