//! `gdp-capsule-server --check-config`, run as a process: the settings in
//! force from the config file, the environment (`GDP_CAPSULE_SERVER_*`,
//! `RUST_LOG`) and the flags, in that order of precedence; exit 0 when the
//! configuration is valid and 2, with the reason, when it is not.
//!
//! `cargo test -p gdp-capsule-server --test check_config`

use std::path::Path;
use std::process::{Command, Output};

use gdp_testkit::TempDir;
use toml::Table;

/// `gdp-capsule-server ARGS` in `dir`, with `vars` as its only
/// GDP_CAPSULE_SERVER_* and RUST_LOG variables.
fn server(dir: &Path, args: &[&str], vars: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gdp-capsule-server"));
    cmd.current_dir(dir).args(args);
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy().into_owned();
        if name.starts_with("GDP_CAPSULE_SERVER_") || name == "RUST_LOG" {
            cmd.env_remove(name);
        }
    }
    cmd.envs(vars.iter().copied());
    cmd.output().expect("gdp-capsule-server runs")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs `--check-config`, which must succeed, and returns the settings.
fn check(dir: &Path, args: &[&str], vars: &[(&str, &str)]) -> (String, Table) {
    let mut all = vec!["--check-config"];
    all.extend_from_slice(args);
    let out = server(dir, &all, vars);
    assert!(
        out.status.success(),
        "{all:?} {vars:?} failed: {}\n{}",
        out.status,
        stderr(&out)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        text.starts_with("# gdp-capsule-server --check-config: the configuration is valid."),
        "{text}"
    );
    let table = toml::from_str(&text).expect("the output is TOML");
    (text, table)
}

fn str_at<'a>(table: &'a Table, path: &[&str]) -> Option<&'a str> {
    let (last, tables) = path.split_last()?;
    let mut t = table;
    for key in tables {
        t = t.get(*key)?.as_table()?;
    }
    t.get(*last)?.as_str()
}

#[test]
fn a_flag_beats_its_variable_which_beats_the_file_which_beats_the_default() {
    let tmp = TempDir::new("server-check-config");
    let dir = tmp.path();
    let file = dir.join("server.toml");
    std::fs::write(
        &file,
        "data_dir = \"/srv/file\"\nlog = \"warn\"\n[router]\naddress = \"127.0.0.1:7001\"\n",
    )
    .expect("writes");
    let file = file.to_string_lossy().into_owned();

    let (text, t) = check(dir, &["--router", "127.0.0.1:7474"], &[]);
    assert_eq!(str_at(&t, &["data_dir"]), Some("."));
    assert_eq!(str_at(&t, &["log"]), Some("info"));
    assert_eq!(str_at(&t, &["key_file"]), Some("./capsule-server.key"));
    assert!(text.contains("# environment: none"), "{text}");

    let (_, t) = check(dir, &["--config", &file], &[]);
    assert_eq!(str_at(&t, &["data_dir"]), Some("/srv/file"));
    assert_eq!(str_at(&t, &["log"]), Some("warn"));
    assert_eq!(str_at(&t, &["router", "address"]), Some("127.0.0.1:7001"));

    let name = "dhxcjml3x3s3mz2qozrfflfwuwv5cckaodc3hwwo2bw5w4twk2qa";
    let env = [
        ("GDP_CAPSULE_SERVER_DATA_DIR", "/srv/env"),
        ("GDP_CAPSULE_SERVER_ROUTER", "127.0.0.1:7002"),
        ("GDP_CAPSULE_SERVER_ROUTER_NAME", name),
        ("GDP_CAPSULE_SERVER_LABEL", "store-9"),
        ("GDP_CAPSULE_SERVER_KEY_FILE", "/keys/s.key"),
        ("GDP_CAPSULE_SERVER_ADMIN", "127.0.0.1:9475"),
        ("RUST_LOG", "debug"),
    ];
    let (text, t) = check(dir, &["--config", &file], &env);
    assert_eq!(str_at(&t, &["data_dir"]), Some("/srv/env"));
    assert_eq!(str_at(&t, &["log"]), Some("debug"));
    assert_eq!(str_at(&t, &["router", "address"]), Some("127.0.0.1:7002"));
    assert_eq!(str_at(&t, &["router", "name"]), Some(name));
    assert_eq!(str_at(&t, &["label"]), Some("store-9"));
    assert_eq!(str_at(&t, &["key_file"]), Some("/keys/s.key"));
    assert_eq!(str_at(&t, &["admin"]), Some("127.0.0.1:9475"));
    assert!(
        text.contains(
            "# environment: GDP_CAPSULE_SERVER_ADMIN, GDP_CAPSULE_SERVER_DATA_DIR, \
             GDP_CAPSULE_SERVER_KEY_FILE, GDP_CAPSULE_SERVER_LABEL, GDP_CAPSULE_SERVER_ROUTER, \
             GDP_CAPSULE_SERVER_ROUTER_NAME, RUST_LOG"
        ),
        "{text}"
    );

    let (_, t) = check(
        dir,
        &[
            "--config",
            &file,
            "--data-dir",
            "/srv/flag",
            "--router",
            "127.0.0.1:7003",
            "--log",
            "error",
        ],
        &env,
    );
    assert_eq!(str_at(&t, &["data_dir"]), Some("/srv/flag"));
    assert_eq!(str_at(&t, &["router", "address"]), Some("127.0.0.1:7003"));
    assert_eq!(str_at(&t, &["log"]), Some("error"));

    // The config file itself can come from the environment.
    let (_, t) = check(dir, &[], &[("GDP_CAPSULE_SERVER_CONFIG", &file)]);
    assert_eq!(str_at(&t, &["data_dir"]), Some("/srv/file"));
}

#[test]
fn an_invalid_configuration_fails_with_the_reason() {
    let tmp = TempDir::new("server-check-config-bad");
    let dir = tmp.path();
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("writes");
        path.to_string_lossy().into_owned()
    };
    // Arguments, environment, and what the error must say.
    type Case<'a> = (Vec<String>, Vec<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case> = vec![
        (vec![], vec![], "router.address"),
        (
            vec![
                "--config".into(),
                write("colour.toml", "colour = \"blue\"\n"),
            ],
            vec![],
            "colour",
        ),
        (
            vec![
                "--config".into(),
                write(
                    "rtcert.toml",
                    "[router]\naddress = \"127.0.0.1:1\"\nrtcert_validity = \"10ms\"\n",
                ),
            ],
            vec![],
            "router.rtcert_validity",
        ),
        (
            vec![],
            vec![("GDP_CAPSULE_SERVER_ROUTER", "nowhere")],
            "--router",
        ),
        (
            vec!["--router".into(), "127.0.0.1:1".into()],
            vec![("RUST_LOG", "gdp=[")],
            "invalid log filter",
        ),
    ];
    for (args, vars, reason) in cases {
        let mut all = vec!["--check-config"];
        all.extend(args.iter().map(String::as_str));
        let out = server(dir, &all, &vars);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{all:?} {vars:?}: {}",
            stderr(&out)
        );
        assert!(out.stdout.is_empty(), "nothing printed as valid");
        assert!(
            stderr(&out).contains(reason),
            "{all:?} {vars:?}: {reason:?} not in {}",
            stderr(&out)
        );
    }
}

#[test]
fn the_key_file_is_reported_and_checked_but_never_written() {
    let tmp = TempDir::new("server-check-config-key");
    let dir = tmp.path();
    let (text, _) = check(dir, &["--router", "127.0.0.1:1"], &[]);
    assert!(
        text.contains("# key file: ./capsule-server.key does not exist yet"),
        "{text}"
    );
    assert!(!dir.join("capsule-server.key").exists(), "nothing written");
    let (id, _) = gdp_certs::Identity::load_or_generate(
        &dir.join("capsule-server.key"),
        gdp_certs::Kind::Server,
        "t",
    )
    .expect("a server key");
    let (text, _) = check(dir, &["--router", "127.0.0.1:1"], &[]);
    assert!(
        text.contains(&format!("(server name {})", id.name())),
        "{text}"
    );
    gdp_certs::Identity::load_or_generate(&dir.join("router.key"), gdp_certs::Kind::Router, "t")
        .expect("a router key");
    let out = server(
        dir,
        &[
            "--check-config",
            "--router",
            "127.0.0.1:1",
            "--key-file",
            "router.key",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("not a capsule server's"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn the_printed_settings_are_a_config_file_for_the_same_settings() {
    let tmp = TempDir::new("server-check-config-again");
    let (first, _) = check(
        tmp.path(),
        &["--router", "127.0.0.1:7100", "--data-dir", "/srv/x"],
        &[("RUST_LOG", "debug")],
    );
    let file = tmp.path().join("printed.toml");
    std::fs::write(&file, &first).expect("writes");
    let (again, _) = check(tmp.path(), &["--config", &file.to_string_lossy()], &[]);
    let settings = |text: &str| {
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(settings(&again), settings(&first));
}
