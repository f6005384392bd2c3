//! Attacks through the directory, which every member can write (10, 11):
//! junk fields under a router's names, its records altered or deleted by
//! hand, valid records for throwaway names that list addresses nobody
//! answers at (a dial storm once something looks them up), and an old
//! record replayed next to a fresh one.
//!
//! These talk to the directory's Redis directly, as an attacker with
//! access to it would, through a synchronous connection
//! ([`RedisServer::connection`](crate::RedisServer::connection)). The
//! layout is the router's: a hash per name (the key comes from the caller,
//! `gdp_router::directory::route_key`), one field per signing router (its
//! name's bytes), each value the record's expiry (big-endian microseconds)
//! then the record.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use gdp_certs::cert::{MAX_ROUTE_ADDRESSES, RouteRecord, RouteTarget, Validity};
use gdp_certs::{Kind, Name, Timestamp};
use gdp_proto::Encode;
use redis::Connection;

use super::{Sent, identity, random_name};

/// Where the dial-storm records point: loopback addresses nothing listens
/// on (127.0.0.3, UDP ports from 9).
pub const UNREACHABLE_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));

/// Bytes of garbage in each junk value.
const JUNK_LEN: usize = 64;

/// A stored value: `expires` then `record`.
pub fn stored_value(expires: Timestamp, record: &[u8]) -> Vec<u8> {
    let mut value = expires.0.to_be_bytes().to_vec();
    value.extend_from_slice(record);
    value
}

/// Attack 10 (junk): writes `count` fields of garbage under `key`, each
/// under a random signer name with an expiry an hour ahead (so the
/// directory keeps them as live).
///
/// # Errors
///
/// When Redis refuses the write.
pub fn junk_fields(conn: &mut Connection, key: &str, count: usize) -> redis::RedisResult<Sent> {
    let expires = Timestamp::now().saturating_add(Duration::from_secs(3600));
    let mut cmd = redis::cmd("HSET");
    cmd.arg(key);
    let mut sent = Sent::default();
    for _ in 0..count {
        let junk: Vec<u8> = (0..JUNK_LEN).map(|_| rand::random::<u8>()).collect();
        let value = stored_value(expires, &junk);
        sent.bytes += (value.len() + 32) as u64;
        sent.pdus += 1;
        cmd.arg(&random_name().as_bytes()[..]).arg(value);
    }
    cmd.query::<()>(conn)?;
    Ok(sent)
}

/// Attack 10 (altered record): flips the last byte of the record stored
/// under `key` in `signer`'s field (its signature), so that it no longer
/// verifies. False when there was no such field.
///
/// # Errors
///
/// When Redis fails.
pub fn alter_field(conn: &mut Connection, key: &str, signer: Name) -> redis::RedisResult<bool> {
    let Some(mut value) = read_field(conn, key, signer)? else {
        return Ok(false);
    };
    if let Some(last) = value.last_mut() {
        *last ^= 0xff;
    }
    replay_field(conn, key, signer, &value)?;
    Ok(true)
}

/// Attack 10 (deleted record): deletes every record under `key`. False
/// when there was none.
///
/// # Errors
///
/// When Redis fails.
pub fn delete_key(conn: &mut Connection, key: &str) -> redis::RedisResult<bool> {
    let n: i64 = redis::cmd("DEL").arg(key).query(conn)?;
    Ok(n > 0)
}

/// The value stored under `key` in `signer`'s field, if any.
///
/// # Errors
///
/// When Redis fails.
pub fn read_field(
    conn: &mut Connection,
    key: &str,
    signer: Name,
) -> redis::RedisResult<Option<Vec<u8>>> {
    redis::cmd("HGET")
        .arg(key)
        .arg(&signer.as_bytes()[..])
        .query(conn)
}

/// Attack 11: stores `value` (read earlier with [`read_field`]) under
/// `key` in `signer`'s field again: an old record, still valid, replayed
/// next to the fresh ones.
///
/// # Errors
///
/// When Redis fails.
pub fn replay_field(
    conn: &mut Connection,
    key: &str,
    signer: Name,
    value: &[u8],
) -> redis::RedisResult<()> {
    redis::cmd("HSET")
        .arg(key)
        .arg(&signer.as_bytes()[..])
        .arg(value)
        .query(conn)
}

/// Attack 10 (dial storm): publishes, for each of `count` throwaway router
/// keys, a valid route record of its own name listing
/// [`MAX_ROUTE_ADDRESSES`] addresses on [`UNREACHABLE_IP`], under the key
/// `key(name)`. Returns the throwaway names (to send PDUs to, with
/// [`send_to_names`](super::flood::send_to_names)) and what was written.
///
/// # Errors
///
/// When Redis refuses a write.
pub fn dial_storm_records(
    conn: &mut Connection,
    key: impl Fn(&Name) -> String,
    count: usize,
) -> redis::RedisResult<(Vec<Name>, Sent)> {
    let now = Timestamp::now();
    let hour = Duration::from_secs(3600);
    let validity = Validity::new(now.saturating_sub(hour), now.saturating_add(hour));
    let addresses: Vec<SocketAddr> = (0..MAX_ROUTE_ADDRESSES)
        .map(|i| SocketAddr::new(UNREACHABLE_IP, 9 + u16::try_from(i).unwrap_or(0)))
        .collect();
    let mut names = Vec::with_capacity(count);
    let mut sent = Sent::default();
    for _ in 0..count {
        let id = identity(Kind::Router, "throwaway");
        let record = RouteRecord::sign(
            &id,
            id.name(),
            RouteTarget::Router,
            addresses.clone(),
            None,
            validity,
        )
        .expect("a router signs its own record with the most addresses allowed")
        .to_bytes();
        let value = stored_value(now.saturating_add(hour), &record);
        sent.bytes += value.len() as u64;
        sent.pdus += 1;
        replay_field(conn, &key(&id.name()), id.name(), &value)?;
        names.push(id.name());
    }
    Ok((names, sent))
}
