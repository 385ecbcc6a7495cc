//! Integration tests of cardio's public surface, in one binary (one link step).
//!
//! Tests that need a service (PostgreSQL, RabbitMQ, a cluster of processes,
//! the deploy checks' tools) start with `needs!` and run only in the tiers
//! `CARDIO_TEST_SERVICES` enables (`support/services.rs`; docs/testing.md):
//! a plain `cargo test` needs no service.

/// Returns from the test at once unless `CARDIO_TEST_SERVICES` enables the
/// tier (the test then passes without running, and says so; the census
/// counts it); when the tier is enabled its services must answer, or the
/// test fails naming them.
macro_rules! needs {
    ($tier:ident) => {
        inventory::submit! {
            $crate::support::services::Gated {
                tier: $crate::support::services::Tier::$tier,
            }
        }
        if !$crate::support::services::runs($crate::support::services::Tier::$tier) {
            return;
        }
    };
}

/// Runs one async check of a `&Store` against SQLite and against PostgreSQL
/// (a fresh database each, removed after; tier `postgres`).
macro_rules! on_both {
    ($name:ident, $check:ident) => {
        mod $name {
            #[actix_rt::test]
            async fn sqlite() {
                let db = $crate::store::TestDb::sqlite().await;
                super::$check(&db.store).await;
                db.done().await;
            }

            #[actix_rt::test]
            async fn postgres() {
                needs!(Postgres);
                let db = $crate::store::TestDb::postgres().await;
                super::$check(&db.store).await;
                db.done().await;
            }
        }
    };
}

mod access;
mod api;
mod at_rest;
mod audit;
mod binary;
mod broker;
mod bus;
mod cluster;
mod config;
mod console;
mod consult;
mod demo;
mod deploy;
mod device;
mod first_run;
mod insight;
mod layers;
mod limits;
mod local;
mod monitoring;
mod ops;
mod protocol;
mod registry;
mod session;
mod store;
mod supervision;
mod support;
mod tiers;
mod tls;
mod v1;
mod writer;
