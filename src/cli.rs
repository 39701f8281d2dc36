//! Command-line interface: one `Command` variant per subcommand.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// cwtap: pull CloudWatch Logs into a trace store without losing or
/// duplicating events.
#[derive(Debug, Parser)]
#[command(name = "cwtap", version, about, long_about = None)]
pub struct Cli {
    /// Log line format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Log level (error, warn, info, debug, trace) or a RUST_LOG-style filter;
    /// RUST_LOG wins when set.
    #[arg(long, global = true, default_value = "info")]
    pub log_level: String,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// The config file option shared by every command.
#[derive(Debug, clap::Args)]
pub struct ConfigArg {
    /// Config file [default: $CWTAP_CONFIG, then $CONFIG_PATH, then ./config.yaml]
    #[arg(long, short = 'c')]
    pub config: Option<PathBuf>,
}

impl ConfigArg {
    /// The flag, else `$CWTAP_CONFIG`, else `$CONFIG_PATH` (the VectaDB
    /// agent's variable), else `./config.yaml`.
    pub fn resolve(&self) -> PathBuf {
        self.config
            .clone()
            .or_else(|| {
                std::env::var_os("CWTAP_CONFIG")
                    .filter(|v| !v.is_empty())
                    .map(PathBuf::from)
            })
            .or_else(|| {
                std::env::var_os("CONFIG_PATH")
                    .filter(|v| !v.is_empty())
                    .map(PathBuf::from)
            })
            .unwrap_or_else(|| PathBuf::from("config.yaml"))
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Poll every configured log group until SIGTERM or SIGINT.
    Run {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Deliver a past time window once, then exit.
    Backfill {
        #[command(flatten)]
        config: ConfigArg,
        /// Start of the window: a duration ago (30m, 6h, 7d, 2w) or an RFC 3339 UTC time.
        #[arg(long)]
        since: String,
        /// End of the window, same forms as --since [default: now].
        #[arg(long)]
        until: Option<String>,
        /// Only this log group (repeatable); must be selected by the config.
        #[arg(long = "group")]
        groups: Vec<String>,
        /// Plain log lines even on a terminal.
        #[arg(long)]
        no_progress: bool,
    },
    /// Validate the config and print what would be polled and where it goes.
    Check {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Parse raw lines (or a captured fixture) with a group's rules and show
    /// the matching rule, the canonical fields and the traces that form.
    ParseTest {
        #[command(flatten)]
        config: ConfigArg,
        /// The log group whose rules apply (a configured name, or a name a
        /// configured prefix selects).
        #[arg(long)]
        group: String,
        /// Input file: raw lines, or a fixture of JSON lines with `message`
        /// (`-` or nothing: standard input).
        input: Option<PathBuf>,
        /// JSON lines (one per input line, then one per trace) instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show each log group's cursor, lag, counts and last error.
    Status {
        #[command(flatten)]
        config: ConfigArg,
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}
