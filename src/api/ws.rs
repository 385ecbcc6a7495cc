//! Subscriptions over WebSocket (graphql-transport-ws) on `GET /graphql`:
//! authentication in `connection_init`, the connection's end when its token
//! expires, and a patient's connection as one of their session's apps
//! (joined on connect, left on close, closed when the session logs off).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use actix_web::{web, HttpResponse};

use super::error::ApiError;
use super::{graphql, ApiState};
use crate::actors::session::{Connect, Disconnect, LoggedOff};

/// How long joining or leaving a session may take, retries included.
fn deadline() -> tokio::time::Instant {
    tokio::time::Instant::now() + super::ask::ASK_DEADLINE
}

/// `GET /graphql` upgraded to a WebSocket: subscriptions (graphql-transport-ws).
/// The token comes in `connection_init`'s payload (`authorization` or
/// `Authorization`: `Bearer …`, or `token`).
pub(super) async fn graphql_ws(
    state: web::Data<ApiState>,
    req: actix_web::HttpRequest,
    payload: web::Payload,
) -> actix_web::Result<HttpResponse> {
    use futures_util::StreamExt;
    // Limits (issue 13; see `ws_limits`): sockets per address and per
    // principal, `connection_init` in time, messages of bounded size.
    let addr = super::limits::client_addr(&req);
    let Some(addr_slot) = state.limits.ws_per_ip.take(&addr) else {
        crate::metrics::limited("ws_per_ip");
        return Ok(HttpResponse::TooManyRequests().finish());
    };
    let init_seen = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let principal_slot: Arc<std::sync::Mutex<Option<super::limits::Slot>>> = Arc::default();
    let (limits, limiter) = (Arc::clone(&state.limits), Arc::clone(&state.limiter));
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
    // Every connection: closed when its token is revoked, its account
    // deactivated, or its subject logged off (here or on another node).
    let gatekeeper: Arc<std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>> = Arc::default();
    let on_close = OnClose(Some(Box::new({
        let (patient, watcher, gatekeeper, requester, connection) = (
            Arc::clone(&patient),
            Arc::clone(&watcher),
            Arc::clone(&gatekeeper),
            Arc::clone(&state.requester),
            connection.clone(),
        );
        move || {
            if let Some(w) = watcher.lock().unwrap_or_else(|e| e.into_inner()).take() {
                w.abort();
            }
            if let Some(g) = gatekeeper.lock().unwrap_or_else(|e| e.into_inner()).take() {
                g.abort();
            }
            let who = patient.lock().unwrap_or_else(|e| e.into_inner()).take();
            if let Some(to) = who.and_then(|p| crate::address::ActorId::new("session", &p).ok()) {
                actix_rt::spawn(async move {
                    let bye = Disconnect { connection };
                    if let Err(e) = requester.ask(&to, &bye, deadline()).await {
                        tracing::warn!(error = %e, "a closed connection did not leave its session");
                    }
                });
            }
        }
    })));
    let held = (addr_slot, Arc::clone(&principal_slot));
    let payload = super::ws_limits::guard(
        payload,
        limits.ws_max_message,
        limits.ws_init_timeout,
        Arc::clone(&init_seen),
    );
    let payload = payload.take_until(Box::pin(expired)).map(move |item| {
        let _keep = (&on_close, &held);
        item
    });
    let (bus, requester) = (Arc::clone(&state.bus), Arc::clone(&state.requester));
    let (gate, source) = (Arc::clone(&state.gate), addr.clone());
    async_graphql_actix_web::GraphQLSubscription::new(state.graphql.clone())
        .on_connection_init(move |value: serde_json::Value| async move {
            init_seen.store(true, Ordering::Release);
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
            let verified = match auth.verify_header_fetching(header.as_deref()).await {
                Ok(v) => v,
                Err(e) => {
                    gate.failed(&source, &e);
                    // Refused tokens cost their address's budget.
                    if limiter.check_key(&format!("addr:{addr}")).is_err() {
                        return Err(graphql::coded(
                            "RATE_LIMITED",
                            "too many requests; slow down",
                        ));
                    }
                    return Err(refused_token(&e));
                }
            };
            if let Err(e) = gate.admit(&verified, true).await {
                if e != crate::auth::AuthError::Unavailable {
                    gate.failed(&source, &e);
                }
                return Err(refused_token(&e));
            }
            let (principal, exp) = (verified.principal.clone(), verified.exp);
            let Some(slot) = limits.ws_per_principal.take(&principal.subject) else {
                crate::metrics::limited("ws_per_principal");
                return Err(graphql::coded(
                    "RATE_LIMITED",
                    "too many connections for this principal",
                ));
            };
            *principal_slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(slot);
            {
                let (gate, v) = (Arc::clone(&gate), verified.clone());
                let (expiry, known) = (Arc::clone(&expiry), Arc::clone(&known));
                let task = tokio::spawn(async move {
                    use tokio::sync::broadcast::error::RecvError;
                    let mut changes = gate.changes();
                    let mut tick = tokio::time::interval(gate.logoff().tick());
                    let subject = v.principal.subject.clone();
                    loop {
                        tokio::select! {
                            c = changes.recv() => match c {
                                Ok(c) if c.closes(&subject, v.jti.as_deref()) => break,
                                Ok(_) => {}
                                Err(RecvError::Lagged(_)) => {
                                    if refused(gate.admit(&v, false).await) {
                                        break;
                                    }
                                }
                                Err(RecvError::Closed) => return,
                            },
                            // Idle too long, or a change the bus did not bring.
                            _ = tick.tick() => {
                                if refused(gate.admit(&v, false).await) {
                                    break;
                                }
                            }
                        }
                    }
                    expiry.store(1, Ordering::Release);
                    known.notify_one();
                });
                *gatekeeper.lock().unwrap_or_else(|e| e.into_inner()) = Some(task);
            }
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
                    .map_err(ApiError::unavailable)?;
                let to = crate::address::ActorId::new("session", &p).map_err(|_| {
                    ApiError::Unauthenticated(super::error::RefusalReason::TokenInvalid)
                })?;
                let hello = Connect {
                    connection: connection.clone(),
                    app,
                };
                requester
                    .ask(&to, &hello, deadline())
                    .await
                    .map_err(|e| ApiError::ask_failed("session.connect", &e))?;
                *patient.lock().unwrap_or_else(|e| e.into_inner()) = Some(p);
                let (expiry, known, connection) =
                    (Arc::clone(&expiry), Arc::clone(&known), connection.clone());
                let task = tokio::spawn(async move {
                    while let Some((_, off)) = sub.next_of::<LoggedOff>().await {
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
            data.insert(verified);
            // Subscriptions of this connection end when its token expires.
            data.insert(graphql::Expiry(exp));
            expiry.store(exp.max(1), Ordering::Release);
            known.notify_one();
            Ok(data)
        })
        .start(&req, payload)
}

/// A refused token at `connection_init`. graphql-transport-ws closes the
/// socket (code 1002) with the message as its reason and no extensions, so
/// the message starts with the reason: `TOKEN_EXPIRED: the token has
/// expired` (the code and reason are in the error too, for the
/// subscriptions-transport-ws protocol).
fn refused_token(e: &crate::auth::AuthError) -> async_graphql::Error {
    match super::error::RefusalReason::of_auth(e) {
        Some(reason) => {
            let name = async_graphql::InputType::to_value(&reason).to_string();
            super::error::refused(e.code(), reason, format!("{name}: {e}"))
        }
        None => graphql::coded(e.code(), e.to_string()),
    }
}

/// Whether the gate refused (a database away is no refusal: an open
/// connection stays through it, and changes still come over the bus).
fn refused(admitted: Result<(), crate::auth::AuthError>) -> bool {
    matches!(admitted, Err(e) if e != crate::auth::AuthError::Unavailable)
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
