//! Starting a real `cardio serve` process, for the tests and (by `#[path]`)
//! the benches.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Spawns `cmd` (a `cardio serve` logging JSON, the `cardio::node` target at
/// info at least) with stdout piped, hands every stdout line to `on_line` on
/// a reader thread, and waits up to `within` for the node's `listening` line:
/// the child and the address it listens at. A node that does not get there
/// is killed before the panic, so that no process outlives its test.
pub(crate) fn serve(
    mut cmd: Command,
    within: Duration,
    mut on_line: impl FnMut(&str) + Send + 'static,
) -> (Child, String) {
    let mut child = cmd.stdout(Stdio::piped()).spawn().expect("cardio starts");
    let stdout = child.stdout.take().expect("stdout piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.contains("\"listening\"") {
                let _ = tx.send(line.clone());
            }
            on_line(&line);
        }
    });
    let Ok(line) = rx.recv_timeout(within) else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("cardio did not log 'listening' within {within:?}");
    };
    let v: serde_json::Value = serde_json::from_str(&line).expect("a JSON log line");
    let addr = v["addr"]
        .as_str()
        .expect("the listening address")
        .to_owned();
    (child, addr)
}
