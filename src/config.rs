//! The node's configuration: one typed [`Config`], in layers: its defaults,
//! then an optional TOML file (`--config FILE`, or `CARDIO_CONFIG`), then
//! `CARDIO_*` environment variables, which win. [`Config::validate`] checks
//! it once, at start.
//!
//! Each setting is a field of [`Config`] (its default in `Default`, its
//! range in `validate`): its key in the file is the field's name and its
//! variable is `CARDIO_` and the name in capitals (`http_addr`,
//! `CARDIO_HTTP_ADDR`). No list or match repeats the names: serde reads the fields (an unknown key in the file is a typo and is
//! refused), and the variables looked for are the fields' names
//! ([`setting_names`]), so other `CARDIO_*` variables (`CARDIO_URL`,
//! `CARDIO_TOKEN`, of other commands) are left alone.
//!
//! figment layers the sources and remembers which one gave each value, so an
//! error names the setting and where its value came from: the variable, or
//! the key and the file's path. The two sources are providers of this module
//! rather than figment's own `Env` and `Toml`: the environment is read through
//! [`Env`], so tests never touch the process environment, and a TOML syntax
//! error is reported without the line it quotes (which may hold a secret).
//!
//! Secrets ([`Secret`], [`SecretUrl`]) never print, in `Debug`, in errors or
//! in `cardio config`, which prints [`Config::to_toml`]: a file that loads
//! back, with `<redacted>` in place of each secret, which a load refuses
//! rather than take for the password.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use serde::de::{Error as _, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use crate::domain::alarm::{AlarmSettings, LevelRule};
use crate::domain::rhythm::RhythmSettings;
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[serde(alias = "text")]
    Pretty,
    /// One JSON object per line (for ELK and friends).
    Json,
}

/// Everything a node needs to start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// This node's name in the cluster and in logs.
    pub node_id: String,
    /// Where the HTTP API listens.
    #[serde(deserialize_with = "socket_addr")]
    pub http_addr: SocketAddr,
    /// The `host:port` other nodes reach this node's HTTP API at (they
    /// forward ops views to it); `None`: the bound address (fine on one
    /// host; in Kubernetes set it to the pod IP: `$(POD_IP):8080`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub advertise_addr: Option<String>,
    /// `memory://` (embedded) or `amqp://...` (cluster).
    pub bus_url: SecretUrl,
    /// `sqlite://data/cardio.db` (embedded, created on first run) or
    /// `postgres://...` (production). TLS to PostgreSQL is set in the URL,
    /// with libpq's parameters: `sslmode=verify-full&sslrootcert=ca.pem`
    /// (and `sslcert=`/`sslkey=` for a client certificate); checked at start.
    pub database_url: SecretUrl,
    // TLS (issue 13, item 1). Files are PEM; each is read and checked at
    // start, and a setting that asks for TLS that cannot be honoured is
    // refused (exit code 2), never downgraded.
    /// The certificate chain the HTTP API (and WebSocket) serves HTTPS with,
    /// with `tls_key_file`; `None`: plain HTTP. Re-read on SIGHUP.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert_file: Option<PathBuf>,
    /// The private key of `tls_cert_file`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key_file: Option<PathBuf>,
    /// The CA bundle other nodes' certificates are verified with when this
    /// node (serving HTTPS) forwards a request to them; `None`: the public
    /// roots. A peer's certificate must name its `advertise_addr` host.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_peer_ca_file: Option<PathBuf>,
    /// With `amqps://`: the CA bundle the broker's certificate is verified
    /// against; `None`: the public roots.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bus_ca_file: Option<PathBuf>,
    /// With `amqps://`: a client certificate for the broker (with
    /// `bus_client_key_file`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bus_client_cert_file: Option<PathBuf>,
    /// The private key of `bus_client_cert_file`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bus_client_key_file: Option<PathBuf>,
    /// With an `https://` `otlp_endpoint`: the CA bundle the collector's
    /// certificate is verified against; `None`: the public roots.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub otlp_ca_file: Option<PathBuf>,
    pub log_format: LogFormat,
    /// A tracing filter (`info`, `cardio=debug,info`).
    pub log_filter: String,
    /// Longest time a SIGTERM/SIGINT drain may take before the process exits anyway.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// Arbiter threads actors run on; 0 means one per core.
    pub arbiters: usize,
    /// Deadline of a message sent without one.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Entity actors idle this long are passivated.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// A waiting consult whose patient is absent this long is a no-show.
    #[serde(with = "humantime_serde")]
    pub no_show_after: Duration,
    /// A patient's apps are logged off after this long without activity.
    #[serde(with = "humantime_serde")]
    pub session_logoff: Duration,
    // Access lifecycle (issue 13, items 4 and 5: logoff, break-glass, OIDC).
    // `session_logoff` above is the patient's inactivity logoff; these are
    // the other roles'. Every logoff ends the subject's session in the
    // database: its tokens stop working.
    /// A clinician is logged off after this long without activity.
    #[serde(with = "humantime_serde")]
    pub logoff_clinician: Duration,
    /// An ops user is logged off after this long without activity.
    #[serde(with = "humantime_serde")]
    pub logoff_ops: Duration,
    /// An admin is logged off after this long without activity.
    #[serde(with = "humantime_serde")]
    pub logoff_admin: Duration,
    /// How long a break-glass grant (emergency access) lasts.
    #[serde(with = "humantime_serde")]
    pub break_glass_duration: Duration,
    /// Authentication failures are audited as one summary row per source
    /// and reason per this period.
    #[serde(with = "humantime_serde")]
    pub audit_auth_failures_every: Duration,
    /// An identity provider's JWKS endpoint (OIDC); takes precedence over
    /// the other key settings. With it, clinicians and admins need MFA:
    /// `oidc_mfa_acr`/`oidc_mfa_amr`, or by default `amr` holding `mfa`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oidc_jwks_url: Option<String>,
    /// The `iss` tokens must carry (default `cardio`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oidc_issuer: Option<String>,
    /// The `aud` tokens must carry (default `cardio`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oidc_audience: Option<String>,
    /// The claim naming the role (`a.b` reaches into objects; a string or
    /// an array of strings).
    pub oidc_role_claim: String,
    /// `value=role,…`: the role claim's values and the roles they mean;
    /// unset: the values are the roles' names.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oidc_role_map: Option<String>,
    /// `acr` values (comma-separated) that count as multi-factor; a
    /// clinician's or admin's token needs one of these or of `oidc_mfa_amr`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oidc_mfa_acr: Option<String>,
    /// `amr` values (comma-separated) any of which counts as multi-factor.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oidc_mfa_amr: Option<String>,
    /// Raw device samples are kept this long (aggregates and alerts longer).
    #[serde(with = "humantime_serde")]
    pub sample_retention: Duration,
    // Encryption at rest and the keyed audit trail (issue 13; src/crypto/,
    // src/config/at_rest.rs for the defaults derived from database_url).
    /// The key file (KEKs and the audit key, JSON, 0600). Unset on SQLite:
    /// `<database file>.key` beside it, created on first start. Required on
    /// PostgreSQL: every node must read the same file (a Kubernetes Secret).
    pub key_file: Option<PathBuf>,
    /// Where signed audit checkpoints are appended (outside the database).
    /// Unset on SQLite: `<database file>.checkpoints`; on PostgreSQL: none
    /// are written (truncation of the audit log is then not detected).
    pub audit_checkpoint_file: Option<PathBuf>,
    /// How often a node writes an audit checkpoint (and once at shutdown).
    #[serde(with = "humantime_serde")]
    pub audit_checkpoint_every: Duration,
    // The alarm engine's settings an operator may change; the rest of
    // [`AlarmSettings`] stays at its defaults. A patient's own limits, set
    // by a clinician, replace these for that patient. [`Config::alarms`]
    // builds the engine's settings from them.
    /// Heart rate above which tachycardia is raised (its resolve limit
    /// moves along, keeping the hysteresis' width).
    #[serde(deserialize_with = "real")]
    pub alert_tachycardia_bpm: f64,
    /// Heart rate below which bradycardia is raised (resolve limit along).
    #[serde(deserialize_with = "real")]
    pub alert_bradycardia_bpm: f64,
    /// SpO2 below which low SpO2 is raised (resolve limit along).
    #[serde(deserialize_with = "real")]
    pub alert_low_spo2_percent: f64,
    /// Systolic pressure at which a hypertensive crisis is raised.
    #[serde(deserialize_with = "real")]
    pub alert_crisis_systolic: f64,
    /// Diastolic pressure at which a hypertensive crisis is raised.
    #[serde(deserialize_with = "real")]
    pub alert_crisis_diastolic: f64,
    /// How long tachycardia, bradycardia and low SpO2 must hold.
    #[serde(with = "humantime_serde")]
    pub alert_sustain: Duration,
    /// The largest gap between readings that still covers a window.
    #[serde(with = "humantime_serde")]
    pub alert_max_gap: Duration,
    /// A streaming device silent this long raises a "no data" alarm.
    #[serde(with = "humantime_serde")]
    pub alert_no_data: Duration,
    /// An unacknowledged high alarm is announced again after this …
    #[serde(with = "humantime_serde")]
    pub alert_reannounce: Duration,
    /// … and escalated to the rest of the care team after this.
    #[serde(with = "humantime_serde")]
    pub alert_escalate: Duration,
    /// Longest pause of a patient's non-high alarms.
    #[serde(with = "humantime_serde")]
    pub alert_max_pause: Duration,
    /// How long atrial fibrillation must last before its alarm.
    #[serde(with = "humantime_serde")]
    pub alert_af_sustain: Duration,
    /// ECG rhythm analysis: no QRS this long (with good signal) is asystole.
    #[serde(with = "humantime_serde")]
    pub ecg_asystole: Duration,
    /// ECG rhythm analysis: an RR interval this long is a pause.
    #[serde(with = "humantime_serde")]
    pub ecg_pause: Duration,
    /// Shard queues actor messages are spread over.
    pub shards: u16,
    /// Deliveries after which a failing message is dead-lettered.
    pub delivery_limit: u32,
    /// Unsettled deliveries per shard consumer.
    pub prefetch: u16,
    /// How often a node renews its cluster lease and re-reads the membership.
    #[serde(with = "humantime_serde")]
    pub heartbeat: Duration,
    /// How long a lease lasts: a node silent this long is dead to the others.
    #[serde(with = "humantime_serde")]
    pub lease: Duration,
    /// Key of HS256 bearer tokens (`CARDIO_JWT_SECRET`, at least 32 bytes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwt_secret: Option<Secret>,
    /// PEM file of the RSA public key of RS256 bearer tokens, instead.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwt_public_key: Option<PathBuf>,
    /// PEM file of the RSA private key, to mint RS256 tokens (`cardio token`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwt_private_key: Option<PathBuf>,
    /// JWKS file of RS256 public keys (an identity provider's), by `kid`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwt_jwks: Option<PathBuf>,
    /// Development mode: GraphiQL at `/graphiql`.
    pub dev: bool,
    /// GraphQL requests per second each principal may make (bursts of twice
    /// as many); beyond, `RATE_LIMITED`.
    pub rate_limit: u32,
    /// OTLP/HTTP collector (or Jaeger) base URL traces are exported to,
    /// e.g. `http://otel-collector:4318` (`/v1/traces` is appended);
    /// `None`: no export. A secret: it may carry credentials (a user and
    /// password, an `api_key` parameter).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub otlp_endpoint: Option<SecretUrl>,
    // --- Limits (issue 13, part 6): docs/security.md, "Availability". ---
    /// How long a WebSocket may stay open without sending `connection_init`.
    #[serde(with = "humantime_serde")]
    pub ws_init_timeout: Duration,
    /// Largest WebSocket message in bytes, all its fragments together.
    pub ws_max_message: usize,
    /// Open WebSockets per client address (the peer: behind a proxy, the
    /// proxy's; set it to the proxy's share then).
    pub max_ws_per_ip: usize,
    /// Open WebSockets per principal.
    pub max_ws_per_principal: usize,
    /// `POST /graphql` requests in flight per client address.
    pub max_http_per_ip: usize,
    /// `POST /graphql` requests in flight per principal.
    pub max_http_per_principal: usize,
    /// How long a request may take to send its whole body (its head: 5 s,
    /// or this if shorter).
    #[serde(with = "humantime_serde")]
    pub body_read_timeout: Duration,
    /// Most errors in one GraphQL response (then one `TOO_MANY_ERRORS`).
    pub max_errors: usize,
}

impl Default for Config {
    fn default() -> Self {
        let alarms = AlarmSettings::default();
        let rhythm = RhythmSettings::default();
        let ms = Duration::from_millis;
        Self {
            node_id: "cardio-1".into(),
            http_addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            advertise_addr: None,
            bus_url: SecretUrl::new("memory://"),
            database_url: SecretUrl::new("sqlite://data/cardio.db"),
            tls_cert_file: None,
            tls_key_file: None,
            tls_peer_ca_file: None,
            bus_ca_file: None,
            bus_client_cert_file: None,
            bus_client_key_file: None,
            otlp_ca_file: None,
            log_format: LogFormat::Pretty,
            log_filter: "info".into(),
            shutdown_grace: Duration::from_secs(20),
            arbiters: 0,
            request_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(600),
            no_show_after: Duration::from_secs(900),
            session_logoff: Duration::from_secs(900),
            logoff_clinician: Duration::from_secs(900),
            logoff_ops: Duration::from_secs(900),
            logoff_admin: Duration::from_secs(900),
            break_glass_duration: Duration::from_secs(3600),
            audit_auth_failures_every: Duration::from_secs(60),
            oidc_jwks_url: None,
            oidc_issuer: None,
            oidc_audience: None,
            oidc_role_claim: "role".into(),
            oidc_role_map: None,
            oidc_mfa_acr: None,
            oidc_mfa_amr: None,
            sample_retention: Duration::from_secs(30 * 24 * 3600),
            key_file: None,
            audit_checkpoint_file: None,
            audit_checkpoint_every: Duration::from_secs(60),
            alert_tachycardia_bpm: alarms.tachycardia.raise,
            alert_bradycardia_bpm: alarms.bradycardia.raise,
            alert_low_spo2_percent: alarms.low_spo2.raise,
            alert_crisis_systolic: alarms.hypertensive_crisis.systolic_raise,
            alert_crisis_diastolic: alarms.hypertensive_crisis.diastolic_raise,
            alert_sustain: ms(alarms.tachycardia.sustain_ms),
            alert_max_gap: ms(alarms.max_gap_ms),
            alert_no_data: ms(alarms.no_data_ms),
            alert_reannounce: ms(alarms.reannounce_ms),
            alert_escalate: ms(alarms.escalate_ms),
            alert_max_pause: ms(alarms.max_pause_ms),
            alert_af_sustain: ms(alarms.atrial_fibrillation.sustain_ms),
            ecg_asystole: ms(rhythm.asystole_ms),
            ecg_pause: ms(rhythm.pause_ms),
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
            ws_init_timeout: Duration::from_secs(5),
            ws_max_message: 256 * 1024,
            max_ws_per_ip: 256,
            max_ws_per_principal: 16,
            max_http_per_ip: 64,
            max_http_per_principal: 16,
            body_read_timeout: Duration::from_secs(10),
            max_errors: 20,
        }
    }
}

/// A configuration that could not be used.
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
        /// `CARDIO_HTTP_ADDR`, `http_addr in cardio.toml`, or
        /// `lease (default)` when a default clashes with another setting.
        source_name: String,
        message: String,
    },
}

/// A setting [`Config::validate`] refused, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{setting}: {message}")]
pub struct InvalidSetting {
    /// The setting's name (a field of [`Config`]), or `alert settings` for
    /// a combination of alarm limits.
    pub setting: &'static str,
    pub message: String,
}

/// The variable that sets `key`.
pub fn env_name(key: &str) -> String {
    format!("CARDIO_{}", key.to_ascii_uppercase())
}

/// Every setting's name: the fields serde reads into a [`Config`], asked of
/// its derived `Deserialize` (which hands them to the deserializer), so that
/// no list repeats them.
pub fn setting_names() -> &'static [&'static str] {
    /// A deserializer that only notes the fields it is asked for.
    struct Probe<'a>(&'a mut &'static [&'static str]);

    impl<'de> Deserializer<'de> for Probe<'_> {
        type Error = serde::de::value::Error;

        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(Self::Error::custom("not a struct"))
        }

        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = fields;
            Err(Self::Error::custom("only the fields were wanted"))
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
            bytes byte_buf option unit unit_struct newtype_struct seq tuple
            tuple_struct map enum identifier ignored_any
        }
    }

    let mut fields: &'static [&'static str] = &[];
    let _ = Config::deserialize(Probe(&mut fields));
    fields
}

use layers::{refused, source_of, EnvSettings, FileSettings};

impl Config {
    /// Defaults, then `file` (or `CARDIO_CONFIG`), then `CARDIO_*` variables;
    /// then [`Config::validate`].
    pub fn load(file: Option<&Path>, env: &dyn Env) -> Result<Config, ConfigError> {
        let file = file
            .map(Path::to_path_buf)
            .or_else(|| env.get("CARDIO_CONFIG").map(PathBuf::from));
        let mut layers = Figment::new();
        if let Some(path) = &file {
            layers = layers.merge(FileSettings::read(path)?);
        }
        let layers = layers.merge(EnvSettings::read(env));
        // Lossy: a variable is text, and "16" or "true" is read as the
        // number or the flag its setting wants (a file may quote them too).
        let config: Config = layers
            .extract_lossy()
            .map_err(|e| refused(e, &layers, file.as_deref()))?;
        config.validate().map_err(|e| ConfigError::Invalid {
            source_name: source_of(&layers, e.setting),
            message: e.message,
        })?;
        Ok(config)
    }

    /// The alarm engine's settings: its defaults with this configuration's
    /// limits and times. A raise limit moves its resolve limit along, so the
    /// hysteresis keeps its width.
    pub fn alarms(&self) -> AlarmSettings {
        fn shift(rule: &mut LevelRule, to: f64) {
            rule.resolve += to - rule.raise;
            rule.raise = to;
        }
        let ms = |d: Duration| d.as_millis() as u64;
        let mut a = AlarmSettings::default();
        shift(&mut a.tachycardia, self.alert_tachycardia_bpm);
        shift(&mut a.bradycardia, self.alert_bradycardia_bpm);
        shift(&mut a.low_spo2, self.alert_low_spo2_percent);
        let crisis = &mut a.hypertensive_crisis;
        crisis.systolic_resolve += self.alert_crisis_systolic - crisis.systolic_raise;
        crisis.systolic_raise = self.alert_crisis_systolic;
        crisis.diastolic_resolve += self.alert_crisis_diastolic - crisis.diastolic_raise;
        crisis.diastolic_raise = self.alert_crisis_diastolic;
        for rule in [&mut a.tachycardia, &mut a.bradycardia, &mut a.low_spo2] {
            rule.sustain_ms = ms(self.alert_sustain);
        }
        a.max_gap_ms = ms(self.alert_max_gap);
        a.no_data_ms = ms(self.alert_no_data);
        a.reannounce_ms = ms(self.alert_reannounce);
        a.escalate_ms = ms(self.alert_escalate);
        a.max_pause_ms = ms(self.alert_max_pause);
        a.atrial_fibrillation.sustain_ms = ms(self.alert_af_sustain);
        a
    }

    /// ECG rhythm analysis: its defaults with this configuration's times.
    pub fn rhythm(&self) -> RhythmSettings {
        RhythmSettings {
            asystole_ms: self.ecg_asystole.as_millis() as u64,
            pause_ms: self.ecg_pause.as_millis() as u64,
            ..RhythmSettings::default()
        }
    }

    /// The configuration as a TOML file that loads back to it (what
    /// `cardio config` prints). Each secret shows as `<redacted>` (in a URL,
    /// only the password or the credential parameters); a file that feeds
    /// one back is refused, not used as the password.
    pub fn to_toml(&self) -> Result<String, toml::ser::Error> {
        let body = toml::to_string(self)?;
        // Settings with no value (TOML has no null) are named, so that the
        // printout lists every setting.
        let set = toml::Table::try_from(self)?;
        let unset: Vec<&str> = setting_names()
            .iter()
            .copied()
            .filter(|name| !set.contains_key(*name))
            .collect();
        let unset = if unset.is_empty() {
            String::new()
        } else {
            format!("# Not set: {}.\n", unset.join(", "))
        };
        Ok(format!(
            "# cardio's effective configuration: defaults, then the file, then CARDIO_* variables.\n\
             # Secrets show as <redacted>; loading this file with one left in is refused.\n\
             {body}{unset}"
        ))
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

/// A socket address, refused with an example.
fn socket_addr<'de, D: Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    let text = String::deserialize(d)?;
    text.trim().parse().map_err(|_| {
        D::Error::custom(format!(
            "{text:?} is not a socket address like 127.0.0.1:8080"
        ))
    })
}

/// A number, also from a variable's text. (figment reads text as a number
/// through `f32` when it is short: `92.3` would become 92.30000305.)
fn real<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Real {
        Number(f64),
        Text(String),
    }
    match Real::deserialize(d) {
        Ok(Real::Number(v)) => Ok(v),
        Ok(Real::Text(text)) => text
            .trim()
            .parse()
            .map_err(|_| D::Error::custom(format!("{text:?} is not a number"))),
        Err(_) => Err(D::Error::custom("expected a number")),
    }
}

pub mod access;
mod layers;

mod at_rest;
mod first_run;
#[cfg(test)]
mod tests;
mod validate;
