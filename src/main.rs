//! `cardio`: see `cardio --help`. Everything happens in the library.

/// mimalloc instead of glibc's malloc (issue 15): a node under load spent
/// about a quarter of its CPU in glibc's allocator (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    cardio::cli::run()
}
