//! `strata` as a process: help works, bad usage exits 2 with a message,
//! an unreachable broker exits 1 with one line (cluster commands included).

use std::process::Command;

fn strata(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(args)
        .output()
        .unwrap()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn usage_errors_exit_2_and_unreachable_broker_exits_1() {
    assert!(strata(&["--help"]).status.success());
    let out = strata(&["topic", "create"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(!out.stderr.is_empty());
    let port = free_port();
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

#[test]
fn cluster_commands_need_a_broker() {
    let brokers = format!("127.0.0.1:{}", free_port());
    for cmd in [
        &["cluster", "status"][..],
        &["cluster", "add-broker", "4", "127.0.0.1:19293"],
        &["cluster", "remove-broker", "4"],
        &["cluster", "transfer-leader", "orders", "0", "2"],
        &["--output", "json", "cluster", "status"],
    ] {
        let mut args = vec!["--brokers", brokers.as_str(), "--timeout", "2s"];
        args.extend_from_slice(cmd);
        let out = strata(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{cmd:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{cmd:?}: {err}");
        assert!(err.starts_with("error:"), "{cmd:?}: {err}");
        assert!(out.stdout.is_empty(), "{cmd:?}");
    }
}

#[test]
fn cluster_commands_reject_bad_arguments_with_exit_2() {
    for cmd in [
        &["cluster", "add-broker", "0", "127.0.0.1:19293"][..],
        &["cluster", "add-broker", "4", "nowhere"],
        &["cluster", "add-broker", "4"],
        &["cluster", "remove-broker", "0"],
        &["cluster", "remove-broker", "x"],
        &["cluster", "transfer-leader", "orders", "0", "0"],
        &["cluster", "transfer-leader", "orders", "-1", "2"],
    ] {
        let out = strata(cmd);
        assert_eq!(out.status.code(), Some(2), "{cmd:?}");
        assert!(!out.stderr.is_empty(), "{cmd:?}");
    }
}
