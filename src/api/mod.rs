//! HTTP endpoints: probes for Kubernetes and the ops views of the machinery.
//!
//! - `GET /healthz`: 200 while the process serves requests (liveness);
//! - `GET /readyz`: 200 only when the node takes work (readiness): started,
//!   bus and database answering, joined the cluster with a valid lease; 503
//!   while starting, draining or cut off;
//! - `GET /metrics`: Prometheus metrics (see [`crate::metrics`]);
//! - `GET /debug/tree`: the supervision tree as nested JSON;
//! - `GET /debug/cluster`: the membership view (nodes, shards with owner and
//!   epoch) as this node sees it.
//!
//! The API reads the tree and the bus; it never reaches into an actor's state.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use actix_web::{web, HttpResponse};
use serde_json::json;

pub mod access;
pub mod graphql;
mod live;
pub mod monitoring;
mod observe;

use crate::auth::Authenticator;
use crate::bus::Bus;
use crate::store::Store;
use crate::supervisors::Tree;

/// What the handlers need.
#[derive(Clone)]
pub struct ApiState {
    pub node_id: String,
    pub tree: Tree,
    pub bus: Arc<dyn Bus>,
    pub store: Store,
    /// Set once the node is up, cleared when it starts draining.
    pub ready: Arc<AtomicBool>,
    pub cluster: crate::cluster::Cluster,
    pub graphql: graphql::CardioSchema,
    /// `None`: no key configured, so every GraphQL request is unauthenticated.
    pub auth: Option<Authenticator>,
    /// GraphiQL at `/graphiql`.
    pub dev: bool,
    /// Per-principal request budget.
    pub limiter: Arc<RateLimiter>,
    /// Request–reply with actors (sessions), wherever they live.
    pub requester: Arc<crate::bus::client::Requester>,
}

/// Requests per second per principal (subject), with bursts.
pub type RateLimiter = governor::DefaultKeyedRateLimiter<String>;

/// A limiter allowing `per_second` requests a second per principal.
pub fn rate_limiter(per_second: u32) -> Arc<RateLimiter> {
    let rate = std::num::NonZeroU32::new(per_second.max(1)).expect("non-zero");
    let burst = std::num::NonZeroU32::new(per_second.max(1).saturating_mul(2)).expect("non-zero");
    Arc::new(governor::RateLimiter::keyed(
        governor::Quota::per_second(rate).allow_burst(burst),
    ))
}

/// An actor path as ops may see it: a session actor is named by its
/// patient's id, so that id is replaced by a short hash (ops see the
/// machinery, not who is online).
pub fn mask_path(path: &str) -> String {
    const SESSIONS: &str = "/cardio/entities/session/";
    match path.strip_prefix(SESSIONS) {
        Some(id) if !id.is_empty() && !id.starts_with('#') => {
            format!("{SESSIONS}{}", mask_id(id))
        }
        _ => path.to_owned(),
    }
}

/// A short, stable stand-in for an id.
pub fn mask_id(id: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(id.as_bytes());
    let hex: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
    format!("#{hex}")
}

fn mask_tree(v: &mut crate::supervisors::TreeView) {
    let masked = mask_path(&v.path);
    if masked != v.path {
        v.id = mask_id(&v.id);
        v.path = masked;
    }
    for c in &mut v.children {
        mask_tree(c);
    }
}

/// Mounts the routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/metrics", web::get().to(metrics))
        .route("/debug/tree", web::get().to(tree))
        .route("/debug/cluster", web::get().to(cluster))
        .service(
            web::resource("/graphql")
                .app_data(web::PayloadConfig::new(MAX_REQUEST_BYTES))
                .route(web::post().to(graphql_post))
                .route(web::get().to(graphql_ws)),
        )
        .route("/graphiql", web::get().to(graphiql));
}

async fn healthz(state: web::Data<ApiState>) -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok", "node": state.node_id}))
}

async fn readyz(state: web::Data<ApiState>) -> HttpResponse {
    let up = state.ready.load(Ordering::Acquire);
    let bus = state.bus.healthy().await;
    let database = state.store.healthy().await;
    let joined = state.cluster.joined();
    let ready = up && bus && database && joined;
    let body = json!({
        "node": state.node_id,
        "ready": ready,
        "checks": {"started": up, "bus": bus, "database": database, "cluster": joined},
    });
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

/// `GET /metrics`: Prometheus text format. Labels are kinds, reasons and
/// operation names, never ids: open to the scraper like the probes.
async fn metrics(state: web::Data<ApiState>) -> HttpResponse {
    let Some(handle) = crate::metrics::handle() else {
        return HttpResponse::NotFound().body("metrics are not enabled in this process\n");
    };
    let view = state.cluster.view().await;
    let now = crate::clock::unix_ms();
    let (in_use, idle, max) = state.store.pool_stats();
    let ready = state.ready.load(Ordering::Acquire) && state.cluster.joined();
    crate::metrics::refresh(&crate::metrics::Snapshot {
        actors: state.tree.actor_counts(),
        shards_owned: state.cluster.fence().held().len() as u64,
        cluster_nodes: view
            .nodes
            .iter()
            .filter(|n| {
                n.lease_until > now && matches!(n.status.as_str(), "up" | "joining" | "leaving")
            })
            .count() as u64,
        pool_in_use: u64::from(in_use),
        pool_idle: u64::from(idle),
        pool_max: u64::from(max),
        ready,
    });
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(handle.render())
}

/// The `/debug/*` views show no PHI but the machinery: with a token key
/// configured they need an ops or admin token; without one (the embedded
/// single node) they are open like the probes.
fn ops_only(state: &ApiState, req: &actix_web::HttpRequest) -> Option<HttpResponse> {
    use crate::principal::Role;
    let auth = state.auth.as_ref()?;
    let header = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok());
    match auth.verify_header(header) {
        Ok(p) if matches!(p.role, Role::Ops | Role::Admin) => None,
        Ok(_) => Some(
            HttpResponse::Forbidden().json(json!({"error": "not allowed", "code": "FORBIDDEN"})),
        ),
        Err(e) => Some(
            HttpResponse::Unauthorized().json(json!({"error": e.to_string(), "code": e.code()})),
        ),
    }
}

async fn tree(state: web::Data<ApiState>, req: actix_web::HttpRequest) -> HttpResponse {
    if let Some(refused) = ops_only(&state, &req) {
        return refused;
    }
    let mut roots = state.tree.view();
    for r in &mut roots {
        mask_tree(r);
    }
    match roots.len() {
        0 => HttpResponse::ServiceUnavailable().json(json!({"error": "no supervision tree"})),
        1 => HttpResponse::Ok()
            .insert_header(("x-cardio-node", state.node_id.clone()))
            .json(roots.remove(0)),
        _ => HttpResponse::Ok()
            .insert_header(("x-cardio-node", state.node_id.clone()))
            .json(json!({"roots": roots})),
    }
}

async fn cluster(state: web::Data<ApiState>, req: actix_web::HttpRequest) -> HttpResponse {
    if let Some(refused) = ops_only(&state, &req) {
        return refused;
    }
    HttpResponse::Ok()
        .insert_header(("x-cardio-node", state.node_id.clone()))
        .json(state.cluster.view().await)
}

/// Largest GraphQL request body.
const MAX_REQUEST_BYTES: usize = 1024 * 1024;
/// Most operations in one batched request.
const MAX_BATCH: usize = 10;

/// An error answered before any operation ran (authentication, rate
/// limit, a body that is no GraphQL request), counted as operation `none`.
fn gql_error(status: actix_web::http::StatusCode, code: &str, message: &str) -> HttpResponse {
    crate::metrics::graphql_request("none", code, std::time::Duration::ZERO);
    HttpResponse::build(status).json(json!({
        "errors": [{"message": message, "extensions": {"code": code}}]
    }))
}

/// `POST /graphql`: one operation or a batch of at most [`MAX_BATCH`].
async fn graphql_post(
    state: web::Data<ApiState>,
    req: actix_web::HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    use actix_web::http::StatusCode;
    let principal = match (&state.auth, req.headers().get("authorization")) {
        (_, None) => None,
        (None, Some(_)) => {
            let e = crate::auth::AuthError::NoKey("verify");
            return gql_error(StatusCode::UNAUTHORIZED, e.code(), &e.to_string());
        }
        (Some(auth), Some(value)) => match auth.verify_header(value.to_str().ok()) {
            Ok(p) => Some(p),
            Err(e) => return gql_error(StatusCode::UNAUTHORIZED, e.code(), &e.to_string()),
        },
    };
    // Each principal has a budget; requests without one share their address's.
    let key = match &principal {
        Some(p) => p.subject.clone(),
        None => format!(
            "addr:{}",
            req.peer_addr()
                .map(|a| a.ip().to_string())
                .unwrap_or_default()
        ),
    };
    if state.limiter.check_key(&key).is_err() {
        return gql_error(
            StatusCode::TOO_MANY_REQUESTS,
            "RATE_LIMITED",
            "too many requests; slow down",
        );
    }
    if let Some(p) = principal
        .as_ref()
        .filter(|p| p.role == crate::principal::Role::Patient)
    {
        // The patient is active: their session's idle clock starts over.
        if let Ok(to) = crate::registry::ActorId::new("session", &p.subject) {
            if let Ok(env) = crate::bus::Envelope::new("session.activity", &()) {
                let bus = Arc::clone(&state.bus);
                actix_rt::spawn(async move {
                    let _ = bus.send(&env.to(to)).await;
                });
            }
        }
    }
    let batch: async_graphql::BatchRequest = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => {
            let why = crate::registry::describe_json_error(&e);
            return gql_error(
                StatusCode::BAD_REQUEST,
                "BAD_REQUEST",
                &format!("not a GraphQL request: {why}"),
            );
        }
    };
    let batch = match batch {
        async_graphql::BatchRequest::Batch(v) if v.len() > MAX_BATCH => {
            return gql_error(
                StatusCode::BAD_REQUEST,
                "BATCH_TOO_LARGE",
                &format!("at most {MAX_BATCH} operations per request"),
            )
        }
        b => b,
    };
    let bearer = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| graphql::Bearer(t.trim().to_owned()));
    let batch = match principal {
        Some(p) => batch.data(p),
        None => batch,
    };
    let batch = match bearer {
        Some(b) => batch.data(b),
        None => batch,
    };
    let response = state.graphql.execute_batch(batch).await;
    // Errors async-graphql raises itself (parse, validation, limits) carry no
    // code: give them one, so that every error a client sees is coded.
    let mut body = serde_json::to_value(&response).unwrap_or_default();
    let single = std::slice::from_mut(&mut body);
    let responses = match single[0].as_array_mut() {
        Some(many) => many.as_mut_slice(),
        None => single,
    };
    for r in responses {
        if let Some(errors) = r.get_mut("errors").and_then(|e| e.as_array_mut()) {
            for e in errors {
                let ext = e
                    .as_object_mut()
                    .map(|o| o.entry("extensions").or_insert_with(|| json!({})));
                if let Some(serde_json::Value::Object(ext)) = ext {
                    ext.entry("code").or_insert_with(|| json!("BAD_REQUEST"));
                }
            }
        }
    }
    HttpResponse::Ok().json(body)
}

/// `GET /graphql` upgraded to a WebSocket: subscriptions (graphql-transport-ws).
/// The token comes in `connection_init`'s payload (`authorization` or
/// `Authorization`: `Bearer …`, or `token`).
async fn graphql_ws(
    state: web::Data<ApiState>,
    req: actix_web::HttpRequest,
    payload: web::Payload,
) -> actix_web::Result<HttpResponse> {
    use futures_util::StreamExt;
    let auth = state.auth.clone();
    // The connection closes when its token expires: the token's expiry,
    // known once `connection_init` verified it, ends the inbound stream, and
    // the socket with it.
    let expiry = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let known = Arc::new(tokio::sync::Notify::new());
    let (exp_in, known_in) = (Arc::clone(&expiry), Arc::clone(&known));
    let expired = async move {
        loop {
            let exp = exp_in.load(Ordering::Acquire);
            if exp == 0 {
                known_in.notified().await;
                continue;
            }
            // A moment after the subscriptions completed (at `exp`).
            let left = (exp * 1000 + 250).saturating_sub(crate::clock::unix_ms());
            tokio::select! {
                _ = tokio::time::sleep(std::time::Duration::from_millis(left)) => return,
                // Moved earlier (the session logged off): look again.
                _ = known_in.notified() => continue,
            }
        }
    };
    // A patient's connection is one of their session's apps: it closes when
    // the session logs off, and leaves the session when it closes.
    let connection = uuid::Uuid::new_v4().simple().to_string();
    let patient: Arc<std::sync::Mutex<Option<String>>> = Arc::default();
    let watcher: Arc<std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>> = Arc::default();
    let on_close = OnClose(Some(Box::new({
        let (patient, watcher, requester, connection) = (
            Arc::clone(&patient),
            Arc::clone(&watcher),
            Arc::clone(&state.requester),
            connection.clone(),
        );
        move || {
            if let Some(w) = watcher.lock().unwrap_or_else(|e| e.into_inner()).take() {
                w.abort();
            }
            let who = patient.lock().unwrap_or_else(|e| e.into_inner()).take();
            if let Some(to) = who.and_then(|p| crate::registry::ActorId::new("session", &p).ok()) {
                actix_rt::spawn(async move {
                    let _ = requester
                        .request::<_, serde_json::Value>(
                            &to,
                            "session.disconnect",
                            &crate::actors::session::Disconnect { connection },
                            std::time::Duration::from_secs(5),
                        )
                        .await;
                });
            }
        }
    })));
    let payload = payload.take_until(Box::pin(expired)).map(move |item| {
        let _keep = &on_close;
        item
    });
    let (bus, requester) = (Arc::clone(&state.bus), Arc::clone(&state.requester));
    async_graphql_actix_web::GraphQLSubscription::new(state.graphql.clone())
        .on_connection_init(move |value: serde_json::Value| async move {
            let auth = auth.ok_or_else(|| {
                graphql::coded("UNAUTHENTICATED", "no key configured to verify tokens")
            })?;
            let header = value
                .get("authorization")
                .or_else(|| value.get("Authorization"))
                .and_then(|v| v.as_str())
                .map(str::to_owned)
                .or_else(|| {
                    value
                        .get("token")
                        .and_then(|v| v.as_str())
                        .map(|t| format!("Bearer {t}"))
                });
            let (principal, exp) = auth
                .verify_header_until(header.as_deref())
                .map_err(|e| graphql::coded("UNAUTHENTICATED", e.to_string()))?;
            if principal.role == crate::principal::Role::Patient {
                let p = principal.subject.clone();
                let app = value
                    .get("app")
                    .and_then(|v| v.as_str())
                    .filter(|a| !a.is_empty() && a.len() <= 32)
                    .unwrap_or("app")
                    .to_owned();
                let topic = format!("session.{}", crate::bus::events::topic_word(&p));
                let mut sub = bus
                    .subscribe(&topic, 16)
                    .await
                    .map_err(|_| graphql::coded("UNAVAILABLE", "try again"))?;
                let to = crate::registry::ActorId::new("session", &p)
                    .map_err(|_| graphql::coded("UNAUTHENTICATED", "bad subject"))?;
                requester
                    .request::<_, serde_json::Value>(
                        &to,
                        "session.connect",
                        &crate::actors::session::Connect {
                            connection: connection.clone(),
                            app,
                        },
                        std::time::Duration::from_secs(5),
                    )
                    .await
                    .map_err(|_| graphql::coded("UNAVAILABLE", "try again"))?;
                *patient.lock().unwrap_or_else(|e| e.into_inner()) = Some(p);
                let (expiry, known, connection) =
                    (Arc::clone(&expiry), Arc::clone(&known), connection.clone());
                let task = tokio::spawn(async move {
                    while let Some((_, off)) =
                        sub.next_event::<crate::actors::session::LoggedOff>().await
                    {
                        if off.connections.contains(&connection) {
                            // Logged off: end the connection now.
                            expiry.store(1, Ordering::Release);
                            known.notify_one();
                            break;
                        }
                    }
                });
                *watcher.lock().unwrap_or_else(|e| e.into_inner()) = Some(task);
            }
            let mut data = async_graphql::Data::default();
            data.insert(principal);
            // Subscriptions of this connection end when its token expires.
            data.insert(graphql::Expiry(exp));
            expiry.store(exp.max(1), Ordering::Release);
            known.notify_one();
            Ok(data)
        })
        .start(&req, payload)
}

/// Runs its function when dropped (a WebSocket connection's end).
struct OnClose(Option<Box<dyn FnOnce()>>);

impl Drop for OnClose {
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            f();
        }
    }
}

/// GraphiQL, in dev mode only.
async fn graphiql(state: web::Data<ApiState>) -> HttpResponse {
    if !state.dev {
        return HttpResponse::NotFound().finish();
    }
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(
            async_graphql::http::GraphiQLSource::build()
                .endpoint("/graphql")
                .subscription_endpoint("/graphql")
                .finish(),
        )
}
