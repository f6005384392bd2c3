//! A key-value store with time travel, kept in one capsule.
//!
//! Every `put` or `delete` appends one record; the store's state at any
//! seqno is the replay of the records up to it, so "what was the value of
//! `k` after the 3rd change" and "what was it at 12:00" are both reads of a
//! verified prefix of the log. Nobody can rewrite that history: each record
//! is hash-chained and covered by the writer's heartbeat, and every read is
//! checked against the capsule's metadata.
//!
//! Run it with a local GDP started in this process (three routers and a
//! capsule server on loopback):
//!
//! ```text
//! cargo run -p gdp-client --features local --example kv_store
//! ```
//!
//! or against a running GDP, given a router and a capsule server:
//!
//! ```text
//! cargo run -p gdp-client --features local --example kv_store -- <router addr> <server name>
//! ```
//!
//! With `--encrypted` first, the store lives in an encrypted capsule: the
//! server keeps only ciphertext, and the same reads decrypt what they
//! replay (`kv_store --encrypted [<router addr> <server name>]`).
//!
//! Record format: `u8 op (1 put, 2 delete) || u16 key length || key || value`.

use std::collections::BTreeMap;

use bytes::{BufMut, Bytes, BytesMut};
use gdp_client::local::LocalGdp;
use gdp_client::{
    Capsule, CapsuleSpec, Client, ClientError, ClientOptions, Decryptor, EncryptionScheme,
    Identity, Kind, Name, SealedWriter, Timestamp, VerifiedRecord, Writer,
};
use tokio::sync::Mutex;

const OP_PUT: u8 = 1;
const OP_DELETE: u8 = 2;

/// One change to the store.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Change {
    Put { key: String, value: Bytes },
    Delete { key: String },
}

impl Change {
    fn encode(&self) -> Result<Bytes, ClientError> {
        let (op, key, value) = match self {
            Change::Put { key, value } => (OP_PUT, key, value.clone()),
            Change::Delete { key } => (OP_DELETE, key, Bytes::new()),
        };
        let len = u16::try_from(key.len()).map_err(|_| ClientError::InvalidInput {
            reason: "a key is at most 65535 bytes".into(),
        })?;
        let mut b = BytesMut::with_capacity(3 + key.len() + value.len());
        b.put_u8(op);
        b.put_u16(len);
        b.put_slice(key.as_bytes());
        b.put_slice(&value);
        Ok(b.freeze())
    }

    /// The change in a record's payload; `None` for a payload that is not
    /// one (the store skips it).
    fn decode(p: &Bytes) -> Option<Change> {
        let op = *p.first()?;
        let len = usize::from(u16::from_be_bytes([*p.get(1)?, *p.get(2)?]));
        let key = std::str::from_utf8(p.get(3..3 + len)?).ok()?.to_owned();
        let value = p.slice(3 + len..);
        match op {
            OP_PUT => Some(Change::Put { key, value }),
            OP_DELETE if value.is_empty() => Some(Change::Delete { key }),
            _ => None,
        }
    }
}

/// The store's writer: of plaintext records, or of sealed ones.
enum StoreWriter {
    Plain(Box<Writer>),
    Sealed(Box<SealedWriter>),
}

/// A key-value store on a capsule.
struct KvStore {
    capsule: Capsule,
    writer: StoreWriter,
    /// The keys of an encrypted store's capsule.
    keys: Option<Mutex<Decryptor>>,
}

impl KvStore {
    /// Creates the store's capsule on `server`, encrypted if asked.
    async fn create(
        client: &Client,
        me: &Identity,
        server: Name,
        encrypted: bool,
    ) -> Result<Self, ClientError> {
        let spec = CapsuleSpec::new("kv-store");
        if !encrypted {
            let created = client.create_capsule(server, me.secret_key(), spec).await?;
            let writer = created.capsule.writer(me.secret_key().clone()).await?;
            return Ok(KvStore {
                capsule: created.capsule,
                writer: StoreWriter::Plain(Box::new(writer)),
                keys: None,
            });
        }
        let spec = spec.encrypted(EncryptionScheme::Epoch);
        let created = client
            .create_encrypted(server, me.secret_key(), spec)
            .await?;
        let capsule = created.capsule.capsule;
        let writer = capsule.sealed_writer(me.secret_key().clone()).await?;
        let keys = capsule.decryptor(me.secret_key()).await?;
        Ok(KvStore {
            capsule,
            writer: StoreWriter::Sealed(Box::new(writer)),
            keys: Some(Mutex::new(keys)),
        })
    }

    /// Appends one change.
    async fn append(&mut self, change: Change) -> Result<u64, ClientError> {
        let record = change.encode()?;
        match &mut self.writer {
            StoreWriter::Plain(w) => w.append(record).await,
            StoreWriter::Sealed(w) => w.append(record).await,
        }
    }

    /// A record's payload as written: decrypted in an encrypted store.
    async fn payload(&self, r: &VerifiedRecord) -> Result<Bytes, ClientError> {
        match &self.keys {
            None => Ok(r.payload().clone()),
            Some(keys) => keys.lock().await.open(r).await,
        }
    }

    /// Sets `key` to `value`; returns the seqno of the change.
    async fn put(&mut self, key: &str, value: impl Into<Bytes>) -> Result<u64, ClientError> {
        let change = Change::Put {
            key: key.to_owned(),
            value: value.into(),
        };
        self.append(change).await
    }

    /// Removes `key`; returns the seqno of the change.
    async fn delete(&mut self, key: &str) -> Result<u64, ClientError> {
        let change = Change::Delete {
            key: key.to_owned(),
        };
        self.append(change).await
    }

    /// The whole store after change `seqno` (0: empty), replayed from
    /// verified records.
    async fn state_at(&self, seqno: u64) -> Result<BTreeMap<String, Bytes>, ClientError> {
        let mut state = BTreeMap::new();
        if seqno == 0 {
            return Ok(state);
        }
        for r in self.capsule.read_range(1, seqno).await? {
            match Change::decode(&self.payload(&r).await?) {
                Some(Change::Put { key, value }) => {
                    state.insert(key, value);
                }
                Some(Change::Delete { key }) => {
                    state.remove(&key);
                }
                None => {}
            }
        }
        Ok(state)
    }

    /// The value of `key` now.
    async fn get(&self, key: &str) -> Result<Option<Bytes>, ClientError> {
        let tail = self.capsule.tail().await?;
        self.get_at(key, tail).await
    }

    /// The value of `key` right after change `seqno`.
    async fn get_at(&self, key: &str, seqno: u64) -> Result<Option<Bytes>, ClientError> {
        Ok(self.state_at(seqno).await?.remove(key))
    }

    /// The last change made at or before `time` (0 if none), by binary
    /// search over the records' timestamps (one writer: they only grow).
    async fn seqno_at_time(&self, time: Timestamp) -> Result<u64, ClientError> {
        let (mut lo, mut hi) = (0u64, self.capsule.tail().await?);
        while lo < hi {
            let mid = lo + (hi - lo).div_ceil(2);
            if self.capsule.read(mid).await?.timestamp() <= time {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        Ok(lo)
    }

    /// The value of `key` as it was at `time`.
    async fn get_at_time(&self, key: &str, time: Timestamp) -> Result<Option<Bytes>, ClientError> {
        let seqno = self.seqno_at_time(time).await?;
        self.get_at(key, seqno).await
    }
}

/// A timestamp later than every record appended so far and earlier than
/// any appended from now on: the clock is read until it has moved past
/// now, and then past that moment too.
async fn moment_between() -> Timestamp {
    let moment = tick_after(Timestamp::now()).await;
    tick_after(moment).await;
    moment
}

/// The first reading of the clock later than `after`.
async fn tick_after(after: Timestamp) -> Timestamp {
    loop {
        let now = Timestamp::now();
        if now > after {
            return now;
        }
        tokio::task::yield_now().await;
    }
}

/// Shows the store at work: puts, a delete, and reads back in time.
async fn tour(
    client: &Client,
    me: &Identity,
    server: Name,
    encrypted: bool,
) -> Result<(), ClientError> {
    let mut kv = KvStore::create(client, me, server, encrypted).await?;
    println!(
        "store in capsule {}{}",
        kv.capsule.name(),
        if encrypted { " (encrypted)" } else { "" }
    );
    kv.put("colour", "red").await?;
    let red = kv.put("size", "large").await?;
    let noon = moment_between().await;
    kv.put("colour", "blue").await?;
    kv.delete("size").await?;
    let show = |v: Option<Bytes>| {
        v.map_or("(none)".to_owned(), |b| {
            String::from_utf8_lossy(&b).into_owned()
        })
    };
    println!("colour now:            {}", show(kv.get("colour").await?));
    println!("size now:              {}", show(kv.get("size").await?));
    println!(
        "colour after change {red}: {}",
        show(kv.get_at("colour", red).await?)
    );
    println!(
        "size at {noon:?}:  {}",
        show(kv.get_at_time("size", noon).await?)
    );
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let encrypted = args.first().is_some_and(|a| a == "--encrypted");
    if encrypted {
        args.remove(0);
    }
    match args.as_slice() {
        [router, server] => {
            let me = Identity::generate(Kind::Client, "kv-store")?;
            let client =
                Client::connect(router.parse()?, me.clone(), ClientOptions::default()).await?;
            tour(&client, &me, server.parse()?, encrypted).await?;
            client.shutdown().await;
        }
        [] => {
            let gdp = LocalGdp::start(3).await?;
            let (client, me) = gdp.client(0, "kv-store").await?;
            tour(&client, &me, gdp.server_name(), encrypted).await?;
            client.shutdown().await;
            gdp.shutdown().await?;
        }
        _ => return Err("usage: kv_store [--encrypted] [<router addr> <server name>]".into()),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_round_trip_and_garbage_is_skipped() {
        let put = Change::Put {
            key: "k".into(),
            value: Bytes::from_static(b"v\x00w"),
        };
        assert_eq!(Change::decode(&put.encode().expect("small")), Some(put));
        let del = Change::Delete { key: "gone".into() };
        assert_eq!(Change::decode(&del.encode().expect("small")), Some(del));
        assert_eq!(Change::decode(&Bytes::from_static(b"")), None);
        assert_eq!(Change::decode(&Bytes::from_static(&[9, 0, 0])), None);
        assert_eq!(Change::decode(&Bytes::from_static(&[1, 0, 5, b'a'])), None);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn time_travel_on_a_local_gdp() {
        time_travel(false).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn time_travel_on_an_encrypted_capsule() {
        time_travel(true).await;
    }

    async fn time_travel(encrypted: bool) {
        let gdp = LocalGdp::start(1).await.expect("local gdp");
        let (client, me) = gdp.client(0, "kv-test").await.expect("client");
        let mut kv = KvStore::create(&client, &me, gdp.server_name(), encrypted)
            .await
            .expect("store");
        assert_eq!(kv.put("a", "1").await.expect("put"), 1);
        assert_eq!(kv.put("b", "2").await.expect("put"), 2);
        let between = moment_between().await;
        assert_eq!(kv.put("a", "3").await.expect("put"), 3);
        assert_eq!(kv.delete("b").await.expect("delete"), 4);
        if encrypted {
            // What the server holds is not the change itself.
            let stored = kv.capsule.read(1).await.expect("record 1");
            assert_eq!(Change::decode(stored.payload()), None);
        }

        assert_eq!(kv.get("a").await.expect("get"), Some(Bytes::from("3")));
        assert_eq!(kv.get("b").await.expect("get"), None);
        assert_eq!(
            kv.get_at("a", 2).await.expect("get"),
            Some(Bytes::from("1"))
        );
        assert_eq!(
            kv.get_at("b", 3).await.expect("get"),
            Some(Bytes::from("2"))
        );
        assert_eq!(kv.get_at("a", 0).await.expect("get"), None);
        assert_eq!(kv.seqno_at_time(between).await.expect("search"), 2);
        assert_eq!(kv.seqno_at_time(Timestamp::ZERO).await.expect("search"), 0);
        assert_eq!(
            kv.get_at_time("b", between).await.expect("get"),
            Some(Bytes::from("2"))
        );
        client.shutdown().await;
        gdp.shutdown().await.expect("clean shutdown");
    }
}
