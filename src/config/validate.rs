//! [`Config::validate`]: every setting's range, the settings that depend on
//! each other (the alarm times and limits, the bus and database URLs, the
//! OIDC settings) and the TLS files, checked once at start; the error names
//! the setting to change.

use std::time::Duration;

use super::*;

impl Config {
    /// Checks every setting's range and the settings that depend on each
    /// other; the error names the setting to change.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        let refuse = |setting, message: String| Err(InvalidSetting { setting, message });
        let shown = |d: Duration| humantime::format_duration(d).to_string();
        if !crate::address::valid_id(&self.node_id) {
            let why = "letters, digits, '-', '_', '.', ':'; at most 128";
            return refuse(
                "node_id",
                format!("{:?} is not a valid node id ({why})", self.node_id),
            );
        }
        if let Some(addr) = &self.advertise_addr {
            let port_ok = addr
                .rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
            if !port_ok || addr.contains('/') {
                return refuse("advertise_addr", "expected host:port (no scheme)".into());
            }
        }
        if !matches!(self.bus_url.scheme(), "memory" | "amqp" | "amqps") {
            let why = format!(
                "{} must start with memory://, amqp:// or amqps://",
                self.bus_url
            );
            return refuse("bus_url", why);
        }
        if !matches!(
            self.database_url.scheme(),
            "sqlite" | "postgres" | "postgresql"
        ) {
            let why = format!(
                "{} must start with sqlite:// or postgres://",
                self.database_url
            );
            return refuse("database_url", why);
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log_filter) {
            return refuse("log_filter", format!("invalid log filter: {e}"));
        }
        let counts = [
            ("arbiters", self.arbiters as u64, 0, 1024),
            ("shards", self.shards.into(), 1, 4096),
            ("delivery_limit", self.delivery_limit.into(), 1, 1000),
            ("prefetch", self.prefetch.into(), 1, 10_000),
            ("rate_limit", self.rate_limit.into(), 1, 1_000_000),
        ];
        for (setting, n, min, max) in counts {
            if !(min..=max).contains(&n) {
                return refuse(
                    setting,
                    format!("{n} is not a whole number from {min} to {max}"),
                );
            }
        }
        #[rustfmt::skip] // A table reads best as one.
        let limits = [
            ("alert_tachycardia_bpm", self.alert_tachycardia_bpm, 60.0, 250.0),
            ("alert_bradycardia_bpm", self.alert_bradycardia_bpm, 20.0, 80.0),
            ("alert_low_spo2_percent", self.alert_low_spo2_percent, 70.0, 99.0),
            ("alert_crisis_systolic", self.alert_crisis_systolic, 120.0, 300.0),
            ("alert_crisis_diastolic", self.alert_crisis_diastolic, 70.0, 200.0),
        ];
        for (setting, v, min, max) in limits {
            if !(min..=max).contains(&v) {
                return refuse(setting, format!("{v} is not a number from {min} to {max}"));
            }
        }
        let times = [
            ("request_timeout", self.request_timeout),
            ("idle_timeout", self.idle_timeout),
            ("no_show_after", self.no_show_after),
            ("session_logoff", self.session_logoff),
            ("alert_max_gap", self.alert_max_gap),
            ("alert_reannounce", self.alert_reannounce),
            ("alert_max_pause", self.alert_max_pause),
            ("heartbeat", self.heartbeat),
        ];
        if let Some((setting, _)) = times.into_iter().find(|(_, d)| d.is_zero()) {
            return refuse(setting, "must be longer than zero".into());
        }
        // Shorter would cut into the hour buckets still being filled.
        if self.sample_retention < Duration::from_secs(2 * 3600) {
            let why = format!("{} is shorter than 2h", shown(self.sample_retention));
            return refuse("sample_retention", why);
        }
        if !(Duration::from_secs(1)..=Duration::from_secs(3600)).contains(&self.alert_sustain) {
            return refuse("alert_sustain", "from 1s to 1h".into());
        }
        if self.alert_no_data <= self.alert_max_gap {
            let why = format!(
                "must be longer than alert_max_gap ({})",
                shown(self.alert_max_gap)
            );
            return refuse("alert_no_data", why);
        }
        if self.alert_escalate < self.alert_reannounce {
            let why = format!(
                "must not be shorter than alert_reannounce ({})",
                shown(self.alert_reannounce)
            );
            return refuse("alert_escalate", why);
        }
        // The remaining combinations of limits (tachycardia above
        // bradycardia, the ordinary limits inside the extreme ones).
        if let Err(why) = self.alarms().validate() {
            return refuse("alert settings", why);
        }
        if !(Duration::from_secs(2)..=Duration::from_secs(10)).contains(&self.ecg_asystole) {
            return refuse("ecg_asystole", "from 2s to 10s".into());
        }
        if !(Duration::from_millis(1500)..=self.ecg_asystole).contains(&self.ecg_pause) {
            let why = format!(
                "from 1.5s up to ecg_asystole ({})",
                shown(self.ecg_asystole)
            );
            return refuse("ecg_pause", why);
        }
        // A stream passivates once its device has been silent this long: it
        // must have told of the silence by then.
        if self.idle_timeout <= self.alert_no_data {
            let why = format!(
                "must be longer than alert_no_data ({})",
                shown(self.alert_no_data)
            );
            return refuse("idle_timeout", why);
        }
        if self.lease < self.heartbeat * 3 {
            let (lease, heartbeat) = (shown(self.lease), shown(self.heartbeat));
            let why = format!("{lease} must be at least three heartbeats ({heartbeat}) so one late heartbeat does not look like a dead node");
            return refuse("lease", why);
        }
        if self
            .jwt_secret
            .as_ref()
            .is_some_and(|k| k.expose().len() < 32)
        {
            return refuse(
                "jwt_secret",
                "must be at least 32 bytes (a random key)".into(),
            );
        }
        if self
            .otlp_endpoint
            .as_ref()
            .is_some_and(|u| !matches!(u.scheme(), "http" | "https"))
        {
            let why = "expected an http:// or https:// URL (OTLP over HTTP)";
            return refuse("otlp_endpoint", why.into());
        }
        // Access lifecycle (issue 13, items 4 and 5).
        let access_times = [
            ("logoff_clinician", self.logoff_clinician),
            ("logoff_ops", self.logoff_ops),
            ("logoff_admin", self.logoff_admin),
            ("break_glass_duration", self.break_glass_duration),
            ("audit_auth_failures_every", self.audit_auth_failures_every),
        ];
        if let Some((setting, _)) = access_times.into_iter().find(|(_, d)| d.is_zero()) {
            return refuse(setting, "must be longer than zero".into());
        }
        if self.break_glass_duration > Duration::from_secs(24 * 3600) {
            return refuse("break_glass_duration", "at most 24h".into());
        }
        if let Some(url) = &self.oidc_jwks_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return refuse("oidc_jwks_url", "expected an http(s):// URL".into());
            }
        }
        if let Err(why) = access::parse_role_map(self.oidc_role_map.as_deref().unwrap_or("")) {
            return refuse("oidc_role_map", why);
        }
        if self.oidc_role_claim.is_empty() {
            return refuse("oidc_role_claim", "must name a claim".into());
        }
        // Limits (issue 13, part 6).
        #[rustfmt::skip] // A table reads best as one.
        let limits = [
            ("ws_max_message", self.ws_max_message, 1024, 16 << 20),
            ("max_ws_per_ip", self.max_ws_per_ip, 1, 1_000_000),
            ("max_ws_per_principal", self.max_ws_per_principal, 1, 10_000),
            ("max_http_per_ip", self.max_http_per_ip, 1, 1_000_000),
            ("max_http_per_principal", self.max_http_per_principal, 1, 10_000),
            ("max_errors", self.max_errors, 1, 10_000),
        ];
        for (setting, n, min, max) in limits {
            if !(min..=max).contains(&n) {
                return refuse(
                    setting,
                    format!("{n} is not a whole number from {min} to {max}"),
                );
            }
        }
        let bounded = [
            ("ws_init_timeout", self.ws_init_timeout),
            ("body_read_timeout", self.body_read_timeout),
        ];
        for (setting, d) in bounded {
            if !(Duration::from_millis(100)..=Duration::from_secs(600)).contains(&d) {
                return refuse(setting, "from 100ms to 10m".into());
            }
        }
        // Encryption at rest and the keyed audit trail (issue 13).
        // (key_file: required unless the database is an SQLite file; the
        // node refuses to start without it, see node::key_provider.)
        if !(Duration::from_secs(1)..=Duration::from_secs(3600))
            .contains(&self.audit_checkpoint_every)
        {
            return refuse("audit_checkpoint_every", "from 1s to 1h".into());
        }
        // TLS (issue 13, item 1): every file a TLS setting names loads, and
        // no setting asks for TLS on a hop that would not use it.
        if let Err((setting, why)) = self.check_tls() {
            return refuse(setting, why);
        }
        Ok(())
    }

    /// The TLS settings' checks (see [`Config::validate`]).
    fn check_tls(&self) -> Result<(), (&'static str, String)> {
        use crate::tls;
        let pair = tls::pair(
            self.tls_cert_file.as_deref(),
            self.tls_key_file.as_deref(),
            ("tls_cert_file", "tls_key_file"),
        )
        .map_err(|e| ("tls_cert_file", e))?;
        if let Some((cert, key)) = pair {
            tls::certified_key(cert, key).map_err(|e| ("tls_cert_file", e.to_string()))?;
        }
        if let Some(ca) = &self.tls_peer_ca_file {
            if pair.is_none() {
                let why = "is set but this node does not serve HTTPS (no tls_cert_file)";
                return Err(("tls_peer_ca_file", why.into()));
            }
            tls::load_roots(ca).map_err(|e| ("tls_peer_ca_file", e.to_string()))?;
        }
        let amqps = self.bus_url.scheme() == "amqps";
        let bus_identity = tls::pair(
            self.bus_client_cert_file.as_deref(),
            self.bus_client_key_file.as_deref(),
            ("bus_client_cert_file", "bus_client_key_file"),
        )
        .map_err(|e| ("bus_client_cert_file", e))?;
        let bus_tls_set = self.bus_ca_file.is_some() || bus_identity.is_some();
        if bus_tls_set && !amqps {
            let why = format!(
                "bus TLS files are set but bus_url is {}: use amqps://",
                self.bus_url
            );
            return Err(("bus_url", why));
        }
        if amqps {
            tls::client_config(self.bus_ca_file.as_deref(), bus_identity).map_err(|e| {
                let setting = match &e {
                    tls::TlsError::Read { path, .. }
                    | tls::TlsError::NoCertificate { path }
                    | tls::TlsError::Invalid { path, .. }
                        if Some(path) == self.bus_ca_file.as_ref() =>
                    {
                        "bus_ca_file"
                    }
                    _ => "bus_client_cert_file",
                };
                (setting, e.to_string())
            })?;
        }
        if matches!(self.database_url.scheme(), "postgres" | "postgresql") {
            tls::check_postgres_url(self.database_url.expose()).map_err(|e| ("database_url", e))?;
        }
        let https_otlp = self
            .otlp_endpoint
            .as_ref()
            .is_some_and(|u| u.scheme() == "https");
        if let Some(ca) = &self.otlp_ca_file {
            if !https_otlp {
                let why = "is set but otlp_endpoint is not an https:// URL";
                return Err(("otlp_ca_file", why.into()));
            }
            tls::load_roots(ca).map_err(|e| ("otlp_ca_file", e.to_string()))?;
        }
        Ok(())
    }
}
