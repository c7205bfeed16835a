//! `stratad` as a process: configuration errors exit 2 with one line.

use std::process::Command;

#[test]
fn invalid_config_is_one_line_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        vec!["--fsync", "sometimes"],
        vec!["--listen", "not-an-address"],
        vec!["--node-id", "0"],
        vec!["--segment-bytes", "10"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_stratad"))
            .args(&args)
            .arg("--data-dir")
            .arg(dir.path())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("stratad: invalid configuration"), "{err}");
    }
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "retention_ms = \"soon\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_stratad"))
        .arg("--config")
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad.toml"));
}
