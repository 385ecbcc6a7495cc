//! HTTP endpoints: probes for Kubernetes and the ops views of the machinery.
//!
//! - `GET /healthz`: 200 while the process serves requests (liveness);
//! - `GET /readyz`: 200 only when the node takes work (readiness): started,
//!   bus and database answering, joined the cluster with a valid lease; 503
//!   while starting, draining or cut off;
//! - `GET /metrics`: Prometheus metrics (see [`crate::metrics`]);
//! - `GET /debug/tree`: the supervision tree as nested JSON;
//! - `GET /debug/series`: the node's recent metric series (`metrics`);
//! - `GET /debug/cluster`: the membership view (nodes, shards with owner and
//!   epoch) as this node sees it;
//! - `GET /` and `GET /console/…`: the web console ([`console`]), a client
//!   of the GraphQL API like any other.
//!
//! The API reads the tree and the bus; it never reaches into an actor's state.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use actix_web::{web, HttpResponse};
use serde_json::json;

pub mod access;
mod ask;
pub mod authz_cache;
pub mod console;
mod doc_cache;
pub mod error;
pub mod gate;
pub mod graphql;
pub mod lanes;
pub mod limits;
pub(crate) mod live;
pub mod monitoring;
mod observe;
pub mod touches;
mod ws;
mod ws_limits;

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
    /// `/debug/*` open like the probes: a node on the embedded defaults
    /// without a configured key (none at all, or only its own key file).
    pub open_debug: bool,
    /// GraphiQL at `/graphiql`.
    pub dev: bool,
    /// Per-principal request budget.
    pub limiter: Arc<RateLimiter>,
    /// Request–reply with actors (sessions), wherever they live.
    pub requester: Arc<crate::bus::client::Requester>,
    /// Connections, bodies and errors (issue 13).
    pub limits: Arc<limits::Limits>,
    /// Revocation, deactivation and inactivity logoff of verified tokens.
    pub gate: Arc<gate::Gate>,
    /// Patients' activity told to their sessions.
    pub touches: Arc<touches::Touches>,
}

/// Verifies the request's bearer token and admits it through the gate
/// (`active`: the request counts as the subject's activity); a failure is
/// counted for the audit summaries.
pub(crate) async fn authenticate(
    state: &ApiState,
    req: &actix_web::HttpRequest,
    header: Option<&str>,
    active: bool,
) -> Result<crate::auth::Verified, crate::auth::AuthError> {
    let result = match &state.auth {
        None => Err(crate::auth::AuthError::NoKey("verify")),
        Some(auth) => match auth.verify_header_fetching(header).await {
            Ok(v) => state.gate.admit(&v, active).await.map(|()| v),
            Err(e) => Err(e),
        },
    };
    match &result {
        Err(crate::auth::AuthError::Unavailable) | Ok(_) => {}
        Err(e) => state.gate.failed(&limits::client_addr(req), e),
    }
    result
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
/// patient's id, so that id is replaced by its keyed pseudonym (ops see the
/// machinery, not who is online; without the cluster's key nobody can hash
/// a known patient id to look for it).
pub fn mask_path(path: &str) -> String {
    const SESSIONS: &str = "/cardio/entities/session/";
    match path.strip_prefix(SESSIONS) {
        Some(id) if !id.is_empty() && !id.starts_with('#') => {
            format!("{SESSIONS}{}", mask_id(id))
        }
        _ => path.to_owned(),
    }
}

/// A short, stable stand-in for an id: its keyed pseudonym
/// ([`crate::redact::pseudonym`]).
pub fn mask_id(id: &str) -> String {
    crate::redact::pseudonym::id(id)
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
        .route("/debug/series", web::get().to(series))
        .service(
            web::resource("/graphql")
                .route(web::post().to(graphql_post))
                .route(web::get().to(ws::graphql_ws)),
        )
        .route("/graphiql", web::get().to(graphiql))
        // The web console (issue 14): its page and its files.
        .route("/", web::get().to(console::index))
        .route("/console/{path:.*}", web::get().to(console::asset));
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
        handovers_pending: view.handovers_pending as u64,
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
/// single node, also with the key file it made for itself) they are open
/// like the probes.
async fn ops_only(state: &ApiState, req: &actix_web::HttpRequest) -> Option<HttpResponse> {
    use crate::principal::Role;
    if state.open_debug {
        return None;
    }
    state.auth.as_ref()?;
    let header = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok());
    match authenticate(state, req, header, true).await {
        Ok(v) if matches!(v.principal.role, Role::Ops | Role::Admin) => None,
        Ok(_) => Some(
            HttpResponse::Forbidden().json(json!({"error": "not allowed", "code": "FORBIDDEN"})),
        ),
        Err(e) => {
            let mut answer = match e {
                crate::auth::AuthError::Unavailable => HttpResponse::ServiceUnavailable(),
                _ => HttpResponse::Unauthorized(),
            };
            Some(answer.json(json!({"error": e.to_string(), "code": e.code()})))
        }
    }
}

/// The node's recent metric series (`?window=` seconds, 5 to 900): what
/// another node fetches for `metrics(node:)`.
async fn series(state: web::Data<ApiState>, req: actix_web::HttpRequest) -> HttpResponse {
    if let Some(refused) = ops_only(&state, &req).await {
        return refused;
    }
    let window =
        web::Query::<std::collections::HashMap<String, String>>::from_query(req.query_string())
            .ok()
            .and_then(|q| q.get("window").and_then(|w| w.parse::<u64>().ok()))
            .unwrap_or(900)
            .clamp(5, 900);
    HttpResponse::Ok().json(graphql::insight::local_series(
        std::time::Duration::from_secs(window),
    ))
}

async fn tree(state: web::Data<ApiState>, req: actix_web::HttpRequest) -> HttpResponse {
    if let Some(refused) = ops_only(&state, &req).await {
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
    if let Some(refused) = ops_only(&state, &req).await {
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

/// A refused token, answered before any operation ran: its code and
/// `extensions.reason` (`TOKEN_EXPIRED`, `TOKEN_REVOKED`, …).
fn auth_error(status: actix_web::http::StatusCode, e: &crate::auth::AuthError) -> HttpResponse {
    crate::metrics::graphql_request("none", e.code(), std::time::Duration::ZERO);
    let mut ext = json!({"code": e.code()});
    if let Some(reason) = error::RefusalReason::of_auth(e) {
        ext["reason"] = async_graphql::InputType::to_value(&reason)
            .into_json()
            .unwrap_or_default();
    }
    HttpResponse::build(status).json(json!({
        "errors": [{"message": e.to_string(), "extensions": ext}]
    }))
}

/// `POST /graphql`: one operation or a batch of at most [`MAX_BATCH`].
///
/// Every request is charged to a budget, whatever becomes of it: its
/// principal's, or its address's when it has none or its token is refused
/// (so a flood of bad tokens is slowed down like any other). A client
/// address and a principal have a bounded number of requests in flight, and
/// a body must arrive within `body_read_timeout`.
async fn graphql_post(
    state: web::Data<ApiState>,
    req: actix_web::HttpRequest,
    payload: web::Payload,
) -> HttpResponse {
    use actix_web::http::StatusCode;
    state.limits.tick(&state.limiter);
    let addr = limits::client_addr(&req);
    let Some(_addr_slot) = state.limits.http_per_ip.take(&addr) else {
        crate::metrics::limited("http_per_ip");
        return gql_error(
            StatusCode::TOO_MANY_REQUESTS,
            "RATE_LIMITED",
            "too many requests in flight from this address",
        );
    };
    let addr_key = format!("addr:{addr}");
    let over_budget = |key: &str| state.limiter.check_key(&key.to_owned()).is_err();
    let rate_limited = || {
        gql_error(
            StatusCode::TOO_MANY_REQUESTS,
            "RATE_LIMITED",
            "too many requests; slow down",
        )
    };
    let verified = match req.headers().get("authorization") {
        None => None,
        Some(value) => match authenticate(&state, &req, value.to_str().ok(), true).await {
            Ok(v) => Some(v),
            Err(crate::auth::AuthError::Unavailable) => {
                let e = crate::auth::AuthError::Unavailable;
                return auth_error(StatusCode::SERVICE_UNAVAILABLE, &e);
            }
            Err(e) => {
                // Refused tokens cost their address's budget.
                if over_budget(&addr_key) {
                    return rate_limited();
                }
                return auth_error(StatusCode::UNAUTHORIZED, &e);
            }
        },
    };
    let principal = verified.as_ref().map(|v| v.principal.clone());
    // Each principal has a budget; requests without one share their address's.
    let key = match &principal {
        Some(p) => p.subject.clone(),
        None => addr_key,
    };
    if over_budget(&key) {
        return rate_limited();
    }
    let _principal_slot = match &principal {
        Some(p) => match state.limits.http_per_principal.take(&p.subject) {
            Some(slot) => Some(slot),
            None => {
                crate::metrics::limited("http_per_principal");
                return gql_error(
                    StatusCode::TOO_MANY_REQUESTS,
                    "RATE_LIMITED",
                    "too many requests in flight for this principal",
                );
            }
        },
        None => None,
    };
    let body =
        match limits::read_body(payload, MAX_REQUEST_BYTES, state.limits.body_read_timeout).await {
            Ok(body) => body,
            Err(limits::BodyError::TooLarge) => {
                return gql_error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "PAYLOAD_TOO_LARGE",
                    "the request body is larger than 1 MiB",
                )
            }
            Err(limits::BodyError::TimedOut) => {
                crate::metrics::limited("body_timeout");
                let mut res = gql_error(
                    StatusCode::REQUEST_TIMEOUT,
                    "REQUEST_TIMEOUT",
                    "the request body did not arrive in time",
                );
                // The rest of the body is not read: the connection cannot be reused.
                res.head_mut()
                    .set_connection_type(actix_web::http::ConnectionType::Close);
                return res;
            }
            Err(limits::BodyError::Broken) => {
                return gql_error(
                    StatusCode::BAD_REQUEST,
                    "BAD_REQUEST",
                    "the request body broke off",
                )
            }
        };
    if let Some(p) = principal
        .as_ref()
        .filter(|p| p.role == crate::principal::Role::Patient)
    {
        // The patient is active: their session's idle clock starts over.
        state.touches.touch(&p.subject);
    }
    let batch = match parse_batch(&body) {
        Ok(b) => b,
        Err(e) => {
            let why = crate::redact::describe_json_error(&e);
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
    let batch = match verified {
        Some(v) => batch.data(v),
        None => batch,
    };
    let batch = match bearer {
        Some(b) => batch.data(b),
        None => batch,
    };
    let response = state.graphql.execute_batch(batch).await;
    let clean = match &response {
        async_graphql::BatchResponse::Single(r) => r.errors.is_empty(),
        async_graphql::BatchResponse::Batch(rs) => rs.iter().all(|r| r.errors.is_empty()),
    };
    if clean {
        return HttpResponse::Ok().json(&response);
    }
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
                let message = e["message"].as_str().unwrap_or_default().to_owned();
                let ext = e
                    .as_object_mut()
                    .map(|o| o.entry("extensions").or_insert_with(|| json!({})));
                if let Some(serde_json::Value::Object(ext)) = ext {
                    // A scalar that did not parse (a malformed DateTime, an
                    // Int64 that is no whole number) is the caller's input.
                    let code = if message.contains("Failed to parse \"") {
                        "BAD_USER_INPUT"
                    } else {
                        "BAD_REQUEST"
                    };
                    ext.entry("code").or_insert_with(|| json!(code));
                }
            }
        }
    }
    HttpResponse::Ok().json(body)
}

/// A request body as one operation (`{…}`) or a batch (`[…]`), read once:
/// `BatchRequest`'s own (untagged) decoding buffers the whole body and
/// reads it again, which a push of thousands of samples pays for twice.
/// What does not read that way is left to that decoding (same result,
/// same errors).
fn parse_batch(body: &[u8]) -> Result<async_graphql::BatchRequest, serde_json::Error> {
    let read = match body.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'[') => serde_json::from_slice::<Vec<async_graphql::Request>>(body)
            .ok()
            .filter(|batch| !batch.is_empty())
            .map(async_graphql::BatchRequest::Batch),
        Some(b'{') => serde_json::from_slice(body)
            .ok()
            .map(async_graphql::BatchRequest::Single),
        _ => None,
    };
    // Anything else (an error, an empty batch) as its own decoding reads it.
    read.map_or_else(|| serde_json::from_slice(body), Ok)
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

#[cfg(test)]
mod tests {
    use super::parse_batch;
    use async_graphql::BatchRequest;

    fn queries(b: &BatchRequest) -> Vec<(String, String)> {
        let one = |r: &async_graphql::Request| {
            (
                r.query.clone(),
                serde_json::to_string(&r.variables).unwrap(),
            )
        };
        match b {
            BatchRequest::Single(r) => vec![one(r)],
            BatchRequest::Batch(rs) => rs.iter().map(one).collect(),
        }
    }

    #[test]
    fn a_body_is_read_as_one_operation_or_a_batch_as_graphqls_own_decoding_reads_it() {
        for body in [
            r#"{"query":"{ me { subject } }"}"#,
            r#"  {"query":"mutation($d: ID!) { x(d: $d) }","variables":{"d":"d-1","s":[{"at":"2026-12-05T08:00:00Z","value":61.5}]}}"#,
            r#"[{"query":"{ a }"},{"query":"{ b }","variables":{"n":1}}]"#,
            "\n[]",
        ] {
            let ours = parse_batch(body.as_bytes()).unwrap();
            let theirs: BatchRequest = serde_json::from_str(body).unwrap();
            assert_eq!(queries(&ours), queries(&theirs), "{body}");
            assert_eq!(
                matches!(ours, BatchRequest::Batch(_)),
                matches!(theirs, BatchRequest::Batch(_)),
                "{body}"
            );
        }
        for bad in ["", "null", "{\"query\": 1}", "[{\"query\": 1}]", "{"] {
            assert!(parse_batch(bad.as_bytes()).is_err(), "{bad}");
        }
    }
}
