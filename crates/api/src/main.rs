//! `kalpana-buckets`: `serve` runs the daemon; other subcommands are admin tools.

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

/// Every bucket its own S3 server in its own container.
#[derive(Parser)]
#[command(name = "kalpana-buckets", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon (configured by KALPANA_* environment variables; see README).
    Serve,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let json = std::env::var("KALPANA_LOG_FORMAT").is_ok_and(|f| f == "json");
    let filter = EnvFilter::try_from_env("KALPANA_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,tower_http=info,aws=warn,hyper=warn"));
    if json {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .json()
            .init();
    } else {
        tracing_subscriber::fmt().with_env_filter(filter).init();
    }
    match Cli::parse().command {
        Command::Serve => {
            let config = kalpana_api::config::Config::from_env()?;
            kalpana_api::server::run(config).await?;
        }
    }
    Ok(())
}
