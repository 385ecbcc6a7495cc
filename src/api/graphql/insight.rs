//! What the ops console charts and lists besides the trees: the node's own
//! recent metric series (`metrics`) and the messages it set aside lately
//! (`deadLetters`). Ops and admin only; a refusal is audited, like the other
//! ops reads. Neither holds PHI: series are counts, rates and latencies;
//! a dead letter is its time, message type and reason, never its payload.
//!
//! Series come from [`crate::metrics::recent`] (a sampler every 5 s, 15 min
//! kept); another node's from its `GET /debug/series` over HTTP with the
//! caller's token, as `supervisionTree(node:)` fetches trees. Dead letters
//! come from this node's ring ([`crate::supervisors::dead_letters`]): each
//! node keeps its own, in memory.

use std::time::Duration;

use async_graphql::connection::{Connection, OpaqueCursor};
use async_graphql::{Context, Object, SimpleObject, ID};
use serde::{Deserialize, Serialize};

use super::page::{connection, Page};
use super::scalars::DateTime;
use super::Bearer;
use crate::api::access::{deps, principal, Access};
use crate::api::error::ApiError;
use crate::principal::Role;

/// One value of a series at one time.
#[derive(SimpleObject, Clone)]
pub struct MetricPoint {
    pub at: DateTime,
    pub value: f64,
}

/// One of a node's series over the window asked for, oldest point first.
#[derive(SimpleObject, Clone)]
pub struct MetricSeries {
    /// `graphql_requests`, `samples_stored`, `mailbox_depth`, … (docs/api.md).
    pub name: String,
    /// `1/s` (a rate), `ms` (a mean latency), or what a gauge counts.
    pub unit: String,
    pub node: ID,
    pub points: Vec<MetricPoint>,
}

/// A message a node set aside, and why (no payload).
#[derive(SimpleObject, Clone)]
pub struct DeadLetter {
    /// `<node>:<n>`, the node's n-th dead letter since it started.
    pub id: ID,
    pub at: DateTime,
    pub node: ID,
    /// The message's type (`consult.act`, …), or the queue it came from
    /// when it was not a readable envelope.
    pub topic: String,
    pub reason: String,
}

/// The series of `GET /debug/series` (what one node sends another).
#[derive(Serialize, Deserialize)]
pub struct WireSeries {
    pub name: String,
    pub unit: String,
    pub points: Vec<(u64, f64)>,
}

/// This node's series over the last `window`, as sent to other nodes.
pub fn local_series(window: Duration) -> Vec<WireSeries> {
    crate::metrics::recent::recent()
        .series(window, crate::clock::unix_ms())
        .into_iter()
        .map(|s| WireSeries {
            name: s.name.to_owned(),
            unit: s.unit.to_owned(),
            points: s.points.iter().map(|p| (p.at_ms, p.value)).collect(),
        })
        .collect()
}

fn to_graphql(node: &str, series: Vec<WireSeries>) -> impl Iterator<Item = MetricSeries> + '_ {
    series.into_iter().map(move |s| MetricSeries {
        name: s.name,
        unit: s.unit,
        node: ID(node.to_owned()),
        points: s
            .points
            .into_iter()
            .map(|(at, value)| MetricPoint {
                at: DateTime::from_unix_ms(at),
                value,
            })
            .collect(),
    })
}

/// A dead letter's place, newest first: its number on its node.
#[derive(Serialize, Deserialize, Clone, Copy)]
#[serde(deny_unknown_fields)]
struct DeadLetterKey {
    d: u64,
}

#[derive(Default)]
pub struct InsightQuery;

#[Object]
impl InsightQuery {
    /// A node's own recent series, sampled every 5 s and kept 15 minutes:
    /// this node's, `node`'s, or (with `node: "*"`) every live node's, over
    /// the last `window` seconds (5 to 900). Ops and admin.
    async fn metrics(
        &self,
        ctx: &Context<'_>,
        node: Option<ID>,
        #[graphql(default = 900)] window: Option<i32>,
    ) -> async_graphql::Result<Vec<MetricSeries>> {
        let window = window.unwrap_or(900);
        let (who, d) = (principal(ctx)?, deps(ctx));
        Access::new(d, who, "read metrics", "ops")
            .require(&[Role::Ops, Role::Admin])
            .await?;
        if !(5..=900).contains(&window) {
            return Err(ApiError::bad_input("window: seconds from 5 to 900").into());
        }
        let span = Duration::from_secs(window as u64);
        let wanted = node.map(|n| n.0).unwrap_or_else(|| d.node_id.clone());
        let mut out: Vec<MetricSeries> = Vec::new();
        if wanted == d.node_id || wanted == "*" {
            out.extend(to_graphql(&d.node_id, local_series(span)));
        }
        if wanted != d.node_id {
            let view = d.cluster.view().await;
            let peers: Vec<_> = view
                .nodes
                .iter()
                .filter(|n| n.id != d.node_id && (wanted == "*" || n.id == wanted))
                .collect();
            if peers.is_empty() && wanted != "*" {
                return Err(ApiError::NotFound("no such node".into()).into());
            }
            let bearer = ctx.data_opt::<Bearer>().map(|b| b.0.clone());
            for n in peers.into_iter().filter(|n| n.status == "up") {
                let path = format!("/debug/series?window={window}");
                match super::ops::peer_get::<Vec<WireSeries>>(
                    &n.addr,
                    &path,
                    16 << 20,
                    bearer.clone(),
                    d.peer_tls.clone(),
                )
                .await
                {
                    Some(series) => out.extend(to_graphql(&n.id, series)),
                    None => {
                        tracing::warn!(node = %n.id, "a node did not answer with its series");
                        let cause = "a node did not answer with its series";
                        return Err(ApiError::unavailable(cause).into());
                    }
                }
            }
        }
        Ok(out)
    }

    /// Messages this node set aside lately (malformed, no handler, past
    /// their deadline, or failing past the delivery limit), newest first;
    /// each node keeps its last 1000 in memory. Ops and admin.
    async fn dead_letters(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<Connection<OpaqueCursor<DeadLetterKey>, DeadLetter>> {
        let (who, d) = (principal(ctx)?, deps(ctx));
        Access::new(d, who, "read dead letters", "ops")
            .require(&[Role::Ops, Role::Admin])
            .await?;
        let page = Page::<DeadLetterKey>::of(first, after)?;
        // One more than a page: whether another follows.
        let (rows, _) = d
            .tree
            .dead_letters()
            .page(page.after.map(|k| k.d), page.limit() as usize);
        let rows = rows.into_iter().map(|l| {
            let letter = DeadLetter {
                id: ID(format!("{}:{}", d.node_id, l.seq)),
                at: DateTime::from_unix_ms(l.at_ms),
                node: ID(d.node_id.clone()),
                topic: l.topic,
                reason: l.reason,
            };
            (DeadLetterKey { d: l.seq }, letter)
        });
        let connection = connection(rows.collect(), page.first);
        Ok(connection)
    }
}
