//! cardio: a supervised, clustered actor runtime for a telemedicine cardiology
//! platform.
//!
//! Map of the crate, in layers from the top (ARCHITECTURE.md;
//! `tests/it/layers.rs` checks them):
//! - [`node`], [`cli`]: one cardio process (start-up order, serving,
//!   draining) and the command line;
//! - [`api`]: HTTP endpoints (GraphQL in one room per area, health, metrics,
//!   debug views); [`simulate`]: the load generator (`cardio simulate`);
//!   [`demo`]: demo data through the API (`cardio demo`);
//! - [`cluster`]: membership, shard ownership, fencing; [`actors`]: the
//!   domain actors (sessions, consults, device streams with ECG analysis and
//!   alarms); [`synthetic`]: deterministic vital series and ECG with ground
//!   truth;
//! - [`registry`]: activation and passivation by address, bus routes, and
//!   the inbox from bus deliveries to actors;
//! - [`bus`]: the message-bus shim (trait, `memory://` and `amqp://`
//!   backends), the envelope and the typed protocol; [`store`]: the only SQL
//!   (journal, snapshots, projections; SQLite or PostgreSQL); [`auth`]: tokens;
//! - [`supervisors`]: the actor model (`Actor`, `Handler`, `Ctx`) and
//!   OTP-style supervision trees over actix, introspection;
//! - [`config`], [`telemetry`], [`metrics`]: configuration; logs and traces;
//!   Prometheus series;
//! - the ground floor, leaves that import nothing above them: [`clock`] (Unix
//!   milliseconds), [`redact`] (secrets and parse errors that never print),
//!   [`shards`] (shard arithmetic and the [`shards::Fence`] of held shards),
//!   [`address`] (actor addresses and their shard), [`principal`] (who
//!   calls), [`domain`] (plain values the layers above share), `dsp` (the
//!   filter section the ECG analysis and generator share).
#![forbid(unsafe_code)]

pub mod actors;
pub mod address;
pub mod api;
pub mod auth;
pub mod bus;
pub mod cli;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod crypto;
pub mod demo;
pub mod domain;
mod dsp;
pub mod metrics;
pub mod node;
pub mod principal;
pub mod redact;
pub mod registry;
pub mod shards;
pub mod simulate;
pub mod store;
pub mod supervisors;
pub mod synthetic;
pub mod telemetry;
pub mod tls;
