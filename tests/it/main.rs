//! Integration tests of cardio's public surface, in one binary (one link step).

/// Runs one async check of a `&Store` against SQLite and against PostgreSQL
/// (a fresh database each, removed after).
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
                let db = $crate::store::TestDb::postgres().await;
                super::$check(&db.store).await;
                db.done().await;
            }
        }
    };
}

mod api;
mod audit;
mod binary;
mod broker;
mod bus;
mod cluster;
mod consult;
mod deploy;
mod device;
mod layers;
mod monitoring;
mod ops;
mod registry;
mod session;
mod store;
mod supervision;
mod support;
