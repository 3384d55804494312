//! Server commands reach an https:// server (behind a TLS proxy, say),
//! checking its certificate against the trusted roots: a private CA works
//! once `SSL_CERT_FILE` names it, and is refused otherwise.
//!
//! The TLS server is `openssl s_server -WWW` serving a `health` file; the
//! certificates come from a throwaway CA made with the `openssl` tool.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command as Process, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::Command;

fn openssl(dir: &Path, args: &[&str]) {
    let out = Process::new("openssl").args(args).current_dir(dir).output().unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA (`ca.pem`) and a certificate for 127.0.0.1 it signed (`server.pem`, `server.key`).
fn certificates(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=tame test CA",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    );
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ],
    );
}

struct TlsServer {
    child: Child,
    addr: SocketAddr,
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `openssl s_server -WWW` on a free loopback port, serving files of `www`.
fn tls_server(certs: &Path, www: &Path) -> TlsServer {
    let addr = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let child = Process::new("openssl")
        .args(["s_server", "-quiet", "-WWW", "-accept"])
        .arg(addr.to_string())
        .arg("-cert")
        .arg(certs.join("server.pem"))
        .arg("-key")
        .arg(certs.join("server.key"))
        .current_dir(www)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let server = TlsServer { child, addr };
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "openssl s_server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    server
}

fn tame_status(url: &str) -> Command {
    let mut cmd = Command::cargo_bin("tame").unwrap();
    cmd.env_remove("TAME_API_KEY")
        .env_remove("SSL_CERT_DIR")
        .env_remove("SSL_CERT_FILE")
        .args(["--api-url", url, "status"]);
    cmd
}

#[test]
fn status_over_https_trusts_the_ca_that_ssl_cert_file_names_and_no_other() {
    if Process::new("openssl").arg("version").output().is_err() {
        assert!(
            std::env::var_os("CI").is_none(),
            "openssl is needed for the https tests in CI"
        );
        eprintln!("skipped: no openssl tool to make certificates and serve TLS");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let www = dir.path().join("www");
    std::fs::create_dir(&www).unwrap();
    certificates(dir.path());
    std::fs::write(
        www.join("health"),
        r#"{"status":"healthy","version":"0.0.0-tls-test","policy_version":"tls-1"}"#,
    )
    .unwrap();
    let server = tls_server(dir.path(), &www);
    let url = format!("https://{}", server.addr);

    let ok = tame_status(&url)
        .env("SSL_CERT_FILE", dir.path().join("ca.pem"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert!(ok.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&ok.stderr));
    assert!(stdout.contains("healthy"), "{stdout}");

    // The same server with only the system's roots: its CA is unknown.
    let refused = tame_status(&url).output().unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr).to_lowercase();
    assert!(stderr.contains("certificate") || stderr.contains("issuer"), "{stderr}");
}
