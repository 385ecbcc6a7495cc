//! HTTP endpoints: probes for Kubernetes and the ops views of the machinery.
//!
//! - `GET /healthz`: 200 while the process serves requests (liveness);
//! - `GET /readyz`: 200 only when the node takes work (readiness): started,
//!   bus and database answering, joined the cluster with a valid lease; 503
//!   while starting, draining or cut off;
//! - `GET /debug/tree`: the supervision tree as nested JSON;
//! - `GET /debug/cluster`: the membership view (nodes, shards with owner and
//!   epoch) as this node sees it.
//!
//! The API reads the tree and the bus; it never reaches into an actor's state.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use actix_web::{web, HttpResponse};
use serde_json::json;

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
}

/// Mounts the routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/debug/tree", web::get().to(tree))
        .route("/debug/cluster", web::get().to(cluster));
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

async fn tree(state: web::Data<ApiState>) -> HttpResponse {
    let mut roots = state.tree.view();
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

async fn cluster(state: web::Data<ApiState>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(("x-cardio-node", state.node_id.clone()))
        .json(state.cluster.view().await)
}
