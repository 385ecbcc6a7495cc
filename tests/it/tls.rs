//! TLS on every hop (issue 13, item 1), against real components: the real
//! `cardio serve` over HTTPS and WSS with a real client, PostgreSQL's own TLS
//! (Debian's snakeoil certificate, tier `postgres`), a RabbitMQ node of the
//! test's own with a TLS listener from certificates made here (tier
//! `rabbitmq`), and the start-up refusals (exit code 2) of settings that ask
//! for TLS that cannot be honoured.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use awc::ws;
use futures_util::SinkExt;
use serde_json::json;

use crate::api::{recv, send, token, SECRET};
use crate::support::node::TestNode;
use crate::support::poll::poll_until_blocking;
use cardio::principal::Role;

const BIN: &str = env!("CARGO_BIN_EXE_cardio");

/// A CA, a server certificate and a client certificate it signed, as PEM
/// files in a folder of their own.
struct Pki {
    dir: tempfile::TempDir,
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    /// A client certificate the CA signed.
    client_cert: PathBuf,
    client_key: PathBuf,
}

/// A fresh CA (`cn`) and a server certificate for localhost and 127.0.0.1.
fn make_pki(cn: &str) -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let dir = tempfile::tempdir().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, cn);
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let mut params =
        CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, format!("{cn} server"));
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    let mut client_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    client_params
        .distinguished_name
        .push(DnType::CommonName, format!("{cn} client"));
    let client_key = KeyPair::generate().unwrap();
    let client_cert = client_params.signed_by(&client_key, &issuer).unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    Pki {
        ca: write("ca.pem", &ca_cert.pem()),
        cert: write("server.pem", &cert.pem()),
        key: write("server.key", &key.serialize_pem()),
        client_cert: write("client.pem", &client_cert.pem()),
        client_key: write("client.key", &client_key.serialize_pem()),
        dir,
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn client_tls(ca: &Path) -> Arc<rustls::ClientConfig> {
    Arc::new(cardio::tls::client_config(Some(ca), None).unwrap())
}

fn https_client(ca: &Path) -> awc::Client {
    awc::Client::builder()
        .connector(awc::Connector::new().rustls_0_23(client_tls(ca)))
        .timeout(Duration::from_secs(10))
        .finish()
}

fn port(node: &TestNode) -> u16 {
    node.addr.rsplit_once(':').unwrap().1.parse().unwrap()
}

fn https_node(pki: &Pki) -> TestNode {
    TestNode::serve()
        .env("CARDIO_JWT_SECRET", SECRET)
        .env("CARDIO_TLS_CERT_FILE", &pki.cert)
        .env("CARDIO_TLS_KEY_FILE", &pki.key)
        .start()
}

/// The certificate a TLS handshake with 127.0.0.1:`port` presents, as the
/// common name's bytes are found in it (a plain blocking rustls client).
fn presented_certificate(port: u16, ca: &Path) -> Vec<u8> {
    try_presented_certificate(port, ca).unwrap()
}

/// [`presented_certificate`], or why the handshake failed (a certificate
/// `ca` does not vouch for: `InvalidCertificate(UnknownIssuer)`).
fn try_presented_certificate(port: u16, ca: &Path) -> std::io::Result<Vec<u8>> {
    let config = client_tls(ca);
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut conn = rustls::ClientConnection::new(config, name).unwrap();
    let mut sock = std::net::TcpStream::connect(("127.0.0.1", port))?;
    sock.set_read_timeout(Some(Duration::from_secs(10)))?;
    while conn.is_handshaking() {
        conn.complete_io(&mut sock)?;
    }
    Ok(conn.peer_certificates().unwrap()[0].to_vec())
}

#[actix_rt::test]
async fn the_api_and_websocket_are_served_over_https_and_the_certificate_reloads_on_sighup() {
    let pki = make_pki("cardio test CA");
    let node = https_node(&pki);
    let line = poll_until_blocking(
        "the listening line in the log",
        Duration::from_secs(5),
        Duration::from_millis(10),
        || {
            node.stdout_lines()
                .into_iter()
                .find(|l| l.contains("\"listening\""))
        },
    );
    assert!(line.contains("\"scheme\":\"https\""), "{line}");
    let base = format!("https://localhost:{}", port(&node));

    // HTTPS with the CA: the probes and a GraphQL request answer.
    let client = https_client(&pki.ca);
    let res = client.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let mut res = client
        .post(format!("{base}/graphql"))
        .insert_header((
            "authorization",
            format!("Bearer {}", token(Role::Ops, "ops-1")),
        ))
        .send_json(&json!({"query": "{ __typename }"}))
        .await
        .unwrap();
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["data"]["__typename"], "Query", "{body}");

    // Plain HTTP on the same port gets no answer; a client trusting another
    // CA refuses the server.
    let plain = awc::Client::builder()
        .timeout(Duration::from_secs(5))
        .finish()
        .get(format!("http://{}/healthz", node.addr))
        .send()
        .await;
    assert!(
        plain.map(|r| r.status().as_u16() != 200).unwrap_or(true),
        "plain HTTP must not be served"
    );
    let other = make_pki("another CA");
    let refused = https_client(&other.ca)
        .get(format!("{base}/healthz"))
        .send()
        .await;
    assert!(refused.is_err(), "a server of another CA must be refused");

    // A WebSocket over TLS, graphql-transport-ws, with a real client.
    let (_, mut socket) = https_client(&pki.ca)
        .ws(format!("wss://localhost:{}/graphql", port(&node)))
        .protocols(["graphql-transport-ws"])
        .connect()
        .await
        .expect("a WebSocket over TLS");
    let bearer = format!("Bearer {}", token(Role::Ops, "ops-1"));
    send(
        &mut socket,
        json!({"type": "connection_init", "payload": {"authorization": bearer}}),
    )
    .await;
    assert_eq!(recv(&mut socket).await["type"], "connection_ack");
    send(
        &mut socket,
        json!({"type": "subscribe", "id": "1", "payload": {"query": "{ __typename }"}}),
    )
    .await;
    let next = recv(&mut socket).await;
    assert_eq!(next["type"], "next", "{next}");
    assert_eq!(next["payload"]["data"]["__typename"], "Query", "{next}");
    let _ = socket.send(ws::Message::Close(None)).await;

    // `cardio probe` (the image's HEALTHCHECK) speaks https to it, verified
    // with the peer CA; without the CA it fails.
    let probe = |ca: &Path| {
        Command::new(BIN)
            .arg("probe")
            .env_clear()
            .env("CARDIO_HTTP_ADDR", format!("0.0.0.0:{}", port(&node)))
            .env("CARDIO_TLS_CERT_FILE", &pki.cert)
            .env("CARDIO_TLS_KEY_FILE", &pki.key)
            .env("CARDIO_TLS_PEER_CA_FILE", ca)
            .output()
            .unwrap()
    };
    let out = probe(&pki.ca);
    assert!(out.status.success(), "{out:?}");
    let out = probe(&other.ca);
    assert_eq!(out.status.code(), Some(1), "{out:?}");

    // SIGHUP: a renewed certificate (another CA here, to tell them apart)
    // is served from the next handshake on; a broken pair keeps the old.
    let first = presented_certificate(port(&node), &pki.ca);
    let renewed = make_pki("renewed CA");
    std::fs::copy(&renewed.cert, &pki.cert).unwrap();
    std::fs::copy(&renewed.key, &pki.key).unwrap();
    node.signal("-HUP");
    let second = poll_until_blocking(
        "the renewed certificate",
        Duration::from_secs(10),
        Duration::from_millis(50),
        || {
            // Until the node has read the new pair it presents the old
            // certificate, which the renewed CA refuses: not yet.
            let now = try_presented_certificate(port(&node), &renewed.ca).ok()?;
            (now != first).then_some(now)
        },
    );
    std::fs::write(&pki.key, "broken").unwrap();
    node.signal("-HUP");
    poll_until_blocking(
        "the failed reload to be logged",
        Duration::from_secs(10),
        Duration::from_millis(50),
        || {
            node.log()
                .contains("TLS certificate not reloaded")
                .then_some(())
        },
    );
    assert_eq!(presented_certificate(port(&node), &renewed.ca), second);
    drop(pki.dir);
}

/// `cardio serve` with `envs` on the embedded defaults: its exit code and
/// stderr, within 30 s.
fn serve_exit(envs: &[(&str, &str)]) -> (Option<i32>, String) {
    let data = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .arg("serve")
        .env_clear()
        .env(
            "CARDIO_DATABASE_URL",
            format!("sqlite://{}/cardio.db", data.path().display()),
        )
        .env("CARDIO_HTTP_ADDR", "127.0.0.1:0")
        .env("CARDIO_LOG_FORMAT", "json")
        .envs(envs.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = poll_until_blocking(
        "cardio to exit",
        Duration::from_secs(30),
        Duration::from_millis(20),
        || child.try_wait().unwrap(),
    );
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (status.code(), err)
}

#[test]
fn settings_asking_for_tls_that_cannot_be_honoured_stop_the_start_with_exit_code_2() {
    let pki = make_pki("cardio test CA");
    let junk = pki.dir.path().join("junk.pem");
    std::fs::write(&junk, "not PEM").unwrap();
    let other = make_pki("another CA");
    let cases: &[(&[(&str, &str)], &str)] = &[
        (
            &[
                ("CARDIO_TLS_CERT_FILE", "/nonexistent/server.pem"),
                ("CARDIO_TLS_KEY_FILE", s(&pki.key)),
            ],
            "CARDIO_TLS_CERT_FILE",
        ),
        // A key that is not the certificate's.
        (
            &[
                ("CARDIO_TLS_CERT_FILE", s(&pki.cert)),
                ("CARDIO_TLS_KEY_FILE", s(&other.key)),
            ],
            "CARDIO_TLS_CERT_FILE",
        ),
        (&[("CARDIO_TLS_CERT_FILE", s(&pki.cert))], "tls_key_file is not"),
        (
            &[
                ("CARDIO_BUS_URL", "amqps://guest:guest@127.0.0.1:5671/%2f"),
                ("CARDIO_BUS_CA_FILE", s(&junk)),
            ],
            "CARDIO_BUS_CA_FILE",
        ),
        (
            &[
                ("CARDIO_BUS_URL", "amqp://guest:guest@127.0.0.1:5672/%2f"),
                ("CARDIO_BUS_CA_FILE", s(&pki.ca)),
            ],
            "CARDIO_BUS_URL",
        ),
        (
            &[(
                "CARDIO_DATABASE_URL",
                "postgres://postgres@localhost:5432/postgres?sslmode=verify-full",
            )],
            "sslrootcert",
        ),
        (
            &[(
                "CARDIO_DATABASE_URL",
                "postgres://postgres@localhost:5432/postgres?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem",
            )],
            "/nonexistent/ca.pem",
        ),
        (
            &[
                ("CARDIO_OTLP_ENDPOINT", "https://127.0.0.1:4318"),
                ("CARDIO_OTLP_CA_FILE", s(&junk)),
            ],
            "CARDIO_OTLP_CA_FILE",
        ),
    ];
    for (envs, named) in cases {
        let (code, err) = serve_exit(envs);
        assert_eq!(code, Some(2), "{envs:?}: {err}");
        assert!(err.contains(named), "{envs:?} must name {named}: {err}");
        assert!(!err.contains("guest:guest"), "no password in: {err}");
    }
}

#[test]
fn probe_answers_for_a_plain_node_and_fails_where_none_listens() {
    let node = TestNode::serve().start();
    let probe = |addr: &str| {
        Command::new(BIN)
            .args(["probe", "--path", "/readyz"])
            .env_clear()
            .env("CARDIO_HTTP_ADDR", addr)
            .output()
            .unwrap()
    };
    let out = probe(&node.addr);
    assert!(out.status.success(), "{out:?}");
    drop(node);
    let out = probe(&format!("127.0.0.1:{}", free_port()));
    assert_eq!(out.status.code(), Some(1), "{out:?}");
}

#[test]
fn otlp_over_https_starts_with_a_ca_file() {
    // The exporter's https client (rustls, ring, the CA) is built at start;
    // no collector needs to answer for the node to run.
    let pki = make_pki("collector CA");
    let node = TestNode::serve()
        .env("CARDIO_OTLP_ENDPOINT", "https://localhost:1")
        .env("CARDIO_OTLP_CA_FILE", &pki.ca)
        .start();
    assert!(node.exited().is_none());
}

// ---- PostgreSQL (tier postgres): Debian's server has `ssl = on` with the
// snakeoil certificate, self-signed for its host name (CN/SAN `localhost` on
// the project's machines; CARDIO_TEST_PG_TLS_HOST names another).

const SNAKEOIL: &str = "/etc/ssl/certs/ssl-cert-snakeoil.pem";

fn pg_tls_url(query: &str) -> String {
    let host = std::env::var("CARDIO_TEST_PG_TLS_HOST").unwrap_or_else(|_| "localhost".into());
    let base = crate::support::services::database_url();
    let rest = base.split_once("://").unwrap().1;
    let user = rest.split_once('@').map_or("postgres", |(u, _)| u);
    format!("postgres://{user}@{host}:5432/postgres?{query}")
}

async fn pg_ssl_in_use(url: &str) -> Result<bool, String> {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(10))
        .connect(url)
        .await
        .map_err(|e| e.to_string())?;
    let ssl: bool = sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .fetch_one(&pool)
        .await
        .map_err(|e| e.to_string())?;
    pool.close().await;
    Ok(ssl)
}

#[actix_rt::test]
async fn postgres_verify_full_connects_with_the_servers_ca_and_refuses_another() {
    needs!(Postgres);
    // verify-full with the server's (self-signed) certificate as the CA.
    let url = pg_tls_url(&format!("sslmode=verify-full&sslrootcert={SNAKEOIL}"));
    assert_eq!(pg_ssl_in_use(&url).await, Ok(true), "{url}");
    // cardio's own store over it.
    let store = cardio::store::Store::connect(&url).await.unwrap();
    store.close().await;
    // require: encrypted, not verified.
    assert_eq!(
        pg_ssl_in_use(&pg_tls_url("sslmode=require")).await,
        Ok(true)
    );
    // Another CA: refused, and the error says why.
    let other = make_pki("not the server's CA");
    let wrong = pg_tls_url(&format!("sslmode=verify-full&sslrootcert={}", s(&other.ca)));
    let err = pg_ssl_in_use(&wrong).await.unwrap_err();
    assert!(
        err.contains("certificate") || err.contains("UnknownIssuer"),
        "a clear error: {err}"
    );
    // And the real binary starts on verify-full, and exits 2 on the wrong CA.
    let node = TestNode::serve().env("CARDIO_DATABASE_URL", &url).start();
    assert!(node.exited().is_none());
    drop(node);
    let (code, err) = serve_exit(&[("CARDIO_DATABASE_URL", wrong.as_str())]);
    eprintln!("refused as it should be: {err}");
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("database"), "{err}");
}

// ---- RabbitMQ (tier rabbitmq): a broker node of the test's own, TLS only,
// on free ports, with certificates made here; the shared broker is left
// alone (but for one refused TLS handshake on its plain port).

/// A RabbitMQ node with a TLS listener; stopped when dropped, and bounded
/// by `timeout` should the test die first.
struct TlsBroker {
    node: String,
    port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl TlsBroker {
    fn start(pki: &Pki) -> TlsBroker {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        // The broker runs as the rabbitmq user: its files must be readable.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let copy = |from: &Path, name: &str| {
            let to = dir.path().join(name);
            std::fs::copy(from, &to).unwrap();
            std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o644)).unwrap();
            to
        };
        let (ca, cert, key) = (
            copy(&pki.ca, "ca.pem"),
            copy(&pki.cert, "server.pem"),
            copy(&pki.key, "server.key"),
        );
        let (port, dist) = (free_port(), free_port());
        let conf = dir.path().join("rabbitmq.conf");
        std::fs::write(
            &conf,
            format!(
                "listeners.tcp = none\n\
                 listeners.ssl.default = 127.0.0.1:{port}\n\
                 ssl_options.cacertfile = {}\n\
                 ssl_options.certfile = {}\n\
                 ssl_options.keyfile = {}\n\
                 ssl_options.verify = verify_peer\n\
                 ssl_options.fail_if_no_peer_cert = true\n",
                s(&ca),
                s(&cert),
                s(&key)
            ),
        )
        .unwrap();
        let plugins = dir.path().join("enabled_plugins");
        std::fs::write(&plugins, "[].\n").unwrap();
        let node = format!("cardio-tls-{}-{port}@localhost", std::process::id());
        let child = Command::new("timeout")
            .args(["300", "rabbitmq-server"])
            .env("RABBITMQ_NODENAME", &node)
            .env("RABBITMQ_NODE_PORT", free_port().to_string())
            .env("RABBITMQ_DIST_PORT", dist.to_string())
            .env("RABBITMQ_CONFIG_FILE", &conf)
            .env("RABBITMQ_MNESIA_BASE", dir.path().join("mnesia"))
            .env("RABBITMQ_LOG_BASE", dir.path().join("log"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", &plugins)
            .env("RABBITMQ_PID_FILE", dir.path().join("pid"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("rabbitmq-server runs");
        let broker = TlsBroker {
            node,
            port,
            child,
            _dir: dir,
        };
        poll_until_blocking(
            "the test broker's TLS listener",
            Duration::from_secs(90),
            Duration::from_millis(200),
            || std::net::TcpStream::connect(("127.0.0.1", port)).ok(),
        );
        broker
    }

    fn url(&self, host: &str) -> String {
        format!("amqps://guest:guest@{host}:{}/%2f", self.port)
    }
}

impl Drop for TlsBroker {
    fn drop(&mut self) {
        let _ = Command::new("rabbitmqctl")
            .args(["-n", &self.node, "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Connects with `ca` and, if given, the client certificate of `client`.
async fn amqps(url: &str, ca: Option<&Path>, client: Option<&Pki>) -> Result<(), String> {
    let tls = cardio::bus::BusTls {
        ca_pem: ca.map(|p| std::fs::read_to_string(p).unwrap()),
        identity: client.map(|p| {
            (
                std::fs::read(&p.client_cert).unwrap(),
                std::fs::read(&p.client_key).unwrap(),
            )
        }),
    };
    let options = cardio::bus::BusOptions {
        shards: 2,
        ..Default::default()
    };
    cardio::bus::connect_with_tls(url, options, tls)
        .await
        .map(drop)
        .map_err(|e| e.to_string())
}

#[actix_rt::test]
async fn amqps_verifies_the_broker_with_a_client_certificate_and_refuses_another_ca_and_a_plaintext_broker(
) {
    needs!(Rabbitmq);
    let pki = make_pki("broker CA");
    let broker = TlsBroker::start(&pki);
    let url = broker.url("localhost");
    amqps(&url, Some(&pki.ca), Some(&pki))
        .await
        .expect("amqps with the CA and a client certificate");
    // The broker requires a client certificate (verify_peer,
    // fail_if_no_peer_cert): without one, or with one of another CA, no.
    let other = make_pki("not the broker's CA");
    assert!(amqps(&url, Some(&pki.ca), None).await.is_err());
    assert!(amqps(&url, Some(&pki.ca), Some(&other)).await.is_err());

    let err = amqps(&url, Some(&other.ca), Some(&pki)).await.unwrap_err();
    assert!(
        err.contains("certificate") || err.contains("UnknownIssuer"),
        "a clear error: {err}"
    );
    // The public roots alone do not trust a private CA either.
    assert!(amqps(&url, None, Some(&pki)).await.is_err());
    // The shared broker's plaintext port behind an amqps:// URL: refused,
    // never a plaintext connection.
    let plain = format!(
        "amqps://guest:guest@{}/%2f",
        crate::support::services::host_port(&crate::support::services::amqp_url())
    );
    assert!(amqps(&plain, Some(&pki.ca), Some(&pki)).await.is_err());

    // The real binary: starts on amqps with the CA, exits 2 on another CA
    // and on the plaintext broker.
    let node = TestNode::serve()
        .env("CARDIO_BUS_URL", &url)
        .env("CARDIO_BUS_CA_FILE", &pki.ca)
        .env("CARDIO_BUS_CLIENT_CERT_FILE", &pki.client_cert)
        .env("CARDIO_BUS_CLIENT_KEY_FILE", &pki.client_key)
        .env("CARDIO_SHARDS", "2")
        .start();
    assert!(node.exited().is_none());
    drop(node);
    for (bus, ca) in [(&url, &other.ca), (&plain, &pki.ca)] {
        let (code, err) = serve_exit(&[
            ("CARDIO_BUS_URL", bus.as_str()),
            ("CARDIO_BUS_CA_FILE", s(ca)),
            ("CARDIO_BUS_CLIENT_CERT_FILE", s(&pki.client_cert)),
            ("CARDIO_BUS_CLIENT_KEY_FILE", s(&pki.client_key)),
            ("CARDIO_SHARDS", "2"),
        ]);
        eprintln!("refused as it should be: {err}");
        assert_eq!(code, Some(2), "{bus}: {err}");
        assert!(err.contains("bus"), "{err}");
        assert!(!err.contains("guest:guest"), "no password in: {err}");
    }
    drop(broker);
}

// ---- Calls between nodes (tier cluster): a node serving HTTPS forwards
// ops views to its peers over https, verifying them with its peer CA.

async fn graphql_https(client: &awc::Client, addr: &str, query: &str) -> serde_json::Value {
    let port = addr.rsplit_once(':').unwrap().1;
    let mut res = client
        .post(format!("https://localhost:{port}/graphql"))
        .insert_header((
            "authorization",
            format!("Bearer {}", token(Role::Ops, "ops-1")),
        ))
        .send_json(&json!({ "query": query }))
        .await
        .unwrap();
    res.json().limit(16 << 20).await.unwrap()
}

#[actix_rt::test]
async fn nodes_serving_https_call_their_peers_over_https_verified_with_the_peer_ca() {
    needs!(Cluster);
    let pki = make_pki("cluster CA");
    let other = make_pki("not the cluster's CA");
    let db = crate::store::TestDb::postgres_empty().await;
    let vhost = crate::broker::Vhost::new();
    let node = |id: &str, peer_ca: &Path| {
        TestNode::serve()
            .name(id)
            .ready_within(Duration::from_secs(60))
            .env("CARDIO_NODE_ID", id)
            .env("CARDIO_BUS_URL", vhost.url())
            .env("CARDIO_DATABASE_URL", db.url())
            .env("CARDIO_SHARDS", "4")
            .env("CARDIO_HEARTBEAT", "200ms")
            .env("CARDIO_LEASE", "1500ms")
            .env("CARDIO_JWT_SECRET", SECRET)
            .env("CARDIO_TLS_CERT_FILE", &pki.cert)
            .env("CARDIO_TLS_KEY_FILE", &pki.key)
            .env("CARDIO_TLS_PEER_CA_FILE", peer_ca)
            .start()
    };
    // a trusts the cluster's CA; b trusts another one.
    let (a, b) = (node("a", &pki.ca), node("b", &other.ca));
    let client = https_client(&pki.ca);
    crate::support::poll::poll_until(
        "both nodes up in a's view",
        Duration::from_secs(30),
        Duration::from_millis(100),
        async || {
            let v = graphql_https(&client, &a.addr, "{ cluster { nodes { id status } } }").await;
            let up = v["data"]["cluster"]["nodes"]
                .as_array()
                .map_or(0, |n| n.iter().filter(|n| n["status"] == "UP").count());
            (up == 2).then_some(())
        },
    )
    .await;
    // a → b over https (b serves nothing else): b's tree comes back.
    let v = graphql_https(
        &client,
        &a.addr,
        r#"{ supervisionTree(node: "b") { node path } }"#,
    )
    .await;
    let nodes = v["data"]["supervisionTree"].as_array().expect("b's tree");
    assert!(
        !nodes.is_empty() && nodes.iter().all(|n| n["node"] == "b"),
        "{v}"
    );
    // b → a: a's certificate is not from the CA b trusts, so no tree (and
    // no bearer token sent to an unverified server).
    let v = graphql_https(
        &client,
        &b.addr,
        r#"{ supervisionTree(node: "a") { node path } }"#,
    )
    .await;
    assert!(v["errors"].is_array(), "{v}");
    assert_eq!(v["errors"][0]["extensions"]["code"], "UNAVAILABLE", "{v}");
    poll_until_blocking(
        "b to log why a did not answer",
        Duration::from_secs(5),
        Duration::from_millis(20),
        || b.log().contains("UnknownIssuer").then_some(()),
    );
    drop((a, b));
    db.done().await;
}

/// An identity provider's JWKS URL over https is verified (against the
/// public roots): keys from a server they do not vouch for are not read,
/// nothing falls back to plain HTTP, and the node does not start.
#[actix_rt::test]
async fn a_jwks_url_over_https_whose_certificate_does_not_verify_stops_the_start() {
    let pki = make_pki("a private CA");
    let idp = https_node(&pki);
    let url = format!("https://localhost:{}/healthz", port(&idp));
    let (code, err) = serve_exit(&[("CARDIO_OIDC_JWKS_URL", url.as_str())]);
    assert!(matches!(code, Some(c) if c != 0), "{code:?}: {err}");
    assert!(err.contains("cannot fetch the JWKS"), "{err}");
    assert!(err.contains("UnknownIssuer"), "{err}");
}
