//! What keeps one client from taking a node down (issue 13): concurrent
//! requests and WebSockets per client address and per principal, a deadline
//! on reading a request's body, and a cap on the errors of one response
//! (with long error messages cut, so a huge input is not echoed back). The
//! WebSocket transport's own limits (`connection_init` deadline, message
//! size across fragments) are in `ws_limits`.
//!
//! All of it is per node: see docs/operations.md ("Limits are per node").

use std::sync::Arc;
use std::time::Duration;

use actix_web::web;
use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextExecute, NextPrepareRequest, NextValidation,
};
use async_graphql::{Response, ServerError, ValidationResult};
use futures_util::StreamExt;

use crate::config::Config;

/// The node's limits, shared by the handlers.
pub struct Limits {
    pub ws_init_timeout: Duration,
    pub ws_max_message: usize,
    pub body_read_timeout: Duration,
    pub max_errors: usize,
    pub ws_per_ip: Gate,
    pub ws_per_principal: Gate,
    pub http_per_ip: Gate,
    pub http_per_principal: Gate,
    /// When each principal's last refusal of an unknown record was audited.
    unknown_audited: dashmap::DashMap<String, u64>,
    /// Requests seen, to prune the rate limiter's keys now and then.
    requests: std::sync::atomic::AtomicU64,
}

/// Refusals of unknown records are audited once per principal in this window.
const UNKNOWN_AUDIT_WINDOW_MS: u64 = 60_000;

impl Limits {
    pub fn from_config(c: &Config) -> Arc<Limits> {
        Arc::new(Limits {
            ws_init_timeout: c.ws_init_timeout,
            ws_max_message: c.ws_max_message,
            body_read_timeout: c.body_read_timeout,
            max_errors: c.max_errors,
            ws_per_ip: Gate::new(c.max_ws_per_ip),
            ws_per_principal: Gate::new(c.max_ws_per_principal),
            http_per_ip: Gate::new(c.max_http_per_ip),
            http_per_principal: Gate::new(c.max_http_per_principal),
            unknown_audited: dashmap::DashMap::new(),
            requests: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// Counts a request; every 4,096th forgets the budgets of keys (client
    /// addresses, principals) that have been quiet long enough to be full
    /// again, so a flood from many addresses does not grow the limiter for
    /// good.
    pub fn tick(&self, limiter: &super::RateLimiter) {
        let n = self
            .requests
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if n % 4096 == 4095 {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }

    /// Whether a refusal of an unknown record by `subject` is to be audited
    /// now: the first in [`UNKNOWN_AUDIT_WINDOW_MS`] is.
    pub fn audit_unknown_now(&self, subject: &str) -> bool {
        let now = crate::clock::unix_ms();
        if self.unknown_audited.len() > 10_000 {
            self.unknown_audited
                .retain(|_, at| now.saturating_sub(*at) < UNKNOWN_AUDIT_WINDOW_MS);
        }
        let mut at = self.unknown_audited.entry(subject.to_owned()).or_insert(0);
        if *at != 0 && now.saturating_sub(*at) < UNKNOWN_AUDIT_WINDOW_MS {
            return false;
        }
        *at = now;
        true
    }
}

impl Default for Limits {
    fn default() -> Self {
        Arc::into_inner(Limits::from_config(&Config::default())).expect("just made")
    }
}

/// At most `max` holders at a time per key (a client address, a principal).
pub struct Gate {
    max: usize,
    held: Arc<dashmap::DashMap<String, usize>>,
}

impl Gate {
    pub fn new(max: usize) -> Gate {
        Gate {
            max,
            held: Arc::default(),
        }
    }

    /// A place for `key`, held until the [`Slot`] is dropped; `None` when
    /// `key` holds all it may.
    pub fn take(&self, key: &str) -> Option<Slot> {
        let mut n = self.held.entry(key.to_owned()).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(Slot {
            held: Arc::clone(&self.held),
            key: key.to_owned(),
        })
    }

    /// How many places `key` holds now.
    pub fn holding(&self, key: &str) -> usize {
        self.held.get(key).map_or(0, |n| *n)
    }
}

/// One place in a [`Gate`], given back when dropped.
pub struct Slot {
    held: Arc<dashmap::DashMap<String, usize>>,
    key: String,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.held.remove_if_mut(&self.key, |_, n| {
            *n = n.saturating_sub(1);
            *n == 0
        });
    }
}

/// The client's address, as the limits key it and the authentication-failure
/// summaries name it (the peer: a proxy in front is one client to them).
pub fn client_addr(req: &actix_web::HttpRequest) -> String {
    req.peer_addr()
        .map(|a| a.ip().to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// Why a body was not read.
#[derive(Debug, PartialEq, Eq)]
pub enum BodyError {
    TooLarge,
    TimedOut,
    Broken,
}

/// Reads a request body of at most `max` bytes, all of it within `within`
/// (a client sending a byte a second does not hold a worker's request for
/// good).
pub async fn read_body(
    mut payload: web::Payload,
    max: usize,
    within: Duration,
) -> Result<web::Bytes, BodyError> {
    let deadline = tokio::time::Instant::now() + within;
    let mut body = web::BytesMut::new();
    loop {
        match tokio::time::timeout_at(deadline, payload.next()).await {
            Err(_) => return Err(BodyError::TimedOut),
            Ok(None) => return Ok(body.freeze()),
            Ok(Some(Err(_))) => return Err(BodyError::Broken),
            Ok(Some(Ok(chunk))) => {
                if body.len() + chunk.len() > max {
                    return Err(BodyError::TooLarge);
                }
                body.extend_from_slice(&chunk);
            }
        }
    }
}

/// Longest error message passed on; longer ones are cut (a message may
/// quote the input: an unknown name, a bad value).
const MAX_MESSAGE: usize = 300;

/// Keeps the first `max` errors (their messages cut to [`MAX_MESSAGE`]) and
/// says how many more were left out in one last `TOO_MANY_ERRORS` error.
pub fn cap_errors(errors: &mut Vec<ServerError>, max: usize) {
    for e in errors.iter_mut() {
        if e.message.len() > MAX_MESSAGE {
            let mut cut = MAX_MESSAGE;
            while !e.message.is_char_boundary(cut) {
                cut -= 1;
            }
            e.message.truncate(cut);
            e.message.push('…');
        }
    }
    if errors.len() > max {
        let left_out = errors.len() - max;
        errors.truncate(max);
        errors.shrink_to_fit();
        let mut last = ServerError::new(format!("too many errors: {left_out} more left out"), None);
        let mut ext = async_graphql::ErrorExtensionValues::default();
        ext.set("code", "TOO_MANY_ERRORS");
        last.extensions = Some(ext);
        errors.push(last);
    }
}

/// Longest query text (the document, not its variables). A query within the
/// complexity limit (1,000 fields) is far shorter; a longer one can only be
/// padding (comments, directives, arguments) whose parse alone costs tens of
/// megabytes.
pub const MAX_QUERY_BYTES: usize = 64 * 1024;

/// The schema extension bounding what a request may cost in memory, over
/// HTTP and WebSocket alike: the query text's length (checked before it is
/// parsed), and the errors of a response: validation (where a document of
/// thousands of bad arguments makes thousands of errors) and execution
/// (thousands of aliases each refused).
pub struct RequestLimits {
    pub max_errors: usize,
}

impl ExtensionFactory for RequestLimits {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(Bounded(self.max_errors))
    }
}

struct Bounded(usize);

#[async_trait::async_trait]
impl Extension for Bounded {
    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        request: async_graphql::Request,
        next: NextPrepareRequest<'_>,
    ) -> async_graphql::ServerResult<async_graphql::Request> {
        if request.query.len() > MAX_QUERY_BYTES {
            crate::metrics::limited("query_too_large");
            let mut e = ServerError::new(
                format!("the query text is longer than {MAX_QUERY_BYTES} bytes"),
                None,
            );
            let mut ext = async_graphql::ErrorExtensionValues::default();
            ext.set("code", "QUERY_TOO_LARGE");
            e.extensions = Some(ext);
            return Err(e);
        }
        next.run(ctx, request).await
    }

    async fn validation(
        &self,
        ctx: &ExtensionContext<'_>,
        next: NextValidation<'_>,
    ) -> Result<ValidationResult, Vec<ServerError>> {
        next.run(ctx).await.map_err(|mut errors| {
            cap_errors(&mut errors, self.0);
            errors
        })
    }

    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> Response {
        let mut response = next.run(ctx, operation_name).await;
        cap_errors(&mut response.errors, self.0);
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gate_holds_at_most_its_maximum_per_key_and_frees_on_drop() {
        let gate = Gate::new(2);
        let a = gate.take("1.2.3.4").unwrap();
        let _b = gate.take("1.2.3.4").unwrap();
        assert!(gate.take("1.2.3.4").is_none());
        assert!(gate.take("5.6.7.8").is_some(), "other keys are apart");
        drop(a);
        assert_eq!(gate.holding("1.2.3.4"), 1);
        assert!(gate.take("1.2.3.4").is_some());
    }

    #[test]
    fn errors_are_capped_with_a_last_entry_and_long_messages_cut() {
        let mut errors: Vec<ServerError> = (0..100)
            .map(|i| ServerError::new(format!("bad {i} {}", "é".repeat(400)), None))
            .collect();
        cap_errors(&mut errors, 5);
        assert_eq!(errors.len(), 6);
        assert!(errors[0].message.len() <= MAX_MESSAGE + '…'.len_utf8());
        assert_eq!(errors[5].message, "too many errors: 95 more left out");
        let code = errors[5].extensions.as_ref().unwrap().get("code").cloned();
        assert_eq!(code, Some(async_graphql::Value::from("TOO_MANY_ERRORS")));
        let mut few = vec![ServerError::new("one", None)];
        cap_errors(&mut few, 5);
        assert_eq!(few.len(), 1);
    }
}
