//! `strata`: the command-line tool for strata clusters (DESIGN §8).
//!
//! Global flags select the brokers and the output format; each command lives
//! in its own module. Errors are one line on stderr (`error: CODE: message`);
//! exit codes are 0 on success, 1 when a request failed or no broker could be
//! reached, 2 on bad usage.

/// `println!` that returns a broken pipe (or any write error) to the caller
/// instead of panicking: `strata topic list | head -1` must exit quietly.
macro_rules! outln {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($t)*)?
    }};
}

/// `print!` counterpart of [`outln!`].
macro_rules! out {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        write!(std::io::stdout().lock(), $($t)*)?
    }};
}

mod acl;
mod bench;
mod cluster;
mod consume;
mod group;
mod output;
mod produce;
mod tls;
mod topic;
mod user;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use strata_client::{ClientConfig, ClientTls};

use output::{Format, UsageError};

#[derive(Debug, Parser)]
#[command(
    name = "strata",
    version,
    about = "Command-line tool for strata clusters"
)]
struct Cli {
    /// Brokers to bootstrap from (comma-separated `host:port`).
    #[arg(
        long,
        global = true,
        env = "STRATA_BROKERS",
        default_value = strata_client::DEFAULT_BROKER
    )]
    brokers: String,
    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t = Format::Table)]
    output: Format,
    /// CA certificate (PEM) to verify brokers (TLS).
    #[arg(long, global = true, env = "STRATA_TLS_CA")]
    tls_ca: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS.
    #[arg(long, global = true, env = "STRATA_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    /// Client private key (PEM) for mutual TLS.
    #[arg(long, global = true, env = "STRATA_TLS_KEY")]
    tls_key: Option<PathBuf>,
    /// Bearer token (a broker's token file maps it to a principal).
    #[arg(long, global = true, env = "STRATA_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Deadline of one request, e.g. `30s`.
    #[arg(long, global = true, default_value = "30s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create, list, describe, alter and delete topics.
    #[command(subcommand)]
    Topic(topic::TopicCmd),
    /// Produce one record per line of standard input.
    Produce(produce::ProduceArgs),
    /// Print records of a topic, one per line.
    Consume(consume::ConsumeArgs),
    /// Consumer groups: list, describe (lag), reset offsets, delete.
    #[command(subcommand)]
    Group(group::GroupCmd),
    /// Cluster status and membership.
    #[command(subcommand)]
    Cluster(cluster::ClusterCmd),
    /// Access control lists.
    #[command(subcommand)]
    Acl(acl::AclCmd),
    /// SASL users of the Kafka listener.
    #[command(subcommand)]
    User(user::UserCmd),
    /// Development TLS material.
    #[command(subcommand)]
    Tls(tls::TlsCmd),
    /// Load generator: produce, consume or end-to-end benchmarks.
    #[command(subcommand)]
    Bench(bench::BenchCmd),
}

/// What every command needs.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub client: ClientConfig,
    pub output: Format,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut client = ClientConfig::builder()
        .bootstrap([cli.brokers.as_str()])
        .request_timeout(cli.timeout)
        .retries(3)
        .retry_backoff(Duration::from_millis(50), Duration::from_millis(250));
    match client_tls(&cli) {
        Ok(Some(tls)) => client = client.tls(tls),
        Ok(None) => {}
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    }
    if let Some(t) = &cli.token {
        client = client.token(t.clone());
    }
    let client = client.build();
    let ctx = Ctx {
        client,
        output: cli.output,
    };
    // One process-wide crypto provider (ring) for every TLS connection.
    let _ = rustls_provider();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = rt.block_on(run(ctx, cli.command));
    // Background tasks (connections, fetchers) must not delay the exit.
    rt.shutdown_timeout(Duration::from_millis(100));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if is_broken_pipe(&e) {
                return ExitCode::SUCCESS;
            }
            let line = format!("{e:#}").replace('\n', " ");
            eprintln!("error: {line}");
            if e.downcast_ref::<UsageError>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::from(1)
            }
        }
    }
}

/// Installs ring as the process-wide rustls crypto provider (false if one
/// was already installed).
fn rustls_provider() -> bool {
    rustls::crypto::ring::default_provider()
        .install_default()
        .is_ok()
}

/// The TLS settings of `--tls-ca` / `--tls-cert` / `--tls-key`.
fn client_tls(cli: &Cli) -> Result<Option<ClientTls>, String> {
    let read =
        |p: &PathBuf| std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()));
    let Some(ca) = &cli.tls_ca else {
        if cli.tls_cert.is_some() || cli.tls_key.is_some() {
            return Err("--tls-cert and --tls-key need --tls-ca".into());
        }
        return Ok(None);
    };
    let tls = ClientTls::new(read(ca)?);
    match (&cli.tls_cert, &cli.tls_key) {
        (None, None) => Ok(Some(tls)),
        (Some(c), Some(k)) => Ok(Some(tls.identity(read(c)?, read(k)?))),
        _ => Err("--tls-cert and --tls-key go together".into()),
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            || c.downcast_ref::<serde_json::Error>()
                .is_some_and(|j| j.io_error_kind() == Some(std::io::ErrorKind::BrokenPipe))
    })
}

async fn run(ctx: Ctx, cmd: Command) -> anyhow::Result<()> {
    match cmd {
        Command::Topic(c) => topic::run(&ctx, c).await,
        Command::Produce(a) => produce::run(&ctx, a).await,
        Command::Consume(a) => consume::run(&ctx, a).await,
        Command::Group(c) => group::run(&ctx, c).await,
        Command::Cluster(c) => cluster::run(&ctx, c).await,
        Command::Tls(c) => tls::run(c),
        Command::Acl(c) => acl::run(&ctx, c).await,
        Command::User(c) => user::run(&ctx, c).await,
        Command::Bench(c) => bench::run(&ctx, c).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_valid() {
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_the_documented_commands() {
        let ok = [
            "strata topic create orders --partitions 6 --replication-factor 1 --config retention.ms=1",
            "strata topic list",
            "strata --output json topic describe orders",
            "strata topic alter orders --config fsync=always",
            "strata produce orders --key-separator : --acks leader",
            "strata consume orders --offset earliest --count 2 --format json",
            "strata consume orders --from-time 2026-11-25T10:00:00Z",
            "strata group reset-offsets billing --topic orders --to earliest",
            "strata cluster status",
            "strata --output json cluster status",
            "strata cluster add-broker 4 10.0.0.4:9293",
            "strata cluster remove-broker 4",
            "strata cluster transfer-leader orders 0 2",
            "strata bench produce bench --records 1000 --record-size 1024 --output json",
            "strata bench e2e t --duration 5 --rate 1000 --partitions 0,1",
        ];
        for line in ok {
            let args: Vec<&str> = line.split(' ').collect();
            if let Err(e) = Cli::try_parse_from(&args) {
                panic!("{line}: {e}");
            }
        }
        let bad = [
            "strata produce orders --key k --key-separator :",
            "strata consume orders --offset earliest --from-time 2026-11-25T10:00:00Z",
            "strata bench produce t --records 1 --duration 1",
            "strata cluster add-broker 0 10.0.0.4:9293",
            "strata cluster add-broker 4",
            "strata cluster remove-broker 0",
            "strata cluster transfer-leader orders 0 0",
        ];
        for line in bad {
            let args: Vec<&str> = line.split(' ').collect();
            assert!(Cli::try_parse_from(&args).is_err(), "{line} should fail");
        }
    }
}
