//! The `cardio` command line: argument parsing and the small client commands.
//! `serve` only loads configuration and hands over to [`crate::node`].

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{Config, ProcessEnv};
use crate::node::{shutdown_signal, Node};

mod keys;
mod tree;

#[derive(Parser)]
#[command(
    name = "cardio",
    version,
    about = "Supervised actor runtime for telemedicine cardiology"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a node (embedded defaults: in-process bus, 127.0.0.1:8080).
    Serve {
        /// TOML configuration file; CARDIO_* environment variables override it.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Run a node with demo data (embedded defaults only): a clinician with
    /// six patients whose monitors stream vitals and ECG, one with an
    /// arrhythmia that raises alarms now and then, and a waiting consult,
    /// seeded through the API; prints sign-in links for the clinician, a
    /// patient, ops and the admin.
    Demo {
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Print a running node's supervision tree.
    Tree {
        /// The node's HTTP address.
        #[arg(long, env = "CARDIO_URL", default_value = "http://127.0.0.1:8080")]
        url: String,
        /// Print the raw JSON instead.
        #[arg(long)]
        json: bool,
        /// Every node of the cluster (as the node at --url knows it): the
        /// membership and shard owners, then each live node's tree.
        #[arg(long)]
        cluster: bool,
    },
    /// Apply the database migrations and exit (the node also does at start).
    Migrate {
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Print the effective configuration as TOML (secrets shown as
    /// <redacted>) and exit; it can be fed back with --config.
    Config {
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Mint a bearer token with the configured key (development and tests).
    Token {
        /// patient, clinician, ops or admin.
        #[arg(long)]
        role: String,
        /// The subject: the patient's or clinician's id, an operator's id.
        #[arg(long)]
        sub: String,
        /// How long the token is valid.
        #[arg(long, default_value = "1h")]
        ttl: String,
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Print the GraphQL schema (SDL), as committed in schema.graphql.
    Schema,
    /// Put realistic load on a running node or cluster through its API:
    /// devices streaming vitals, live consults, clinicians watching alerts.
    /// Mints tokens with the nodes' key (CARDIO_JWT_SECRET or RS256 settings).
    Simulate(SimulateArgs),
    /// Ask this host's node whether it is healthy (the image's HEALTHCHECK):
    /// GET /healthz on 127.0.0.1 at the port of `http_addr`, over https
    /// (verified with `tls_peer_ca_file`, as the `advertise_addr` host or
    /// `localhost`) when the node serves TLS. Exit 0 on 200, else 1.
    Probe {
        /// The path to ask (`/readyz` for readiness).
        #[arg(long, default_value = "/healthz")]
        path: String,
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// The PHI audit trail.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// The keys of encryption at rest (the key file, data keys).
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create the key file at the configured key_file (0600) unless one is
    /// there: for a cluster, create it once and give every node the same file.
    Init {
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Make a new key-encryption key current and re-wrap every data key
    /// under it (nodes keep running; they read the key file again when they
    /// meet the new key). Audited as `key_rotation`.
    Rotate {
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Seal every PHI value still stored in the clear (rows written before
    /// encryption at rest; a node also does this at start).
    EncryptExisting {
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
}

#[derive(clap::Args)]
struct SimulateArgs {
    /// The nodes' HTTP addresses, comma-separated; work is spread over them.
    #[arg(
        long,
        env = "CARDIO_URL",
        default_value = "http://127.0.0.1:8080",
        value_delimiter = ','
    )]
    url: Vec<String>,
    /// Wearables, one patient each.
    #[arg(long, default_value_t = 100)]
    devices: usize,
    /// Samples per second per device (heart rate and SpO2, one batch a second).
    #[arg(long, default_value_t = 50)]
    rate: u32,
    /// Live consults held over the run.
    #[arg(long, default_value_t = 10)]
    consults: usize,
    /// Clinicians subscribed to their patients' alerts (patients are spread
    /// over their care teams).
    #[arg(long, default_value_t = 10)]
    clinicians: usize,
    #[arg(long, default_value = "60s")]
    duration: String,
    /// Same seed, same people, signals, episodes and invalid samples.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Share of devices with one sustained tachycardia episode.
    #[arg(long, default_value_t = 0.1)]
    episodes: f64,
    /// Length of an episode: longer than the nodes' CARDIO_ALERT_SUSTAIN
    /// for it to raise an alert.
    #[arg(long, default_value = "20s")]
    episode: String,
    /// Share of samples sent invalid on purpose (they must be rejected).
    #[arg(long, default_value_t = 0.001)]
    invalid: f64,
    /// Time between chat messages of a consult.
    #[arg(long, default_value = "2s")]
    chat_every: String,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
    #[arg(long, short)]
    config: Option<PathBuf>,
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check the hash chain of the audit log; name the first broken entry.
    Verify {
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// The checkpoint file (default: the configured audit_checkpoint_file).
        #[arg(long)]
        checkpoints: Option<PathBuf>,
    },
}

/// Runs the command line; returns the process exit code.
pub fn run() -> ExitCode {
    // One TLS stack: ring, for every library that asks rustls for its default.
    crate::tls::install_provider();
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config } => serve(config, false),
        Command::Demo { config } => serve(config, true),
        Command::Tree { url, json, cluster } if cluster => tree::cluster(&url, json),
        Command::Tree { url, json, .. } => tree::tree(&url, json),
        Command::Migrate { config } => migrate(config),
        Command::Token {
            role,
            sub,
            ttl,
            config,
        } => token(&role, &sub, &ttl, config),
        Command::Audit {
            command:
                AuditCommand::Verify {
                    config,
                    checkpoints,
                },
        } => keys::audit_verify(config, checkpoints),
        Command::Keys {
            command: KeysCommand::Init { config },
        } => keys::init(config),
        Command::Keys {
            command: KeysCommand::Rotate { config },
        } => keys::rotate_or_seal(config, true),
        Command::Keys {
            command: KeysCommand::EncryptExisting { config },
        } => keys::rotate_or_seal(config, false),
        Command::Simulate(args) => simulate(args),
        Command::Probe { path, config } => probe(&path, config),
        Command::Schema => {
            print!("{}", crate::api::graphql::sdl());
            ExitCode::SUCCESS
        }
        Command::Config { config } => match Config::load(config.as_deref(), &ProcessEnv) {
            Ok(c) => match c.to_toml() {
                Ok(text) => {
                    print!("{text}");
                    ExitCode::SUCCESS
                }
                Err(e) => fail(&format!("cannot print the configuration: {e}")),
            },
            Err(e) => fail(&format!("invalid configuration: {e}")),
        },
    }
}

/// Why there is no key to mint with, and how to get one.
fn no_key(config: &Config) -> String {
    let said = crate::auth::AuthError::NoKey("mint").to_string();
    match config.local_token_key_file() {
        Some(path) => format!(
            "{said}; on the embedded defaults `cardio serve` creates one at {} on its first start",
            path.display()
        ),
        None => said,
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("cardio: {message}");
    ExitCode::from(2)
}

/// `cardio serve`, or with `demo` `cardio demo`: the node, then the demo's
/// seed and monitors through its API.
fn serve(file: Option<PathBuf>, demo: bool) -> ExitCode {
    let config = match Config::load(file.as_deref(), &ProcessEnv) {
        Ok(c) => c,
        Err(e) => return fail(&format!("invalid configuration: {e}")),
    };
    if demo && (!config.embedded() || config.tls_cert_file.is_some()) {
        return fail(
            "cardio demo writes made-up patients: it runs only on the embedded defaults (an SQLite file, the memory:// bus, plain HTTP)",
        );
    }
    let telemetry = crate::telemetry::init(
        config.log_format,
        &config.log_filter,
        config.otlp_endpoint.as_ref(),
        config.otlp_ca_file.as_deref(),
        &config.node_id,
    );
    let telemetry = match telemetry {
        Ok(t) => t,
        Err(e) => return fail(&format!("invalid configuration: otlp_endpoint: {e}")),
    };
    let json = config.log_format == crate::config::LogFormat::Json;
    let system = actix_rt::System::new();
    let exit = system.block_on(async move {
        let node = Node::build(config.clone()).await?;
        if !demo {
            print_admin_link(&node, json);
            return Ok(node.run_until_stopped(shutdown_signal()).await);
        }
        // The key the node verifies with (its own, made by now, or the
        // configured secret) mints the demo's tokens.
        let seeded = match crate::auth::Authenticator::from_config(&config) {
            Ok(Some(auth)) => crate::demo::start(node.local_url(), auth).await,
            Ok(None) => Err(no_key(&config)),
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = seeded {
            tracing::error!(error = %e, "the demo could not be seeded");
            // Drained as on a signal, then the failure is the exit.
            let _ = node.run_until_stopped(std::future::ready(())).await;
            anyhow::bail!("the demo could not be seeded: {e}");
        }
        print_demo_links(&node, json);
        Ok(node.run_until_stopped(shutdown_signal()).await)
    });
    telemetry.shutdown();
    match exit {
        Ok(exit) => ExitCode::from(exit.code()),
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "node failed to start");
            fail(&format!("{e:#}"))
        }
    }
}

/// The demo's sign-in links (same rules as the admin's: the node's own key).
fn print_demo_links(node: &Node, json: bool) {
    use crate::principal::{Principal, Role};
    let people = [
        (crate::demo::CLINICIAN, Role::Clinician),
        (crate::demo::PATIENT, Role::Patient),
        (crate::demo::OPS, Role::Ops),
        ("local-admin", Role::Admin),
    ];
    let links: Vec<(Principal, String)> = people
        .into_iter()
        .filter_map(|(subject, role)| {
            let who = Principal {
                subject: subject.into(),
                role,
            };
            let link = node.sign_in_link(&who, LINK_TTL)?;
            Some((who, link))
        })
        .collect();
    if !links.is_empty() {
        print_links(&links, json);
    }
}

/// How long a sign-in link printed at start is valid.
const LINK_TTL: std::time::Duration = std::time::Duration::from_secs(3600);

/// On the embedded defaults with the node's own key: a sign-in link for the
/// local admin, printed on stdout, never through the log (a log pipeline
/// must not collect a token), as Jupyter does.
fn print_admin_link(node: &Node, json: bool) {
    let admin = crate::principal::Principal {
        subject: "local-admin".into(),
        role: crate::principal::Role::Admin,
    };
    if let Some(link) = node.sign_in_link(&admin, LINK_TTL) {
        print_links(&[(admin, link)], json);
    }
}

/// Prints sign-in links on stdout: a few lines for a person, or with JSON
/// logs one JSON object a link (`{"sign_in": {"subject", "role", "url"}}`),
/// so that stdout stays JSON lines.
fn print_links(links: &[(crate::principal::Principal, String)], json: bool) {
    let mut out = std::io::stdout().lock();
    if json {
        for (who, url) in links {
            let line = serde_json::json!({"sign_in": {
                "subject": who.subject, "role": who.role.name(), "url": url,
            }});
            let _ = writeln!(out, "{line}");
        }
    } else {
        let _ = writeln!(
            out,
            "\n    To sign in to the console, open a link below (valid for 1 hour; `cardio token` mints more):"
        );
        for (who, url) in links {
            let _ = writeln!(
                out,
                "    as {} ({}):\n        {url}",
                who.subject,
                who.role.name()
            );
        }
        let _ = writeln!(out);
    }
    let _ = out.flush();
}

fn probe(path: &str, file: Option<PathBuf>) -> ExitCode {
    let config = match Config::load(file.as_deref(), &ProcessEnv) {
        Ok(c) => c,
        Err(e) => return fail(&format!("invalid configuration: {e}")),
    };
    let port = config.http_addr.port();
    let ip = match config.http_addr.ip() {
        ip if !ip.is_unspecified() => ip,
        std::net::IpAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
        std::net::IpAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
    };
    let tls = match &config.tls_cert_file {
        Some(_) => match crate::tls::client_config(config.tls_peer_ca_file.as_deref(), None) {
            Ok(c) => Some(std::sync::Arc::new(c)),
            Err(e) => return fail(&format!("tls_peer_ca_file: {e}")),
        },
        None => None,
    };
    // The name the certificate must carry: the advertised host, or localhost.
    let host = config
        .advertise_addr
        .as_deref()
        .and_then(|a| a.rsplit_once(':').map(|(h, _)| h.to_owned()))
        .filter(|_| tls.is_some())
        .unwrap_or_else(|| "localhost".into());
    let scheme = if tls.is_some() { "https" } else { "http" };
    let url = format!("{scheme}://{host}:{port}{path}");
    let outcome = actix_rt::System::new().block_on(async move {
        let client = match tls {
            Some(tls) => awc::Client::builder()
                .connector(awc::Connector::new().rustls_0_23(tls))
                .timeout(std::time::Duration::from_secs(5))
                .finish(),
            None => awc::Client::builder()
                .timeout(std::time::Duration::from_secs(5))
                .finish(),
        };
        match client
            .get(&url)
            .address(std::net::SocketAddr::new(ip, port))
            .send()
            .await
        {
            Ok(r) if r.status().is_success() => Ok(()),
            Ok(r) => Err(format!("{url} answered {}", r.status())),
            Err(e) => Err(format!("cannot reach {url}: {e}")),
        }
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cardio: unhealthy: {e}");
            ExitCode::from(1)
        }
    }
}

fn simulate(a: SimulateArgs) -> ExitCode {
    let config = match Config::load(a.config.as_deref(), &ProcessEnv) {
        Ok(c) => c,
        Err(e) => return fail(&format!("invalid configuration: {e}")),
    };
    let auth = match crate::auth::Authenticator::from_config(&config) {
        Ok(Some(a)) => a,
        Ok(None) => return fail(&no_key(&config)),
        Err(e) => return fail(&e.to_string()),
    };
    let duration = |flag: &str, raw: &str| {
        humantime::parse_duration(raw)
            .ok()
            .filter(|d| !d.is_zero())
            .ok_or_else(|| format!("--{flag} {raw:?}: expected a duration such as 60s or 2m"))
    };
    let share = |flag: &str, v: f64| {
        if (0.0..=1.0).contains(&v) {
            Ok(v)
        } else {
            Err(format!("--{flag} {v}: expected a share between 0 and 1"))
        }
    };
    let settings = (|| -> Result<crate::simulate::Settings, String> {
        Ok(crate::simulate::Settings {
            urls: a
                .url
                .iter()
                .map(|u| u.trim().trim_end_matches('/').to_owned())
                .filter(|u| !u.is_empty())
                .collect(),
            devices: a.devices,
            rate: a.rate,
            consults: a.consults,
            clinicians: a.clinicians,
            duration: duration("duration", &a.duration)?,
            seed: a.seed,
            episodes: share("episodes", a.episodes)?,
            episode: duration("episode", &a.episode)?,
            invalid: share("invalid", a.invalid)?,
            chat_every: duration("chat-every", &a.chat_every)?,
        })
    })();
    let settings = match settings {
        Ok(s) => s,
        Err(e) => return fail(&e),
    };
    let json = a.json;
    let outcome = actix_rt::System::new().block_on(crate::simulate::run(settings, auth));
    match outcome {
        Ok(summary) => {
            eprintln!();
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&summary).unwrap_or_default()
                );
            } else {
                println!("{summary}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e),
    }
}

fn token(role: &str, sub: &str, ttl: &str, file: Option<PathBuf>) -> ExitCode {
    use crate::principal::{Principal, Role};
    let config = match Config::load(file.as_deref(), &ProcessEnv) {
        Ok(c) => c,
        Err(e) => return fail(&format!("invalid configuration: {e}")),
    };
    let role = match role {
        "patient" => Role::Patient,
        "clinician" => Role::Clinician,
        "ops" => Role::Ops,
        "admin" => Role::Admin,
        other => {
            return fail(&format!(
                "--role {other:?}: expected patient, clinician, ops or admin"
            ))
        }
    };
    if !crate::address::valid_id(sub) {
        return fail("--sub: an id of letters, digits and - _ . : @ (at most 128)");
    }
    let ttl = match humantime::parse_duration(ttl) {
        Ok(d) if !d.is_zero() && d <= crate::auth::MAX_TTL => d,
        _ => {
            return fail(&format!(
                "--ttl {ttl:?}: expected a duration such as 1h or 15m, at most 24h"
            ))
        }
    };
    let auth = match crate::auth::Authenticator::from_config(&config) {
        Ok(Some(a)) => a,
        Ok(None) => return fail(&no_key(&config)),
        Err(e) => return fail(&e.to_string()),
    };
    let principal = Principal {
        subject: sub.to_owned(),
        role,
    };
    match auth.mint(&principal, ttl) {
        Ok(token) => {
            println!("{token}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e.to_string()),
    }
}

fn migrate(file: Option<PathBuf>) -> ExitCode {
    let config = match Config::load(file.as_deref(), &ProcessEnv) {
        Ok(c) => c,
        Err(e) => return fail(&format!("invalid configuration: {e}")),
    };
    let done = actix_rt::System::new().block_on(async {
        let store = crate::store::Store::connect(config.database_url.expose()).await?;
        store.migrate().await?;
        let backend = store.backend();
        store.close().await;
        Ok::<_, crate::store::StoreError>(backend)
    });
    match done {
        Ok(backend) => {
            println!("migrated the {backend} database at {}", config.database_url);
            ExitCode::SUCCESS
        }
        Err(e) => fail(&format!("migration failed: {e}")),
    }
}
