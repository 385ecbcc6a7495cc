//! `cardio`: see `cardio --help`. Everything happens in the library.

fn main() -> std::process::ExitCode {
    cardio::cli::run()
}
