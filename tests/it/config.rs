//! `cardio config`: the effective configuration as a TOML file that loads
//! back, secrets hidden, from the real binary and its real environment.

use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_cardio");

fn cardio(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args).env_clear();
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

#[test]
fn cardio_config_prints_toml_that_loads_back_to_the_same_configuration() {
    let settings = [
        ("CARDIO_NODE_ID", "node-9"),
        ("CARDIO_SHARDS", "16"),
        ("CARDIO_ALERT_SUSTAIN", "5s"),
        ("CARDIO_ALERT_LOW_SPO2_PERCENT", "92.5"),
        ("CARDIO_HEARTBEAT", "200ms"),
        ("CARDIO_LEASE", "1500ms"),
        ("CARDIO_DEV", "true"),
        ("CARDIO_URL", "http://127.0.0.1:1"),
    ];
    let printed = stdout(&cardio(&["config"], &settings));
    assert!(printed.contains("node_id = \"node-9\""), "{printed}");
    assert!(printed.contains("alert_sustain = \"5s\""), "{printed}");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cardio.toml");
    std::fs::write(&file, &printed).unwrap();
    let again = stdout(&cardio(
        &["config", "--config", file.to_str().unwrap()],
        &[],
    ));
    assert_eq!(again, printed);
    // CARDIO_CONFIG names the file as well.
    let again = stdout(&cardio(
        &["config"],
        &[("CARDIO_CONFIG", file.to_str().unwrap())],
    ));
    assert_eq!(again, printed);
}

#[test]
fn cardio_config_hides_every_secret_and_refuses_the_placeholder_fed_back() {
    let secrets = [
        ("CARDIO_DATABASE_URL", "postgres://u:pa/ss@h/db", "pa/ss"),
        ("CARDIO_BUS_URL", "amqp://u:Pw0rd@h/vhost", "Pw0rd"),
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
    let envs: Vec<(&str, &str)> = secrets.iter().map(|(k, v, _)| (*k, *v)).collect();
    let out = cardio(&["config"], &envs);
    let printed = stdout(&out);
    for (_, _, secret) in secrets {
        assert!(!printed.contains(secret), "{secret} shown:\n{printed}");
    }
    assert!(printed.contains("jwt_secret = \"<redacted>\""), "{printed}");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cardio.toml");
    std::fs::write(&file, &printed).unwrap();
    let out = cardio(&["serve", "--config", file.to_str().unwrap()], &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains(&format!("in {}", file.display())), "{err}");
    assert!(err.contains("<redacted>"), "{err}");

    // A secret refused for its value is not echoed either.
    let out = cardio(
        &["config"],
        &[("CARDIO_DATABASE_URL", "mysql://u:pa/ss@h/db")],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("CARDIO_DATABASE_URL") && !err.contains("pa/ss"),
        "{err}"
    );
}
