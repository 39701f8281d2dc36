//! The state file's disk failing a write, for real: cwtap runs with a file
//! size limit (RLIMIT_FSIZE, with SIGXFSZ ignored so that the kernel answers
//! EFBIG instead of killing it), so once the SQLite write-ahead log outgrows
//! the limit, every checkpoint write fails as on a full disk. cwtap must stop
//! advancing, say so, exit non-zero on SIGTERM naming the events it could not
//! record, and lose nothing: a run without the limit delivers the rest, and
//! the only events sent twice are the ones it named.

#![cfg(unix)]

mod common;

use std::collections::HashSet;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::time::Duration;

use common::*;

/// Largest file cwtap may write while the disk "fails": the migrations of
/// a new state file leave a write-ahead log of about 164 KB, so a few
/// checkpoints fit before the writes fail.
const FILE_LIMIT: u64 = 192 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_disk_that_fails_writes_stops_the_cursor_and_loses_nothing() {
    let moto = Moto::start();
    let client = moto.client().await;
    let receiver = Receiver::start();
    let group = "/app/disk";
    let base = now_ms() - 60_000;
    let events: Vec<(i64, String)> = (0..3_000)
        .map(|i| (base + i / 10, format!("disk event {i:04}")))
        .collect();
    put_events(&client, group, "s", &events).await;
    let expected: HashSet<String> = events.iter().map(|(_, m)| m.clone()).collect();

    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &format!(
            "vectadb:\n  endpoint: {}\n  batch_size: 25\nlog_groups:\n  - name: {group}\nagent:\n  state_path: {}\n  poll_interval_secs: 1\n  lookback_secs: 10m\n  group_traces: false\n  listen: 'off'\n",
            receiver.url,
            dir.path().join("state.db").display()
        ),
    );

    // The failing run: stderr goes to a pipe (not subject to the limit).
    let mut cmd = cwtap(&moto.url);
    cmd.args(["run", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::signal(libc::SIGXFSZ, libc::SIG_IGN) == libc::SIG_ERR {
                return Err(std::io::Error::last_os_error());
            }
            let limit = libc::rlimit {
                rlim_cur: FILE_LIMIT as libc::rlim_t,
                rlim_max: FILE_LIMIT as libc::rlim_t,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().expect("cwtap starts");
    let mut pipe = child.stderr.take().unwrap();
    let log = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = pipe.read_to_string(&mut text);
        text
    });

    // Delivery starts, then stops: the count holds still for 4 s.
    let mut last = (0, std::time::Instant::now());
    let stalled = wait_until(Duration::from_secs(60), || {
        let n = receiver.stored_count();
        if n != last.0 {
            last = (n, std::time::Instant::now());
        }
        n > 0 && last.1.elapsed() > Duration::from_secs(4)
    });
    let delivered_before_stop = receiver.stored_count();
    signal(&child, "TERM");
    let exit = wait_exit(&mut child, Duration::from_secs(15)).expect("exits after SIGTERM");
    let log = log.join().unwrap();
    assert!(stalled, "delivery never stalled:\n{log}");
    assert!(
        delivered_before_stop < expected.len(),
        "the write failure came only after everything was delivered; lower FILE_LIMIT"
    );
    assert!(
        log.contains("cannot write the checkpoint"),
        "cwtap said the state file failed:\n{log}"
    );
    assert_eq!(
        exit.code(),
        Some(1),
        "non-zero exit with unwritten state:\n{log}"
    );
    // "N events were delivered but their checkpoint could not be written".
    let unrecorded: usize = log
        .lines()
        .find_map(|l| {
            let i = l.find(" events were delivered but their checkpoint")?;
            l[..i]
                .rsplit(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no count of unrecorded events in:\n{log}"));
    assert!(
        unrecorded > 0 && unrecorded <= 25,
        "at most one batch: {unrecorded}"
    );
    // Delivery stopped at the failing checkpoint: nothing after it was sent.
    assert_eq!(receiver.stored_count(), delivered_before_stop);

    // The disk is back: a normal run delivers the rest.
    let mut child = spawn_run(&moto.url, &config);
    let all = wait_until(Duration::from_secs(60), || {
        id_counts(&receiver.stored()).len() == expected.len()
    });
    signal(&child, "TERM");
    let exit = wait_exit(&mut child, Duration::from_secs(15)).expect("exits after SIGTERM");
    assert!(exit.success());
    let stored = receiver.stored();
    let messages: HashSet<String> = message_counts(&stored).into_keys().collect();
    assert!(all && messages == expected, "events lost");
    assert_eq!(
        stored.len(),
        expected.len() + unrecorded,
        "exactly the events cwtap named as unrecorded were sent twice"
    );
    eprintln!(
        "disk failure: {delivered_before_stop} delivered before the stall, {unrecorded} named unrecorded and sent again, {} total",
        stored.len()
    );
}
