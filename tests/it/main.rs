//! Integration tests of cardio's public surface, in one binary (one link step).

mod binary;
mod bus;
mod consult;
mod device;
mod registry;
mod session;
mod store;
mod supervision;
mod support;
