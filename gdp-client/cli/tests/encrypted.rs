//! Encrypted capsules through the `gdp` command, against a real router and
//! capsule server: an owner creates an encrypted capsule with two readers
//! and appends; both read it and a third key gets "not a reader" (exit
//! status 3), while the server's store holds no plaintext; after one
//! reader is removed, later records are closed to it and open to the
//! other, whose `gdp tail -f` keeps delivering across the new epoch; the
//! history re-encrypted into a new capsule is closed to the removed reader;
//! and a ciphertext altered in the store is rejected.

#[path = "../../tests/common/mod.rs"]
mod common;
mod user;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use gdp_client::{Client, ClientOptions};
use gdp_testkit::eventually_blocking;

use common::{Net, Replicas, Server};
use user::{User, assert_one_line_error, json_lines};

/// Plaintext that must never reach the server's disk.
const MARKER: &str = "confidential-marker-5e0c1d";
const LATER: [&str; 3] = ["after-removal-1", "after-removal-2", "after-removal-3"];

fn public_key(user: &User) -> String {
    json_lines(&user.ok(&["whoami", "--json"]))[0]["public_key"]
        .as_str()
        .expect("public key")
        .to_owned()
}

/// The payloads `user` reads from `capsule` in `range`, as text.
fn read_payloads(user: &User, capsule: &str, range: &str) -> Vec<String> {
    json_lines(&user.ok(&["--json", "read", capsule, range]))
        .iter()
        .map(|r| r["payload"].as_str().expect("text payload").to_owned())
        .collect()
}

/// Every file under `dir`.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("readable dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}

/// Offsets of `needle` in `haystack`.
fn find_all(haystack: &[u8], needle: &[u8]) -> Vec<usize> {
    haystack
        .windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle)
        .map(|(i, _)| i)
        .collect()
}

/// The stored payload (the envelope, as sealed) of record `seqno`, read
/// with the SDK: anyone can fetch and verify it, no key needed.
fn sealed_payload(net: &Net, capsule: &str, seqno: u64) -> Vec<u8> {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let id = gdp_client::Identity::generate(gdp_client::Kind::Client, "inspector")
            .expect("identity");
        let client = Client::connect(
            net.router.addr,
            id,
            ClientOptions::default().with_router(net.router.name),
        )
        .await
        .expect("attaches");
        let capsule = client
            .open(capsule.parse().expect("capsule name"))
            .await
            .expect("opens");
        let record = capsule.read(seqno).await.expect("verified record");
        client.shutdown().await;
        record.payload().to_vec()
    })
}

#[test]
fn an_encrypted_capsule_is_read_by_its_readers_only() {
    let mut net = Net::start("cli-encrypted");
    let owner = User::new(net.dir.path(), "owner").at(&net);
    let alice = User::new(net.dir.path(), "alice").at(&net);
    let bob = User::new(net.dir.path(), "bob").at(&net);
    let eve = User::new(net.dir.path(), "eve").at(&net);
    for u in [&owner, &alice, &bob, &eve] {
        u.ok(&["keygen"]);
    }
    let (alice_key, bob_key) = (public_key(&alice), public_key(&bob));
    let server = net.server.name.to_string();

    let created = owner.create_capsule(&[
        "--server",
        &server,
        "--label",
        "diary",
        "--encrypted",
        "--reader",
        &alice_key,
        "--reader",
        &bob_key,
    ]);
    assert_eq!(created["encrypted"], true);
    let capsule = created["capsule"].as_str().expect("capsule").to_owned();
    let info = &json_lines(&owner.ok(&["--json", "capsule", "info", &capsule]))[0];
    assert_eq!(info["encryption"]["scheme"], "epoch", "{info}");

    owner.ok(&["append", &capsule, MARKER, "second"]);

    // Both readers read it; they name it by its name alone.
    for reader in [&alice, &bob, &owner] {
        assert_eq!(read_payloads(reader, &capsule, "1..2"), [MARKER, "second"]);
    }
    // Anyone else gets a clear error with its own status, not ciphertext.
    let out = eve.run(&["read", &capsule, "1"]);
    assert_one_line_error(&out, 3, "not a reader of this capsule");
    assert!(!String::from_utf8_lossy(&out.stdout).contains(MARKER));
    // A plain writer cannot be had for it either: eve is no writer, and
    // the owner's appends are sealed (checked by the store grep below).

    // The readers of epoch 1: the owner (a writer) and both readers.
    let listed = &json_lines(&owner.ok(&["--json", "readers", "list", &capsule]))[0];
    assert_eq!(listed["epoch"], 1);
    assert_eq!(listed["readers"].as_array().expect("readers").len(), 3);

    // Alice follows the capsule from the start, across the epoch change.
    let mut follower = alice
        .command(&[
            "--json", "tail", "-f", &capsule, "--from", "1", "--count", "5",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("gdp tail -f runs");
    let stdout = follower.stdout.take().expect("piped");
    let (lines_tx, lines_rx) = std::sync::mpsc::channel::<String>();
    let reading = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let first = lines_rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the follower prints the backlog");
    assert!(first.contains(MARKER), "{first}");

    // Bob is removed: a new epoch for what follows.
    let removed = &json_lines(&owner.ok(&["--json", "readers", "remove", &capsule, &bob_key]))[0];
    assert_eq!(removed["epoch"], 2);
    let listed = &json_lines(&owner.ok(&["--json", "readers", "list", &capsule]))[0];
    assert_eq!(listed["epoch"], 2);
    let readers: Vec<&str> = listed["readers"]
        .as_array()
        .expect("readers")
        .iter()
        .map(|r| r.as_str().expect("key"))
        .collect();
    assert!(readers.contains(&alice_key.as_str()) && !readers.contains(&bob_key.as_str()));

    owner.ok(&["append", &capsule, LATER[0], LATER[1], LATER[2]]);
    assert_eq!(read_payloads(&alice, &capsule, "3..5"), LATER);
    // Bob keeps what he could read, and nothing after.
    assert_eq!(read_payloads(&bob, &capsule, "1..2"), [MARKER, "second"]);
    assert_one_line_error(
        &bob.run(&["read", &capsule, "3"]),
        3,
        "not a reader of this capsule",
    );

    // The follower got all five, in order, decrypted across the epochs.
    let mut got = vec![first];
    while got.len() < 5 {
        got.push(
            lines_rx
                .recv_timeout(Duration::from_secs(20))
                .unwrap_or_else(|_| panic!("the follower stopped after {got:?}")),
        );
    }
    let payloads: Vec<String> = got
        .iter()
        .map(|l| {
            l.parse::<serde_json::Value>().expect("json")["payload"]
                .as_str()
                .expect("text")
                .to_owned()
        })
        .collect();
    assert_eq!(payloads, [MARKER, "second", LATER[0], LATER[1], LATER[2]]);
    let status = follower.wait().expect("follower ends");
    assert!(status.success(), "tail -f ended with {status}");
    reading.join().expect("reader thread");

    // The history copied under a fresh key for the current readers: Bob
    // reads none of it there.
    let copy = &json_lines(&owner.ok(&[
        "--json",
        "capsule",
        "reencrypt",
        &capsule,
        "--server",
        &server,
    ]))[0];
    assert_eq!(copy["copied"], 5);
    let fresh = copy["capsule"].as_str().expect("new capsule").to_owned();
    assert_eq!(
        read_payloads(&alice, &fresh, "1..5"),
        [MARKER, "second", LATER[0], LATER[1], LATER[2]]
    );
    assert_one_line_error(
        &bob.run(&["read", &fresh, "1"]),
        3,
        "not a reader of this capsule",
    );

    // Record 3 as stored: an envelope, verified by anyone without a key.
    let sealed = sealed_payload(&net, &capsule, 3);
    assert!(find_all(&sealed, LATER[0].as_bytes()).is_empty());

    // The server's store holds none of the plaintexts.
    net.server.proc.kill();
    let store = files_under(&net.server.data_dir);
    assert!(!store.is_empty());
    for path in &store {
        let bytes = std::fs::read(path).expect("store file");
        for plain in [MARKER, LATER[0], LATER[1], LATER[2]] {
            assert!(
                find_all(&bytes, plain.as_bytes()).is_empty(),
                "{plain:?} in plaintext in {}",
                path.display()
            );
        }
    }

    // One bit of record 3's ciphertext flipped in the store: rejected.
    let mut altered = 0;
    for path in &store {
        let mut bytes = std::fs::read(path).expect("store file");
        let at = find_all(&bytes, &sealed);
        for i in &at {
            bytes[i + sealed.len() - 1] ^= 1;
        }
        if !at.is_empty() {
            std::fs::write(path, &bytes).expect("store file written");
            altered += at.len();
        }
    }
    assert!(altered > 0, "record 3's envelope not found in the store");
    net.server = Server::start(net.dir.path(), "server", &net.router);
    // Refused, and no plaintext, whichever layer notices first: redb
    // checksums its pages, and a server whose store fails that check does
    // not start (it says why); otherwise the server checks each stored
    // record against the hash stored beside it and serves nothing from the
    // altered one on; and a server that served it anyway would fail the
    // reader's verification.
    if let Some(status) = net.server.proc.wait_timeout(Duration::from_secs(3)) {
        assert!(
            !status.success(),
            "the server exited cleanly on a damaged store"
        );
        return;
    }
    eventually_blocking(
        Duration::from_secs(30),
        "the restarted server serves the untouched capsule",
        || alice.run(&["read", &fresh, "1"]).status.success(),
    );
    let out = owner.run(&["read", &capsule, "3"]);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "the altered record was served");
    assert!(!String::from_utf8_lossy(&out.stdout).contains(LATER[0]));
    assert!(
        stderr.contains("verification failed")
            || stderr.contains("no record 3")
            || stderr.contains("no route"),
        "{stderr}"
    );
}

/// `--encrypted` with `--replicas`: the capsule and its keyring on three
/// servers; a reader reads with one of them down.
#[test]
fn an_encrypted_capsule_can_live_on_replicas() {
    let mut net = Replicas::start("cli-encrypted-replicas", 3, &[]);
    let owner = User::new(net.dir.path(), "owner").at_router(&net.router);
    let alice = User::new(net.dir.path(), "alice").at_router(&net.router);
    owner.ok(&["keygen"]);
    alice.ok(&["keygen"]);
    let names: Vec<String> = net.names.iter().map(ToString::to_string).collect();
    let created = owner.create_capsule(&[
        "--replicas",
        &names.join(","),
        "--encrypted",
        "--reader",
        &public_key(&alice),
    ]);
    assert_eq!(created["encrypted"], true, "{created}");
    assert_eq!(created["write_quorum"], 2);
    let capsule = created["capsule"].as_str().expect("capsule").to_owned();
    owner.ok(&["append", &capsule, MARKER, "second"]);
    net.servers[0].proc.kill();
    // Alice has no capsule file: -R 2 fetches the replica set by name.
    let read: Vec<String> = json_lines(&alice.ok(&["--json", "read", &capsule, "1..2", "-R", "2"]))
        .iter()
        .map(|r| r["payload"].as_str().expect("text").to_owned())
        .collect();
    assert_eq!(read, [MARKER, "second"]);
    net.restart(0);
}
