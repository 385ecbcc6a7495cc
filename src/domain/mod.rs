//! The domain's plain values: what the actors, the store, the configuration
//! and the API all speak of (a consult's status and chat lines, vital-sign
//! aggregates, alarm kinds and settings, rhythm settings). Nothing here does
//! I/O, reads a clock or knows the runtime; the behaviour that produces these
//! values lives with the actors (`crate::actors`).

pub mod alarm;
pub mod consult;
pub mod rhythm;
pub mod vitals;
