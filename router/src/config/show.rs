//! The settings in force, written back as a config file: what
//! `gdp-router --check-config` prints.
//!
//! Every setting appears under the key the config file uses for it, with
//! its resolved value (defaults included), so the output shows exactly what
//! the router would run with and can be read back as a config file. The
//! one exception is a secret: a password in a `redis://user:password@host`
//! directory spec is printed as `***` (the directory's
//! [`Display`](std::fmt::Display) form, see [`masked_url`](crate::directory::masked_url)).

use std::path::Path;
use std::time::Duration;

use toml::{Table, Value};

use super::{RouterSettings, format_duration};

fn duration(d: Duration) -> Value {
    Value::String(format_duration(d))
}

/// A count as a TOML integer. TOML integers are signed 64-bit; a larger
/// count (which only a flag can give) is shown as the largest one.
fn count(n: usize) -> Value {
    Value::Integer(i64::try_from(n).unwrap_or(i64::MAX))
}

fn path(p: &Path) -> Value {
    Value::String(p.display().to_string())
}

fn text(s: impl std::fmt::Display) -> Value {
    Value::String(s.to_string())
}

fn texts<T: std::fmt::Display>(items: &[T]) -> Value {
    Value::Array(items.iter().map(text).collect())
}

impl RouterSettings {
    /// The settings as a config file's table, every key present except
    /// those whose absence means something (`advertise` derived from the
    /// bound address, the default `admin` address, no `via` gateway, no
    /// `domain_cert`, no `[capsule_server]`), with secrets masked. `--check-config` prints
    /// it; the admin API's `/v1/config` shows [`to_json`](Self::to_json).
    pub fn to_masked_table(&self) -> Table {
        let mut top = Table::new();
        top.insert("data_dir".into(), path(&self.data_dir));
        top.insert("key_file".into(), path(&self.key_file));
        top.insert("label".into(), text(&self.label));
        top.insert("listen".into(), text(self.listen));
        if let Some(list) = &self.advertise {
            top.insert("advertise".into(), texts(list));
        }
        top.insert("directory".into(), text(&self.directory));
        top.insert(
            "directory_timeout".into(),
            duration(self.directory_options.timeout),
        );
        // A default admin address stays unset: read back, a configured one
        // would make a taken port fatal, which the default is not.
        if self.admin_configured {
            top.insert("admin".into(), self.admin.map_or_else(|| text("off"), text));
        }
        top.insert("log".into(), text(&self.log));
        if let Some(via) = &self.via {
            let mut t = Table::new();
            t.insert("name".into(), text(via.name));
            t.insert("addresses".into(), texts(&via.addresses));
            top.insert("via".into(), Value::Table(t));
        }

        let mut trust = Table::new();
        if let Some(cert) = &self.domain_cert {
            trust.insert("domain_cert".into(), path(cert));
        }
        trust.insert("trusted_domains".into(), texts(&self.trusted_domains));
        trust.insert("trusted_peers".into(), texts(&self.trusted_peers));
        trust.insert("peering".into(), text(self.peering));
        top.insert("trust".into(), Value::Table(trust));

        let mut socket = Table::new();
        socket.insert("send_buffer".into(), count(self.socket_send_buffer));
        socket.insert("recv_buffer".into(), count(self.socket_recv_buffer));
        socket.insert(
            "compact_headers".into(),
            Value::Boolean(self.compact_headers),
        );
        top.insert("socket".into(), Value::Table(socket));

        let mut timing = Table::new();
        for (key, value) in [
            ("record_ttl", self.record_ttl),
            ("cache_ttl", self.cache_ttl),
            ("negative_ttl", self.negative_ttl),
            ("pending_timeout", self.pending_timeout),
            ("resolve_timeout", self.resolve_timeout),
            ("dial_timeout", self.dial_timeout),
            ("redial_interval", self.redial_interval),
            ("keep_alive", self.keep_alive),
            ("idle_timeout", self.idle_timeout),
            ("audit_interval", self.audit_interval),
            ("stall_timeout", self.stall_timeout),
            ("drop_penalty_max", self.drop_penalty_max),
            ("attach_timeout", self.attach_timeout),
            ("tree_lease", self.tree_lease),
            ("tree_refresh", self.tree_refresh),
        ] {
            timing.insert(key.into(), duration(value));
        }
        top.insert("timing".into(), Value::Table(timing));

        let mut limits = Table::new();
        for (key, value) in [
            ("max_links", self.max_links),
            ("max_links_per_address", self.max_links_per_address),
            (
                "handshakes_per_address",
                self.handshakes_per_address as usize,
            ),
            (
                "handshake_burst_per_address",
                self.handshake_burst_per_address as usize,
            ),
            ("max_dials", self.max_dials),
            ("unproven_pdu_limit", self.unproven_pdu_limit),
            ("pending_per_name", self.pending_per_name),
            ("pending_total", self.pending_total),
            ("max_entitlements", self.max_entitlements),
            ("held_per_source", self.held_per_source),
            ("held_per_link", self.held_per_link),
            ("held_total", self.held_total),
            ("max_unproven_links", self.max_unproven_links),
            ("max_links_per_peer", self.max_links_per_peer),
            ("pending_bytes", self.pending_bytes),
            ("pending_per_source", self.pending_per_source),
            ("max_lookups_per_source", self.max_lookups_per_source),
            ("max_trees", self.max_trees),
            ("max_tree_members", self.max_tree_members),
            ("max_tree_joins_per_link", self.max_tree_joins_per_link),
        ] {
            limits.insert(key.into(), count(value));
        }
        for (key, value) in [
            ("max_violations", self.max_violations),
            ("subscribe_rate", self.subscribe_rate_per_link.per_sec),
            ("subscribe_burst", self.subscribe_rate_per_link.burst),
        ] {
            limits.insert(key.into(), Value::Integer(i64::from(value)));
        }
        top.insert("limits".into(), Value::Table(limits));

        if let Some(table) = &self.capsule_server {
            top.insert("capsule_server".into(), table.clone());
        }
        top
    }

    /// [`to_masked_table`](Self::to_masked_table) as TOML text.
    pub fn to_masked_toml(&self) -> String {
        // A table of strings, integers, arrays and tables always
        // serializes; the message is there should that ever change.
        toml::to_string(&self.to_masked_table())
            .unwrap_or_else(|e| format!("# the settings cannot be shown as TOML: {e}\n"))
    }
}

#[cfg(all(test, feature = "daemon"))]
mod tests {
    use std::path::Path;

    use clap::Parser as _;

    use super::super::{Cli, FileConfig};
    use super::*;

    fn resolve(file: &str, args: &[&str]) -> RouterSettings {
        let file = FileConfig::parse(file, Path::new("t.toml")).expect("parses");
        let cli = Cli::try_parse_from(std::iter::once("gdp-router").chain(args.iter().copied()))
            .expect("valid command line");
        RouterSettings::resolve(file, &cli).expect("valid")
    }

    #[test]
    fn the_printed_settings_read_back_as_the_same_settings() {
        let gw = gdp_certs::Name::from_bytes([3; 32]);
        let key = gdp_certs::SecretKey::from_seed(&[5; 32]).public();
        for (file, args) in [
            (String::new(), vec![]),
            (
                format!(
                    "listen = \"127.0.0.1:9000\"\nadmin = \"off\"\n\
                     directory = \"redis-cluster://a:1,b:2\"\n[via]\nname = \"{gw}\"\n\
                     addresses = [\"10.0.0.1:7474\"]\n[trust]\ntrusted_domains = [\"{key}\"]\n\
                     [timing]\nrecord_ttl = \"90s\"\nkeep_alive = \"1500ms\"\n\
                     [capsule_server]\nlabel = \"inside\"\n"
                ),
                vec![
                    "--advertise",
                    "192.0.2.1:7474,192.0.2.2:7474",
                    "--log",
                    "debug",
                ],
            ),
        ] {
            let settings = resolve(&file, &args);
            let shown = settings.to_masked_toml();
            let again = resolve(&shown, &[]).to_masked_toml();
            assert_eq!(again, shown, "from:\n{file}");
        }
    }

    #[test]
    fn every_setting_is_shown_and_durations_keep_their_units() {
        let settings = resolve("[timing]\nrecord_ttl = \"2h\"\ncache_ttl = 90\n", &[]);
        let table = settings.to_masked_table();
        for key in ["data_dir", "key_file", "listen", "directory", "log"] {
            assert!(table.contains_key(key), "{key}");
        }
        for (section, keys) in [("timing", 15), ("limits", 23), ("socket", 3), ("trust", 3)] {
            let t = table[section].as_table().expect("a table");
            assert_eq!(t.len(), keys, "[{section}]: {t:?}");
        }
        let timing = table["timing"].as_table().expect("a table");
        assert_eq!(timing["record_ttl"].as_str(), Some("2h"));
        assert_eq!(timing["cache_ttl"].as_str(), Some("1m 30s"));
    }

    #[test]
    fn the_directory_password_is_masked() {
        let settings = resolve(
            "",
            &["--directory", "redis://gdp:hunter2hunter2@10.0.0.5:6379/0"],
        );
        let shown = settings.to_masked_toml();
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(
            shown.contains("directory = \"redis://gdp:***@10.0.0.5:6379/0\""),
            "{shown}"
        );
    }
}
