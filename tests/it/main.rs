//! Integration tests of cardio's public surface, in one binary (one link step).

mod bus;
mod registry;
mod supervision;
mod support;
