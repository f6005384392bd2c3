//! The `gdp` command: every subcommand, against real router and capsule
//! server processes where it needs a network, and bad input of every kind
//! (which must give one line on stderr and a non-zero status, never a
//! panic).

// The SDK's test helpers (router and capsule server processes), shared
// rather than copied.
#[path = "../../tests/common/mod.rs"]
mod common;
mod user;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use gdp_certs::cert::{AdCert, Validity};
use gdp_certs::{Identity, Metadata, Timestamp};
use gdp_client::CapsuleFile;

use common::{Net, TempDir};
use gdp_testkit::eventually_blocking;
use user::{User, assert_one_line_error, json_lines};

#[test]
fn keygen_and_whoami() {
    let dir = TempDir::new("cli-keys");
    let me = User::new(dir.path(), "me");
    assert_one_line_error(&me.run(&["whoami"]), 1, "gdp keygen");

    let out = me.ok(&["keygen", "--label", "laptop"]);
    let name = out.lines().next().expect("name line").to_owned();
    assert_eq!(name.len(), 52);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(me.key_file())
            .expect("key")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
    }
    assert_one_line_error(&me.run(&["keygen"]), 1, "--force");
    assert_eq!(me.name(), name);
    let text = me.ok(&["whoami"]);
    assert!(text.contains(&name) && text.contains("laptop") && text.contains("client"));
    me.ok(&["keygen", "--force"]);
    assert_ne!(me.name(), name);

    // A key file others can read is refused; so is garbage.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(me.key_file(), std::fs::Permissions::from_mode(0o644))
            .expect("chmod");
        assert_one_line_error(&me.run(&["whoami"]), 1, "chmod 600");
        std::fs::set_permissions(me.key_file(), std::fs::Permissions::from_mode(0o600))
            .expect("chmod");
    }
    std::fs::write(me.key_file(), "secret_key = 12\n").expect("overwrite");
    assert_one_line_error(&me.run(&["whoami"]), 1, "key file");
    let missing = me.run(&["--key", "/nonexistent/dir/k.key", "whoami"]);
    assert_one_line_error(&missing, 1, "no key file");

    // XDG_CONFIG_HOME moves the default key file (and capsule files).
    let xdg = dir.path().join("xdg");
    let out = me
        .command(&["keygen", "--json"])
        .env("XDG_CONFIG_HOME", &xdg)
        .output()
        .expect("gdp runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let made = &json_lines(&String::from_utf8_lossy(&out.stdout))[0];
    assert_eq!(
        made["key_file"],
        xdg.join("gdp/client.key").display().to_string()
    );
}

#[test]
fn bad_command_lines_and_unreachable_routers() {
    let dir = TempDir::new("cli-bad");
    let me = User::new(dir.path(), "me");
    me.ok(&["keygen"]);
    assert_one_line_error(&me.run(&["frobnicate"]), 2, "frobnicate");
    assert_one_line_error(&me.run(&["--timeout", "5parsecs", "whoami"]), 2, "unit");
    assert_one_line_error(&me.run(&["read"]), 2, "capsule");
    // No router configured.
    let name = me.name();
    assert_one_line_error(&me.run(&["ping", &name]), 1, "no router");
    // Malformed names, before any network.
    let out = me.run(&["--router", "127.0.0.1:9", "ping", "not-a-name"]);
    assert_one_line_error(&out, 1, "invalid name to ping");
    let out = me.run(&["--router", "127.0.0.1:9", "read", "ZZZZ"]);
    assert_one_line_error(&out, 1, "neither a capsule file nor a capsule name");
    let out = me.run(&["--router", "127.0.0.1:9", "read", &name, "9..3"]);
    assert_one_line_error(&out, 1, "must not end before it starts");
    // A router that is not there: a prompt, one-line failure.
    let start = Instant::now();
    let out = me.run(&["--router", "127.0.0.1:9", "--timeout", "1s", "ping", &name]);
    assert_one_line_error(&out, 1, "router 127.0.0.1:9");
    assert!(start.elapsed() < Duration::from_secs(15));
    let out = me.run(&[
        "--router",
        "no-such-host.invalid:7474",
        "--timeout",
        "1s",
        "ping",
        &name,
    ]);
    assert_one_line_error(&out, 1, "router address");
    // --help is not an error.
    let out = me.run(&["--help"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("capsule"));
}

#[test]
fn certificates_issue_and_show() {
    let dir = TempDir::new("cli-certs");
    let me = User::new(dir.path(), "me");
    me.ok(&["keygen"]);
    let id = Identity::load(&me.key_file()).expect("key");
    // A capsule file written as `capsule create` would, without a network.
    let md = Metadata::capsule(
        id.public_key(),
        vec![id.public_key()],
        "c",
        Timestamp::now(),
        vec![],
    )
    .expect("metadata");
    let file = CapsuleFile {
        metadata: md.clone(),
        writer_key: Some(me.key_file()),
        server: None,
        adcert: None,
        replication: None,
    };
    let path = dir.path().join("c.capsule");
    file.save(&path).expect("saved");
    let server = Identity::generate(gdp_certs::Kind::Server, "s")
        .expect("server")
        .name()
        .to_string();
    let cap = path.to_str().expect("utf-8");

    let text = me.ok(&[
        "cert",
        "issue",
        "adcert",
        "--capsule",
        cap,
        "--server",
        &server,
    ]);
    let cert = text.trim();
    let shown = me.ok(&["cert", "show", cert, "--capsule", cap]);
    assert!(
        shown.contains("AdCert") && shown.contains(&server) && shown.contains("valid:"),
        "{shown}"
    );
    let shown = json_lines(&me.ok(&["--json", "cert", "show", cert]));
    assert_eq!(shown[0]["type"], "adcert");
    assert_eq!(shown[0]["capsule"], md.name().to_string());

    // An AdCert for this capsule by another owner is shown as invalid.
    let mallory = gdp_certs::SecretKey::generate();
    let forged = AdCert::issue(
        &mallory,
        md.name(),
        server.parse().expect("name"),
        Validity::new(Timestamp::ZERO, Timestamp::MAX),
    );
    let forged =
        gdp_client::capsule_file::encode_base32(&gdp_certs::codec::Encode::to_bytes(&forged));
    let shown = me.ok(&["cert", "show", &forged, "--capsule", cap]);
    assert!(shown.contains("INVALID"), "{shown}");

    let router = Identity::generate(gdp_certs::Kind::Router, "r")
        .expect("router")
        .name()
        .to_string();
    let rt = dir.path().join("rt.cert");
    me.ok(&[
        "cert",
        "issue",
        "rtcert",
        "--router",
        &router,
        "--out",
        rt.to_str().expect("utf-8"),
    ]);
    let shown = me.ok(&["cert", "show", rt.to_str().expect("utf-8")]);
    assert!(
        shown.contains("RtCert") && shown.contains(&router) && shown.contains(&me.name()),
        "{shown}"
    );

    assert_one_line_error(
        &me.run(&["cert", "show", "garbage!"]),
        1,
        "neither a file nor a certificate",
    );
    assert_one_line_error(
        &me.run(&["cert", "show", "aaaa"]),
        1,
        "not a gdp certificate",
    );
    // Only the owner issues AdCerts.
    let other = User::new(dir.path(), "other");
    other.ok(&["keygen"]);
    let out = other.run(&[
        "cert",
        "issue",
        "adcert",
        "--capsule",
        cap,
        "--server",
        &server,
    ]);
    assert_one_line_error(&out, 1, "does not own");
}

#[test]
fn capsules_over_real_processes() {
    let net = Net::start("cli-capsules");
    let me = User::new(net.dir.path(), "me").at(&net);
    me.ok(&["keygen"]);
    let server = net.server.name.to_string();

    let created = me.create_capsule(&["--server", &server, "--label", "notes"]);
    let capsule = created["capsule"].as_str().expect("capsule").to_owned();
    let file = PathBuf::from(created["file"].as_str().expect("file"));
    assert!(file.starts_with(&me.home));
    assert_eq!(
        CapsuleFile::load(&file)
            .expect("capsule file")
            .name()
            .to_string(),
        capsule
    );

    let info = json_lines(&me.ok(&["--json", "capsule", "info", &capsule]));
    assert_eq!(info[0]["records"], 0);
    assert_eq!(info[0]["label"], "notes");

    me.ok(&["append", &capsule, "first", "second"]);
    let blob = me.home.join("blob.bin");
    std::fs::write(&blob, [0u8, 1, 2, 255]).expect("blob");
    me.ok(&["append", &capsule, "--file", blob.to_str().expect("utf-8")]);
    let out = me.run_with_stdin(&["--json", "append", &capsule], "l1\nl2\nl3\n");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let appended = json_lines(&String::from_utf8(out.stdout).expect("utf-8"));
    assert_eq!(
        (appended[0]["first"].as_u64(), appended[0]["last"].as_u64()),
        (Some(4), Some(6))
    );
    me.ok(&[
        "append",
        "--sign-each",
        file.to_str().expect("utf-8"),
        "by file",
    ]);

    let all = me.ok(&["read", &capsule]);
    let lines: Vec<&str> = all.lines().collect();
    assert_eq!(lines.len(), 7, "{all}");
    assert!(
        lines[0].contains("first")
            && lines[2].contains("0x000102ff")
            && lines[6].contains("by file")
    );
    assert_eq!(me.ok(&["read", "--raw", &capsule, "2"]), "second\n");
    assert_eq!(me.ok(&["read", "--raw", &capsule, "4..5"]), "l1\nl2\n");
    assert_eq!(me.ok(&["read", "--raw", &capsule, "6.."]), "l3\nby file\n");
    assert_eq!(me.ok(&["read", "--raw", "--latest", &capsule]), "by file\n");
    let records = json_lines(&me.ok(&["--json", "read", &capsule, "1..3"]));
    assert_eq!(records.len(), 3);
    assert_eq!(records[2]["payload_hex"], "000102ff");
    assert_eq!(records[2]["payload"], serde_json::Value::Null);
    assert_eq!(records[0]["verified_by_heartbeat_at"], 7);
    assert_eq!(
        me.ok(&["tail", "--raw", "-n", "2", &capsule]),
        "l3\nby file\n"
    );
    assert_one_line_error(&me.run(&["read", &capsule, "99"]), 1, "NotFound");

    // Someone else, who has neither the capsule file nor a writer key.
    let you = User::new(net.dir.path(), "you").at(&net);
    you.ok(&["keygen"]);
    assert_eq!(you.ok(&["read", "--raw", &capsule, "1"]), "first\n");
    assert_one_line_error(
        &you.run(&["append", &capsule, "intruder"]),
        1,
        "not a writer",
    );

    // tail -f: the backlog from 6, then a record appended meanwhile.
    let mut follower = you
        .command(&[
            "tail", "-f", "--raw", "--from", "6", "--count", "3", &capsule,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tail -f runs");
    let mut stdout = BufReader::new(follower.stdout.take().expect("piped"));
    let mut line = String::new();
    for want in ["l3\n", "by file\n"] {
        line.clear();
        stdout.read_line(&mut line).expect("a record");
        assert_eq!(line, want);
    }
    me.ok(&["append", &capsule, "live"]);
    line.clear();
    stdout.read_line(&mut line).expect("the live record");
    assert_eq!(line, "live\n");
    let status = follower.wait().expect("tail -f ends after --count");
    assert!(status.success());
    let info = me.ok(&["capsule", "info", &capsule]);
    assert!(info.contains("records  8"), "{info}");

    // A capsule nobody serves: a typed error on one line.
    let nobody = gdp_certs::Name::from_bytes([9; 32]).to_string();
    assert_one_line_error(
        &me.run(&["--timeout", "3s", "read", &nobody]),
        1,
        "no route",
    );
}

#[test]
fn datagrams_and_pings() {
    let net = Net::start("cli-net");
    let a = User::new(net.dir.path(), "a").at(&net);
    let b = User::new(net.dir.path(), "b").at(&net);
    a.ok(&["keygen"]);
    b.ok(&["keygen"]);
    let b_name = b.name();

    let receiver = b
        .command(&["--json", "recv", "--count", "1", "--wait", "20s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("recv runs");
    // `recv` is attached once it has printed nothing yet but the router
    // knows it: ping it until it answers (this SDK answers pings).
    eventually_blocking(Duration::from_secs(20), "recv attached", || {
        a.run(&["--timeout", "1s", "ping", "--count", "1", &b_name])
            .status
            .success()
    });
    let sent = a.ok(&["send", &b_name, "hi b"]);
    assert!(sent.contains("sent 4 bytes"));
    let out = receiver.wait_with_output().expect("recv ends");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = json_lines(&String::from_utf8(out.stdout).expect("utf-8"));
    assert_eq!(got[0]["payload"], "hi b");
    assert_eq!(got[0]["src"], a.name());

    let pings = a.ok(&[
        "ping",
        "--count",
        "2",
        "--interval",
        "10ms",
        &net.router.name.to_string(),
    ]);
    assert!(pings.contains("2 of 2 answered"), "{pings}");
    // Nobody receives: recv gives up after its wait.
    assert_one_line_error(&b.run(&["recv", "--wait", "300ms"]), 1, "received 0 of 1");
    let nobody = gdp_certs::Name::from_bytes([8; 32]).to_string();
    assert_one_line_error(
        &a.run(&["--timeout", "3s", "ping", "--count", "1", &nobody]),
        1,
        "no route",
    );
}

#[test]
fn the_demo_runs_a_whole_gdp_and_exits_zero() {
    let dir = TempDir::new("cli-demo");
    let me = User::new(dir.path(), "me");
    let out = me.ok(&["demo", "--records", "2000", "--single", "10"]);
    assert!(out.contains("received all 2010 records"), "{out}");
    assert!(out.contains("done in"), "{out}");
    let steps = json_lines(&me.ok(&["--json", "demo", "--records", "300", "--single", "3"]));
    assert_eq!(steps.last().expect("steps")["step"], "done");
}

#[test]
fn domain_keygen_and_issue_write_what_the_router_loads() {
    use gdp_certs::cert::{DOMAIN_CERT_LEN, DomainCert};
    use gdp_certs::codec::Decode;
    use gdp_certs::{Kind, PublicKey};
    use gdp_testkit::{spawn_with_start_line, start_line_field, workspace_bin};

    let dir = TempDir::new("cli-domain");
    let op = User::new(dir.path(), "operator");
    let key = op.home.join("domain.key");
    let key_arg = key.to_str().expect("utf-8 path");
    let made = json_lines(&op.ok(&["domain", "keygen", "-o", key_arg, "--json"]));
    let public: PublicKey = made[0]["public_key"]
        .as_str()
        .expect("public key")
        .parse()
        .expect("a public key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).expect("key").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    assert_one_line_error(&op.run(&["domain", "keygen", "-o", key_arg]), 1, "--force");
    let shown = op.ok(&["domain", "show", "--domain-key", key_arg]);
    assert_eq!(shown.trim(), public.to_string());

    // The router's key, made the way gdp-router makes it; the certificate
    // names the router given by its key file.
    let router_key = op.home.join("router.key");
    let router = Identity::generate(Kind::Router, "edge").expect("router key");
    router.save(&router_key).expect("saved");
    let cert_file = op.home.join("router.domain-cert");
    op.ok(&[
        "domain",
        "issue",
        "--domain-key",
        key_arg,
        "--router",
        router_key.to_str().expect("utf-8 path"),
        "--valid-for",
        "30d",
        "-o",
        cert_file.to_str().expect("utf-8 path"),
    ]);
    let bytes = std::fs::read(&cert_file).expect("cert written");
    assert_eq!(bytes.len(), DOMAIN_CERT_LEN);
    let cert = DomainCert::decode(bytes).expect("decodes");
    assert_eq!(cert.router(), router.name());
    assert_eq!(cert.domain(), &public);
    cert.verify(router.metadata(), &[public], Timestamp::now())
        .expect("verifies for the router");
    // Inspected: what it admits, for how long, and that it is signed by
    // the domain key it names.
    let cert_arg = cert_file.to_str().expect("utf-8 path");
    let shown = &json_lines(&op.ok(&["cert", "show", cert_arg, "--json"]))[0];
    assert_eq!(shown["type"], "domain-cert");
    assert_eq!(shown["domain"], public.to_string());
    assert_eq!(shown["router"], router.name().to_string());
    assert!(
        shown["check"].as_str().expect("check").starts_with("valid"),
        "{shown}"
    );
    let text = op.ok(&["cert", "show", cert_arg]);
    assert!(
        text.contains(&format!("router   {}", router.name())),
        "{text}"
    );
    // A flipped signature byte is reported, not trusted.
    let mut forged = std::fs::read(&cert_file).expect("cert written");
    let first_of_signature = forged.len() - 64;
    forged[first_of_signature] ^= 1;
    let forged_file = op.home.join("forged.domain-cert");
    std::fs::write(&forged_file, &forged).expect("written");
    let forged_shown = op.ok(&["cert", "show", forged_file.to_str().expect("utf-8 path")]);
    assert!(forged_shown.contains("INVALID"), "{forged_shown}");
    // By name, the same router.
    let by_name = op.home.join("by-name.domain-cert");
    op.ok(&[
        "domain",
        "issue",
        "--domain-key",
        key_arg,
        "--router",
        &router.name().to_string(),
        "-o",
        by_name.to_str().expect("utf-8 path"),
    ]);
    let again = DomainCert::decode(std::fs::read(&by_name).expect("written")).expect("decodes");
    assert_eq!(again.router(), router.name());

    // A router started with the certificate and the domain key loads both.
    let (_proc, line) = spawn_with_start_line(
        Command::new(workspace_bin("gdp-router"))
            .args([
                "--key-file",
                router_key.to_str().expect("utf-8 path"),
                "--listen",
                "127.0.0.1:0",
                "--directory",
                "memory",
                "--log",
                "warn",
                "--domain-cert",
                cert_file.to_str().expect("utf-8 path"),
                "--trusted-domain",
                &public.to_string(),
            ])
            .stderr(Stdio::inherit()),
        "domain-router",
        None,
        Duration::from_secs(20),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        start_line_field(&line, "name"),
        Some(router.name().to_string().as_str())
    );

    // Not a domain key: refused in one line.
    assert_one_line_error(
        &op.run(&[
            "domain",
            "issue",
            "--domain-key",
            router_key.to_str().expect("utf-8 path"),
            "--router",
            &router.name().to_string(),
            "-o",
            "x",
        ]),
        1,
        "not a trust-domain key",
    );
}
