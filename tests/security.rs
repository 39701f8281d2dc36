//! Secrets stay secret and TLS is verified: the VectaDB API key and the AWS
//! secret access key appear in no log line (trace level, JSON logs), command
//! output or error; the state file is private; an https endpoint must present
//! a certificate that the system roots or `vectadb.ca_file` vouch for.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::*;

const API_KEY: &str = "sk-cwtap-SECRET-4f1d9a77";
const AWS_SECRET: &str = "aws-SECRET-8c2e71b0-do-not-log";

/// `cwtap` at trace level with JSON logs and both secrets set.
fn secret_cwtap(moto: &Moto) -> Command {
    let mut cmd = cwtap(&moto.url);
    cmd.env("RUST_LOG", "trace")
        .env("AWS_SECRET_ACCESS_KEY", AWS_SECRET)
        .env("CWTAP_TEST_API_KEY", API_KEY)
        .args(["--log-format", "json"]);
    cmd
}

/// Runs `cmd` to its end with stdout and stderr in files (trace-level logs
/// overflow a pipe that is read only at the end); (exit code, stdout, stderr).
fn run_logged(cmd: &mut Command, limit: Duration) -> (Option<i32>, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let (out_path, err_path) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let mut child = cmd
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .expect("cwtap starts");
    let status = wait_exit(&mut child, limit);
    if status.is_none() {
        let _ = child.kill();
    }
    let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
    let err = read(&err_path);
    assert!(
        status.is_some(),
        "cwtap did not finish within {limit:?}\n{err}"
    );
    (status.and_then(|s| s.code()), read(&out_path), err)
}

fn assert_no_secret(what: &str, text: &str) {
    for secret in [API_KEY, AWS_SECRET] {
        assert!(
            !text.contains(secret),
            "{what} shows a secret ({secret}):\n{text}"
        );
    }
}

fn vectadb_config(dir: &Path, endpoint: &str, extra: &str) -> PathBuf {
    write_config(
        dir,
        &format!(
            "vectadb:\n  endpoint: {endpoint}\n  api_key: ${{CWTAP_TEST_API_KEY}}\n  max_backoff_secs: 1\n{extra}log_groups:\n  - name: /app/secure\nagent:\n  state_path: {}\n  poll_interval_secs: 1\n  lookback_secs: 1h\n  listen: 'off'\n",
            dir.join("state.db").display()
        ),
    )
}

async fn seed(moto: &Moto, n: usize) {
    let base = now_ms() - 5 * 60_000;
    let events: Vec<(i64, String)> = (0..n)
        .map(|i| (base + i as i64, format!("{{\"i\":{i}}}")))
        .collect();
    put_events(&moto.client().await, "/app/secure", "s1", &events).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_appear_in_no_log_line_output_or_error_at_trace_level() {
    let moto = Moto::start();
    let receiver = Receiver::start();
    seed(&moto, 20).await;
    let dir = tempfile::tempdir().unwrap();
    let config = vectadb_config(dir.path(), &receiver.url, "");

    // backfill
    let (code, stdout, err) = run_logged(
        secret_cwtap(&moto)
            .args(["backfill", "--since", "1h", "--no-progress", "--config"])
            .arg(&config),
        Duration::from_secs(90),
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("TRACE"), "trace-level logs were written");
    assert_no_secret("backfill stderr", &err);
    assert_no_secret("backfill stdout", &stdout);
    assert_eq!(id_counts(&receiver.stored()).len(), 20);
    // The key did go where it belongs.
    let batch = receiver
        .requests()
        .into_iter()
        .find(|r| r.path.ends_with("/batch"))
        .expect("a batch request");
    assert_eq!(
        batch.headers.get("x-api-key").map(String::as_str),
        Some(API_KEY)
    );

    // run, then SIGTERM
    seed(&moto, 5).await;
    let logs = tempfile::tempdir().unwrap();
    let (out_path, err_path) = (logs.path().join("stdout"), logs.path().join("stderr"));
    let mut child = secret_cwtap(&moto)
        .args(["run", "--config"])
        .arg(&config)
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap();
    let delivered = wait_until(Duration::from_secs(60), || {
        id_counts(&receiver.stored()).len() >= 25
    });
    signal(&child, "TERM");
    let status = wait_exit(&mut child, Duration::from_secs(15));
    let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
    let err = std::fs::read_to_string(&err_path).unwrap_or_default();
    assert!(delivered, "run did not deliver the new events\n{err}");
    assert!(status.is_some_and(|s| s.success()), "{status:?}\n{err}");
    assert_no_secret("run stderr", &err);
    assert_no_secret("run stdout", &stdout);

    // check
    let (code, stdout, err) = run_logged(
        secret_cwtap(&moto).args(["check", "--config"]).arg(&config),
        Duration::from_secs(20),
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(stdout.contains("api key set"), "{stdout}");
    assert_no_secret("check output", &format!("{stdout}{err}"));

    // `--log-level debug` is cwtap's own debug lines: the AWS SDK's and the
    // HTTP libraries' (which print the access key id) stay at info.
    let key_id = "AKIDCWTAPTESTDONOTLOG";
    let (code, _, err) = run_logged(
        cwtap(&moto.url)
            .env_remove("RUST_LOG")
            .env("AWS_ACCESS_KEY_ID", key_id)
            .env("CWTAP_TEST_API_KEY", API_KEY)
            .args(["--log-level", "debug", "--log-format", "json"])
            .args(["backfill", "--since", "1h", "--no-progress", "--config"])
            .arg(&config),
        Duration::from_secs(90),
    );
    assert_eq!(code, Some(0), "{err}");
    let debug_targets: std::collections::BTreeSet<String> = err
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|l| l["level"] == "DEBUG")
        .map(|l| l["target"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(
        debug_targets.iter().any(|t| t.starts_with("cwtap")),
        "cwtap's debug lines are there: {debug_targets:?}"
    );
    assert!(
        debug_targets.iter().all(|t| t.starts_with("cwtap")),
        "only cwtap's: {debug_targets:?}"
    );
    assert!(!err.contains(key_id), "the access key id is not logged");

    // status
    let (code, stdout, err) = run_logged(
        secret_cwtap(&moto)
            .args(["status", "--config"])
            .arg(&config),
        Duration::from_secs(20),
    );
    assert_eq!(code, Some(0), "{err}");
    assert_no_secret("status output", &format!("{stdout}{err}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_endpoint_error_names_the_endpoint_but_not_the_key() {
    let moto = Moto::start();
    seed(&moto, 1).await;
    let dir = tempfile::tempdir().unwrap();
    let endpoint = format!("http://127.0.0.1:{}", free_port());
    let config = vectadb_config(dir.path(), &endpoint, "");
    let (code, _, err) = run_logged(
        secret_cwtap(&moto)
            .args(["backfill", "--since", "1h", "--no-progress", "--config"])
            .arg(&config),
        Duration::from_secs(90),
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(&endpoint),
        "the error names the endpoint: {err}"
    );
    assert_no_secret("the unreachable-endpoint error", &err);
}

#[test]
fn the_state_file_is_created_readable_by_its_owner_only() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.db");
    let config = write_config(
        dir.path(),
        &format!(
            "ndjson:\n  path: {}\nlog_groups:\n  - name: /app/missing\nagent:\n  state_path: {}\n  listen: 'off'\n",
            dir.path().join("out.ndjson").display(),
            state.display()
        ),
    );
    // A missing group fails the backfill, but only after the state file exists.
    let _ = run_to_end(
        cwtap(&moto.url)
            .args(["backfill", "--since", "1h", "--no-progress", "--config"])
            .arg(&config),
        Duration::from_secs(60),
    );
    let mode = std::fs::metadata(&state)
        .expect("the state file exists")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "state file mode {:o}", mode & 0o777);
}

// ---------------------------------------------------------------- TLS

/// A CA and a certificate it signed for 127.0.0.1, both made now.
struct TestPki {
    ca_pem: String,
    leaf_der: Vec<u8>,
    key_der: Vec<u8>,
}

fn test_pki() -> TestPki {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "cwtap test CA");
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .unwrap()
            .signed_by(&leaf_key, &ca)
            .unwrap();
    TestPki {
        ca_pem: ca.as_ref().pem(),
        leaf_der: leaf.der().to_vec(),
        key_der: leaf_key.serialize_der(),
    }
}

/// An https server on 127.0.0.1 answering `200 {}` to every request; its
/// URL. The thread ends with the test process.
fn tls_server(pki: &TestPki) -> String {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(pki.leaf_der.clone())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pki.key_der.clone())),
        )
        .unwrap();
    let config = Arc::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let config = Arc::clone(&config);
            std::thread::spawn(move || {
                let Ok(conn) = rustls::ServerConnection::new(config) else {
                    return;
                };
                let mut tls = rustls::StreamOwned::new(conn, stream);
                loop {
                    // One request: headers, then Content-Length bytes of body.
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") {
                        match tls.read(&mut byte) {
                            Ok(1) => head.push(byte[0]),
                            _ => return,
                        }
                    }
                    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
                    let length = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse::<usize>().ok())
                        .unwrap_or(0);
                    let mut body = vec![0u8; length];
                    if tls.read_exact(&mut body).is_err() {
                        return;
                    }
                    let reply = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}";
                    if tls
                        .write_all(reply.as_bytes())
                        .and_then(|_| tls.flush())
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_endpoint_with_an_unknown_ca_fails_and_ca_file_makes_it_pass() {
    let moto = Moto::start();
    seed(&moto, 3).await;
    let pki = test_pki();
    let url = tls_server(&pki);

    let dir = tempfile::tempdir().unwrap();
    let config = vectadb_config(dir.path(), &url, "");
    let out = run_to_end(
        cwtap(&moto.url)
            .env("CWTAP_TEST_API_KEY", API_KEY)
            .args(["backfill", "--since", "1h", "--no-progress", "--config"])
            .arg(&config),
        Duration::from_secs(90),
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "an unknown CA must fail: {err}");
    assert!(
        err.to_ascii_lowercase().contains("certificate"),
        "the error says it is the certificate: {err}"
    );
    // `health` says it once, in cwtap's words (not also in the verifier's
    // own log line).
    let (code, _, err) = run_code(
        cwtap(&moto.url).env_remove("RUST_LOG").args([
            "health",
            "--url",
            &format!("{url}/healthz"),
        ]),
        Duration::from_secs(30),
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.to_ascii_lowercase().contains("certificate"), "{err}");
    assert!(!err.contains("rustls_platform_verifier"), "{err}");

    let trusted = tempfile::tempdir().unwrap();
    std::fs::write(trusted.path().join("ca.pem"), &pki.ca_pem).unwrap();
    let config = vectadb_config(trusted.path(), &url, "  ca_file: ca.pem\n");
    let out = run_to_end(
        cwtap(&moto.url)
            .env("CWTAP_TEST_API_KEY", API_KEY)
            .args(["backfill", "--since", "1h", "--no-progress", "--config"])
            .arg(&config),
        Duration::from_secs(90),
    );
    assert!(
        out.status.success(),
        "with ca_file the backfill passes: {}",
        stderr(&out)
    );
}

/// A config error (exit 2) naming the setting and the file, in `check` as in
/// `backfill`, before anything is read.
#[test]
fn a_ca_file_without_certificates_is_refused_with_its_path() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), "not a certificate\n").unwrap();
    let config = vectadb_config(dir.path(), "https://127.0.0.1:1", "  ca_file: ca.pem\n");
    for args in [
        &["check", "--config"][..],
        &["backfill", "--since", "1h", "--no-progress", "--config"],
    ] {
        let (code, _, err) = run_code(
            cwtap(&moto.url)
                .env("CWTAP_TEST_API_KEY", API_KEY)
                .args(args)
                .arg(&config),
            Duration::from_secs(30),
        );
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(
            err.contains("vectadb.ca_file") && err.contains("ca.pem"),
            "{err}"
        );
    }
}
