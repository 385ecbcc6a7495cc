//! The node's configuration: one typed [`Config`], read from an optional TOML
//! file and then from `CARDIO_*` environment variables (which win), validated
//! at start with a message that names the offending setting.
//!
//! The environment is read through [`Env`], so tests never touch the process
//! environment. Secrets (passwords inside URLs) never print.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use crate::redact::{Secret, SecretUrl};

/// A source of environment variables.
pub trait Env {
    fn get(&self, key: &str) -> Option<String>;
}

/// The process environment.
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn get(&self, key: &str) -> Option<String> {
        std::env::var(key).ok()
    }
}

impl Env for BTreeMap<String, String> {
    fn get(&self, key: &str) -> Option<String> {
        BTreeMap::get(self, key).cloned()
    }
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Pretty,
    /// One JSON object per line (for ELK and friends).
    Json,
}

/// Everything a node needs to start.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// This node's name in the cluster and in logs.
    pub node_id: String,
    /// Where the HTTP API listens.
    pub http_addr: SocketAddr,
    /// The `host:port` other nodes reach this node's HTTP API at (they
    /// forward ops views to it); `None`: the bound address (fine on one
    /// host; in Kubernetes set it to the pod IP: `$(POD_IP):8080`).
    pub advertise_addr: Option<String>,
    /// `memory://` (embedded) or `amqp://...` (cluster).
    pub bus_url: SecretUrl,
    /// `sqlite://data/cardio.db` (embedded, created on first run) or
    /// `postgres://...` (production).
    pub database_url: SecretUrl,
    pub log_format: LogFormat,
    /// A tracing filter (`info`, `cardio=debug,info`).
    pub log_filter: String,
    /// Longest time a SIGTERM/SIGINT drain may take before the process exits anyway.
    pub shutdown_grace: Duration,
    /// Arbiter threads actors run on; 0 means one per core.
    pub arbiters: usize,
    /// Deadline of a message sent without one.
    pub request_timeout: Duration,
    /// Entity actors idle this long are passivated.
    pub idle_timeout: Duration,
    /// A waiting consult whose patient is absent this long is a no-show.
    pub no_show_after: Duration,
    /// A patient's apps are logged off after this long without activity.
    pub session_logoff: Duration,
    /// Raw device samples are kept this long (aggregates and alerts longer).
    pub sample_retention: Duration,
    /// The alarm engine's thresholds, windows and priorities (a patient's
    /// own, set by a clinician, replace them for that patient).
    pub alarms: crate::actors::device::alarms::AlarmSettings,
    /// ECG rhythm analysis: asystole and pause times.
    pub rhythm: crate::actors::device::ecg::RhythmSettings,
    /// Shard queues actor messages are spread over.
    pub shards: u16,
    /// Deliveries after which a failing message is dead-lettered.
    pub delivery_limit: u32,
    /// Unsettled deliveries per shard consumer.
    pub prefetch: u16,
    /// How often a node renews its cluster lease and re-reads the membership.
    pub heartbeat: Duration,
    /// How long a lease lasts: a node silent this long is dead to the others.
    pub lease: Duration,
    /// Key of HS256 bearer tokens (`CARDIO_JWT_SECRET`, at least 32 bytes).
    pub jwt_secret: Option<Secret>,
    /// PEM file of the RSA public key of RS256 bearer tokens, instead.
    pub jwt_public_key: Option<PathBuf>,
    /// PEM file of the RSA private key, to mint RS256 tokens (`cardio token`).
    pub jwt_private_key: Option<PathBuf>,
    /// JWKS file of RS256 public keys (an identity provider's), by `kid`.
    pub jwt_jwks: Option<PathBuf>,
    /// Development mode: GraphiQL at `/graphiql`.
    pub dev: bool,
    /// GraphQL requests per second each principal may make (bursts of twice
    /// as many); beyond, `RATE_LIMITED`.
    pub rate_limit: u32,
    /// OTLP/HTTP collector (or Jaeger) base URL traces are exported to,
    /// e.g. `http://otel-collector:4318` (`/v1/traces` is appended);
    /// `None`: no export.
    pub otlp_endpoint: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            node_id: "cardio-1".into(),
            http_addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            advertise_addr: None,
            bus_url: SecretUrl::new("memory://"),
            database_url: SecretUrl::new("sqlite://data/cardio.db"),
            log_format: LogFormat::Pretty,
            log_filter: "info".into(),
            shutdown_grace: Duration::from_secs(20),
            arbiters: 0,
            request_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(600),
            no_show_after: Duration::from_secs(900),
            session_logoff: Duration::from_secs(900),
            sample_retention: Duration::from_secs(30 * 24 * 3600),
            alarms: crate::actors::device::alarms::AlarmSettings::default(),
            rhythm: crate::actors::device::ecg::RhythmSettings::default(),
            shards: 64,
            delivery_limit: 5,
            prefetch: 32,
            heartbeat: Duration::from_millis(500),
            lease: Duration::from_secs(3),
            jwt_secret: None,
            jwt_public_key: None,
            jwt_private_key: None,
            jwt_jwks: None,
            dev: false,
            rate_limit: 200,
            otlp_endpoint: None,
        }
    }
}

/// A setting that could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("config file {path}: unknown setting {key:?} (known: {known})")]
    UnknownKey {
        path: PathBuf,
        key: String,
        known: String,
    },
    #[error("{source_name}: {message}")]
    Invalid {
        /// `CARDIO_HTTP_ADDR` or `http_addr in cardio.toml`.
        source_name: String,
        message: String,
    },
}

const KEYS: &[&str] = &[
    "node_id",
    "http_addr",
    "advertise_addr",
    "bus_url",
    "database_url",
    "log_format",
    "log_filter",
    "shutdown_grace",
    "arbiters",
    "request_timeout",
    "idle_timeout",
    "no_show_after",
    "session_logoff",
    "sample_retention",
    "alert_tachycardia_bpm",
    "alert_bradycardia_bpm",
    "alert_low_spo2_percent",
    "alert_crisis_systolic",
    "alert_crisis_diastolic",
    "alert_sustain",
    "alert_max_gap",
    "alert_no_data",
    "alert_reannounce",
    "alert_escalate",
    "alert_max_pause",
    "alert_af_sustain",
    "ecg_asystole",
    "ecg_pause",
    "shards",
    "delivery_limit",
    "prefetch",
    "heartbeat",
    "lease",
    "jwt_secret",
    "jwt_public_key",
    "jwt_private_key",
    "jwt_jwks",
    "dev",
    "rate_limit",
    "otlp_endpoint",
];

/// The variable that sets `key`.
pub fn env_name(key: &str) -> String {
    format!("CARDIO_{}", key.to_ascii_uppercase())
}

impl Config {
    /// Defaults, then `file` (or `CARDIO_CONFIG`), then `CARDIO_*` variables.
    pub fn load(file: Option<&Path>, env: &dyn Env) -> Result<Config, ConfigError> {
        let mut values: BTreeMap<&'static str, (String, String)> = BTreeMap::new();
        let file = file
            .map(Path::to_path_buf)
            .or_else(|| env.get("CARDIO_CONFIG").map(PathBuf::from));
        if let Some(path) = &file {
            let text = std::fs::read_to_string(path).map_err(|e| ConfigError::File {
                path: path.clone(),
                reason: e.to_string(),
            })?;
            let table: toml::Table =
                text.parse()
                    .map_err(|e: toml::de::Error| ConfigError::File {
                        path: path.clone(),
                        reason: e.message().to_owned(),
                    })?;
            for (key, value) in table {
                let Some(known) = KEYS.iter().find(|k| **k == key) else {
                    return Err(ConfigError::UnknownKey {
                        path: path.clone(),
                        key,
                        known: KEYS.join(", "),
                    });
                };
                let text = match value {
                    toml::Value::String(s) => s,
                    toml::Value::Integer(n) => n.to_string(),
                    toml::Value::Float(f) => f.to_string(),
                    toml::Value::Boolean(b) => b.to_string(),
                    _ => {
                        return Err(ConfigError::Invalid {
                            source_name: format!("{known} in {}", path.display()),
                            message: "must be a string or a number".into(),
                        })
                    }
                };
                values.insert(known, (text, format!("{known} in {}", path.display())));
            }
        }
        for key in KEYS {
            let name = env_name(key);
            if let Some(v) = env.get(&name) {
                values.insert(key, (v, name));
            }
        }
        let mut c = Config::default();
        for (key, (raw, source)) in values {
            let raw = raw.trim();
            let bad = |message: String| ConfigError::Invalid {
                source_name: source.clone(),
                message,
            };
            match key {
                "node_id" => {
                    if !crate::registry::id::valid_id(raw) {
                        return Err(bad(format!("{raw:?} is not a valid node id (letters, digits, '-', '_', '.', ':'; at most 128)")));
                    }
                    c.node_id = raw.to_owned();
                }
                "http_addr" => {
                    c.http_addr = raw.parse().map_err(|_| {
                        bad(format!(
                            "{raw:?} is not a socket address like 127.0.0.1:8080"
                        ))
                    })?
                }
                "bus_url" => {
                    let url = SecretUrl::new(raw);
                    if !matches!(url.scheme(), "memory" | "amqp" | "amqps") {
                        return Err(bad(format!("{url} must start with memory:// or amqp://")));
                    }
                    c.bus_url = url;
                }
                "database_url" => {
                    let url = SecretUrl::new(raw);
                    if !matches!(url.scheme(), "sqlite" | "postgres" | "postgresql") {
                        return Err(bad(format!(
                            "{url} must start with sqlite:// or postgres://"
                        )));
                    }
                    c.database_url = url;
                }
                "log_format" => {
                    c.log_format = match raw {
                        "pretty" | "text" => LogFormat::Pretty,
                        "json" => LogFormat::Json,
                        other => return Err(bad(format!("{other:?} is not pretty or json"))),
                    }
                }
                "log_filter" => {
                    tracing_subscriber::EnvFilter::try_new(raw)
                        .map_err(|e| bad(format!("invalid log filter: {e}")))?;
                    c.log_filter = raw.to_owned();
                }
                "shutdown_grace" => c.shutdown_grace = duration(raw).map_err(bad)?,
                "request_timeout" => {
                    c.request_timeout = positive(duration(raw).map_err(bad)?).map_err(bad)?
                }
                "idle_timeout" => {
                    c.idle_timeout = positive(duration(raw).map_err(bad)?).map_err(bad)?
                }
                "no_show_after" => {
                    c.no_show_after = positive(duration(raw).map_err(bad)?).map_err(bad)?
                }
                "session_logoff" => {
                    c.session_logoff = positive(duration(raw).map_err(bad)?).map_err(bad)?
                }
                // A raise limit moves its resolve limit along (the
                // hysteresis keeps its width).
                "alert_tachycardia_bpm" => shift(
                    &mut c.alarms.tachycardia,
                    real(raw, 60.0, 250.0).map_err(bad)?,
                ),
                "alert_bradycardia_bpm" => shift(
                    &mut c.alarms.bradycardia,
                    real(raw, 20.0, 80.0).map_err(bad)?,
                ),
                "alert_low_spo2_percent" => {
                    shift(&mut c.alarms.low_spo2, real(raw, 70.0, 99.0).map_err(bad)?)
                }
                "alert_crisis_systolic" => {
                    let crisis = &mut c.alarms.hypertensive_crisis;
                    let v = real(raw, 120.0, 300.0).map_err(bad)?;
                    crisis.systolic_resolve += v - crisis.systolic_raise;
                    crisis.systolic_raise = v;
                }
                "alert_crisis_diastolic" => {
                    let crisis = &mut c.alarms.hypertensive_crisis;
                    let v = real(raw, 70.0, 200.0).map_err(bad)?;
                    crisis.diastolic_resolve += v - crisis.diastolic_raise;
                    crisis.diastolic_raise = v;
                }
                "alert_sustain" => {
                    let ms = millis(raw).map_err(bad)?;
                    for rule in [
                        &mut c.alarms.tachycardia,
                        &mut c.alarms.bradycardia,
                        &mut c.alarms.low_spo2,
                    ] {
                        rule.sustain_ms = ms;
                    }
                }
                "alert_max_gap" => c.alarms.max_gap_ms = millis(raw).map_err(bad)?,
                "alert_no_data" => c.alarms.no_data_ms = millis(raw).map_err(bad)?,
                "alert_reannounce" => c.alarms.reannounce_ms = millis(raw).map_err(bad)?,
                "alert_escalate" => c.alarms.escalate_ms = millis(raw).map_err(bad)?,
                "alert_max_pause" => c.alarms.max_pause_ms = millis(raw).map_err(bad)?,
                "alert_af_sustain" => {
                    c.alarms.atrial_fibrillation.sustain_ms = millis(raw).map_err(bad)?
                }
                "ecg_asystole" => c.rhythm.asystole_ms = millis(raw).map_err(bad)?,
                "ecg_pause" => c.rhythm.pause_ms = millis(raw).map_err(bad)?,
                "sample_retention" => {
                    let d = duration(raw).map_err(bad)?;
                    if d < Duration::from_secs(2 * 3600) {
                        // Shorter would cut into the hour buckets still being filled.
                        return Err(bad(format!("{raw:?} is shorter than 2h")));
                    }
                    c.sample_retention = d;
                }
                "arbiters" => c.arbiters = number(raw, 0, 1024).map_err(bad)? as usize,
                "shards" => c.shards = number(raw, 1, 4096).map_err(bad)? as u16,
                "delivery_limit" => c.delivery_limit = number(raw, 1, 1000).map_err(bad)? as u32,
                "prefetch" => c.prefetch = number(raw, 1, 10_000).map_err(bad)? as u16,
                "heartbeat" => c.heartbeat = duration(raw).map_err(bad)?,
                "lease" => c.lease = duration(raw).map_err(bad)?,
                "jwt_secret" => {
                    if raw.len() < 32 {
                        return Err(bad("must be at least 32 bytes (a random key)".into()));
                    }
                    c.jwt_secret = Some(Secret::new(raw));
                }
                "jwt_public_key" => c.jwt_public_key = Some(PathBuf::from(raw)),
                "jwt_private_key" => c.jwt_private_key = Some(PathBuf::from(raw)),
                "jwt_jwks" => c.jwt_jwks = Some(PathBuf::from(raw)),
                "advertise_addr" => {
                    let port_ok = raw.rsplit_once(':').is_some_and(|(host, port)| {
                        !host.is_empty() && port.parse::<u16>().is_ok()
                    });
                    if !port_ok || raw.contains('/') {
                        return Err(bad("expected host:port (no scheme)".into()));
                    }
                    c.advertise_addr = Some(raw.to_owned())
                }
                "otlp_endpoint" => {
                    // No TLS stack is built in for the exporter: a collector
                    // next to the node (sidecar, DaemonSet) over plain HTTP.
                    if !raw.starts_with("http://") {
                        return Err(bad(
                            "expected an http:// URL (OTLP over HTTP; TLS is not built in)".into(),
                        ));
                    }
                    c.otlp_endpoint = Some(raw.to_owned())
                }
                "rate_limit" => c.rate_limit = number(raw, 1, 1_000_000).map_err(bad)? as u32,
                "dev" => {
                    c.dev = match raw {
                        "true" | "1" | "yes" => true,
                        "false" | "0" | "no" => false,
                        _ => return Err(bad("expected true or false".into())),
                    }
                }
                _ => unreachable!("keys come from KEYS"),
            }
        }
        if let Err(message) = c.alarms.validate() {
            return Err(ConfigError::Invalid {
                source_name: "alert settings".into(),
                message,
            });
        }
        if !(2_000..=10_000).contains(&c.rhythm.asystole_ms)
            || !(1_500..=c.rhythm.asystole_ms).contains(&c.rhythm.pause_ms)
        {
            return Err(ConfigError::Invalid {
                source_name: env_name("ecg_asystole"),
                message: "asystole 2s–10s, and a pause from 1.5s up to the asystole time".into(),
            });
        }
        if c.idle_timeout.as_millis() as u64 <= c.alarms.no_data_ms {
            // A stream passivates once its device has been silent this long:
            // it must have told of the silence by then.
            return Err(ConfigError::Invalid {
                source_name: env_name("idle_timeout"),
                message: "must be longer than the no-data alarm time (CARDIO_ALERT_NO_DATA)".into(),
            });
        }
        if !(1_000..=3_600_000).contains(&c.alarms.tachycardia.sustain_ms) {
            return Err(ConfigError::Invalid {
                source_name: env_name("alert_sustain"),
                message: "from 1s to 1h".into(),
            });
        }
        if c.lease < c.heartbeat * 3 {
            return Err(ConfigError::Invalid {
                source_name: env_name("lease"),
                message: format!(
                    "{:?} must be at least three heartbeats ({:?}) so one late heartbeat does not look like a dead node",
                    c.lease, c.heartbeat
                ),
            });
        }
        Ok(c)
    }

    /// Arbiter threads to start.
    pub fn arbiter_count(&self) -> usize {
        if self.arbiters > 0 {
            self.arbiters
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        }
    }
}

fn duration(raw: &str) -> Result<Duration, String> {
    humantime::parse_duration(raw)
        .map_err(|e| format!("{raw:?} is not a duration like 30s or 15m ({e})"))
}

/// A duration in whole milliseconds.
fn millis(raw: &str) -> Result<u64, String> {
    Ok(duration(raw)?.as_millis() as u64)
}

/// Moves a level rule's raise limit to `to`, its resolve limit along with it.
fn shift(rule: &mut crate::actors::device::alarms::LevelRule, to: f64) {
    rule.resolve += to - rule.raise;
    rule.raise = to;
}

fn positive(d: Duration) -> Result<Duration, String> {
    if d.is_zero() {
        Err("must be longer than zero".into())
    } else {
        Ok(d)
    }
}

fn real(raw: &str, min: f64, max: f64) -> Result<f64, String> {
    match raw.parse::<f64>() {
        Ok(v) if (min..=max).contains(&v) => Ok(v),
        _ => Err(format!("{raw:?} is not a number from {min} to {max}")),
    }
}

fn number(raw: &str, min: u64, max: u64) -> Result<u64, String> {
    match raw.parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(format!("{raw:?} is not a whole number from {min} to {max}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_run_a_single_embedded_node() {
        let c = Config::load(None, &env(&[])).unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.http_addr.to_string(), "127.0.0.1:8080");
        assert_eq!(c.bus_url.expose(), "memory://");
        assert_eq!(c.database_url.expose(), "sqlite://data/cardio.db");
    }

    #[test]
    fn environment_overrides_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cardio.toml");
        std::fs::write(
            &path,
            "node_id = \"from-file\"\nshards = 16\nshutdown_grace = \"3s\"\n",
        )
        .unwrap();
        let c = Config::load(
            Some(&path),
            &env(&[
                ("CARDIO_NODE_ID", "from-env"),
                ("CARDIO_HTTP_ADDR", "127.0.0.1:0"),
            ]),
        )
        .unwrap();
        assert_eq!(c.node_id, "from-env");
        assert_eq!(c.shards, 16);
        assert_eq!(c.shutdown_grace, Duration::from_secs(3));
        assert_eq!(c.http_addr.port(), 0);
    }

    #[test]
    fn ops_settings_are_checked() {
        let c = Config::load(
            None,
            &env(&[
                ("CARDIO_ADVERTISE_ADDR", "10.0.0.7:8080"),
                ("CARDIO_OTLP_ENDPOINT", "http://otel-collector:4318"),
            ]),
        )
        .unwrap();
        assert_eq!(c.advertise_addr.as_deref(), Some("10.0.0.7:8080"));
        assert_eq!(
            c.otlp_endpoint.as_deref(),
            Some("http://otel-collector:4318")
        );
        for (key, value) in [
            ("CARDIO_ADVERTISE_ADDR", "http://10.0.0.7:8080"),
            ("CARDIO_ADVERTISE_ADDR", "10.0.0.7"),
            ("CARDIO_OTLP_ENDPOINT", "otel-collector:4318"),
            ("CARDIO_OTLP_ENDPOINT", "https://otel-collector:4318"),
        ] {
            let err = Config::load(None, &env(&[(key, value)])).unwrap_err();
            assert!(err.to_string().contains(key), "{err}");
        }
    }

    #[test]
    fn the_config_file_can_be_named_by_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "prefetch = 7\n").unwrap();
        let c = Config::load(None, &env(&[("CARDIO_CONFIG", path.to_str().unwrap())])).unwrap();
        assert_eq!(c.prefetch, 7);
    }

    #[test]
    fn invalid_values_name_the_setting_and_why() {
        let err = Config::load(None, &env(&[("CARDIO_HTTP_ADDR", "localhost")])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "CARDIO_HTTP_ADDR: \"localhost\" is not a socket address like 127.0.0.1:8080"
        );
        let err = Config::load(None, &env(&[("CARDIO_BUS_URL", "kafka://x")])).unwrap_err();
        assert!(err.to_string().starts_with("CARDIO_BUS_URL:"), "{err}");
        let err = Config::load(None, &env(&[("CARDIO_SHARDS", "0")])).unwrap_err();
        assert!(err.to_string().contains("from 1 to 4096"), "{err}");
        let err = Config::load(None, &env(&[("CARDIO_SHUTDOWN_GRACE", "soon")])).unwrap_err();
        assert!(err.to_string().contains("not a duration"), "{err}");
        let err = Config::load(None, &env(&[("CARDIO_DATABASE_URL", "mysql://x")])).unwrap_err();
        assert!(err.to_string().starts_with("CARDIO_DATABASE_URL:"), "{err}");
        let err = Config::load(None, &env(&[("CARDIO_ALERT_TACHYCARDIA_BPM", "NaN")])).unwrap_err();
        assert!(err.to_string().contains("from 60 to 250"), "{err}");
        let c = Config::load(
            None,
            &env(&[
                ("CARDIO_ALERT_TACHYCARDIA_BPM", "110"),
                ("CARDIO_ALERT_SUSTAIN", "30s"),
            ]),
        )
        .unwrap();
        assert_eq!(
            (
                c.alarms.tachycardia.raise,
                c.alarms.tachycardia.resolve,
                c.alarms.tachycardia.sustain_ms,
                c.alarms.low_spo2.sustain_ms
            ),
            (110.0, 105.0, 30_000, 30_000)
        );
        let err = Config::load(None, &env(&[("CARDIO_ALERT_NO_DATA", "5s")])).unwrap_err();
        assert!(err.to_string().starts_with("alert settings:"), "{err}");
        let err = Config::load(None, &env(&[("CARDIO_ECG_ASYSTOLE", "30s")])).unwrap_err();
        assert!(err.to_string().starts_with("CARDIO_ECG_ASYSTOLE:"), "{err}");
        let err = Config::load(None, &env(&[("CARDIO_LOG_FORMAT", "xml")])).unwrap_err();
        assert!(err.to_string().contains("pretty or json"), "{err}");
    }

    #[test]
    fn unknown_file_settings_are_typos_and_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cardio.toml");
        std::fs::write(&path, "http_adr = \"127.0.0.1:1\"\n").unwrap();
        let err = Config::load(Some(&path), &env(&[])).unwrap_err();
        assert!(
            matches!(err, ConfigError::UnknownKey { ref key, .. } if key == "http_adr"),
            "{err}"
        );
    }

    #[test]
    fn passwords_in_urls_never_print() {
        let url = SecretUrl::new("amqp://guest:s3cret@127.0.0.1:5672/%2f");
        assert_eq!(url.to_string(), "amqp://guest:<redacted>@127.0.0.1:5672/%2f");
        assert!(!format!("{url:?}").contains("s3cret"));
        let c = Config::load(None, &env(&[("CARDIO_BUS_URL", "amqp://u:s3cret@h/")])).unwrap();
        assert!(!format!("{c:?}").contains("s3cret"));
        assert_eq!(c.bus_url.expose(), "amqp://u:s3cret@h/");
    }
}
