//! `strata` as a process: help works, bad usage exits 2 with a message,
//! an unreachable broker exits 1 with one line.

use std::process::Command;

fn strata(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn usage_errors_exit_2_and_unreachable_broker_exits_1() {
    assert!(strata(&["--help"]).status.success());
    let out = strata(&["topic", "create"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(!out.stderr.is_empty());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = strata(&[
        "--brokers",
        &format!("127.0.0.1:{port}"),
        "--timeout",
        "2s",
        "topic",
        "list",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.starts_with("error:"), "{err}");
}
