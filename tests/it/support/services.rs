//! Which of the machine's services the tests may use, and where they are.
//!
//! `CARDIO_TEST_SERVICES` names the tiers a run enables, separated by commas
//! or spaces: `postgres` (the store contract and the node on PostgreSQL),
//! `rabbitmq` (the bus contract on RabbitMQ), `cluster` (several `cardio`
//! processes on PostgreSQL and RabbitMQ), `deploy` (`scripts/check-deploy`,
//! which installs tools with apt and pip); `all` for every tier. Unset,
//! empty or `none`: no tier, and the run needs no service at all.
//!
//! A test that needs a tier starts with `needs!(Tier)`. When the tier is not
//! enabled the test says so and returns at once: it passes without running,
//! and the census ([`announce`]) counts it. When the tier is enabled its
//! services must answer, or the test fails naming the service and how to
//! start it: an enabled tier never skips.
//!
//! Where: `CARDIO_TEST_DATABASE_URL` (a PostgreSQL server on which the tests
//! may create databases, default `postgres://postgres@127.0.0.1:5432/postgres`)
//! and `CARDIO_TEST_AMQP_URL` (a RabbitMQ broker, default
//! `amqp://guest:guest@127.0.0.1:5672`; `rabbitmqctl` must manage it).
//!
//! **Invariant:** no test touches PostgreSQL or RabbitMQ unless a tier that
//! needs it is enabled (`TestDb` and `Vhost` check, so a missing `needs!`
//! fails instead of reaching for a service).

use std::io::Write;
use std::sync::{Once, OnceLock};
use std::time::Duration;

pub const VAR: &str = "CARDIO_TEST_SERVICES";
const DATABASE_VAR: &str = "CARDIO_TEST_DATABASE_URL";
const AMQP_VAR: &str = "CARDIO_TEST_AMQP_URL";
const HOW: &str = "set CARDIO_TEST_SERVICES=all or run scripts/test";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Tier {
    Postgres,
    Rabbitmq,
    Cluster,
    Deploy,
}

pub const TIERS: [Tier; 4] = [Tier::Postgres, Tier::Rabbitmq, Tier::Cluster, Tier::Deploy];

impl Tier {
    pub fn name(self) -> &'static str {
        match self {
            Tier::Postgres => "postgres",
            Tier::Rabbitmq => "rabbitmq",
            Tier::Cluster => "cluster",
            Tier::Deploy => "deploy",
        }
    }

    /// What a test of the tier needs, for the line saying it was skipped.
    fn needs(self) -> &'static str {
        match self {
            Tier::Postgres => "PostgreSQL",
            Tier::Rabbitmq => "RabbitMQ",
            Tier::Cluster => "PostgreSQL and RabbitMQ (a cluster of cardio processes)",
            Tier::Deploy => "scripts/check-deploy's tools (kubectl, promtool; apt and pip)",
        }
    }

    fn services(self) -> &'static [Service] {
        match self {
            Tier::Postgres => &[Service::Postgres],
            Tier::Rabbitmq => &[Service::Rabbitmq],
            Tier::Cluster => &[Service::Postgres, Service::Rabbitmq],
            Tier::Deploy => &[],
        }
    }
}

/// One `needs!` site: a test (or, in a macro, each test it makes) of a tier.
/// Registered at link time, so that the census knows every such test before
/// any runs, in each process (nextest runs a process per test).
pub struct Gated {
    pub tier: Tier,
}

inventory::collect!(Gated);

/// The tiers named by `value` (the variable's value, if set).
pub fn parse(value: Option<&str>) -> Result<Vec<Tier>, String> {
    let mut tiers = Vec::new();
    for word in value
        .unwrap_or("")
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|w| !w.is_empty())
    {
        match word {
            "all" => tiers = TIERS.to_vec(),
            "none" => {}
            _ => match TIERS.iter().find(|t| t.name() == word) {
                Some(tier) if tiers.contains(tier) => {}
                Some(tier) => tiers.push(*tier),
                None => {
                    return Err(format!(
                        "{VAR}: unknown tier {word:?}; expected some of postgres, rabbitmq, cluster, deploy, or all, or none"
                    ))
                }
            },
        }
    }
    Ok(tiers)
}

fn enabled_tiers() -> &'static [Tier] {
    static TIERS_ON: OnceLock<Result<Vec<Tier>, String>> = OnceLock::new();
    match TIERS_ON.get_or_init(|| parse(std::env::var(VAR).ok().as_deref())) {
        Ok(tiers) => tiers,
        Err(e) => panic!("{e}"),
    }
}

pub fn enabled(tier: Tier) -> bool {
    enabled_tiers().contains(&tier)
}

/// Whether a test of `tier` runs: if the tier is enabled, once its services
/// answer (else this panics, naming them); if not, after saying the test
/// is skipped.
pub fn runs(tier: Tier) -> bool {
    if !enabled(tier) {
        let thread = std::thread::current();
        eprintln!(
            "skipped: {} needs {} ({HOW})",
            thread.name().unwrap_or("this test"),
            tier.needs()
        );
        announce();
        return false;
    }
    for service in tier.services() {
        service.require(tier);
    }
    true
}

/// Panics unless one of `tiers` is enabled: a test reached for `what`
/// without `needs!`.
pub fn assert_enabled(tiers: &[Tier], what: &str) {
    assert!(
        tiers.iter().any(|t| enabled(*t)),
        "a test reached for {what} with none of the tiers {:?} enabled: it lacks needs!(…)",
        tiers.iter().map(|t| t.name()).collect::<Vec<_>>()
    );
}

/// Tests per tier, from every `needs!` in the binary.
pub fn census() -> Vec<(Tier, usize)> {
    TIERS
        .iter()
        .map(|tier| {
            let n = inventory::iter::<Gated>
                .into_iter()
                .filter(|g| g.tier == *tier)
                .count();
            (*tier, n)
        })
        .collect()
}

/// The census as one line: how many tests the enabled tiers leave out.
pub fn summary() -> String {
    let census = census();
    let total: usize = census.iter().map(|(_, n)| n).sum();
    let skipped: Vec<String> = census
        .iter()
        .filter(|(tier, n)| *n > 0 && !enabled(*tier))
        .map(|(tier, n)| format!("{} {n}", tier.name()))
        .collect();
    let n_skipped: usize = census
        .iter()
        .filter(|(tier, _)| !enabled(*tier))
        .map(|(_, n)| n)
        .sum();
    let list = skipped.join(", ");
    if n_skipped == 0 {
        format!("services: {VAR} enables every tier: all {total} tests that need services run")
    } else if n_skipped == total {
        format!(
            "services: {total} tests need services that {VAR} does not enable: they pass without running ({list}); {HOW} (docs/testing.md)"
        )
    } else {
        format!(
            "services: {n_skipped} of the {total} tests that need services need tiers {VAR} does not enable: they pass without running ({list}); {HOW} (docs/testing.md)"
        )
    }
}

/// Prints [`summary`] once per process, past the test harness's capture
/// (straight to stderr), so that a plain `cargo test` shows it.
pub fn announce() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = writeln!(std::io::stderr(), "{}", summary());
    });
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Service {
    Postgres,
    Rabbitmq,
}

impl Service {
    fn name(self) -> &'static str {
        match self {
            Service::Postgres => "PostgreSQL",
            Service::Rabbitmq => "RabbitMQ",
        }
    }

    fn url(self) -> (&'static str, String) {
        match self {
            Service::Postgres => (DATABASE_VAR, database_url()),
            Service::Rabbitmq => (AMQP_VAR, amqp_url()),
        }
    }

    fn how_to_start(self) -> &'static str {
        match self {
            Service::Postgres => "pg_ctlcluster <version> main start",
            Service::Rabbitmq => "rabbitmq-server -detached",
        }
    }

    /// Panics unless the service accepts a connection (looked at once per
    /// process).
    fn require(self, tier: Tier) {
        static POSTGRES: OnceLock<Result<(), String>> = OnceLock::new();
        static RABBITMQ: OnceLock<Result<(), String>> = OnceLock::new();
        let cell = match self {
            Service::Postgres => &POSTGRES,
            Service::Rabbitmq => &RABBITMQ,
        };
        let (var, url) = self.url();
        let at = host_port(&url);
        if let Err(e) = cell.get_or_init(|| reach(&at)) {
            panic!(
                "{} is not reachable at {at} ({var}): {e}. {VAR} enables the tier {}, which needs it, so this test fails rather than skip. \
                 Start it (scripts/test starts PostgreSQL and RabbitMQ, installing them if missing; by hand: {}) \
                 or leave {} out of {VAR}.",
                self.name(),
                tier.name(),
                self.how_to_start(),
                tier.name(),
            );
        }
    }
}

fn reach(host_port: &str) -> Result<(), String> {
    use std::net::ToSocketAddrs;
    let addrs = host_port
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve it: {e}"))?;
    let mut last = "no address".to_owned();
    for addr in addrs {
        match std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(3)) {
            Ok(_) => return Ok(()),
            Err(e) => last = e.to_string(),
        }
    }
    Err(last)
}

/// The PostgreSQL server the tests use: a URL of a database on it that the
/// tests' user may create databases from.
pub fn database_url() -> String {
    std::env::var(DATABASE_VAR)
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// The RabbitMQ broker the tests use (its vhost part is ignored).
pub fn amqp_url() -> String {
    std::env::var(AMQP_VAR).unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672".to_owned())
}

/// `url` with its path (a database, a vhost) replaced by `path`; the query
/// stays.
pub fn with_path(url: &str, path: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("a URL with a scheme");
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let query = rest[end..].find('?').map_or("", |i| &rest[end + i..]);
    format!("{scheme}://{}/{path}{query}", &rest[..end])
}

/// `user:password` of `url`, if it has them.
pub fn user_info(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let authority = &rest[..rest.find(['/', '?']).unwrap_or(rest.len())];
    authority.rsplit_once('@').map(|(user, _)| user)
}

/// The user of `url`.
pub fn user(url: &str) -> Option<&str> {
    user_info(url).map(|u| u.split_once(':').map_or(u, |(name, _)| name))
}

/// `host:port` of `url`, with the scheme's default port.
pub fn host_port(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("a URL with a scheme");
    let authority = &rest[..rest.find(['/', '?']).unwrap_or(rest.len())];
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if host
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        return host.to_owned();
    }
    let port = match scheme {
        "postgres" | "postgresql" => 5432,
        "amqps" => 5671,
        _ => 5672,
    };
    format!("{host}:{port}")
}

mod tests {
    use super::*;

    #[test]
    fn the_variable_names_tiers_all_or_none() {
        assert_eq!(parse(None), Ok(vec![]));
        assert_eq!(parse(Some("")), Ok(vec![]));
        assert_eq!(parse(Some("none")), Ok(vec![]));
        assert_eq!(parse(Some("all")), Ok(TIERS.to_vec()));
        assert_eq!(
            parse(Some("postgres, cluster")),
            Ok(vec![Tier::Postgres, Tier::Cluster])
        );
        assert_eq!(
            parse(Some("rabbitmq deploy")),
            Ok(vec![Tier::Rabbitmq, Tier::Deploy])
        );
        let typo = parse(Some("postgress")).unwrap_err();
        assert!(typo.contains("unknown tier \"postgress\""), "{typo}");
    }

    #[test]
    fn service_urls_give_their_address_user_and_paths() {
        let pg = "postgres://postgres@127.0.0.1:5432/postgres";
        assert_eq!(host_port(pg), "127.0.0.1:5432");
        assert_eq!(
            with_path(pg, "cardio_test_1"),
            "postgres://postgres@127.0.0.1:5432/cardio_test_1"
        );
        assert_eq!(host_port("postgres://db.local/x"), "db.local:5432");
        let amqp = "amqp://guest:guest@127.0.0.1:5672";
        assert_eq!(host_port(amqp), "127.0.0.1:5672");
        assert_eq!(
            with_path(amqp, "v1"),
            "amqp://guest:guest@127.0.0.1:5672/v1"
        );
        assert_eq!(
            with_path("amqp://u:p@h:1/old?heartbeat=1", "new"),
            "amqp://u:p@h:1/new?heartbeat=1"
        );
        assert_eq!(user_info(amqp), Some("guest:guest"));
        assert_eq!(user(amqp), Some("guest"));
        assert_eq!(user("amqp://h:1"), None);
    }
}
