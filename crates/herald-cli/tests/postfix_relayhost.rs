//! A real Postfix with herald as its `relayhost`: SASL (AUTH with an API
//! key from `smtp_sasl_password_maps`) over STARTTLS with the certificate
//! verified, relaying a message through herald to the testkit relay.
//! Needs Postfix (scripts/deps installs it) and root (Postfix's master runs
//! as root and drops to `postfix`), as bench/service.sh does.

#![allow(clippy::unwrap_used, clippy::expect_used)]
// These tests run the binary in its own process: they wait on real time
// (for conditions, with deadlines), so they read the machine's clocks.
#![allow(clippy::disallowed_methods)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use herald_testkit::{ServerConfig, TestServer};
use support::{Herald, Setup, TempDir};

/// A throw-away Postfix instance under a directory of its own; stopped on
/// drop.
struct Postfix {
    etc: PathBuf,
    port: u16,
}

impl Postfix {
    fn start(dir: &Path, herald_port: u16, ca: &Path) -> Postfix {
        let etc = dir.join("etc");
        for sub in ["etc", "queue", "data"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        std::fs::copy("/etc/postfix/master.cf", etc.join("master.cf"))
            .expect("Postfix is installed (scripts/deps)");
        std::fs::write(etc.join("main.cf"), "").unwrap();
        run("chown", &["postfix", dir.join("data").to_str().unwrap()]);
        let passwords = dir.join("sasl_passwd");
        std::fs::write(
            &passwords,
            format!(
                "[localhost]:{herald_port} postfix-test:{}\n",
                support::API_KEY
            ),
        )
        .unwrap();
        let port = support::free_port();
        let etc_s = etc.to_str().unwrap();
        let d = |sub: &str| dir.join(sub).display().to_string();
        let settings = [
            "compatibility_level=3.6".to_owned(),
            format!("queue_directory={}", d("queue")),
            format!("data_directory={}", d("data")),
            "mail_owner=postfix".to_owned(),
            "setgid_group=postdrop".to_owned(),
            "inet_interfaces=127.0.0.1".to_owned(),
            "inet_protocols=ipv4".to_owned(),
            "myhostname=postfix.test".to_owned(),
            "mydestination=".to_owned(),
            "mynetworks=127.0.0.0/8".to_owned(),
            "smtpd_relay_restrictions=permit_mynetworks,reject".to_owned(),
            "alias_maps=".to_owned(),
            "alias_database=".to_owned(),
            format!("maillog_file={}", d("maillog")),
            format!("maillog_file_prefixes={}", dir.display()),
            // herald as the relay host, as docs/submission.md says.
            format!("relayhost=[localhost]:{herald_port}"),
            "smtp_host_lookup=native".to_owned(),
            "smtp_sasl_auth_enable=yes".to_owned(),
            format!("smtp_sasl_password_maps=texthash:{}", passwords.display()),
            "smtp_sasl_security_options=noanonymous".to_owned(),
            "smtp_tls_security_level=secure".to_owned(),
            "smtp_tls_secure_cert_match=nexthop".to_owned(),
            format!("smtp_tls_CAfile={}", ca.display()),
            "smtp_tls_loglevel=1".to_owned(),
            "smtpd_tls_security_level=none".to_owned(),
        ];
        let mut args = vec!["-c", etc_s, "-e"];
        args.extend(settings.iter().map(String::as_str));
        run("postconf", &args);
        run("postconf", &["-c", etc_s, "-F", "*/*/chroot = n"]);
        run("postconf", &["-c", etc_s, "-M#", "smtp/inet"]);
        let service = format!("127.0.0.1:{port}/inet=127.0.0.1:{port} inet n - n - - smtpd");
        run("postconf", &["-c", etc_s, "-Me", &service]);
        let _ = Command::new("postfix")
            .args(["-c", etc_s, "check"])
            .output();
        run("postfix", &["-c", etc_s, "start"]);
        let postfix = Postfix { etc, port };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "Postfix's smtpd did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        postfix
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        let _ = Command::new("postfix")
            .args(["-c", self.etc.to_str().unwrap_or_default(), "stop"])
            .output();
    }
}

fn run(program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e} (scripts/deps installs Postfix)"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Hands one message to Postfix's smtpd.
const CLIENT: &str = r#"
import smtplib, sys
s = smtplib.SMTP("127.0.0.1", int(sys.argv[1]), timeout=10)
s.sendmail("app@example.com", ["bob@example.org"],
           b"From: app@example.com\r\nTo: bob@example.org\r\n"
           b"Subject: through Postfix and herald\r\n\r\nrelayed\r\n")
s.quit()
"#;

#[test]
fn postfix_relays_through_herald_with_sasl_and_tls() {
    let dir = TempDir::new("postfix-relayhost");
    // Postfix (as user postfix) must reach its directories here.
    run("chmod", &["755", dir.path().to_str().unwrap()]);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let (cert_file, key_file) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_file, cert.pem()).unwrap();
    std::fs::write(&key_file, key.serialize_pem()).unwrap();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let relay = runtime
        .block_on(TestServer::start(ServerConfig::default()))
        .unwrap();
    let setup = Setup {
        http_port: support::free_port(),
        relay_port: relay.port(),
        concurrency: 2,
        lease: "1m",
        drain_timeout: "1s",
        data_timeout: "5s",
    };
    let submission_port = support::free_port();
    let config = support::write_config(dir.path(), &setup);
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!(
        "\n[submission]\nlisten = \"127.0.0.1:{submission_port}\"\n\
         cert_file = \"{}\"\nkey_file = \"{}\"\n",
        cert_file.display(),
        key_file.display()
    ));
    std::fs::write(&config, text).unwrap();
    let log = dir.path().join("herald.log");
    let herald = Herald::start(&config, setup.http_port, &log);

    let postfix = Postfix::start(&dir.path().join("postfix"), submission_port, &cert_file);
    let out = Command::new("python3")
        .args(["-c", CLIENT, &postfix.port.to_string()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let arrived = runtime.block_on(relay.wait_for_messages(1, Duration::from_secs(60)));
    let maillog =
        || std::fs::read_to_string(dir.path().join("postfix/maillog")).unwrap_or_default();
    assert!(
        arrived,
        "nothing reached the relay; Postfix's log:\n{}",
        maillog()
    );
    let received = relay.messages();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].rcpt_to, ["bob@example.org"]);
    let text = String::from_utf8_lossy(&received[0].data);
    assert!(
        text.contains("Subject: through Postfix and herald"),
        "{text}"
    );
    assert!(text.ends_with("\r\n\r\nrelayed\r\n"), "{text}");
    // Postfix's own headers came along: it relayed, over TLS.
    assert!(text.contains("by postfix.test (Postfix)"), "{text}");
    let log_text = maillog();
    assert!(
        log_text.contains(&format!("relay=localhost[127.0.0.1]:{submission_port}"))
            && log_text.contains("status=sent"),
        "{log_text}"
    );
    assert!(
        log_text.contains("Verified TLS connection established to localhost"),
        "{log_text}"
    );
    // herald knows who queued it.
    let agent = support::agent();
    let list: serde_json::Value = serde_json::from_str(
        &agent
            .get(format!("{}/v1/messages", herald.base))
            .header("Authorization", &format!("Bearer {}", support::API_KEY))
            .call()
            .unwrap()
            .into_body()
            .read_to_string()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        list["messages"][0]["submitted_by"], "auth.api_keys[0]",
        "{list}"
    );
    drop(postfix);
}
