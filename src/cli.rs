//! The `cardio` command line: argument parsing and the small client commands.
//! `serve` only loads configuration and hands over to [`crate::node`].

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{Config, ProcessEnv};
use crate::node::{shutdown_signal, Node};
use crate::supervisors::TreeView;

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
        Command::Tree { url, json, cluster } if cluster => tree_cluster(&url, json),
        Command::Tree { url, json, .. } => tree(&url, json),
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
        } => audit_verify(config, checkpoints),
        Command::Keys {
            command: KeysCommand::Init { config },
        } => keys_init(config),
        Command::Keys {
            command: KeysCommand::Rotate { config },
        } => keys(config, true),
        Command::Keys {
            command: KeysCommand::EncryptExisting { config },
        } => keys(config, false),
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

/// The database with the configured keys (the key file must exist).
async fn keyed_store(config: &Config, who: &str) -> anyhow::Result<crate::store::Store> {
    let (provider, _) = crate::node::key_provider(config, false)?;
    let store = crate::store::Store::connect(config.database_url.expose()).await?;
    store.migrate().await?;
    Ok(store.with_keys(provider, who).await?)
}

fn audit_verify(file: Option<PathBuf>, checkpoints: Option<PathBuf>) -> ExitCode {
    let config = match Config::load(file.as_deref(), &ProcessEnv) {
        Ok(c) => c,
        Err(e) => return fail(&format!("invalid configuration: {e}")),
    };
    let path = checkpoints.or_else(|| config.audit_checkpoint_file());
    let read = match &path {
        Some(p) => match crate::crypto::FileSink::read(p) {
            Ok(read) => read,
            Err(e) => {
                return fail(&format!(
                    "cannot read the checkpoints at {}: {e}",
                    p.display()
                ))
            }
        },
        None => Vec::new(),
    };
    let mut marks = Vec::with_capacity(read.len());
    for c in read {
        match c {
            Ok(c) => marks.push(c),
            Err(line) => {
                eprintln!("cardio: audit checkpoints broken: line {line} is not a checkpoint");
                return ExitCode::from(1);
            }
        }
    }
    let checked = actix_rt::System::new().block_on(async {
        let store = keyed_store(&config, "audit-verify").await?;
        let checked = store.verify_audit_with(&marks).await;
        store.close().await;
        Ok::<_, anyhow::Error>(checked?)
    });
    match checked {
        Ok(Ok(n)) => {
            println!(
                "audit chain intact: {n} entries, {} checkpoints agree",
                marks.len()
            );
            if path.is_none() {
                println!("no checkpoint file: deletions at the end cannot be detected");
            }
            ExitCode::SUCCESS
        }
        Ok(Err(broken)) => {
            eprintln!("cardio: {broken}");
            ExitCode::from(1)
        }
        Err(e) => fail(&format!("cannot read the audit log: {e:#}")),
    }
}

fn keys_init(file: Option<PathBuf>) -> ExitCode {
    let config = match Config::load(file.as_deref(), &ProcessEnv) {
        Ok(c) => c,
        Err(e) => return fail(&format!("invalid configuration: {e}")),
    };
    let Some(path) = config.key_file() else {
        return fail("no key_file (CARDIO_KEY_FILE) is set");
    };
    match crate::crypto::FileKeyProvider::open_or_create(&path, true) {
        Ok((_, true)) => {
            println!("created the key file {}", path.display());
            ExitCode::SUCCESS
        }
        Ok((_, false)) => {
            println!("a key file is already at {}", path.display());
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e.to_string()),
    }
}

/// `cardio keys rotate` (`rotate`) or `cardio keys encrypt-existing`.
fn keys(file: Option<PathBuf>, rotate: bool) -> ExitCode {
    let config = match Config::load(file.as_deref(), &ProcessEnv) {
        Ok(c) => c,
        Err(e) => return fail(&format!("invalid configuration: {e}")),
    };
    let done = actix_rt::System::new().block_on(async {
        let store = keyed_store(&config, "cli").await?;
        let said = if rotate {
            let (kek, n) = store.rotate_keys().await?;
            let operator = std::env::var("USER").unwrap_or_else(|_| "operator".into());
            store
                .audit(&crate::store::audit::AuditEntry {
                    at_ms: crate::clock::unix_ms(),
                    subject: format!("cli:{operator}"),
                    role: "admin".into(),
                    action: "key_rotation".into(),
                    patient_id: None,
                    fields: format!("kek={kek},data_keys={n}"),
                    outcome: "allowed".into(),
                })
                .await?;
            format!("key-encryption key {kek} is current; {n} data keys re-wrapped")
        } else {
            let n = store.seal_existing().await?;
            format!("{n} values sealed")
        };
        store.close().await;
        Ok::<_, anyhow::Error>(said)
    });
    match done {
        Ok(said) => {
            println!("{said}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(&format!("{e:#}")),
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

async fn fetch(endpoint: &str) -> Result<actix_web::web::Bytes, String> {
    let mut request = awc::Client::new().get(endpoint);
    // An ops or admin token, where the node requires one for /debug/*.
    if let Ok(token) = std::env::var("CARDIO_TOKEN") {
        request = request.insert_header(("authorization", format!("Bearer {}", token.trim())));
    }
    let mut response = request
        .send()
        .await
        .map_err(|e| format!("cannot reach {endpoint}: {e}"))?;
    if !response.status().is_success() {
        return Err(format!("{endpoint} answered {}", response.status()));
    }
    response
        .body()
        .limit(256 * 1024 * 1024)
        .await
        .map_err(|e| format!("reading {endpoint}: {e}"))
}

/// `cardio tree --cluster`: the membership as one node sees it, then the tree
/// of every node that is up (fetched from its own address).
fn tree_cluster(url: &str, raw: bool) -> ExitCode {
    let endpoint = format!("{}/debug/cluster", url.trim_end_matches('/'));
    let colour = colour_wanted();
    let out = actix_rt::System::new().block_on(async {
        let body = fetch(&endpoint).await?;
        let view: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| format!("{endpoint} did not return a cluster view: {e}"))?;
        let nodes = view["nodes"].as_array().cloned().unwrap_or_default();
        let mut trees = Vec::new();
        for n in &nodes {
            let (id, addr, status) = (
                n["id"].as_str().unwrap_or("?"),
                n["addr"].as_str().unwrap_or(""),
                n["status"].as_str().unwrap_or("?"),
            );
            let tree = if status == "up" || status == "joining" || status == "leaving" {
                fetch(&format!("http://{addr}/debug/tree"))
                    .await
                    .and_then(|b| {
                        serde_json::from_slice::<serde_json::Value>(&b).map_err(|e| e.to_string())
                    })
            } else {
                Err(format!("not running ({status})"))
            };
            trees.push((
                id.to_owned(),
                addr.to_owned(),
                status.to_owned(),
                n["shards"].clone(),
                tree,
            ));
        }
        if raw {
            let all: Vec<serde_json::Value> = trees
                .into_iter()
                .map(|(id, addr, status, shards, tree)| {
                    serde_json::json!({"id": id, "addr": addr, "status": status, "shards": shards,
                        "tree": tree.unwrap_or_else(|e| serde_json::json!({"error": e}))})
                })
                .collect();
            return Ok(format!(
                "{}\n",
                serde_json::json!({"cluster": view, "nodes": all})
            ));
        }
        let (bold, dim, reset) = if colour {
            ("\x1b[1m", "\x1b[2m", "\x1b[0m")
        } else {
            ("", "", "")
        };
        let mut text = format!(
            "{bold}cluster{reset} seen from {} · {} nodes · {} shards\n",
            view["node"].as_str().unwrap_or("?"),
            nodes.len(),
            view["shards"].as_array().map_or(0, Vec::len)
        );
        for (id, addr, status, shards, tree) in trees {
            let status = node_status(&status, colour);
            text.push_str(&format!(
                "\n{bold}node {id}{reset} {addr} {status} · owns {shards} shards\n"
            ));
            match tree
                .and_then(|t| serde_json::from_value::<TreeView>(t).map_err(|e| e.to_string()))
            {
                Ok(tree) => text.push_str(&render_tree(&tree, colour)),
                Err(e) => text.push_str(&format!("{dim}  (no tree: {e}){reset}\n")),
            }
        }
        Ok::<_, String>(text)
    });
    match out {
        Ok(text) => {
            let _ = write!(std::io::stdout().lock(), "{text}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e),
    }
}

fn tree(url: &str, raw: bool) -> ExitCode {
    let endpoint = format!("{}/debug/tree", url.trim_end_matches('/'));
    let fetched = actix_rt::System::new().block_on(fetch(&endpoint));
    let body = match fetched {
        Ok(b) => b,
        Err(e) => return fail(&e),
    };
    if raw {
        println!("{}", String::from_utf8_lossy(&body));
        return ExitCode::SUCCESS;
    }
    let view: TreeView = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return fail(&format!("{endpoint} did not return a tree: {e}")),
    };
    let colour = colour_wanted();
    let mut out = std::io::stdout().lock();
    let _ = write!(out, "{}", render_tree(&view, colour));
    ExitCode::SUCCESS
}

/// Renders a tree as indented lines: name, kind, status, restarts, uptime,
/// mailbox depth and last failure.
/// Colour on a terminal unless `NO_COLOR` is set; `CLICOLOR_FORCE` forces it
/// (for pagers such as `less -R`).
fn colour_wanted() -> bool {
    // no-color.org: any non-empty NO_COLOR turns colour off.
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|x| !x.is_empty());
    let forced = std::env::var_os("CLICOLOR_FORCE").is_some_and(|x| !x.is_empty() && x != "0");
    !no_color && (forced || std::io::stdout().is_terminal())
}

/// `text` in SGR colour `code` when `colour`.
fn paint(text: &str, code: &str, colour: bool) -> String {
    if colour {
        format!("\x1b[{code}m{text}\x1b[0m")
    } else {
        text.to_owned()
    }
}

/// A node's membership status: green up, yellow on its way in or out or cut
/// off from the broker, red down or gone.
fn node_status(status: &str, colour: bool) -> String {
    let code = match status {
        "up" => "32",
        "joining" | "leaving" | "degraded" => "33",
        _ => "31",
    };
    paint(status, code, colour)
}

pub fn render_tree(root: &TreeView, colour: bool) -> String {
    let mut out = String::new();
    line(&mut out, root, "", "", colour, true);
    out
}

fn line(out: &mut String, n: &TreeView, lead: &str, branch: &str, colour: bool, is_root: bool) {
    let name = if is_root {
        n.path.as_str()
    } else {
        n.id.as_str()
    };
    let kind = match &n.strategy {
        Some(s) => format!("supervisor {s}"),
        None => n.kind.clone(),
    };
    let code = match n.status.as_str() {
        "running" => "32",
        "restarting" | "starting" | "stopping" => "33",
        _ => "31",
    };
    let status = paint(&n.status, code, colour);
    let restarts = format!("restarts={}", n.restarts);
    let restarts = if n.restarts > 0 {
        paint(&restarts, "33", colour)
    } else {
        restarts
    };
    out.push_str(&format!(
        "{lead}{branch}{name}  [{kind}]  {status}  {restarts}"
    ));
    if n.uptime_ms > 0 {
        out.push_str(&format!(
            "  up {}",
            humantime::format_duration(std::time::Duration::from_secs(n.uptime_ms / 1000))
        ));
    }
    if n.strategy.is_none() && n.mailbox_depth > 0 {
        out.push_str(&format!("  mailbox={}", n.mailbox_depth));
    }
    if let Some(f) = &n.last_failure {
        out.push_str(&paint(&format!("  last failure: {f}"), "31", colour));
    }
    out.push('\n');
    let child_lead = if is_root {
        String::new()
    } else if branch.starts_with('└') {
        format!("{lead}    ")
    } else {
        format!("{lead}│   ")
    };
    for (i, c) in n.children.iter().enumerate() {
        let last = i + 1 == n.children.len();
        line(
            out,
            c,
            &child_lead,
            if last { "└── " } else { "├── " },
            colour,
            false,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(path: &str, id: &str, strategy: Option<&str>, children: Vec<TreeView>) -> TreeView {
        TreeView {
            path: path.into(),
            kind: if strategy.is_some() {
                "supervisor".into()
            } else {
                "consult".into()
            },
            strategy: strategy.map(str::to_owned),
            id: id.into(),
            status: "running".into(),
            restarts: 0,
            last_failure: None,
            uptime_ms: 0,
            mailbox_depth: 0,
            children,
        }
    }

    #[test]
    fn trees_render_as_indented_branches() {
        let mut crashed = node("/cardio/entities/consult/c-2", "c-2", None, vec![]);
        crashed.restarts = 2;
        crashed.last_failure = Some("panicked: boom".into());
        let tree = node(
            "/cardio",
            "cardio",
            Some("one_for_one"),
            vec![node(
                "/cardio/entities",
                "entities",
                Some("one_for_one"),
                vec![
                    node("/cardio/entities/consult/c-1", "c-1", None, vec![]),
                    crashed,
                ],
            )],
        );
        let text = render_tree(&tree, false);
        assert_eq!(
            text,
            "/cardio  [supervisor one_for_one]  running  restarts=0\n\
             └── entities  [supervisor one_for_one]  running  restarts=0\n\
             \x20   ├── c-1  [consult]  running  restarts=0\n\
             \x20   └── c-2  [consult]  running  restarts=2  last failure: panicked: boom\n"
        );
        // On a terminal: status by colour, restarts and failures stand out.
        let painted = render_tree(&tree, true);
        assert!(painted.contains("\x1b[32mrunning\x1b[0m"), "{painted}");
        assert!(painted.contains("\x1b[33mrestarts=2\x1b[0m"), "{painted}");
        assert!(painted.contains("\x1b[31m  last failure: panicked: boom\x1b[0m"));
        assert!(!painted.contains("\x1b[33mrestarts=0"), "{painted}");
        assert_eq!(node_status("up", true), "\x1b[32mup\x1b[0m");
        assert_eq!(node_status("down", true), "\x1b[31mdown\x1b[0m");
        assert_eq!(node_status("degraded", false), "degraded");
    }
}
