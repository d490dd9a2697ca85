//! The command-line flags both binaries take, so `cvm-etl` and `cvm-portal`
//! read configuration and logging options the same way.

use std::path::PathBuf;

/// Flags accepted before or after any command.
#[derive(Debug, clap::Args)]
pub struct GlobalArgs {
    /// TOML configuration file (settings can also come from CVM_* environment variables).
    #[arg(long, global = true, env = "CVM_CONFIG")]
    pub config: Option<PathBuf>,
    /// Log format: human or json (overrides CVM_LOG_FORMAT).
    #[arg(long, global = true)]
    pub log_format: Option<String>,
    /// Only warnings and errors on stderr.
    #[arg(long, short, global = true)]
    pub quiet: bool,
}
