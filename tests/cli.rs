//! The shell completions and man pages generated from the CLI definition.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

/// Standard output of a cwtap command that must succeed (read as it comes:
/// a completion script is larger than a pipe holds).
fn output(args: &[&str]) -> String {
    let out = Command::new(cwtap_bin()).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn completions_are_scripts_the_shells_accept() {
    for shell in ["bash", "zsh", "fish"] {
        let script = output(&["completions", shell]);
        assert!(script.contains("cwtap"), "{shell}");
        // Every subcommand is completed.
        for sub in ["run", "backfill", "serve", "status", "check", "completions"] {
            assert!(script.contains(sub), "{shell} completes {sub}");
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let bash = dir.path().join("cwtap.bash");
    std::fs::write(&bash, output(&["completions", "bash"])).unwrap();
    let checked = Command::new("bash").arg("-n").arg(&bash).output().unwrap();
    assert!(
        checked.status.success(),
        "bash -n: {}",
        String::from_utf8_lossy(&checked.stderr)
    );
    // An unknown shell is a usage error.
    let (code, _, _) = run_code(
        Command::new(cwtap_bin()).args(["completions", "tcsh"]),
        Duration::from_secs(20),
    );
    assert_eq!(code, 2);
}

#[test]
fn man_pages_are_generated_for_the_command_and_each_subcommand() {
    let page = output(&["man"]);
    assert!(page.contains(".TH cwtap 1"), "{page}");
    assert!(page.contains("backfill"), "lists the subcommands");
    let dir = tempfile::tempdir().unwrap();
    run_ok(
        Command::new(cwtap_bin())
            .arg("man")
            .arg("--dir")
            .arg(dir.path()),
        Duration::from_secs(20),
    );
    for page in [
        "cwtap.1",
        "cwtap-run.1",
        "cwtap-backfill.1",
        "cwtap-serve.1",
    ] {
        let text = std::fs::read_to_string(dir.path().join(page)).unwrap_or_default();
        assert!(text.contains(".TH"), "{page} written");
    }
}

#[test]
fn status_watch_redraws_the_table_until_interrupted() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = ndjson_config(dir.path(), "  - name: /w/app\n", "  listen: 'off'\n");
    // An empty state file: the table shows no group yet.
    {
        let conn = rusqlite::Connection::open(dir.path().join("state.db")).unwrap();
        drop(conn);
    }
    let out_path = dir.path().join("watch.out");
    let mut child = Command::new(cwtap_bin())
        .args(["status", "--watch", "--interval", "1s", "--config"])
        .arg(&cfg)
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let redraws = || {
        std::fs::read_to_string(&out_path)
            .unwrap_or_default()
            .matches("(every 1s; Ctrl-C to stop)")
            .count()
    };
    let drew = wait_until(Duration::from_secs(20), || redraws() >= 3);
    signal(&child, "INT");
    let exit = wait_exit(&mut child, Duration::from_secs(10)).expect("stops on SIGINT");
    assert!(
        drew,
        "{}",
        std::fs::read_to_string(&out_path).unwrap_or_default()
    );
    assert!(exit.success());
    let text = std::fs::read_to_string(&out_path).unwrap();
    assert!(text.contains("LOG GROUP"), "the table: {text}");
}
