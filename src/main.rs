//! `pelago-card`: the service binary.

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use pelago_card::config::{Config, Flags};

#[derive(Parser)]
#[command(name = "pelago-card", version, about = "Pelago Card: card-issuing aggregation platform")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the service (and the sandbox upstreams with --sandbox).
    Serve {
        /// TOML file with settings (env wins over it, flags win over env).
        #[arg(long)]
        config: Option<PathBuf>,
        /// API address, e.g. 127.0.0.1:8080.
        #[arg(long)]
        listen: Option<String>,
        /// Where the store and key files live.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Starts the sandbox upstreams and enables test helpers.
        #[arg(long)]
        sandbox: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config, listen, data_dir, sandbox } => {
            serve(Flags { config, listen, data_dir, sandbox })
        }
    }
}

fn serve(flags: Flags) -> ExitCode {
    let config = match Config::load(&flags) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("pelago-card: bad setting {e}");
            return ExitCode::from(2);
        }
    };
    pelago_card::telemetry::init(&config);
    let runtime =
        || tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("build the tokio runtime");
    let result = actix::System::with_tokio_rt(runtime).block_on(pelago_card::server::run(config));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pelago-card: {e:#}");
            ExitCode::FAILURE
        }
    }
}
