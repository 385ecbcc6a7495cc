//! What a run leaves out: the census of the tests that need services, said
//! where a plain `cargo test` shows it (and, under nextest, in this test's
//! output, which `.config/nextest.toml` shows).

use crate::support::services::{announce, census};

#[test]
fn a_run_says_how_many_tests_its_services_tiers_leave_out() {
    // Every tier has tests: a census of zero would mean `needs!` no longer
    // registers, and the count would lie.
    for (tier, n) in census() {
        assert!(n > 0, "no test of the tier {} is registered", tier.name());
    }
    announce();
}
