//! `pelago-card`: the service binary.

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use pelago_card::config::{Config, Flags};

/// mimalloc: the request path allocates small, short-lived buffers on two
/// threads; glibc malloc spent about 15 % of server time on them (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Billing: `billing run --period YYYY-MM` triggers the run and shows its progress.
    Billing {
        #[command(subcommand)]
        command: BillingCommand,
    },
    /// Sends one request to /v1 signed with a merchant API key (SECURITY.md).
    Request {
        /// GET, POST, PUT, PATCH or DELETE.
        method: String,
        /// Path and query, e.g. /v1/events?limit=5.
        path: String,
        /// JSON body, or @file to read it from a file.
        body: Option<String>,
        #[arg(long, env = "PELAGO_BASE_URL", default_value = "http://127.0.0.1:8080")]
        base_url: String,
        #[arg(long, env = "PELAGO_KEY_ID")]
        key_id: String,
        /// The API secret (`sk_...`); prefer the environment variable.
        #[arg(long, env = "PELAGO_API_SECRET", hide_env_values = true)]
        secret: String,
        #[arg(long)]
        idempotency_key: Option<String>,
    },
}

#[derive(Subcommand)]
enum BillingCommand {
    /// Triggers the billing run of a period on the server and waits for it.
    Run {
        #[arg(long)]
        period: String,
        #[arg(long, env = "PELAGO_BASE_URL", default_value = "http://127.0.0.1:8080")]
        base_url: String,
        /// The admin token (default: ./data/admin-token).
        #[arg(long, env = "PELAGO_ADMIN_TOKEN", hide_env_values = true)]
        admin_token: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config, listen, data_dir, sandbox } => {
            serve(Flags { config, listen, data_dir, sandbox })
        }
        Command::Billing { command: BillingCommand::Run { period, base_url, admin_token } } => {
            let token = match admin_token.or_else(|| std::fs::read_to_string("data/admin-token").ok()) {
                Some(t) => t.trim().to_owned(),
                None => {
                    eprintln!(
                        "pelago-card: no admin token (--admin-token, PELAGO_ADMIN_TOKEN or ./data/admin-token)"
                    );
                    return ExitCode::from(2);
                }
            };
            match pelago_card::cli::billing_run(&base_url, &token, &period) {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::from(1),
                Err(e) => {
                    eprintln!("pelago-card: {e:#}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Request { method, path, body, base_url, key_id, secret, idempotency_key } => {
            let args = pelago_card::cli::RequestArgs {
                base_url,
                key_id,
                secret,
                method,
                path_and_query: path,
                body,
                idempotency_key,
            };
            match pelago_card::cli::request(args) {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::from(1),
                Err(e) => {
                    eprintln!("pelago-card: {e:#}");
                    ExitCode::from(2)
                }
            }
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
        Err(e) => match e.downcast_ref::<pelago_card::server::StartRefused>() {
            Some(refused) => {
                eprintln!("pelago-card: {refused}");
                ExitCode::from(2)
            }
            None => {
                eprintln!("pelago-card: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}
