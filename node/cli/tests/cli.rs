//! The `vichain` binary as a user runs it, without a node: its commands, and the one-line
//! error that names an unreachable node. (Against a chain it is tested with `vichaind`
//! in vichain-node's process tests and vichain-tests' CometBFT scenarios.)

use std::process::Command;

const VICHAIN: &str = env!("CARGO_BIN_EXE_vichain");

#[test]
fn help_lists_every_command_group() {
    let out = Command::new(VICHAIN).arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for cmd in [
        "status", "keys", "tx", "query", "models", "workers", "submit", "watch", "job", "demo",
        "infer",
    ] {
        assert!(text.contains(cmd), "{cmd} missing from:\n{text}");
    }
}

#[test]
fn an_unreachable_node_is_named_in_one_line() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let node = format!("http://127.0.0.1:{port}");
    let out = Command::new(VICHAIN)
        .args(["status", "--node", &node])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("error: cannot reach a vichain node at") && err.contains(&node),
        "{err}"
    );
}

#[test]
fn submit_refuses_contradictory_flags_before_connecting() {
    let out = Command::new(VICHAIN)
        .args(["submit", "--model", "digits", "--text", "x", "--digit", "1"])
        .args(["--node", "http://127.0.0.1:1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot be used with"), "{err}");
}
