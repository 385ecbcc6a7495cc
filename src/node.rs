//! One cardio process: what starts in which order, and how it stops.
//!
//! Start-up: database (connect, migrate) → bus → arbiters (one per core) →
//! root supervisor `/cardio` with its `entities` subtree → registry and actor
//! kinds (their journal writes fenced by shard ownership) → HTTP listener →
//! cluster join (lease, shard consumers, shard ownership; a single node is a
//! cluster of one) → HTTP serving → ready. Stop: not ready → HTTP stops
//! accepting connections → the node leaves the cluster (each shard: finish
//! the message in hand, passivate its actors, saving their snapshots,
//! release it in SQL) → the supervision tree shuts down in reverse start
//! order (stop hooks flush state), all within the configured grace period →
//! last audit checkpoint → the HTTP workers stop (requests in flight
//! finish) → the database pool closes → arbiters stop; the bus's runtime
//! goes with the node. The HTTP workers and arbiters run tokio runtimes of
//! their own, and a database connection opened on one dies with it: so they
//! stop only after the last database work.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::Arbiter;
use actix_web::{web, App, HttpServer};
use anyhow::Context as _;
use tokio::sync::mpsc;

use crate::api::{self, ApiState};
use crate::bus::{self, Bus, BusOptions};
use crate::cluster::{Cluster, ClusterSettings, Fence};
use crate::config::Config;
use crate::registry::Registry;
use crate::store::Store;
use crate::supervisors::{ArbiterPool, ChildSpec, Strategy, SupervisorRef, SupervisorSpec, Tree};

mod at_rest;
mod tls;

pub use at_rest::key_provider;
use at_rest::{at_rest, checkpoint_once, local_token_key, write_checkpoints};
use tls::{bus_tls, peer_tls, reload_on_sighup, server_cert, warn_unverified_database};

/// How a node ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    /// Stopped on request and drained in time.
    Drained,
    /// Stopped on request but the drain outlived the grace period.
    DrainTimedOut,
    /// The root supervisor gave up; Kubernetes should restart the pod.
    RootFailed(String),
}

impl Exit {
    /// The process exit code.
    pub fn code(&self) -> u8 {
        match self {
            Exit::Drained => 0,
            Exit::DrainTimedOut => 1,
            Exit::RootFailed(_) => 3,
        }
    }
}

/// A running node. Build it inside an actix `System`.
pub struct Node {
    config: Config,
    tree: Tree,
    registry: Registry,
    bus: Arc<dyn Bus>,
    store: Store,
    root: SupervisorRef,
    entities: SupervisorRef,
    cluster: Cluster,
    http: actix_web::dev::ServerHandle,
    http_addr: SocketAddr,
    arbiters: Vec<Arbiter>,
    root_failed: mpsc::UnboundedReceiver<String>,
    ready: Arc<AtomicBool>,
    retention: tokio::task::JoinHandle<()>,
    /// The access gate: its last gathered activity is written at the end.
    gate: Arc<crate::api::gate::Gate>,
    /// Signed audit checkpoints (issue 13): where, and the periodic writer.
    checkpoints: Option<Arc<crate::crypto::FileSink>>,
    checkpointer: Option<tokio::task::JoinHandle<()>>,
    /// On the embedded defaults with no key configured: the node's own key,
    /// to mint the local sign-in link (issue 14).
    local_auth: Option<crate::auth::Authenticator>,
    /// `http` or `https`, as served.
    scheme: &'static str,
}

impl Node {
    /// Starts everything; the node is ready when this returns.
    pub async fn build(config: Config) -> anyhow::Result<Node> {
        crate::metrics::install(&config.node_id);
        crate::metrics::spawn_upkeep();
        let store = Store::connect(config.database_url.expose())
            .await
            .with_context(|| format!("cannot open the database at {}", config.database_url))?;
        store
            .migrate()
            .await
            .context("cannot migrate the database")?;
        tracing::info!(database = store.backend(), "database ready");
        let store = at_rest(&config, &store).await?;
        // Pseudonyms in logs and ops views, under the cluster's key (issue 13).
        let pseudonym_key = store
            .cluster_secret("pseudonym", crate::redact::pseudonym::random_key())
            .await
            .context("cannot read the cluster's pseudonym key")?;
        crate::redact::pseudonym::set_key(pseudonym_key);

        warn_unverified_database(&config);
        let bus = bus::connect_with_tls(
            config.bus_url.expose(),
            BusOptions {
                shards: config.shards,
                delivery_limit: config.delivery_limit,
                ..BusOptions::default()
            },
            bus_tls(&config)?,
        )
        .await
        .with_context(|| format!("cannot open the bus at {}", config.bus_url))?;
        let fence = Fence::new(bus.shards());
        // After a broker restart, consumers of the shards this node holds
        // attach before those it stands by for (bus::amqp::consume).
        let held = Arc::clone(&fence);
        bus.prefer_shards(Arc::new(move |shard| held.epoch(shard).is_some()));
        let fenced = store.fenced(Arc::clone(&fence));

        let arbiters: Vec<Arbiter> = (0..config.arbiter_count())
            .map(|_| Arbiter::new())
            .collect();
        let pool = ArbiterPool::new(arbiters.iter().map(|a| a.handle()).collect());
        tracing::info!(node = %config.node_id, arbiters = pool.len(), "starting");

        let tree = Tree::new();
        let (failed_tx, root_failed) = mpsc::unbounded_channel();
        let spec = SupervisorSpec::new("cardio")
            .strategy(Strategy::OneForOne)
            .child(ChildSpec::supervisor(SupervisorSpec::new("entities")));
        let root = SupervisorRef::start_root(spec, &tree, &pool, move |reason| {
            let _ = failed_tx.send(reason);
        })
        .await;
        let entities = root
            .supervisor("entities")
            .await
            .context("the entities supervisor did not start")?;

        let registry = Registry::with_timeouts(
            tree.clone(),
            pool,
            config.request_timeout,
            config.idle_timeout,
        );
        let sampled = tree.clone();
        crate::metrics::recent::spawn_sampler(move || {
            let counts = sampled.actor_counts();
            crate::metrics::recent::Gauges {
                actors_live: counts.iter().map(|(_, live, _)| live).sum(),
                mailbox_depth: counts.iter().map(|(_, _, depth)| depth).sum(),
            }
        });
        let events = crate::bus::events::Events::start(Arc::clone(&bus));
        obey_restarts(&bus, &registry).await?;
        forward_supervision_events(&tree, &events, &config.node_id);
        register_kinds(&registry, &entities, &fenced, &events, &config).await?;
        let retention = actix_rt::spawn(prune_samples(store.clone(), config.sample_retention));
        let checkpoints = config
            .audit_checkpoint_file()
            .map(|path| Arc::new(crate::crypto::FileSink::new(&path)));
        let checkpointer = checkpoints.as_ref().map(|sink| {
            actix_rt::spawn(write_checkpoints(
                store.clone(),
                Arc::clone(sink),
                config.audit_checkpoint_every,
                config.node_id.clone(),
            ))
        });
        if checkpoints.is_none() {
            tracing::warn!("no audit_checkpoint_file: deletions at the end of the audit log will not be detected");
        }

        let listener = std::net::TcpListener::bind(config.http_addr)
            .with_context(|| format!("cannot listen on {}", config.http_addr))?;
        let http_addr = listener.local_addr()?;
        let cluster = Cluster::join(
            ClusterSettings {
                node_id: config.node_id.clone(),
                addr: config
                    .advertise_addr
                    .clone()
                    .unwrap_or_else(|| http_addr.to_string()),
                shards: bus.shards(),
                heartbeat: config.heartbeat,
                lease: config.lease,
                prefetch: config.prefetch,
                replicas: 2,
            },
            store.clone(),
            Arc::clone(&bus),
            registry.clone(),
            fence,
        )
        .await
        .context("cannot join the cluster")?;

        let local_key = local_token_key(&config)?;
        let auth = crate::auth::Authenticator::from_config_async(&config)
            .await
            .map_err(|e| anyhow::anyhow!("cannot use the token key: {e}"))?;
        // The embedded defaults' own key: this node mints local sign-in links.
        let local_auth = auth.clone().filter(|_| local_key);
        if let Some(a) = auth.as_ref().filter(|a| a.fetches_keys()).cloned() {
            // The identity provider rotates its keys: fetch them again.
            actix_rt::spawn(async move {
                loop {
                    tokio::time::sleep(crate::auth::JWKS_REFRESH).await;
                    if let Err(e) = a.refresh_jwks().await {
                        tracing::warn!(error = %e, "the JWKS was not refreshed; the keys in use stay");
                    }
                }
            });
        }
        let gate = crate::api::gate::Gate::new(
            store.clone(),
            Arc::clone(&bus),
            crate::api::gate::Logoff::from_config(&config),
        );
        gate.start(config.audit_auth_failures_every)
            .await
            .context("cannot subscribe to access changes")?;
        if auth.is_none() {
            tracing::warn!(
                "no CARDIO_JWT_SECRET nor RS256 key: the GraphQL API refuses every request"
            );
        }
        let requester = Arc::new(
            crate::bus::client::Requester::new(Arc::clone(&bus))
                .await
                .context("cannot subscribe to replies")?
                .with_local(cluster.local_path()),
        );
        let limiter = crate::api::rate_limiter(config.rate_limit);
        let limits = crate::api::limits::Limits::from_config(&config);
        let graphql = crate::api::graphql::schema(
            crate::api::graphql::Deps {
                store: store.clone(),
                bus: Arc::clone(&bus),
                requester: Arc::clone(&requester),
                cluster: cluster.clone(),
                node_id: config.node_id.clone(),
                tree: tree.clone(),
                limiter: Arc::clone(&limiter),
                subscriptions: Arc::default(),
                alarms: config.alarms(),
                peer_tls: peer_tls(&config)?,
                gate: Arc::clone(&gate),
                break_glass: config.break_glass_duration,
                limits: Arc::clone(&limits),
            },
            config.dev,
        );
        let ready = Arc::new(AtomicBool::new(false));
        let state = ApiState {
            node_id: config.node_id.clone(),
            tree: tree.clone(),
            bus: Arc::clone(&bus),
            store: store.clone(),
            ready: Arc::clone(&ready),
            cluster: cluster.clone(),
            graphql,
            open_debug: auth.is_none() || local_key,
            auth,
            dev: config.dev,
            limiter,
            touches: Arc::new(crate::api::touches::Touches::new(
                config.session_logoff,
                Arc::clone(&requester),
            )),
            requester,
            gate: Arc::clone(&gate),
            limits,
        };
        let grace = config.shutdown_grace.as_secs().max(1);
        let server = HttpServer::new(move || {
            App::new()
                .app_data(web::Data::new(state.clone()))
                .configure(api::routes)
        })
        .workers(2)
        // A request's head within 5 s (actix's default) or the body's
        // deadline if shorter; the body's: api::limits.
        .client_request_timeout(config.body_read_timeout.min(Duration::from_secs(5)))
        .disable_signals()
        .shutdown_timeout(grace);
        let (server, scheme) = match server_cert(&config)? {
            Some(cert) => {
                let tls = cert.server_config().context("cannot set up HTTPS")?;
                reload_on_sighup(cert);
                (server.listen_rustls_0_23(listener, tls)?, "https")
            }
            None => (server.listen(listener)?, "http"),
        };
        let server = server.run();
        let http = server.handle();
        actix_rt::spawn(server);

        ready.store(true, Ordering::Release);
        tracing::info!(node = %config.node_id, addr = %http_addr, scheme, bus = %bus.describe(), "listening");
        Ok(Node {
            local_auth,
            scheme,
            config,
            tree,
            registry,
            bus,
            store,
            root,
            entities,
            cluster,
            http,
            http_addr,
            arbiters,
            root_failed,
            ready,
            retention,
            gate,
            checkpoints,
            checkpointer,
        })
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The address a browser on this host opens: the bound one, or
    /// 127.0.0.1 when bound to every interface.
    pub fn local_url(&self) -> String {
        browser_url(self.scheme, self.http_addr)
    }

    /// A sign-in link for `principal`, valid for `ttl`, that opens the
    /// console with a token in the URL's fragment (never sent to a server):
    /// only on the embedded defaults with no key configured, where the node
    /// holds its own key; `None` otherwise.
    pub fn sign_in_link(
        &self,
        principal: &crate::principal::Principal,
        ttl: Duration,
    ) -> Option<String> {
        let auth = self.local_auth.as_ref()?;
        match auth.mint(principal, ttl) {
            Ok(token) => Some(format!("{}/#token={token}", self.local_url())),
            Err(e) => {
                tracing::warn!(error = %e, "no sign-in link: the token was not minted");
                None
            }
        }
    }

    pub fn tree(&self) -> &Tree {
        &self.tree
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    pub fn bus(&self) -> &Arc<dyn Bus> {
        &self.bus
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    /// Where entity kinds' supervisors attach.
    pub fn entities(&self) -> &SupervisorRef {
        &self.entities
    }

    /// Serves until `shutdown` resolves (then drains) or the root fails.
    pub async fn run_until_stopped(mut self, shutdown: impl Future<Output = ()>) -> Exit {
        let failure = tokio::select! {
            () = shutdown => None,
            reason = self.root_failed.recv() => reason,
        };
        self.ready.store(false, Ordering::Release);
        let exit = match failure {
            Some(reason) => {
                tracing::error!(%reason, "root supervisor failed; exiting");
                self.http.stop(false).await;
                Exit::RootFailed(reason)
            }
            None => {
                let grace = self.config.shutdown_grace;
                tracing::info!(?grace, "draining");
                let (http, cluster, root) =
                    (self.http.clone(), self.cluster.clone(), self.root.clone());
                // The HTTP workers stop last: each runs a tokio runtime of
                // its own, and the database connections the API opened
                // there die with it ("A Tokio 1.x context was found, but it
                // is being shutdown"). Stopping them first made the hand-over
                // below (snapshots, shard releases) fail on those connections.
                let drain = async move {
                    http.pause().await;
                    cluster.leave().await;
                    root.shutdown().await;
                };
                match tokio::time::timeout(grace, drain).await {
                    Ok(()) => {
                        tracing::info!("drained");
                        Exit::Drained
                    }
                    Err(_) => {
                        tracing::error!(?grace, "drain did not finish within the grace period");
                        Exit::DrainTimedOut
                    }
                }
            }
        };
        self.retention.abort();
        if let Some(task) = &self.checkpointer {
            task.abort();
        }
        if let Some(sink) = self.checkpoints.clone() {
            // The last checkpoint: what this node saw the chain reach.
            checkpoint_once(&self.store, sink, &self.config.node_id, &mut 0).await;
        }
        // Then the API's workers (requests in flight finish), the pool, and
        // only then the arbiters: nothing uses the database any more.
        if exit != Exit::Drained {
            self.http.stop(false).await;
        } else {
            self.http.stop(true).await;
        }
        // The activity gathered since the last write (no request adds any now).
        self.gate.write_activity().await;
        self.store.close().await;
        for arbiter in &self.arbiters {
            arbiter.stop();
        }
        exit
    }
}

/// The domain actors, each kind under its own supervisor below `entities`,
/// with the bus routes that reach them.
async fn register_kinds(
    registry: &Registry,
    entities: &SupervisorRef,
    store: &Store,
    events: &crate::bus::events::Events,
    config: &Config,
) -> anyhow::Result<()> {
    use crate::actors::consult::{self, ConsultActor};
    use crate::actors::device::stream::{self, DeviceStream, StreamSettings};
    use crate::actors::session::{self, PatientSession};
    use crate::registry::KindSpec;

    let (s, logoff, ev) = (store.clone(), config.session_logoff, events.clone());
    // Sessions stay in memory past their logoff: presence is not journaled.
    let session_idle = config.idle_timeout.max(logoff * 2);
    let sessions = registry
        .register(
            entities,
            KindSpec::new(move |id: &str| {
                PatientSession::new(id, s.clone(), logoff).with_events(ev.clone())
            })
            .idle_timeout(Some(session_idle)),
        )
        .await?;
    registry.route::<PatientSession, session::Connect>(&sessions);
    registry.route::<PatientSession, session::Disconnect>(&sessions);
    // Activity only restarts a live session's idle clock: a session not in
    // memory has no app connections to log off, and is not started for it.
    registry.route_if_live::<PatientSession, session::Activity>(&sessions);
    registry.route::<PatientSession, session::SetConsult>(&sessions);
    registry.route::<PatientSession, session::AddDevice>(&sessions);
    registry.route::<PatientSession, session::ViewSession>(&sessions);

    let (s, no_show, ev) = (store.clone(), config.no_show_after, events.clone());
    let consults = registry
        .register(
            entities,
            KindSpec::new(move |id: &str| {
                ConsultActor::new(id, s.clone(), no_show).with_events(ev.clone())
            }),
        )
        .await?;
    registry.route::<ConsultActor, consult::Act>(&consults);
    registry.route::<ConsultActor, consult::View>(&consults);
    // Open consults' no-show checks live in memory: start them again.
    let (s, open) = (store.clone(), consults.clone());
    actix_rt::spawn(async move {
        let n = consult::reactivate_open_consults(&s, &open).await;
        if n > 0 {
            tracing::info!(
                consults = n,
                "open consults started again for their no-show checks"
            );
        }
    });

    let s = store.clone();
    let settings = StreamSettings {
        alarms: config.alarms(),
        rhythm: config.rhythm(),
        keepalive: config.idle_timeout / 2,
        ..StreamSettings::default()
    };
    let ev = events.clone();
    let devices = registry
        .register(
            entities,
            KindSpec::new(move |id: &str| {
                DeviceStream::new(id, s.clone(), settings.clone()).with_events(ev.clone())
            }),
        )
        .await?;
    registry.route::<DeviceStream, stream::Push>(&devices);
    registry.route::<DeviceStream, stream::PushMany>(&devices);
    registry.route::<DeviceStream, stream::OpenAggregates>(&devices);
    registry.route::<DeviceStream, stream::Latest>(&devices);
    registry.route::<DeviceStream, stream::Acknowledge>(&devices);
    registry.route::<DeviceStream, stream::Reconfigure>(&devices);
    Ok(())
}

/// Publishes this node's supervision events on `supervision.<node>`, so ops
/// connected to any node see every node's restarts.
fn forward_supervision_events(tree: &Tree, events: &crate::bus::events::Events, node: &str) {
    let mut rx = tree.events();
    let (events, topic, node) = (
        events.clone(),
        format!("supervision.{}", crate::bus::events::topic_word(node)),
        node.to_owned(),
    );
    actix_rt::spawn(async move {
        loop {
            match rx.recv().await {
                Ok(event) => events.publish(
                    &topic,
                    &crate::bus::events::NodeSupervisionEvent {
                        node: node.clone(),
                        event,
                    },
                ),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "supervision events dropped before publishing")
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            }
        }
    });
}

/// Restarts the actors `restartActor` names (on whichever node hosts them):
/// the incarnation here stops, and the next message starts a fresh one from
/// the journal.
async fn obey_restarts(bus: &Arc<dyn Bus>, registry: &Registry) -> anyhow::Result<()> {
    let mut sub = bus
        .subscribe(crate::api::graphql::RESTART_TOPIC, 64)
        .await
        .context("cannot subscribe to restart requests")?;
    let registry = registry.clone();
    actix_rt::spawn(async move {
        use crate::api::graphql::ops::RestartRequest;
        while let Some((env, request)) = sub.next_of::<RestartRequest>().await {
            let actor = request.actor.as_str();
            let n = registry
                .passivate_where(|key| key == actor, Duration::from_secs(10))
                .await;
            if n > 0 {
                // The actor's kind at info level; its id (a patient's, for
                // sessions) only at debug.
                let kind = actor.split('/').next().unwrap_or("");
                let by = env.principal.map(|p| p.subject);
                tracing::info!(kind, ?by, "actor restarted on request");
                tracing::debug!(%actor, "actor restarted on request");
            }
        }
    });
    Ok(())
}

/// Deletes raw device samples past their retention, hourly.
async fn prune_samples(store: Store, retention: Duration) {
    let mut every_hour = tokio::time::interval(Duration::from_secs(3600));
    loop {
        every_hour.tick().await;
        let cutoff = crate::clock::unix_ms().saturating_sub(retention.as_millis() as u64);
        match store.prune_journal("device/", cutoff).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(chunks = n, "raw samples past retention deleted"),
            Err(e) => {
                tracing::warn!(error = %e, "raw sample retention failed; retrying in an hour")
            }
        }
        // The ECG chunk index (beats, strips) goes with the raw samples.
        if let Err(e) = store.prune_ecg_chunks(cutoff).await {
            tracing::warn!(error = %e, "ECG index retention failed; retrying in an hour")
        }
    }
}

/// The URL a browser on this host opens for a node bound to `bound`: the
/// loopback address when bound to every interface.
fn browser_url(scheme: &str, bound: SocketAddr) -> String {
    let ip = match bound.ip() {
        ip if !ip.is_unspecified() => ip,
        std::net::IpAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
        std::net::IpAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
    };
    format!("{scheme}://{}", SocketAddr::new(ip, bound.port()))
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => tracing::info!("SIGINT received"),
            _ = term.recv() => tracing::info!("SIGTERM received"),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_browser_is_sent_to_loopback_when_the_node_binds_every_interface() {
        let url = |scheme, addr: &str| browser_url(scheme, addr.parse().unwrap());
        assert_eq!(url("http", "0.0.0.0:8080"), "http://127.0.0.1:8080");
        assert_eq!(url("https", "[::]:8443"), "https://[::1]:8443");
        assert_eq!(url("http", "10.1.2.3:9000"), "http://10.1.2.3:9000");
    }
}
