use super::*;

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A TOML file in a fresh directory (kept alive by the returned guard).
fn file(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cardio.toml");
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

/// Every setting the hand-written parser knew, with a valid value other
/// than its default: the names operators, k8s/ and the docs use.
const OLD_SETTINGS: &[(&str, &str)] = &[
    ("node_id", "node-7"),
    ("http_addr", "0.0.0.0:9090"),
    ("advertise_addr", "10.0.0.7:8080"),
    ("bus_url", "amqp://rabbit:5672/%2f"),
    ("database_url", "postgres://db:5432/cardio"),
    ("log_format", "json"),
    ("log_filter", "cardio=debug,info"),
    ("shutdown_grace", "30s"),
    ("arbiters", "3"),
    ("request_timeout", "7s"),
    ("idle_timeout", "20m"),
    ("no_show_after", "10m"),
    ("session_logoff", "30m"),
    // Access lifecycle (issue 13).
    ("logoff_clinician", "10m"),
    ("logoff_ops", "20m"),
    ("logoff_admin", "5m"),
    ("break_glass_duration", "30m"),
    ("audit_auth_failures_every", "5m"),
    ("oidc_jwks_url", "https://idp.example/jwks"),
    ("oidc_issuer", "https://idp.example"),
    ("oidc_audience", "cardio-api"),
    ("oidc_role_claim", "groups"),
    ("oidc_role_map", "doctors=clinician"),
    ("oidc_mfa_acr", "urn:mfa"),
    ("oidc_mfa_amr", "otp,hwk"),
    ("sample_retention", "7days"),
    ("key_file", "/etc/cardio/keys/cardio.key"),
    ("audit_checkpoint_file", "/var/lib/cardio/audit.checkpoints"),
    ("audit_checkpoint_every", "30s"),
    ("alert_tachycardia_bpm", "110"),
    ("alert_bradycardia_bpm", "45.5"),
    ("alert_low_spo2_percent", "92.3"),
    ("alert_crisis_systolic", "190"),
    ("alert_crisis_diastolic", "125"),
    ("alert_sustain", "30s"),
    ("alert_max_gap", "12s"),
    ("alert_no_data", "40s"),
    ("alert_reannounce", "90s"),
    ("alert_escalate", "3m"),
    ("alert_max_pause", "1h"),
    ("alert_af_sustain", "45s"),
    ("ecg_asystole", "5s"),
    ("ecg_pause", "2s"),
    ("shards", "16"),
    ("delivery_limit", "9"),
    ("prefetch", "8"),
    ("heartbeat", "1s"),
    ("lease", "5s"),
    ("jwt_secret", "0123456789abcdef0123456789abcdef"),
    ("jwt_public_key", "/etc/cardio/rs256.pub"),
    ("jwt_private_key", "/etc/cardio/rs256.key"),
    ("jwt_jwks", "/etc/cardio/jwks.json"),
    ("dev", "true"),
    ("rate_limit", "50"),
    ("otlp_endpoint", "http://otel-collector:4318"),
    // Limits (issue 13, part 6).
    ("ws_init_timeout", "2s"),
    ("ws_max_message", "65536"),
    ("max_ws_per_ip", "32"),
    ("max_ws_per_principal", "4"),
    ("max_http_per_ip", "8"),
    ("max_http_per_principal", "4"),
    ("body_read_timeout", "3s"),
    ("max_errors", "5"),
];

#[test]
fn defaults_run_a_single_embedded_node() {
    let c = Config::load(None, &env(&[])).unwrap();
    assert_eq!(c, Config::default());
    assert_eq!(c.http_addr.to_string(), "127.0.0.1:8080");
    assert_eq!(c.bus_url.expose(), "memory://");
    assert_eq!(c.database_url.expose(), "sqlite://data/cardio.db");
    // The engines' own defaults, unchanged by the configuration's.
    assert_eq!(c.alarms(), AlarmSettings::default());
    assert_eq!(c.rhythm(), RhythmSettings::default());
    assert_eq!(c.validate(), Ok(()));
}

/// The TLS settings (issue 13, item 1): files, checked when loaded
/// (`tls_settings_that_cannot_be_honoured_are_refused`).
const TLS_SETTINGS: &[&str] = &[
    "tls_cert_file",
    "tls_key_file",
    "tls_peer_ca_file",
    "bus_ca_file",
    "bus_client_cert_file",
    "bus_client_key_file",
    "otlp_ca_file",
];

#[test]
fn the_settings_are_exactly_the_keys_and_variables_there_always_were() {
    let mut names: Vec<&str> = setting_names().to_vec();
    let mut old: Vec<&str> = OLD_SETTINGS.iter().map(|(k, _)| *k).collect();
    old.extend(TLS_SETTINGS);
    names.sort_unstable();
    old.sort_unstable();
    assert_eq!(names, old);
    assert_eq!(
        env_name("alert_low_spo2_percent"),
        "CARDIO_ALERT_LOW_SPO2_PERCENT"
    );
}

#[test]
fn every_old_variable_and_file_key_still_sets_its_setting() {
    for (key, value) in OLD_SETTINGS {
        let from_env = Config::load(None, &env(&[(&env_name(key), value)]))
            .unwrap_or_else(|e| panic!("{}={value}: {e}", env_name(key)));
        assert_ne!(from_env, Config::default(), "{} was ignored", env_name(key));
        // The file takes the same text, quoted (numbers and flags too, as
        // before) …
        let (_dir, path) = file(&format!("{key} = {value:?}\n"));
        let from_file = Config::load(Some(&path), &env(&[]))
            .unwrap_or_else(|e| panic!("{key} in the file: {e}"));
        assert_eq!(from_file, from_env, "{key}");
    }
    // … or as TOML numbers and booleans.
    let (_dir, path) = file("shards = 16\ndev = true\nalert_tachycardia_bpm = 110\n");
    let c = Config::load(Some(&path), &env(&[])).unwrap();
    assert_eq!(
        (c.shards, c.dev, c.alert_tachycardia_bpm),
        (16, true, 110.0)
    );
    // Decimals from a variable stay exact.
    let c = Config::load(None, &env(&[("CARDIO_ALERT_LOW_SPO2_PERCENT", "92.3")])).unwrap();
    assert_eq!(c.alarms().low_spo2.raise, 92.3);
    // Flags as before, and values with stray blanks.
    for (text, want) in [("1", true), ("yes", true), ("0", false), ("no", false)] {
        let c = Config::load(None, &env(&[("CARDIO_DEV", text)])).unwrap();
        assert_eq!(c.dev, want, "{text}");
    }
    let c = Config::load(
        None,
        &env(&[("CARDIO_SHARDS", " 16\n"), ("CARDIO_LOG_FORMAT", "text")]),
    )
    .unwrap();
    assert_eq!((c.shards, c.log_format), (16, LogFormat::Pretty));
}

#[test]
fn other_cardio_variables_are_not_settings_and_are_left_alone() {
    let c = Config::load(
        None,
        &env(&[
            ("CARDIO_URL", "http://127.0.0.1:8080"),
            ("CARDIO_TOKEN", "a-token"),
            ("CARDIO_TEST_LOGS", "1"),
            ("CARDIO_BENCH_ONLY", "x"),
        ]),
    )
    .unwrap();
    assert_eq!(c, Config::default());
}

#[test]
fn environment_overrides_the_file() {
    let (_dir, path) = file("node_id = \"from-file\"\nshards = 16\nshutdown_grace = \"3s\"\n");
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
fn alarm_limits_move_their_resolve_limits_along() {
    let c = Config::load(
        None,
        &env(&[
            ("CARDIO_ALERT_TACHYCARDIA_BPM", "110"),
            ("CARDIO_ALERT_SUSTAIN", "30s"),
            ("CARDIO_ALERT_CRISIS_SYSTOLIC", "190"),
            ("CARDIO_ECG_ASYSTOLE", "5s"),
        ]),
    )
    .unwrap();
    let a = c.alarms();
    assert_eq!(
        (
            a.tachycardia.raise,
            a.tachycardia.resolve,
            a.tachycardia.sustain_ms,
            a.low_spo2.sustain_ms,
            a.hypertensive_crisis.systolic_resolve,
        ),
        (110.0, 105.0, 30_000, 30_000, 180.0)
    );
    assert_eq!(c.rhythm().asystole_ms, 5_000);
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
        c.otlp_endpoint.as_ref().map(SecretUrl::expose),
        Some("http://otel-collector:4318")
    );
    for (key, value) in [
        ("CARDIO_ADVERTISE_ADDR", "http://10.0.0.7:8080"),
        ("CARDIO_ADVERTISE_ADDR", "10.0.0.7"),
        ("CARDIO_OTLP_ENDPOINT", "otel-collector:4318"),
        ("CARDIO_OTLP_ENDPOINT", "ftp://otel-collector:4318"),
    ] {
        let err = Config::load(None, &env(&[(key, value)])).unwrap_err();
        assert!(err.to_string().contains(key), "{err}");
    }
}

#[test]
fn the_config_file_can_be_named_by_the_environment() {
    let (_dir, path) = file("prefetch = 7\n");
    let c = Config::load(None, &env(&[("CARDIO_CONFIG", path.to_str().unwrap())])).unwrap();
    assert_eq!(c.prefetch, 7);
}

#[test]
fn invalid_values_name_the_variable_and_why() {
    let err = |pairs: &[(&str, &str)]| Config::load(None, &env(pairs)).unwrap_err().to_string();
    assert_eq!(
        err(&[("CARDIO_HTTP_ADDR", "localhost")]),
        "CARDIO_HTTP_ADDR: \"localhost\" is not a socket address like 127.0.0.1:8080"
    );
    assert_eq!(
        err(&[("CARDIO_SHARDS", "0")]),
        "CARDIO_SHARDS: 0 is not a whole number from 1 to 4096"
    );
    assert_eq!(
        err(&[("CARDIO_SHARDS", "many")]),
        "CARDIO_SHARDS: \"many\" is not a whole number"
    );
    assert_eq!(
        err(&[("CARDIO_SHARDS", "70000")]),
        "CARDIO_SHARDS: 70000 is out of range"
    );
    assert_eq!(
        err(&[("CARDIO_SHUTDOWN_GRACE", "soon")]),
        "CARDIO_SHUTDOWN_GRACE: \"soon\" is not a duration like 30s or 15m"
    );
    assert_eq!(
        err(&[("CARDIO_DEV", "maybe")]),
        "CARDIO_DEV: \"maybe\" is not true or false"
    );
    assert_eq!(
        err(&[("CARDIO_LOG_FORMAT", "xml")]),
        "CARDIO_LOG_FORMAT: \"xml\" is not pretty, text or json"
    );
    assert!(err(&[("CARDIO_BUS_URL", "kafka://x")]).starts_with("CARDIO_BUS_URL:"));
    assert!(err(&[("CARDIO_DATABASE_URL", "mysql://x")]).starts_with("CARDIO_DATABASE_URL:"));
    assert!(err(&[("CARDIO_ALERT_TACHYCARDIA_BPM", "NaN")]).contains("from 60 to 250"));
    assert_eq!(
        err(&[("CARDIO_ALERT_NO_DATA", "5s")]),
        "CARDIO_ALERT_NO_DATA: must be longer than alert_max_gap (10s)"
    );
    assert!(err(&[("CARDIO_ECG_ASYSTOLE", "30s")]).starts_with("CARDIO_ECG_ASYSTOLE:"));
    assert!(err(&[("CARDIO_ECG_PAUSE", "5s")]).starts_with("CARDIO_ECG_PAUSE:"));
    assert!(err(&[("CARDIO_LOG_FILTER", "cardio=loud")]).starts_with("CARDIO_LOG_FILTER:"));
    // A combination of alarm limits the engine refuses.
    assert!(err(&[("CARDIO_ALERT_TACHYCARDIA_BPM", "200")]).starts_with("alert settings:"));
    // Settings that depend on each other name the one that was set.
    assert!(err(&[("CARDIO_HEARTBEAT", "2s")]).starts_with("lease (default):"));
    assert!(err(&[("CARDIO_LEASE", "1s")]).starts_with("CARDIO_LEASE:"));
    assert!(err(&[("CARDIO_HEARTBEAT", "0s")]).starts_with("CARDIO_HEARTBEAT:"));
}

#[test]
fn invalid_values_in_the_file_name_the_key_and_the_file() {
    let (_dir, path) = file("shards = 0\nlease = \"1s\"\n");
    let err = Config::load(Some(&path), &env(&[])).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "shards in {}: 0 is not a whole number from 1 to 4096",
            path.display()
        )
    );
    // The variable wins, and then it is the one named.
    let err = Config::load(Some(&path), &env(&[("CARDIO_SHARDS", "5000")])).unwrap_err();
    assert!(err.to_string().starts_with("CARDIO_SHARDS: "), "{err}");
    let err = Config::load(Some(&path), &env(&[("CARDIO_SHARDS", "16")])).unwrap_err();
    assert!(
        err.to_string()
            .starts_with(&format!("lease in {}: 1s must be", path.display())),
        "{err}"
    );
    // A value of the wrong type.
    let (_dir, path) = file("shutdown_grace = 10\n");
    let err = Config::load(Some(&path), &env(&[])).unwrap_err();
    assert!(
        err.to_string()
            .ends_with("10 is not a duration like 30s or 15m"),
        "{err}"
    );
    // A file that is not there, or not TOML.
    let missing = path.with_file_name("missing.toml");
    let err = Config::load(Some(&missing), &env(&[])).unwrap_err();
    assert!(matches!(err, ConfigError::File { .. }), "{err}");
    let (_dir, path) = file("shards = 16\nnode_id = \n");
    let err = Config::load(Some(&path), &env(&[])).unwrap_err();
    assert!(err.to_string().contains("line 2"), "{err}");
}

#[test]
fn unknown_file_settings_are_typos_and_are_refused() {
    let (_dir, path) = file("http_adr = \"127.0.0.1:1\"\n");
    let err = Config::load(Some(&path), &env(&[])).unwrap_err();
    assert!(
        matches!(err, ConfigError::UnknownKey { ref key, .. } if key == "http_adr"),
        "{err}"
    );
    assert!(err.to_string().contains("http_addr"), "{err}");
    // The old `alert_irregularity` is gone, and a table is no setting.
    for text in ["alert_irregularity = 3\n", "[alarms]\ntachycardia = 1\n"] {
        let (_dir, path) = file(text);
        let err = Config::load(Some(&path), &env(&[])).unwrap_err();
        assert!(matches!(err, ConfigError::UnknownKey { .. }), "{err}");
    }
}

#[test]
fn the_printed_toml_loads_back_to_the_same_config() {
    let mut settings: Vec<(String, &str)> = OLD_SETTINGS
        .iter()
        .filter(|(key, _)| *key != "jwt_secret")
        .map(|(key, value)| (env_name(key), *value))
        .collect();
    settings.push(("CARDIO_REQUEST_TIMEOUT".into(), "1500ms"));
    let pairs: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    for vars in [&pairs[..], &[]] {
        let c = Config::load(None, &env(vars)).unwrap();
        let printed = c.to_toml().unwrap();
        let (_dir, path) = file(&printed);
        let again = Config::load(Some(&path), &env(&[])).unwrap();
        assert_eq!(again, c, "{printed}");
    }
}

/// A setting's variable, a value holding a secret, and the secret.
const SECRETS: &[(&str, &str, &str)] = &[
    ("CARDIO_DATABASE_URL", "postgres://u:pa/ss@h/db", "pa/ss"),
    (
        "CARDIO_DATABASE_URL",
        "postgres://h/db?user=u&password=s3cret",
        "s3cret",
    ),
    ("CARDIO_BUS_URL", "amqp://u:Pw0rd@h/vhost", "Pw0rd"),
    (
        "CARDIO_OTLP_ENDPOINT",
        "http://user:otlp-t0ken@collector:4318",
        "otlp-t0ken",
    ),
    (
        "CARDIO_OTLP_ENDPOINT",
        "http://collector:4318/?api_key=otlp-k3y",
        "otlp-k3y",
    ),
    (
        "CARDIO_JWT_SECRET",
        "jwt-k3y-0123456789abcdef0123456789abcdef",
        "jwt-k3y",
    ),
];

#[test]
fn secrets_never_print_whatever_their_shape() {
    for (var, value, secret) in SECRETS {
        let c = Config::load(None, &env(&[(var, value)])).unwrap();
        let printed = c.to_toml().unwrap();
        for text in [format!("{c:?}"), format!("{c:#?}"), printed.clone()] {
            assert!(!text.contains(secret), "{var}: {text}");
        }
        assert!(printed.contains("<redacted>"), "{printed}");
        // Display of the values themselves.
        for url in [&c.bus_url, &c.database_url]
            .into_iter()
            .chain(c.otlp_endpoint.as_ref())
        {
            assert!(!url.to_string().contains(secret), "{url}");
        }
        if let Some(key) = &c.jwt_secret {
            assert!(!key.to_string().contains(secret));
        }
    }
}

#[test]
fn errors_about_a_secret_never_quote_it() {
    let mut errors = Vec::new();
    // A URL refused for its scheme, a key too short.
    for (var, value, secret) in [
        ("CARDIO_DATABASE_URL", "mysql://u:pa/ss@h/db", "pa/ss"),
        (
            "CARDIO_DATABASE_URL",
            "mysql://h/db?user=u&password=s3cret",
            "s3cret",
        ),
        ("CARDIO_DATABASE_URL", "cardio:s3cret@db/cardio", "s3cret"),
        ("CARDIO_BUS_URL", "kafka://u:Pw0rd@h/vhost", "Pw0rd"),
        (
            "CARDIO_OTLP_ENDPOINT",
            "ftp://user:otlp-t0ken@collector:4318",
            "otlp-t0ken",
        ),
        (
            "CARDIO_OTLP_ENDPOINT",
            "grpc://collector:4318/?api_key=otlp-k3y",
            "otlp-k3y",
        ),
        ("CARDIO_JWT_SECRET", "jwt-k3y-short", "jwt-k3y"),
    ] {
        let err = Config::load(None, &env(&[(var, value)])).unwrap_err();
        errors.push((secret.to_string(), err));
    }
    // From the file: a wrong type, a syntax error on the secret's line, a
    // placeholder fed back.
    for (text, secret) in [
        ("jwt_secret = 1234567890123456789\n", "1234567890"),
        (
            "bus_url = true\njwt_secret = \"jwt-k3y-unterminated\n",
            "jwt-k3y",
        ),
        ("database_url = \"postgres://u:s3cret@h/db\" x\n", "s3cret"),
    ] {
        let (_dir, path) = file(text);
        errors.push((
            secret.to_string(),
            Config::load(Some(&path), &env(&[])).unwrap_err(),
        ));
    }
    for (secret, err) in errors {
        for text in [err.to_string(), format!("{err:?}")] {
            assert!(!text.contains(&secret), "{secret}: {text}");
        }
    }
}

#[test]
fn a_redacted_secret_fed_back_is_refused_not_used() {
    let c = Config::load(
        None,
        &env(&[
            ("CARDIO_BUS_URL", "amqp://u:Pw0rd@h/vhost"),
            (
                "CARDIO_JWT_SECRET",
                "jwt-k3y-0123456789abcdef0123456789abcdef",
            ),
        ]),
    )
    .unwrap();
    let (_dir, path) = file(&c.to_toml().unwrap());
    let err = Config::load(Some(&path), &env(&[])).unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with(&format!("bus_url in {}:", path.display())),
        "{text}"
    );
    assert!(
        text.contains("<redacted>") && text.contains("real value"),
        "{text}"
    );
    // The real values from the environment win over the placeholders.
    let again = Config::load(
        Some(&path),
        &env(&[
            ("CARDIO_BUS_URL", "amqp://u:Pw0rd@h/vhost"),
            (
                "CARDIO_JWT_SECRET",
                "jwt-k3y-0123456789abcdef0123456789abcdef",
            ),
        ]),
    )
    .unwrap();
    assert_eq!(again, c);
}

/// TLS settings (issue 13, item 1): a setting that asks for TLS that cannot
/// be honoured is refused, naming the setting.
#[test]
fn tls_settings_that_cannot_be_honoured_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate").unwrap();
    let junk = junk.to_str().unwrap();
    let cases: &[(&[(&str, &str)], &str)] = &[
        (
            &[("CARDIO_TLS_CERT_FILE", "/nonexistent/cert.pem")],
            "CARDIO_TLS_CERT_FILE",
        ),
        (
            &[
                ("CARDIO_TLS_CERT_FILE", junk),
                ("CARDIO_TLS_KEY_FILE", junk),
            ],
            "CARDIO_TLS_CERT_FILE",
        ),
        (
            &[("CARDIO_TLS_PEER_CA_FILE", junk)],
            "CARDIO_TLS_PEER_CA_FILE",
        ),
        (
            &[
                ("CARDIO_BUS_URL", "amqps://h/%2f"),
                ("CARDIO_BUS_CA_FILE", junk),
            ],
            "CARDIO_BUS_CA_FILE",
        ),
        (
            &[
                ("CARDIO_BUS_URL", "amqp://h/%2f"),
                ("CARDIO_BUS_CA_FILE", junk),
            ],
            "CARDIO_BUS_URL",
        ),
        (
            &[
                ("CARDIO_BUS_URL", "amqps://h/%2f"),
                ("CARDIO_BUS_CLIENT_CERT_FILE", junk),
            ],
            "CARDIO_BUS_CLIENT_CERT_FILE",
        ),
        (
            &[("CARDIO_DATABASE_URL", "postgres://h/db?sslmode=verify-full")],
            "CARDIO_DATABASE_URL",
        ),
        (
            &[
                ("CARDIO_OTLP_ENDPOINT", "http://c:4318"),
                ("CARDIO_OTLP_CA_FILE", junk),
            ],
            "CARDIO_OTLP_CA_FILE",
        ),
        (
            &[
                ("CARDIO_OTLP_ENDPOINT", "https://c:4318"),
                ("CARDIO_OTLP_CA_FILE", junk),
            ],
            "CARDIO_OTLP_CA_FILE",
        ),
    ];
    for (pairs, named) in cases {
        let err = Config::load(None, &env(pairs)).unwrap_err().to_string();
        assert!(err.starts_with(named), "{pairs:?}: {err}");
    }
    // amqps with the public roots and https OTLP without a CA file are fine.
    let c = Config::load(
        None,
        &env(&[
            ("CARDIO_BUS_URL", "amqps://h/%2f"),
            ("CARDIO_OTLP_ENDPOINT", "https://c:4318"),
        ]),
    )
    .unwrap();
    assert_eq!(c.bus_url.scheme(), "amqps");
}
