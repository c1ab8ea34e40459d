//! Tracing setup: `PELAGO_LOG` filter, text or JSON lines on stderr.
//! Fields are structured (`merchant_id`, `card_id`, `route`, ...); no secret or
//! card data is ever a field or part of a message.

use tracing_subscriber::{EnvFilter, fmt};

use crate::config::{Config, LogFormat};

pub fn init(config: &Config) {
    let filter = EnvFilter::try_new(&config.log).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false);
    let result = match config.log_format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
    // A second init (tests) keeps the first subscriber.
    let _ = result;
}
