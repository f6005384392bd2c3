//! `gdp-router --check-config`, run as a process: the settings in force
//! from the config file, the environment (`GDP_ROUTER_*`, `RUST_LOG`) and
//! the flags, in that order of precedence; secrets masked; exit 0 when the
//! configuration is valid and 2, with the reason, when it is not.
//!
//! `cargo test -p gdp-router --test check_config`

use std::path::Path;
use std::process::{Command, Output};

use gdp_testkit::TempDir;

/// `gdp-router ARGS` in `dir`, with `vars` as its only GDP_ROUTER_* and
/// RUST_LOG variables (the test's own environment must not leak in).
fn router(dir: &Path, args: &[&str], vars: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gdp-router"));
    cmd.current_dir(dir).args(args);
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy().into_owned();
        if name.starts_with("GDP_ROUTER_") || name == "RUST_LOG" {
            cmd.env_remove(name);
        }
    }
    cmd.envs(vars.iter().copied());
    cmd.output().expect("gdp-router runs")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs `--check-config` and returns its output, which must say the
/// configuration is valid.
fn check(dir: &Path, args: &[&str], vars: &[(&str, &str)]) -> String {
    let mut all = vec!["--check-config"];
    all.extend_from_slice(args);
    let out = router(dir, &all, vars);
    assert!(
        out.status.success(),
        "{all:?} {vars:?} failed: {}\n{}",
        out.status,
        stderr(&out)
    );
    let text = stdout(&out);
    assert!(
        text.starts_with("# gdp-router --check-config: the configuration is valid."),
        "{text}"
    );
    text
}

/// The value of top-level `key` in the printed settings.
fn setting(text: &str, key: &str) -> String {
    let table: toml::Table = toml::from_str(text).expect("the output is TOML");
    table
        .get(key)
        .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
        .unwrap_or_else(|| panic!("no {key} in:\n{text}"))
}

#[test]
fn a_flag_beats_its_variable_which_beats_the_file_which_beats_the_default() {
    let tmp = TempDir::new("check-config");
    let file = tmp.path().join("router.toml");
    std::fs::write(
        &file,
        "listen = \"127.0.0.1:7001\"\nlog = \"warn\"\n[timing]\nrecord_ttl = \"2m\"\n",
    )
    .expect("writes");
    let file = file.to_string_lossy().into_owned();
    let dir = tmp.path();

    let default = check(dir, &[], &[]);
    assert_eq!(setting(&default, "listen"), "0.0.0.0:7474");
    assert_eq!(setting(&default, "log"), "info");
    assert!(default.contains("# config file: none"), "{default}");
    assert!(default.contains("# environment: none"), "{default}");

    let from_file = check(dir, &["--config", &file], &[]);
    assert_eq!(setting(&from_file, "listen"), "127.0.0.1:7001");
    assert_eq!(setting(&from_file, "log"), "warn");
    assert!(from_file.contains("record_ttl = \"2m\""), "{from_file}");

    let env = [
        ("GDP_ROUTER_LISTEN", "127.0.0.1:7002"),
        ("GDP_ROUTER_RECORD_TTL", "3m"),
        ("RUST_LOG", "debug"),
    ];
    let from_env = check(dir, &["--config", &file], &env);
    assert_eq!(setting(&from_env, "listen"), "127.0.0.1:7002");
    assert_eq!(setting(&from_env, "log"), "debug");
    assert!(from_env.contains("record_ttl = \"3m\""), "{from_env}");
    assert!(
        from_env.contains("# environment: GDP_ROUTER_LISTEN, GDP_ROUTER_RECORD_TTL, RUST_LOG"),
        "{from_env}"
    );

    let from_flags = check(
        dir,
        &[
            "--config",
            &file,
            "--listen",
            "127.0.0.1:7003",
            "--log",
            "error",
            "--record-ttl",
            "4m",
        ],
        &env,
    );
    assert_eq!(setting(&from_flags, "listen"), "127.0.0.1:7003");
    assert_eq!(setting(&from_flags, "log"), "error");
    assert!(from_flags.contains("record_ttl = \"4m\""), "{from_flags}");

    // The config file itself can come from the environment.
    let file_from_env = check(dir, &[], &[("GDP_ROUTER_CONFIG", &file)]);
    assert_eq!(setting(&file_from_env, "listen"), "127.0.0.1:7001");
}

#[test]
fn every_kind_of_flag_has_a_working_variable() {
    let tmp = TempDir::new("check-config-env");
    let gw = "dhxcjml3x3s3mz2qozrfflfwuwv5cckaodc3hwwo2bw5w4twk2qa";
    let peer = "iw6kkcetv442qwh5j7n6qtc6vgddiv6w5a6j53nbcdbb4qvic4kq";
    let via = format!("{gw}@10.0.0.1:7474");
    let text = check(
        tmp.path(),
        &[],
        &[
            ("GDP_ROUTER_DATA_DIR", "/srv/gdp"),
            ("GDP_ROUTER_LABEL", "edge-7"),
            ("GDP_ROUTER_ADVERTISE", "192.0.2.1:7474,192.0.2.2:7474"),
            ("GDP_ROUTER_DIRECTORY", "redis-cluster://a:1,b:2"),
            ("GDP_ROUTER_DIRECTORY_TIMEOUT", "250ms"),
            ("GDP_ROUTER_VIA", &via),
            ("GDP_ROUTER_TRUSTED_PEER", peer),
            ("GDP_ROUTER_PEERING", "trusted-only"),
            ("GDP_ROUTER_SOCKET_RECV_BUFFER", "1048576"),
            ("GDP_ROUTER_ADMIN", "127.0.0.1:9474"),
            ("GDP_ROUTER_KEEP_ALIVE", "2s"),
            ("GDP_ROUTER_MAX_VIOLATIONS", "3"),
        ],
    );
    let table: toml::Table = toml::from_str(&text).expect("TOML");
    assert_eq!(table["data_dir"].as_str(), Some("/srv/gdp"));
    assert_eq!(
        table["key_file"].as_str(),
        Some("/srv/gdp/gdp-router.key"),
        "the key file follows the data directory"
    );
    assert_eq!(table["label"].as_str(), Some("edge-7"));
    let advertise: Vec<&str> = table["advertise"]
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert_eq!(advertise, ["192.0.2.1:7474", "192.0.2.2:7474"]);
    assert_eq!(table["directory"].as_str(), Some("redis-cluster://a:1,b:2"));
    assert_eq!(table["directory_timeout"].as_str(), Some("250ms"));
    assert_eq!(table["via"]["name"].as_str(), Some(gw));
    assert_eq!(table["trust"]["trusted_peers"][0].as_str(), Some(peer));
    assert_eq!(table["trust"]["peering"].as_str(), Some("trusted-only"));
    assert_eq!(table["socket"]["recv_buffer"].as_integer(), Some(1_048_576));
    assert_eq!(table["admin"].as_str(), Some("127.0.0.1:9474"));
    assert_eq!(table["timing"]["keep_alive"].as_str(), Some("2s"));
    assert_eq!(table["limits"]["max_violations"].as_integer(), Some(3));
}

#[test]
fn a_redis_password_is_masked_wherever_it_comes_from() {
    let tmp = TempDir::new("check-config-secret");
    let spec = "redis://gdp:Sup3rSecretPw@10.0.0.5:6379/0";
    let file = tmp.path().join("router.toml");
    std::fs::write(&file, format!("directory = \"{spec}\"\n")).expect("writes");
    let file = file.to_string_lossy().into_owned();
    for (args, vars) in [
        (vec!["--directory", spec], vec![]),
        (vec![], vec![("GDP_ROUTER_DIRECTORY", spec)]),
        (vec!["--config", file.as_str()], vec![]),
    ] {
        let text = check(tmp.path(), &args, &vars);
        assert!(!text.contains("Sup3rSecretPw"), "{text}");
        assert_eq!(
            setting(&text, "directory"),
            "redis://gdp:***@10.0.0.5:6379/0"
        );
    }
    // `--help` names the variable but does not show its value.
    let help = router(tmp.path(), &["--help"], &[("GDP_ROUTER_DIRECTORY", spec)]);
    assert!(help.status.success());
    let help = stdout(&help);
    assert!(help.contains("GDP_ROUTER_DIRECTORY"), "{help}");
    assert!(!help.contains("Sup3rSecretPw"), "{help}");
}

#[test]
fn an_invalid_configuration_fails_with_the_reason() {
    let tmp = TempDir::new("check-config-bad");
    let dir = tmp.path();
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("writes");
        path.to_string_lossy().into_owned()
    };
    // Arguments, environment, and what the error must say.
    type Case<'a> = (Vec<String>, Vec<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case> = vec![
        (
            vec![
                "--config".into(),
                write("keys.toml", "listn = \"1.2.3.4:5\"\n"),
            ],
            vec![],
            "listn",
        ),
        (
            vec![
                "--config".into(),
                write("alive.toml", "[timing]\nkeep_alive = \"1m\"\n"),
            ],
            vec![],
            "timing.keep_alive",
        ),
        (
            vec![],
            vec![("GDP_ROUTER_LISTEN", "not-an-address")],
            "--listen",
        ),
        (vec![], vec![("RUST_LOG", "gdp_router=[")], "`log`"),
        (
            vec![
                "--config".into(),
                dir.join("missing.toml").to_string_lossy().into(),
            ],
            vec![],
            "missing.toml",
        ),
        (
            vec![
                "--config".into(),
                write("embedded.toml", "[capsule_server]\nnonsense = 1\n"),
            ],
            vec![],
            "[capsule_server]",
        ),
    ];
    for (args, vars, reason) in cases {
        let mut all = vec!["--check-config"];
        all.extend(args.iter().map(String::as_str));
        let out = router(dir, &all, &vars);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{all:?} {vars:?}: {}",
            stderr(&out)
        );
        assert!(stdout(&out).is_empty(), "nothing printed as valid");
        assert!(
            stderr(&out).contains(reason),
            "{all:?} {vars:?}: {reason:?} not in {}",
            stderr(&out)
        );
    }
}

#[test]
fn the_key_file_is_reported_and_checked_but_never_written() {
    let tmp = TempDir::new("check-config-key");
    let dir = tmp.path();
    let text = check(dir, &[], &[]);
    assert!(
        text.contains("# key file: ./gdp-router.key does not exist yet"),
        "{text}"
    );
    assert!(!dir.join("gdp-router.key").exists(), "nothing written");

    let (id, _) = gdp_certs::Identity::load_or_generate(
        &dir.join("gdp-router.key"),
        gdp_certs::Kind::Router,
        "t",
    )
    .expect("a router key");
    let text = check(dir, &[], &[]);
    assert!(
        text.contains(&format!("(router name {})", id.name())),
        "{text}"
    );

    // A key of another kind is the wrong key file.
    gdp_certs::Identity::load_or_generate(&dir.join("client.key"), gdp_certs::Kind::Client, "t")
        .expect("a client key");
    let out = router(dir, &["--check-config", "--key-file", "client.key"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("not a router's"), "{}", stderr(&out));
}

#[test]
fn the_printed_settings_are_a_config_file_for_the_same_settings() {
    let tmp = TempDir::new("check-config-again");
    let first = check(
        tmp.path(),
        &["--listen", "127.0.0.1:7100", "--record-ttl", "90s"],
        &[("GDP_ROUTER_ADMIN", "127.0.0.1:9100")],
    );
    let file = tmp.path().join("printed.toml");
    std::fs::write(&file, &first).expect("writes");
    let again = check(tmp.path(), &["--config", &file.to_string_lossy()], &[]);
    let settings = |text: &str| {
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(settings(&again), settings(&first));
}
