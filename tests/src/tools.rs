//! Outside programs the suites drive (kcat, Python clients from PyPI):
//! whether they are installed (missing ones skip a test, unless
//! STRATA_REQUIRE_TOOLS=1, as `.ci/run` sets, makes them required), and
//! running them with input.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

/// Whether `check` ran successfully; when not, the test is skipped, or it
/// fails under STRATA_REQUIRE_TOOLS.
fn available(what: &str, check: &mut Command) -> bool {
    let ok = check.output().is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            !require_tools(),
            "STRATA_REQUIRE_TOOLS is set but {what} is not installed"
        );
        eprintln!("{what} not installed: skipped");
    }
    ok
}

/// Whether missing outside programs fail the tests (STRATA_REQUIRE_TOOLS).
pub fn require_tools() -> bool {
    std::env::var("STRATA_REQUIRE_TOOLS").is_ok()
}

/// Whether the `kcat` program is installed.
pub fn have_kcat() -> bool {
    available("kcat", Command::new("kcat").arg("-V"))
}

/// Whether the Python module `module` imports.
pub fn have_python_module(module: &str) -> bool {
    available(
        &format!("the Python module {module}"),
        Command::new("python3").args(["-c", &format!("import {module}")]),
    )
}

/// A script of `tests/python/`.
pub fn python_script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("python")
        .join(name)
}

/// Runs `program args...` feeding `stdin` (written from a thread, so a
/// program that answers before reading all of it cannot block it).
pub fn run_with_input(
    program: impl AsRef<std::ffi::OsStr>,
    args: &[&str],
    stdin: Option<&[u8]>,
) -> Output {
    use std::io::Write;
    let program = program.as_ref().to_owned();
    let mut child = Command::new(&program)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", program.to_string_lossy()));
    if let Some(input) = stdin {
        let mut s = child.stdin.take().expect("stdin");
        let data = input.to_vec();
        std::thread::spawn(move || {
            let _ = s.write_all(&data);
        });
    }
    child.wait_with_output().expect("program output")
}

/// Runs a script of `tests/python/` with `args` off the async runtime and
/// asserts it succeeded; `context` is added to a failure (a broker log).
pub async fn run_python_ok(script: &str, args: Vec<String>, context: impl FnOnce() -> String) {
    let path = python_script(script);
    let out = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_with_input(
            "python3",
            &[&[path.to_string_lossy().as_ref()], &args[..]].concat(),
            None,
        )
    })
    .await
    .expect("python task");
    assert!(
        out.status.success(),
        "{script} failed:\n{}\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        context()
    );
}
