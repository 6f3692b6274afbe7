//! `ferry`: the router binary. Parses the command line, loads the
//! configuration, sets up logging, and runs the listeners until SIGTERM or
//! ctrl-c. Errors end the process with one line on stderr and exit status 2
//! (configuration or usage) or 1 (anything else).
//!
//! This file is also compiled by `tests/Cargo.toml` as the `ferry-under-test`
//! binary the black-box tests run: a crate used here must be listed there
//! too.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use ferry_router::config::{Config, ConfigError, RUST_LOG, effective_log_filter};
use ferry_router::core::Core;
use ferry_router::driver;
use ferry_router::listener::{Accepted, Server, connection_handler};
use ferry_router::manage::client::{ManageError, Manager};
use ferry_router::routing::RoutingConfig;
use ferry_router::security::Security;
use ferry_router::shutdown::Signals;
use std::sync::Arc;
use tracing::Instrument;
use tracing::info;

/// Exit status for a configuration or usage error (clap uses 2 as well).
const EXIT_CONFIG: u8 = 2;
/// Exit status for any other failure, e.g. a port in use.
const EXIT_RUNTIME: u8 = 1;

/// The long help, in one place: `ferry --help`.
const ENVIRONMENT_HELP: &str = "\
Configuration:
  A TOML file given with --config (or FERRY_CONFIG); without one, the built-in
  default: a standalone router with one AMQP listener on 127.0.0.1:5672.
  Every key can be overridden by an environment variable: FERRY_ followed by
  the key path, sections, keys and [[array]] indexes (from 0) separated by a
  double underscore, in any letter case. Lists are comma-separated.
    FERRY_ROUTER__ID=A                      [router] id
    FERRY_ROUTER__MODE=interior             [router] mode
    FERRY_LIMITS__MAX_FRAME_SIZE=16384      [limits] max_frame_size
    FERRY_LOG__LEVEL=debug                  [log] level
    FERRY_LISTENER__0__PORT=5673            port of the first [[listener]]
    FERRY_LISTENER__1__HOST=0.0.0.0         (with ..__1__PORT) adds a second one
    FERRY_LISTENER__0__SASL_MECHANISMS=ANONYMOUS
  Every key, its default and its limits: ferry config-reference.

Logging:
  To stderr, each line naming its router. [log] level: error, warn, info
  (the default), debug, trace or off, or directives such as
  info,ferry_router=debug. RUST_LOG, when set, wins over it.

Exit status:
  0  clean shutdown after SIGTERM or ctrl-c (also: check-config succeeded)
  1  runtime error, e.g. a listener's port is in use
  2  configuration or command-line error";

/// What `run --help` and `check-config --help` add: where the rest is.
const SEE_ALSO: &str = "\
Configuration file, FERRY_… environment variables, logging, exit status:
ferry --help. Every key with its default and limits: ferry config-reference.";

/// The configuration reference (router/CONFIG.md), built into the binary
/// so that whoever has only the binary (the container image) can read it.
const CONFIG_REFERENCE: &str = include_str!("../CONFIG.md");

/// Ferry: an AMQP 1.0 router mesh.
#[derive(Debug, Parser)]
#[command(
    name = "ferry",
    version,
    propagate_version = true,
    after_help = ENVIRONMENT_HELP,
    arg_required_else_help = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start the router and serve until SIGTERM or ctrl-c
    ///
    /// Binds every `[[listener]]` first (any failure, e.g. a port in use, stops
    /// start-up), logs `listening on ADDRESS (ROLE)` for each, then accepts
    /// connections. On SIGTERM or ctrl-c it stops accepting, closes every
    /// connection cleanly, waits up to 5 s for them, and exits 0.
    #[command(after_help = SEE_ALSO)]
    Run(ConfigArgs),
    /// Validate the configuration and print the effective result as TOML
    ///
    /// Loads the file (or the built-in default), applies FERRY_…
    /// environment overrides, validates, and prints every key with its
    /// effective value. Binds nothing.
    #[command(after_help = SEE_ALSO)]
    CheckConfig(ConfigArgs),
    /// Print the configuration reference: every key, its default and
    /// limits, the environment variables, logging, TLS and SASL, and the
    /// users file (Markdown)
    ConfigReference,
    /// Manage the users file (SCRAM-SHA-256 verifiers, never passwords)
    #[command(subcommand)]
    User(UserCommand),
    /// Show what a router, or another router of its mesh, is doing
    ///
    /// Asks the router's AMQP management node ($management; with
    /// --router, that router's _topo/0/ID/$management, across the mesh).
    /// Management is allowed to the users [management] users names, or
    /// when it names none, to clients on the router's own host.
    #[command(after_help = STAT_HELP)]
    Stat(StatArgs),
    /// Query, create, update or delete entities through AMQP management
    ///
    /// Prints the response body as JSON. Entity types are Qpid Dispatch
    /// Router's (org.apache.qpid.dispatch.connector, or connector for
    /// short); `ferry manage get-types` lists them.
    #[command(after_help = MANAGE_HELP)]
    Manage(ManageArgs),
}

const STAT_HELP: &str = "\
Examples:
  ferry stat -n                                the routers of the mesh
  ferry stat -l --router B --json              router B's links, as JSON
  ferry stat -a --watch                        addresses, refreshed every 2 s
  ferry stat -c --url amqps://admin:secret@ferry-1:5671 --ca ca.pem

Exit status:
  0  shown
  1  the router could not be reached, or refused or failed the request
  2  invalid command line";

const MANAGE_HELP: &str = "\
Examples:
  ferry manage create --type connector host=ferry-4 port=5673 sslProfile=mesh
  ferry manage delete --type connector --name connector/ferry-4:5673
  ferry manage create --type listener --name public host=0.0.0.0 port=5671 sslProfile=tls
  ferry manage update --type listener --name public saslMechanisms=SCRAM-SHA-256
  ferry manage create --type router.config.address prefix=news distribution=multicast
  ferry manage query --type router.node
  ferry manage read --type router

Exit status:
  0  done (the body is printed)
  1  the router could not be reached, or refused or failed the request
  2  invalid command line";

/// How `ferry stat` and `ferry manage` reach a router.
#[derive(Debug, Args)]
struct DialArgs {
    /// The router to connect to: amqp[s]://[user:password@]host[:port]
    #[arg(long, value_name = "URL", default_value = "amqp://127.0.0.1:5672")]
    url: String,
    /// Ask this router of the mesh instead, through the one connected to
    #[arg(long, value_name = "ID")]
    router: Option<String>,
    /// Trust anchors for the router's certificate (amqps)
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,
    /// Client certificate chain (PEM), with --key
    #[arg(long, value_name = "FILE")]
    cert: Option<PathBuf>,
    /// Client certificate key (PEM)
    #[arg(long, value_name = "FILE")]
    key: Option<PathBuf>,
    /// The name the router's certificate must carry [default: the URL's host]
    #[arg(long, value_name = "NAME")]
    server_name: Option<String>,
    /// SASL mechanism [default: PLAIN with a user in the URL, EXTERNAL with
    /// --cert, else ANONYMOUS]
    #[arg(long, value_enum)]
    sasl: Option<SaslArg>,
    /// Seconds to wait for the router
    #[arg(long, value_name = "SECONDS", default_value_t = 10)]
    timeout: u64,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum SaslArg {
    Anonymous,
    Plain,
    #[value(name = "scram-sha-256")]
    ScramSha256,
    External,
}

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("view").required(true))]
struct StatArgs {
    #[command(flatten)]
    dial: DialArgs,
    /// The routers of the mesh: next hop, cost, neighbours
    #[arg(short = 'n', group = "view")]
    nodes: bool,
    /// The addresses: consumers here and elsewhere, deliveries in and out
    #[arg(short = 'a', group = "view")]
    addresses: bool,
    /// The links: credit, unsettled and stuck deliveries, outcomes
    #[arg(short = 'l', group = "view")]
    links: bool,
    /// The connections: peer, role, TLS, user, vhost
    #[arg(short = 'c', group = "view")]
    connections: bool,
    /// Memory and the router's counters
    #[arg(short = 'm', group = "view")]
    memory: bool,
    /// JSON (an array of objects) instead of a table
    #[arg(long)]
    json: bool,
    /// Refresh until interrupted, like top
    #[arg(long)]
    watch: bool,
    /// Seconds between refreshes with --watch
    #[arg(long, value_name = "SECONDS", default_value_t = 2.0)]
    interval: f64,
}

#[derive(Debug, Args)]
struct ManageArgs {
    #[command(flatten)]
    dial: DialArgs,
    /// query, read, create, update, delete, get-types, get-attributes or
    /// get-operations
    operation: String,
    /// The entity type (full or short name)
    #[arg(long = "type", value_name = "TYPE")]
    entity_type: Option<String>,
    /// The entity's name (read, update, delete; create: the name to give)
    #[arg(long)]
    name: Option<String>,
    /// The entity's identity (read, update, delete)
    #[arg(long)]
    identity: Option<String>,
    /// Attributes for create and update, as KEY=VALUE
    #[arg(value_name = "KEY=VALUE")]
    attributes: Vec<String>,
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Add a user to the users file, or change its password
    ///
    /// The password is typed twice without echo when standard input is a
    /// terminal, else read from the first line of standard input. The file
    /// is created if missing and rewritten atomically with mode 0600; other
    /// users are kept. Format: `ferry config-reference`, "users file".
    #[command(after_help = USER_ADD_HELP)]
    Add(UserAddArgs),
}

const USER_ADD_HELP: &str = "\
Exit status:
  0  user added or updated (one line on stdout says which)
  1  the file could not be read or written
  2  invalid name, iteration count or password, or an invalid users file";

#[derive(Debug, Args)]
struct UserAddArgs {
    /// The user name: 1 to 255 bytes, no control characters
    name: String,
    /// The users file
    #[arg(long, value_name = "FILE")]
    users: PathBuf,
    /// PBKDF2 iteration count: 4096 (RFC 7677's minimum) to 1000000
    #[arg(long, value_name = "N", default_value_t = ferry_router::auth::DEFAULT_ITERATIONS)]
    iterations: u32,
}

#[derive(Debug, Args)]
struct ConfigArgs {
    /// TOML configuration file [default: the built-in standalone router on
    /// 127.0.0.1:5672]
    #[arg(short, long, value_name = "PATH", env = "FERRY_CONFIG")]
    config: Option<PathBuf>,
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Run(args) => run(&args),
        Command::CheckConfig(args) => check_config(&args),
        Command::User(UserCommand::Add(args)) => user_add(&args),
        Command::ConfigReference => print(CONFIG_REFERENCE),
        Command::Stat(args) => {
            manage_command(&args.dial, async |m: &mut Manager| stat(m, &args).await)
        }
        Command::Manage(args) => {
            manage_command(&args.dial, async |m: &mut Manager| manage(m, &args).await)
        }
    }
}

/// Runs `work` against the management node `dial` names; its output goes
/// to stdout, a failure to stderr (exit status 1).
fn manage_command<F>(dial: &DialArgs, work: F) -> ExitCode
where
    F: AsyncFnOnce(&mut Manager) -> Result<(), ManageError>,
{
    use ferry_proto::client::{Dial, Mechanism};
    let options = Dial {
        ca: dial.ca.clone(),
        cert: dial.cert.clone(),
        key: dial.key.clone(),
        server_name: dial.server_name.clone(),
        sasl: dial.sasl.map(|s| match s {
            SaslArg::Anonymous => Mechanism::Anonymous,
            SaslArg::Plain => Mechanism::Plain,
            SaslArg::ScramSha256 => Mechanism::ScramSha256,
            SaslArg::External => Mechanism::External,
        }),
        vhost: None,
    }
    .options(
        &dial.url,
        format!("ferry-manage-{}", std::process::id()),
        None,
    );
    let (addr, mut options) = match options {
        Ok(o) => o,
        Err(error) => {
            eprintln!("ferry: error: {error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    options.timeout = std::time::Duration::from_secs(dial.timeout);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(error) => {
            eprintln!("ferry: error: cannot start the async runtime: {error}");
            return ExitCode::from(EXIT_RUNTIME);
        }
    };
    let done = runtime.block_on(async {
        let mut manager = Manager::connect(&addr, options, dial.router.as_deref()).await?;
        work(&mut manager).await?;
        manager.close().await
    });
    match done {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("ferry: error: {error}");
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}

/// `ferry stat`: one view, once or refreshed.
async fn stat(manager: &mut Manager, args: &StatArgs) -> Result<(), ManageError> {
    use ferry_router::manage::stat::{View, json, render};
    let view = if args.nodes {
        View::Nodes
    } else if args.addresses {
        View::Addresses
    } else if args.links {
        View::Links
    } else if args.connections {
        View::Connections
    } else {
        View::Memory
    };
    let interval = std::time::Duration::from_secs_f64(args.interval.clamp(0.1, 3600.0));
    loop {
        let table = manager
            .query(view.entity_type(), &view.attributes())
            .await?;
        let text = if args.json {
            json(&table) + "\n"
        } else {
            let source = match &args.dial.router {
                Some(id) => format!("router {id}"),
                // The address only: never a password from the URL.
                None => match ferry_proto::client::Url::parse(&args.dial.url) {
                    Ok(url) => format!("at {}", url.address()),
                    Err(_) => String::from("at the router"),
                },
            };
            render(view, &source, &table)
        };
        if args.watch {
            // Clear the screen and go home, as top does.
            print!("\x1b[2J\x1b[H");
        }
        if print(&text) != ExitCode::SUCCESS || !args.watch {
            return Ok(());
        }
        tokio::time::sleep(interval).await;
    }
}

/// `ferry manage`: one request, its body printed as JSON.
async fn manage(manager: &mut Manager, args: &ManageArgs) -> Result<(), ManageError> {
    use ferry_proto::codec::{Map, Value};
    use ferry_router::manage::client::{ok, text};
    let operation = args.operation.to_ascii_uppercase();
    let mut properties = Vec::new();
    if let Some(t) = &args.entity_type {
        let key = if operation == "QUERY" || operation.starts_with("GET-") {
            "entityType"
        } else {
            "type"
        };
        properties.push((key, text(t)));
    }
    if let Some(n) = &args.name {
        properties.push(("name", text(n)));
    }
    if let Some(i) = &args.identity {
        properties.push(("identity", text(i)));
    }
    let mut body = Vec::new();
    for pair in &args.attributes {
        let Some((k, v)) = pair.split_once('=') else {
            return Err(ManageError::Malformed(format!("{pair:?} is not KEY=VALUE")));
        };
        body.push((text(k), text(v)));
    }
    let answer = if operation == "QUERY" {
        let t = args.entity_type.as_deref().unwrap_or_default();
        let table = manager.query(t, &[]).await?;
        print(&(ferry_router::manage::stat::json(&table) + "\n"));
        return Ok(());
    } else {
        ok(manager
            .call(&operation, &properties, Value::Map(Map(body)))
            .await?)?
    };
    print(&(ferry_router::manage::stat::pretty(&answer.body) + "\n"));
    Ok(())
}

/// Writes `text` to stdout (a closed pipe, as with `| head`, is no error
/// worth a message).
fn print(text: &str) -> ExitCode {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::from(EXIT_RUNTIME),
    }
}

fn user_add(args: &UserAddArgs) -> ExitCode {
    match ferry_router::auth::command::user_add(&args.name, &args.users, args.iterations) {
        Ok(line) => {
            let mut stdout = std::io::stdout().lock();
            match writeln!(stdout, "{line}").and_then(|()| stdout.flush()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(_) => ExitCode::from(EXIT_RUNTIME),
            }
        }
        Err(error) => {
            eprintln!("ferry: error: {error}");
            ExitCode::from(if error.is_usage() {
                EXIT_CONFIG
            } else {
                EXIT_RUNTIME
            })
        }
    }
}

fn check_config(args: &ConfigArgs) -> ExitCode {
    match Config::load(args.config.as_deref()) {
        Ok(config) => {
            // What `run` would refuse, `check-config` refuses: RUST_LOG too.
            let rust_log = rust_log();
            if let Err(message) = effective_log_filter(&config.log.level, rust_log.as_deref()) {
                eprintln!("ferry: config error: {message}");
                return ExitCode::from(EXIT_CONFIG);
            }
            // The files the configuration names must load too.
            if let Err(error) = Security::load(&config) {
                eprintln!("ferry: config error: {error}");
                return ExitCode::from(EXIT_CONFIG);
            }
            let mut stdout = std::io::stdout().lock();
            let mut printed = write!(stdout, "{config}");
            if let Some(directives) = rust_log.filter(|d| !d.trim().is_empty()) {
                printed = printed.and_then(|()| {
                    writeln!(
                        stdout,
                        "# {RUST_LOG}={directives:?} is set: it wins over [log] level"
                    )
                });
            }
            match printed.and_then(|()| stdout.flush()) {
                Ok(()) => ExitCode::SUCCESS,
                // E.g. a closed pipe (`ferry check-config | head`): nothing to say.
                Err(_) => ExitCode::from(EXIT_RUNTIME),
            }
        }
        Err(error) => config_error(&error),
    }
}

fn run(args: &ConfigArgs) -> ExitCode {
    let config = match Config::load(args.config.as_deref()) {
        Ok(config) => config,
        Err(error) => return config_error(&error),
    };
    if let Err(message) = init_logging(&config) {
        eprintln!("ferry: config error: {message}");
        return ExitCode::from(EXIT_CONFIG);
    }
    let security = match Security::load(&config) {
        Ok(security) => Arc::new(security),
        Err(error) => {
            eprintln!("ferry: config error: {error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let served = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
        .and_then(|runtime| {
            let span = ferry_router::router_span(&config.router.id);
            let path = args.config.clone();
            runtime.block_on(serve(config, security, path).instrument(span))
        });
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("ferry: error: {error:#}");
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}

fn config_error(error: &ConfigError) -> ExitCode {
    eprintln!("ferry: config error: {error}");
    ExitCode::from(EXIT_CONFIG)
}

/// `RUST_LOG`, if set (a value that is not UTF-8 is taken as set and
/// invalid, not as unset).
fn rust_log() -> Option<String> {
    std::env::var_os(RUST_LOG).map(|v| v.to_string_lossy().into_owned())
}

/// Log to stderr, filtered by `RUST_LOG` when set, else by `[log] level`.
fn init_logging(config: &Config) -> Result<(), String> {
    let filter = effective_log_filter(&config.log.level, rust_log().as_deref())?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Lines say what happened in the operator's words; the router id
        // comes from the span (`router{id=A}`), not the module path.
        .with_target(false)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    Ok(())
}

/// Bind, serve until a signal, drain. Runs in the router's span; every
/// task it starts runs in it too (`in_current_span`). `path`: the
/// configuration file, read again when it changes.
async fn serve(
    config: Config,
    security: Arc<Security>,
    path: Option<PathBuf>,
) -> anyhow::Result<()> {
    let mut signals = Signals::register().context("cannot register signal handlers")?;
    let core = Arc::new(Core::new(&config));
    let (mesh_stop, mesh_shutdown) = ferry_router::shutdown::channel();
    // The HTTP endpoint first: /healthz answers while the listeners bind,
    // and /readyz says it waits for them.
    let http = match &config.http {
        Some(http) => Some(start_http(http, &config, &core, mesh_shutdown.clone()).await?),
        None => None,
    };
    let server = Server::bind(&config, security.clone()).await?;
    if let Some(state) = &http {
        state.readiness.listeners_bound();
    }
    for (i, listener) in config.listeners.iter().enumerate() {
        if listener.tls.is_none()
            && !listener.allow_plain_without_tls
            && listener.sasl_mechanisms.iter().any(|m| m == "PLAIN")
        {
            tracing::warn!(
                "PLAIN is not offered on listener[{i}]: it has no TLS (allow_plain_without_tls = true offers it anyway)"
            );
        }
    }
    info!("{}", started(&config, &server.local_addrs()));
    let stop = async move {
        let signal = signals.recv().await;
        info!("{signal} received; shutting down");
    };
    if let Some(profile) = ferry_router::security::record_profile(&config) {
        info!(
            "routing records are signed with tls profile {profile:?}; records not signed by their router are refused"
        );
    }
    let reloader = ferry_router::reload::Reloader {
        security: security.clone(),
        core: core.clone(),
        config: path.map(|p| (p, config.clone())),
    };
    tokio::spawn(reloader.run(mesh_shutdown.clone()).in_current_span());
    tokio::spawn(
        ferry_router::mesh::control::run(
            core.clone(),
            RoutingConfig::default(),
            security
                .records
                .clone()
                .map(|keys| keys as ferry_router::routing::Auth),
            mesh_shutdown.clone(),
        )
        .in_current_span(),
    );
    let agent = ferry_router::manage::Agent::new(
        core.clone(),
        security.clone(),
        config.clone(),
        server.listeners(),
    );
    tokio::spawn(agent.run(mesh_shutdown.clone()).in_current_span());
    // Freed memory goes back to the system after bursts.
    tokio::spawn(ferry_router::memory_release::run(mesh_shutdown.clone()).in_current_span());
    // An edge router keeps one uplink through its edge connectors; an
    // interior router dials each of its inter-router connectors.
    let edge = config.router.mode == ferry_router::config::RouterMode::Edge;
    let uplink = edge.then(|| {
        tokio::spawn(
            ferry_router::edge::run(
                core.clone(),
                security.clone(),
                config.connectors.clone(),
                mesh_shutdown.clone(),
            )
            .in_current_span(),
        )
    });
    let connectors: Vec<_> = config
        .connectors
        .iter()
        .enumerate()
        .filter(|_| !edge)
        .map(|(index, c)| {
            tokio::spawn(
                ferry_router::mesh::connector::run(
                    core.clone(),
                    security.clone(),
                    index,
                    c.clone(),
                    mesh_shutdown.clone(),
                )
                .in_current_span(),
            )
        })
        .chain(uplink)
        .collect();
    // Brokers this router dials (`[[broker]]`, `routers`).
    let brokers: Vec<_> = config
        .brokers
        .iter()
        .filter(|b| b.dialed_by(core.router_id()))
        .map(|b| {
            tokio::spawn(
                ferry_router::broker::run(
                    core.clone(),
                    security.clone(),
                    b.clone(),
                    mesh_shutdown.clone(),
                )
                .in_current_span(),
            )
        })
        .collect();
    let handler = connection_handler(move |accepted: Accepted| {
        driver::serve(accepted, core.clone(), security.clone())
    });
    let drained = server.run(handler, stop).await;
    // Connector connections close (AMQP close) after the listeners' ones.
    mesh_stop.fire();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        futures_join_all(connectors),
    )
    .await;
    let _ =
        tokio::time::timeout(std::time::Duration::from_secs(5), futures_join_all(brokers)).await;
    match drained.aborted {
        0 => info!("stopped"),
        n => info!("stopped ({n} connections aborted)"),
    }
    Ok(())
}

/// Binds the HTTP endpoint, logs `http listening on ADDRESS`, and serves
/// it until `shutdown`.
async fn start_http(
    http: &ferry_router::config::HttpConfig,
    config: &Config,
    core: &Arc<Core>,
    shutdown: ferry_router::shutdown::Shutdown,
) -> anyhow::Result<Arc<ferry_router::http::State>> {
    use ferry_router::http::{HttpServer, Readiness, State};
    let server = HttpServer::bind(http).await?;
    if let Some(addr) = server.local_addr() {
        info!("http listening on {addr}");
    }
    let state = Arc::new(State {
        core: core.clone(),
        readiness: Readiness::new(config),
        in_flight: Default::default(),
    });
    tokio::spawn(server.run(state.clone(), shutdown).in_current_span());
    Ok(state)
}

/// The start-up line: what runs, and for a mesh member what it waits for.
fn started(config: &Config, bound: &[std::net::SocketAddr]) -> String {
    use ferry_router::config::{Role, RouterMode};
    let mut line = format!(
        "started: ferry {}, {} router",
        env!("CARGO_PKG_VERSION"),
        config.router.mode
    );
    if config.router.mode == RouterMode::Edge {
        let uplinks: Vec<String> = config
            .connectors
            .iter()
            .map(|c| format!("{}:{}", c.host, c.port))
            .collect();
        if uplinks.is_empty() {
            line += "; no edge connector: it will have no uplink";
        } else {
            line += &format!("; uplink through {}", uplinks.join(", "));
        }
        return line;
    }
    if config.router.mode != RouterMode::Interior {
        return line;
    }
    let dialing: Vec<String> = config
        .connectors
        .iter()
        .map(|c| format!("{}:{}", c.host, c.port))
        .collect();
    let listening: Vec<String> = config
        .listeners
        .iter()
        .zip(bound)
        .filter(|(l, _)| l.role == Role::InterRouter)
        .map(|(_, addr)| addr.to_string())
        .collect();
    let mut waits = Vec::new();
    if !dialing.is_empty() {
        waits.push(format!("dialing {}", dialing.join(", ")));
    }
    if !listening.is_empty() {
        waits.push(format!("routers may dial {}", listening.join(", ")));
    }
    let edges: Vec<String> = config
        .listeners
        .iter()
        .zip(bound)
        .filter(|(l, _)| l.role == Role::Edge)
        .map(|(_, addr)| addr.to_string())
        .collect();
    if waits.is_empty() {
        line += "; no connector and no inter-router listener: it will have no neighbour";
    } else {
        line += &format!("; waiting for neighbours ({})", waits.join("; "));
    }
    if !edges.is_empty() {
        line += &format!("; edge routers may dial {}", edges.join(", "));
    }
    line
}

/// Waits for every task.
async fn futures_join_all(tasks: Vec<tokio::task::JoinHandle<()>>) {
    for t in tasks {
        let _ = t.await;
    }
}
