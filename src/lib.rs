//! cardio: a supervised, clustered actor runtime for a telemedicine cardiology
//! platform.
//!
//! Map of the crate:
//! - [`actors`]: the actor model entities are written in (`Actor`, `Handler`, `Ctx`);
//! - [`supervisors`]: OTP-style supervision trees over actix, introspection;
//! - [`registry`]: logical addressing (`kind/id`), activation and passivation,
//!   and the bridge from bus deliveries to actors;
//! - [`bus`]: the message-bus shim (trait, `memory://` and `amqp://`
//!   backends, metrics around them) and the envelope;
//! - [`cluster`]: membership, placement (shards), ownership, fencing;
//! - [`store`]: the only SQL: event journal and snapshots (SQLite or PostgreSQL);
//! - [`api`]: HTTP endpoints (GraphQL, health, metrics, debug views);
//! - [`node`]: one cardio process: start-up order, serving, draining;
//! - [`metrics`], [`telemetry`]: Prometheus series; logs and traces;
//! - [`simulate`]: the load generator (`cardio simulate`);
//! - [`synthetic`]: deterministic vital series and ECG with ground truth;
//!   [`dsp`]: the filter section the ECG analysis and generator share;
//! - [`config`], [`cli`]: configuration, command line;
//! - the ground floor, leaves that import nothing of cardio: [`clock`] (Unix
//!   milliseconds), [`redact`] (secrets and parse errors that never print),
//!   [`shards`] (shard arithmetic and the [`shards::Fence`] of held shards).
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
