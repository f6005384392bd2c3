//! Encrypted capsules through the SDK, against a real router and capsule
//! server: no plain writer for them, readers added and removed (a new
//! epoch that a subscription crosses), convergent records that coalesce,
//! and the history re-encrypted into a new capsule.

mod common;

use bytes::Bytes;
use futures::StreamExt;
use gdp_certs::codec::Decode;
use gdp_client::{Capsule, CapsuleSpec, Client, ClientError, EncryptionScheme, Identity, Name};
use gdp_proto::chain::ChainState;
use gdp_seal::Envelope;

use common::Net;

/// Creates an encrypted capsule on the net's server, retrying while the
/// server attaches.
async fn create(client: &Client, owner: &Identity, server: Name, spec: CapsuleSpec) -> Capsule {
    gdp_testkit::eventually_ok(std::time::Duration::from_secs(20), || {
        let spec = spec.clone();
        async move {
            client
                .create_encrypted(server, owner.secret_key(), spec)
                .await
        }
    })
    .await
    .capsule
    .capsule
}

fn texts(items: &[&str]) -> Vec<Bytes> {
    items.iter().map(|s| Bytes::from(s.to_string())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encrypted_capsule_has_no_plain_writer() {
    let net = Net::start("sealed-writers");
    let (client, owner) = net.client("owner").await;
    let capsule = create(
        &client,
        &owner,
        net.server.name,
        CapsuleSpec::new("no plaintext").encrypted(EncryptionScheme::Epoch),
    )
    .await;
    assert!(capsule.metadata().is_encrypted());
    let key = owner.secret_key().clone();
    assert!(matches!(
        capsule.writer(key.clone()).await,
        Err(ClientError::Encrypted { .. })
    ));
    assert!(matches!(
        capsule.writer_at(key.clone(), ChainState::new(capsule.name())),
        Err(ClientError::Encrypted { .. })
    ));
    // A spec that asks for encryption is refused by the plaintext creators.
    let err = client
        .create_capsule(
            net.server.name,
            &key,
            CapsuleSpec::new("x").encrypted(EncryptionScheme::Epoch),
        )
        .await
        .expect_err("refused");
    assert!(err.to_string().contains("create_encrypted"), "{err}");

    // Appended through the sealed writer, the stored payloads are
    // envelopes of the epoch, and the owner reads the plaintext back.
    let mut w = capsule.sealed_writer(key.clone()).await.expect("writer");
    assert_eq!(w.epoch(), 1);
    w.append_all(texts(&["alpha", "beta"]))
        .await
        .expect("appended");
    let stored = capsule.read(1).await.expect("verified");
    let envelope = Envelope::decode(stored.payload().clone()).expect("an envelope");
    assert_eq!(envelope.epoch(), 1);
    assert!(!stored.payload().windows(5).any(|w| w == b"alpha"));
    let mut d = capsule.decryptor(&key).await.expect("the owner reads");
    assert_eq!(d.open(&stored).await.expect("opens"), "alpha");

    // A key the keyring never names is not a reader.
    let stranger = Identity::generate(gdp_client::Kind::Client, "stranger").expect("id");
    assert!(matches!(
        capsule.decryptor(stranger.secret_key()).await,
        Err(ClientError::NotReader { epoch: 1, .. })
    ));
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_keeps_decrypting_across_a_new_epoch() {
    let net = Net::start("sealed-epochs");
    let (client, owner) = net.client("owner").await;
    let (alice_client, alice) = net.client("alice").await;
    let (bob_client, bob) = net.client("bob").await;
    let capsule = create(
        &client,
        &owner,
        net.server.name,
        CapsuleSpec::new("epochs")
            .encrypted(EncryptionScheme::Epoch)
            .with_reader(alice.public_key())
            .with_reader(bob.public_key()),
    )
    .await;
    let mut readers = capsule.readers().await.expect("readers");
    readers.sort_by_key(|k| *k.as_bytes());
    let mut want = vec![owner.public_key(), alice.public_key(), bob.public_key()];
    want.sort_by_key(|k| *k.as_bytes());
    assert_eq!(readers, want);

    // Alice follows the capsule by its name, from the start, and gets
    // plaintext.
    let alices = alice_client.open(capsule.name()).await.expect("opens");
    let mut alice_view = alices.as_reader(alice.secret_key()).await.expect("reader");
    let mut sub = std::pin::pin!(
        alices
            .as_reader(alice.secret_key())
            .await
            .expect("reader")
            .subscribe(1)
    );

    let mut w = capsule
        .sealed_writer(owner.secret_key().clone())
        .await
        .expect("writer");
    w.append_all(texts(&["one", "two", "three"]))
        .await
        .expect("epoch 1");
    assert_eq!(
        w.remove_readers(&[bob.public_key()])
            .await
            .expect("removed"),
        2
    );
    assert_eq!(w.epoch(), 2);
    w.append_all(texts(&["four", "five", "six"]))
        .await
        .expect("epoch 2");

    let mut got = Vec::new();
    while got.len() < 6 {
        let r = tokio::time::timeout(std::time::Duration::from_secs(20), sub.next())
            .await
            .expect("delivered in time")
            .expect("stream open")
            .expect("verified and decrypted");
        assert_eq!(r.record.seqno(), got.len() as u64 + 1);
        got.push(r.plaintext);
    }
    assert_eq!(got, texts(&["one", "two", "three", "four", "five", "six"]));
    // Reads through the view decrypt across both epochs too.
    let read: Vec<Bytes> = alice_view
        .read_range(2, 5)
        .await
        .expect("read")
        .into_iter()
        .map(|r| r.plaintext)
        .collect();
    assert_eq!(read, texts(&["two", "three", "four", "five"]));
    assert_eq!(alice_view.decryptor().epochs(), [1, 2]);
    assert_eq!(
        alice_view
            .latest()
            .await
            .expect("latest")
            .expect("records")
            .plaintext,
        "six"
    );

    // Bob keeps epoch 1 and gets nothing of epoch 2.
    let bobs = bob_client.open(capsule.name()).await.expect("opens");
    let mut bob_keys = bobs
        .decryptor(bob.secret_key())
        .await
        .expect("was a reader");
    let records = bobs.read_range(1, 6).await.expect("verified by anyone");
    for r in &records[..3] {
        bob_keys.open(r).await.expect("bob kept epoch 1");
    }
    for r in &records[3..] {
        assert!(matches!(
            bob_keys.open(r).await,
            Err(ClientError::NotReader { epoch: 2, .. })
        ));
    }
    // So does a read through his view: the records of epoch 1 open on the
    // tasks that read them, those of epoch 2 send it to the keyring, which
    // grants him nothing more.
    let mut bob_view = bobs.as_reader(bob.secret_key()).await.expect("reader");
    assert!(matches!(
        bob_view.read_range(1, 6).await,
        Err(ClientError::NotReader { epoch: 2, .. })
    ));
    let first: Vec<Bytes> = bob_view
        .read_range(1, 3)
        .await
        .expect("epoch 1")
        .into_iter()
        .map(|r| r.plaintext)
        .collect();
    assert_eq!(first, texts(&["one", "two", "three"]));
    assert_eq!(capsule.epoch().await.expect("epoch"), 2);
    assert!(
        !capsule
            .readers()
            .await
            .expect("readers")
            .contains(&bob.public_key())
    );

    // Adding Bob back grants him the current key, and only it.
    assert_eq!(
        capsule
            .add_readers(owner.secret_key(), &[bob.public_key()])
            .await
            .expect("added"),
        1
    );
    bob_keys.refresh().await.expect("refreshed");
    assert_eq!(bob_keys.epochs(), [1, 2]);
    assert_eq!(bob_keys.open(&records[5]).await.expect("opens"), "six");
    for c in [client, alice_client, bob_client] {
        c.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn convergent_records_coalesce_and_history_reencrypts() {
    let net = Net::start("sealed-convergent");
    let (client, owner) = net.client("owner").await;
    let (bob_client, bob) = net.client("bob").await;
    let capsule = create(
        &client,
        &owner,
        net.server.name,
        CapsuleSpec::new("convergent")
            .encrypted(EncryptionScheme::Convergent)
            .with_reader(bob.public_key()),
    )
    .await;
    let mut w = capsule
        .sealed_writer(owner.secret_key().clone())
        .await
        .expect("writer");
    w.append_all(texts(&["same", "same", "other"]))
        .await
        .expect("appended");
    let stored = capsule.read_range(1, 3).await.expect("verified");
    let bodies: Vec<Bytes> = stored
        .iter()
        .map(|r| {
            Envelope::decode(r.payload().clone())
                .expect("envelope")
                .ciphertext()
                .clone()
        })
        .collect();
    // Equal records, equal ciphertexts (that is the point, and the leak).
    assert_eq!(bodies[0], bodies[1]);
    assert_ne!(bodies[0], bodies[2]);
    assert_ne!(stored[0].payload(), stored[1].payload());
    let mut d = capsule.decryptor(owner.secret_key()).await.expect("reader");
    for (r, want) in stored.iter().zip(["same", "same", "other"]) {
        assert_eq!(d.open(r).await.expect("opens"), want);
    }

    // Bob is removed and the history copied into a new capsule he was
    // never a reader of.
    capsule
        .remove_readers(owner.secret_key(), &[bob.public_key()])
        .await
        .expect("removed");
    let fresh = create(
        &client,
        &owner,
        net.server.name,
        CapsuleSpec::new("re-encrypted").encrypted(EncryptionScheme::Epoch),
    )
    .await;
    assert_eq!(
        capsule
            .reencrypt_into(owner.secret_key(), &fresh)
            .await
            .expect("copied"),
        3
    );
    let mut fd = fresh.decryptor(owner.secret_key()).await.expect("reader");
    let copied = fresh.read_range(1, 3).await.expect("verified");
    let mut plain = Vec::new();
    for r in &copied {
        plain.push(fd.open(r).await.expect("opens"));
    }
    assert_eq!(plain, texts(&["same", "same", "other"]));
    let bobs = bob_client.open(fresh.name()).await.expect("opens");
    assert!(matches!(
        bobs.decryptor(bob.secret_key()).await,
        Err(ClientError::NotReader { .. })
    ));
    client.shutdown().await;
    bob_client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encrypted_capsule_on_three_replicas_reads_with_one_down() {
    let mut net = common::Replicas::start("sealed-replicas", 3, &[]);
    let owner = Identity::generate(gdp_client::Kind::Client, "owner").expect("identity");
    let reader = Identity::generate(gdp_client::Kind::Client, "reader").expect("identity");
    let client = net
        .client(&owner, gdp_client::ClientOptions::default())
        .await;
    let names = net.names.clone();
    let created = gdp_testkit::eventually_ok(std::time::Duration::from_secs(20), || {
        client.create_encrypted_replicated(
            &names,
            owner.secret_key(),
            CapsuleSpec::new("replicated secrets")
                .encrypted(EncryptionScheme::Epoch)
                .with_reader(reader.public_key()),
        )
    })
    .await;
    let capsule = created.capsule.capsule;
    assert!(capsule.replication().is_some());
    assert_eq!(created.keyring.set.servers(), created.capsule.set.servers());
    let mut w = capsule
        .sealed_writer(owner.secret_key().clone())
        .await
        .expect("writer");
    w.append_all(texts(&["a", "b", "c"]))
        .await
        .expect("W=2 acks");

    // The reader opens it by name with its replica set, and decrypts with
    // one replica down (R=2 of the remaining two).
    net.servers[2].proc.kill();
    let reader_client = net
        .client(&reader, gdp_client::ClientOptions::default())
        .await;
    let theirs = reader_client
        .open_replicated(capsule.name())
        .await
        .expect("opens with its set");
    assert!(theirs.replication().is_some());
    let mut keys = theirs.decryptor(reader.secret_key()).await.expect("reader");
    let records = theirs.read_range(1, 3).await.expect("quorum read");
    let mut plain = Vec::new();
    for r in &records {
        plain.push(keys.open(r).await.expect("opens"));
    }
    assert_eq!(plain, texts(&["a", "b", "c"]));
    // Removing a reader writes the keyring with the quorum too.
    assert_eq!(
        capsule
            .remove_readers(owner.secret_key(), &[reader.public_key()])
            .await
            .expect("removed"),
        2
    );
    net.restart(2);
    client.shutdown().await;
    reader_client.shutdown().await;
}
