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
    Serve {
        /// A TOML file of the same KALPANA_* keys; the environment wins over it.
        #[arg(long, env = "KALPANA_CONFIG")]
        config: Option<std::path::PathBuf>,
    },
    /// A Model Context Protocol server on stdio for AI agents, acting through the REST API at
    /// KALPANA_URL with KALPANA_TOKEN (the agent sees what that token's user sees).
    Mcp {
        /// The daemon's API, e.g. http://127.0.0.1:8080.
        #[arg(long, env = "KALPANA_URL")]
        url: String,
        /// The bearer token the agent acts with.
        #[arg(long, env = "KALPANA_TOKEN", hide_env_values = true)]
        token: String,
    },
    /// The node agent of a Docker Swarm bucket node (run by Swarm as a global service, with the
    /// node's Docker socket): reports the node and runs its volume jobs, dialling out to the
    /// daemon only.
    Node {
        /// The daemon's API, e.g. https://kalpana.example.com; with a standby, both separated
        /// by a comma (the agent reports to whichever is active).
        #[arg(long, env = "KALPANA_NODE_DAEMON")]
        daemon: String,
        /// The file holding this node's token (POST /api/nodes/<node id>/token).
        #[arg(
            long,
            env = "KALPANA_NODE_TOKEN_FILE",
            default_value = "/etc/kalpana/node-token"
        )]
        token_file: std::path::PathBuf,
        /// The daemon instance whose buckets it serves.
        #[arg(long, env = "KALPANA_INSTANCE", default_value = "default")]
        instance: String,
        /// A PEM file of the CA of the daemon's TLS certificate, when not a public one.
        #[arg(long, env = "KALPANA_NODE_CA_FILE")]
        ca_file: Option<std::path::PathBuf>,
        /// Seconds without an acknowledged heartbeat after which the agent stops its node's
        /// bucket containers (the daemon's KALPANA_FENCE_SECS: keep them equal).
        #[arg(long, env = "KALPANA_FENCE_SECS", default_value_t = 25)]
        fence_secs: u64,
    },
    /// Copy every record (users, teams, buckets with their port reservations) from one store
    /// into another, e.g. from the embedded store into MongoDB. Stop the daemon first.
    MigrateStore {
        /// Source: `redb:<path>` (the embedded store file, `<data dir>/kalpana.redb`) or
        /// `mongodb://…`.
        #[arg(long)]
        from: String,
        /// Target, same forms; must not hold any of the source's buckets yet.
        #[arg(long)]
        to: String,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // The MCP server speaks JSON-RPC on stdout: its log goes to stderr.
    let stderr = matches!(cli.command, Command::Mcp { .. });
    let json = std::env::var("KALPANA_LOG_FORMAT").is_ok_and(|f| f == "json");
    let filter = EnvFilter::try_from_env("KALPANA_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,tower_http=info,aws=warn,hyper=warn"));
    match (json, stderr) {
        (true, false) => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .json()
            .init(),
        (true, true) => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .json()
            .with_writer(std::io::stderr)
            .init(),
        (false, false) => tracing_subscriber::fmt().with_env_filter(filter).init(),
        (false, true) => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init(),
    }
    match cli.command {
        Command::Mcp { url, token } => kalpana_api::mcp::run(url, token).await?,
        Command::Node {
            daemon,
            token_file,
            instance,
            ca_file,
            fence_secs,
        } => {
            kalpana_api::node_agent::run(kalpana_api::node_agent::AgentConfig {
                daemon,
                token_file,
                instance,
                ca_file,
                fence_after: std::time::Duration::from_secs(fence_secs.max(1)),
            })
            .await?
        }
        Command::Serve { config } => {
            use kalpana_domain::config::{Config, Vars};
            let config = Config::from_vars(&Vars::load(config.as_deref())?)?;
            kalpana_api::server::run(config).await?;
        }
        Command::MigrateStore { from, to } => {
            use kalpana_domain::store;
            let here = std::path::Path::new(".");
            let source = store::open(Some(&from), here).await?;
            let target = store::open(Some(&to), here).await?;
            let before = store::count(&*source).await?;
            println!("source {from}: {before}");
            let after = store::migrate(&*source, &*target).await?;
            println!("target {to}: {after}");
            if after.users < before.users
                || after.teams < before.teams
                || after.buckets < before.buckets
            {
                anyhow::bail!("the target holds fewer records than the source");
            }
        }
    }
    Ok(())
}
