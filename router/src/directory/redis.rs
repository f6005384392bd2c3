//! The Redis directory: one server, and the layout and scripts shared with
//! the cluster backend.
//!
//! See the [module documentation](super) for the key layout. Each operation
//! is one command on one key (`EVALSHA` of a small Lua script, falling back
//! to `EVAL` when the server has lost its script cache, as after a restart,
//! or `HDEL`), sent through a connection that implements
//! [`redis::aio::ConnectionLike`]: a
//! [`ConnectionManager`] here, a cluster connection in
//! [`RedisClusterDirectory`](super::RedisClusterDirectory).
//!
//! Every call is bounded by the per-call timeout of [`DirectoryOptions`]: a
//! dead server makes calls fail with [`DirectoryError::Unavailable`] within
//! it, while the connection manager reconnects in the background; the same
//! [`RedisDirectory`] works again once the server is back.

use std::sync::LazyLock;
use std::time::{Duration, Instant};

use bytes::Bytes;
use gdp_certs::{Name, Timestamp};
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::{Cmd, ErrorKind, RedisError, Script, ServerErrorKind, Value};

use super::{
    Backend, BoxFuture, Directory, DirectoryConfigError, DirectoryError, DirectoryOptions,
    EXPIRY_PREFIX_LEN, Lookup, MAX_FIELDS_SCANNED, MAX_RECORDS_PER_NAME, MAX_ROUTE_RECORD_LEN,
    MAX_ROUTERS_PER_NAME, Unavailable, check_record_len, route_key,
};

/// Latest key expiry set in Redis, in Unix milliseconds (about year 6400):
/// later record expiries ("never") are clamped to it. It stays well inside
/// both Redis's range and the exact integers of Lua's doubles.
const MAX_EXPIRE_AT_MS: u64 = 1 << 47;

/// Lua helpers shared by the scripts: the server's clock in microseconds and
/// the expiry prefix of a stored value (nil when the value is too short).
const LUA_PRELUDE: &str = r#"
local function now_us()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local function expiry(v)
  if #v < 8 then return nil end
  local a, b, c, d, e, f, g, h = string.byte(v, 1, 8)
  return ((((((a * 256 + b) * 256 + c) * 256 + d) * 256 + e) * 256 + f) * 256 + g) * 256 + h
end
local function check_type(key)
  local kind = redis.call('TYPE', key)['ok']
  if kind ~= 'hash' and kind ~= 'none' then
    return redis.error_reply('WRONGTYPE ' .. key .. ' holds a ' .. kind .. ', not a route hash')
  end
  return kind
end
"#;

/// `KEYS[1]` route hash; `ARGV`: router field, value (expiry prefix and
/// record), key expiry in Unix ms, most routers per name, most fields
/// scanned. Returns 1 stored, 0 already expired (the router's field is
/// removed), -1 the name is full.
const PUBLISH_BODY: &str = r#"
local key, router, value = KEYS[1], ARGV[1], ARGV[2]
local at, max_routers, max_scan = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local kind = check_type(key)
if type(kind) == 'table' then return kind end
local now = now_us()
local e = expiry(value)
if e == nil or e <= now then
  redis.call('HDEL', key, router)
  return 0
end
local others = 0
if kind == 'hash' then
  local cursor, scanned = '0', 0
  repeat
    local r = redis.call('HSCAN', key, cursor, 'COUNT', 64)
    cursor = r[1]
    local kv = r[2]
    for i = 1, #kv, 2 do
      scanned = scanned + 1
      local fe = expiry(kv[i + 1])
      if fe == nil or fe <= now then
        redis.call('HDEL', key, kv[i])
      elseif kv[i] ~= router then
        others = others + 1
      end
    end
  until cursor == '0' or scanned >= max_scan
  if cursor ~= '0' then others = redis.call('HLEN', key) end
end
if others >= max_routers and redis.call('HEXISTS', key, router) == 0 then
  return -1
end
redis.call('HSET', key, router, value)
if redis.call('PEXPIRETIME', key) < at then
  redis.call('PEXPIREAT', key, at)
end
return 1
"#;

/// `KEYS[1]` route hash; `ARGV`: most records, most value length (prefix
/// included), most fields scanned. Returns `{oversize, malformed, excess,
/// value...}` with the live values, expiry prefix included.
const LOOKUP_BODY: &str = r#"
local key = KEYS[1]
local max_records, max_len, max_scan = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local kind = check_type(key)
if type(kind) == 'table' then return kind end
local out = {0, 0, 0}
if kind == 'none' then return out end
local now = now_us()
local n, cursor, scanned, seen = 0, '0', 0, {}
repeat
  local r = redis.call('HSCAN', key, cursor, 'COUNT', 64)
  cursor = r[1]
  local kv = r[2]
  for i = 2, #kv, 2 do
    scanned = scanned + 1
    local v = kv[i]
    local e = expiry(v)
    if seen[kv[i - 1]] then
      -- HSCAN may repeat a field while the hash is rehashed.
    elseif e == nil then
      out[2] = out[2] + 1
    elseif e > now then
      if #v > max_len then
        out[1] = out[1] + 1
      elseif n >= max_records then
        out[3] = out[3] + 1
      else
        n = n + 1
        out[3 + n] = v
      end
    end
    seen[kv[i - 1]] = true
  end
until cursor == '0' or scanned >= max_scan
if cursor ~= '0' then
  out[3] = out[3] + math.max(0, redis.call('HLEN', key) - scanned)
end
return out
"#;

/// `KEYS[1]` route hash; `ARGV`: most value length (prefix included), most
/// fields scanned, length of a router name. Deletes the fields that can
/// never be a router's record (a field name of another length, a value
/// without the expiry prefix, expired or too long) and returns the others
/// as `{field, value, field, value...}`, expiry prefix included.
const FIELDS_BODY: &str = r#"
local key = KEYS[1]
local max_len, max_scan, name_len = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local kind = check_type(key)
if type(kind) == 'table' then return kind end
local out = {}
if kind == 'none' then return out end
local now = now_us()
local cursor, scanned, seen, junk = '0', 0, {}, {}
repeat
  local r = redis.call('HSCAN', key, cursor, 'COUNT', 64)
  cursor = r[1]
  local kv = r[2]
  for i = 1, #kv, 2 do
    scanned = scanned + 1
    local f, v = kv[i], kv[i + 1]
    if not seen[f] then
      seen[f] = true
      local e = expiry(v)
      if #f ~= name_len or e == nil or e <= now or #v > max_len then
        junk[#junk + 1] = f
      else
        out[#out + 1] = f
        out[#out + 1] = v
      end
    end
  end
until cursor == '0' or scanned >= max_scan
for i = 1, #junk do
  redis.call('HDEL', key, junk[i])
end
return out
"#;

/// A Lua script: its source and the SHA-1 that `EVALSHA` names it by.
struct LuaScript {
    code: String,
    hash: String,
}

impl LuaScript {
    fn new(body: &str) -> Self {
        let code = format!("{LUA_PRELUDE}{body}");
        let hash = Script::new(&code).get_hash().to_owned();
        LuaScript { code, hash }
    }
}

static PUBLISH_SCRIPT: LazyLock<LuaScript> = LazyLock::new(|| LuaScript::new(PUBLISH_BODY));
static LOOKUP_SCRIPT: LazyLock<LuaScript> = LazyLock::new(|| LuaScript::new(LOOKUP_BODY));
static FIELDS_SCRIPT: LazyLock<LuaScript> = LazyLock::new(|| LuaScript::new(FIELDS_BODY));

/// The stored form of a record: its expiry, then the record.
pub(super) fn encode_value(expires: Timestamp, record: &[u8]) -> Vec<u8> {
    let mut value = Vec::with_capacity(EXPIRY_PREFIX_LEN + record.len());
    value.extend_from_slice(&expires.0.to_be_bytes());
    value.extend_from_slice(record);
    value
}

/// The key expiry for a record expiry: Unix milliseconds, rounded up.
fn expire_at_ms(expires: Timestamp) -> u64 {
    expires.0.div_ceil(1000).min(MAX_EXPIRE_AT_MS)
}

/// The operations of the Redis layout over any async Redis connection.
#[derive(Clone)]
pub(super) struct RedisStore<C> {
    conn: C,
    backend: Backend,
    timeout: Duration,
}

impl<C> RedisStore<C>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    pub(super) fn new(conn: C, backend: Backend, timeout: Duration) -> Self {
        RedisStore {
            conn,
            backend,
            timeout,
        }
    }

    /// Awaits a request within the per-call timeout and sorts its errors.
    async fn bounded(
        &self,
        request: impl Future<Output = redis::RedisResult<Value>>,
    ) -> Result<Value, DirectoryError> {
        match tokio::time::timeout(self.timeout, request).await {
            Ok(Ok(value)) => error_reply(value).map_err(|e| map_error(self.backend, e)),
            Ok(Err(e)) => Err(map_error(self.backend, e)),
            Err(_) => Err(DirectoryError::Unavailable {
                backend: self.backend,
                cause: Unavailable::Timeout(self.timeout),
            }),
        }
    }

    /// Runs one command within the per-call timeout.
    async fn run(&self, cmd: &Cmd) -> Result<Value, DirectoryError> {
        let mut conn = self.conn.clone();
        self.bounded(conn.req_packed_command(cmd)).await
    }

    /// Runs a script by its hash, loading it with `EVAL` when the server
    /// does not have it. Both attempts share one per-call timeout.
    async fn run_script(
        &self,
        script: &LuaScript,
        key: &str,
        args: &[&[u8]],
    ) -> Result<Value, DirectoryError> {
        let build = |verb: &str, head: &str| {
            let mut cmd = redis::cmd(verb);
            cmd.arg(head).arg(1).arg(key);
            for arg in args {
                cmd.arg(*arg);
            }
            cmd
        };
        let eval_sha = build("EVALSHA", &script.hash);
        let attempt = async {
            let mut conn = self.conn.clone();
            match conn
                .req_packed_command(&eval_sha)
                .await
                .and_then(error_reply)
            {
                Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                    let eval = build("EVAL", &script.code);
                    conn.req_packed_command(&eval).await
                }
                other => other,
            }
        };
        self.bounded(attempt).await
    }

    pub(super) async fn publish(
        &self,
        name: Name,
        router: Name,
        record: Bytes,
        expires: Timestamp,
    ) -> Result<(), DirectoryError> {
        check_record_len(&record)?;
        let value = encode_value(expires, &record);
        let at = expire_at_ms(expires).to_string();
        let max_routers = MAX_ROUTERS_PER_NAME.to_string();
        let max_scan = MAX_FIELDS_SCANNED.to_string();
        let reply = self
            .run_script(
                &PUBLISH_SCRIPT,
                &route_key(&name),
                &[
                    router.as_bytes(),
                    &value,
                    at.as_bytes(),
                    max_routers.as_bytes(),
                    max_scan.as_bytes(),
                ],
            )
            .await?;
        match reply {
            Value::Int(0 | 1) => Ok(()),
            Value::Int(-1) => Err(DirectoryError::NameFull {
                name,
                max: MAX_ROUTERS_PER_NAME,
            }),
            other => Err(self.protocol(format!(
                "publish answered {}, expected 1, 0 or -1",
                shape(&other)
            ))),
        }
    }

    pub(super) async fn unpublish(&self, name: Name, router: Name) -> Result<(), DirectoryError> {
        let mut cmd = redis::cmd("HDEL");
        cmd.arg(route_key(&name)).arg(router.as_bytes());
        match self.run(&cmd).await? {
            Value::Int(0 | 1) => Ok(()),
            other => Err(self.protocol(format!(
                "HDEL of one field answered {}, expected 0 or 1",
                shape(&other)
            ))),
        }
    }

    pub(super) async fn lookup(&self, name: Name) -> Result<Lookup, DirectoryError> {
        let max_records = MAX_RECORDS_PER_NAME.to_string();
        let max_len = (EXPIRY_PREFIX_LEN + MAX_ROUTE_RECORD_LEN).to_string();
        let max_scan = MAX_FIELDS_SCANNED.to_string();
        let reply = self
            .run_script(
                &LOOKUP_SCRIPT,
                &route_key(&name),
                &[
                    max_records.as_bytes(),
                    max_len.as_bytes(),
                    max_scan.as_bytes(),
                ],
            )
            .await?;
        parse_lookup(reply).map_err(|detail| self.protocol(detail))
    }

    pub(super) async fn fields(&self, name: Name) -> Result<Vec<(Name, Bytes)>, DirectoryError> {
        let max_len = (EXPIRY_PREFIX_LEN + MAX_ROUTE_RECORD_LEN).to_string();
        let max_scan = MAX_FIELDS_SCANNED.to_string();
        let name_len = gdp_certs::NAME_LEN.to_string();
        let reply = self
            .run_script(
                &FIELDS_SCRIPT,
                &route_key(&name),
                &[max_len.as_bytes(), max_scan.as_bytes(), name_len.as_bytes()],
            )
            .await?;
        parse_fields(reply).map_err(|detail| self.protocol(detail))
    }

    pub(super) async fn remove_fields(
        &self,
        name: Name,
        routers: Vec<Name>,
    ) -> Result<usize, DirectoryError> {
        if routers.is_empty() {
            return Ok(0);
        }
        let mut cmd = redis::cmd("HDEL");
        cmd.arg(route_key(&name));
        for router in &routers {
            cmd.arg(router.as_bytes().as_slice());
        }
        match self.run(&cmd).await? {
            Value::Int(n) if n >= 0 && (n as usize) <= routers.len() => Ok(n as usize),
            other => Err(self.protocol(format!(
                "HDEL of {} fields answered {}",
                routers.len(),
                shape(&other)
            ))),
        }
    }

    pub(super) async fn ping(&self) -> Result<Duration, DirectoryError> {
        let start = Instant::now();
        match self.run(&redis::cmd("PING")).await? {
            Value::SimpleString(s) if s == "PONG" => Ok(start.elapsed()),
            other => Err(self.protocol(format!("PING answered {}", shape(&other)))),
        }
    }

    fn protocol(&self, detail: String) -> DirectoryError {
        DirectoryError::Protocol {
            backend: self.backend,
            detail,
        }
    }
}

/// Turns an error reply carried as a value into an error.
fn error_reply(value: Value) -> redis::RedisResult<Value> {
    match value {
        Value::ServerError(e) => Err(e.into()),
        value => Ok(value),
    }
}

/// Checks the shape and bounds of a lookup reply, trusting nothing: the
/// counts must be non-negative integers, every value a bulk string; values
/// over the bounds are skipped and counted like the script does.
pub(super) fn parse_lookup(reply: Value) -> Result<Lookup, String> {
    let Value::Array(items) = reply else {
        return Err(format!(
            "lookup answered {}, expected an array",
            shape(&reply)
        ));
    };
    let mut items = items.into_iter();
    let mut count = |what: &str| match items.next() {
        Some(Value::Int(n)) if n >= 0 => usize::try_from(n).map_err(|_| format!("{what} {n}")),
        Some(other) => Err(format!(
            "lookup {what} count is {}, expected a non-negative integer",
            shape(&other)
        )),
        None => Err(format!("lookup reply lacks the {what} count")),
    };
    let oversize = count("oversize")?;
    let malformed = count("malformed")?;
    let excess = count("excess")?;
    let mut lookup = Lookup {
        records: Vec::new(),
        oversize,
        malformed,
        excess,
    };
    for item in items {
        let Value::BulkString(value) = item else {
            return Err(format!(
                "lookup record is {}, expected a bulk string",
                shape(&item)
            ));
        };
        if value.len() < EXPIRY_PREFIX_LEN {
            lookup.malformed += 1;
        } else if value.len() - EXPIRY_PREFIX_LEN > MAX_ROUTE_RECORD_LEN {
            lookup.oversize += 1;
        } else if lookup.records.len() >= MAX_RECORDS_PER_NAME {
            lookup.excess += 1;
        } else {
            lookup
                .records
                .push(Bytes::from(value).slice(EXPIRY_PREFIX_LEN..));
        }
    }
    Ok(lookup)
}

/// Checks the shape of a fields reply, trusting nothing: pairs of a 32-byte
/// field and a value with the expiry prefix, within the bounds; returns
/// the routers and their records (prefix stripped).
pub(super) fn parse_fields(reply: Value) -> Result<Vec<(Name, Bytes)>, String> {
    let Value::Array(items) = reply else {
        return Err(format!(
            "fields answered {}, expected an array",
            shape(&reply)
        ));
    };
    if items.len() % 2 != 0 || items.len() > 2 * MAX_FIELDS_SCANNED {
        return Err(format!("fields answered {} items", items.len()));
    }
    let mut out = Vec::with_capacity(items.len() / 2);
    let mut items = items.into_iter();
    while let (Some(field), Some(value)) = (items.next(), items.next()) {
        let (Value::BulkString(field), Value::BulkString(value)) = (field, value) else {
            return Err("a field or value is not a bulk string".into());
        };
        let router = <[u8; gdp_certs::NAME_LEN]>::try_from(field.as_slice())
            .map(Name::from_bytes)
            .map_err(|_| format!("a field of {} bytes", field.len()))?;
        if value.len() < EXPIRY_PREFIX_LEN || value.len() - EXPIRY_PREFIX_LEN > MAX_ROUTE_RECORD_LEN
        {
            return Err(format!("a value of {} bytes", value.len()));
        }
        out.push((router, Bytes::from(value).slice(EXPIRY_PREFIX_LEN..)));
    }
    Ok(out)
}

/// A short description of a reply's type, for errors (never its content).
fn shape(value: &Value) -> String {
    match value {
        Value::Nil => "nil".into(),
        Value::Int(n) => format!("integer {n}"),
        Value::BulkString(b) => format!("a bulk string of {} bytes", b.len()),
        Value::Array(a) => format!("an array of {} items", a.len()),
        Value::SimpleString(_) => "a status string".into(),
        Value::Okay => "OK".into(),
        Value::Map(m) => format!("a map of {} entries", m.len()),
        Value::Set(s) => format!("a set of {} items", s.len()),
        Value::Double(_) => "a double".into(),
        Value::Boolean(_) => "a boolean".into(),
        Value::ServerError(_) => "an error".into(),
        _ => "an unexpected reply type".into(),
    }
}

/// Sorts a client error into the directory's error kinds.
pub(super) fn map_error(backend: Backend, e: RedisError) -> DirectoryError {
    let message = e.to_string();
    if e.code() == Some("WRONGTYPE") || message.contains("WRONGTYPE") {
        return DirectoryError::Protocol {
            backend,
            detail: message,
        };
    }
    match e.kind() {
        ErrorKind::Parse | ErrorKind::UnexpectedReturnType => DirectoryError::Protocol {
            backend,
            detail: message,
        },
        ErrorKind::Server(
            ServerErrorKind::ClusterDown
            | ServerErrorKind::MasterDown
            | ServerErrorKind::TryAgain
            | ServerErrorKind::BusyLoading,
        ) => DirectoryError::Unavailable {
            backend,
            cause: Unavailable::Connection(message),
        },
        ErrorKind::Server(_) | ErrorKind::Extension => DirectoryError::Server { backend, message },
        ErrorKind::InvalidClientConfig => {
            DirectoryError::Config(DirectoryConfigError::RedisUrl(message))
        }
        _ => DirectoryError::Unavailable {
            backend,
            cause: Unavailable::Connection(message),
        },
    }
}

/// A [`Directory`](super::Directory) on one Redis server.
///
/// Holds a [`ConnectionManager`]: one multiplexed connection, replaced in
/// the background when it breaks. Cheap to clone.
#[derive(Clone)]
pub struct RedisDirectory {
    store: RedisStore<ConnectionManager>,
    url: String,
}

impl std::fmt::Debug for RedisDirectory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisDirectory")
            .field("url", &self.url)
            .field("timeout", &self.store.timeout)
            .finish_non_exhaustive()
    }
}

impl RedisDirectory {
    /// Connects to the server at `url` (`redis://host:port[/db]`) and checks
    /// that it answers.
    ///
    /// Fails with [`DirectoryError::Unavailable`] when it does not answer
    /// within `options.connect_timeout`.
    pub async fn connect(url: &str, options: &DirectoryOptions) -> Result<Self, DirectoryError> {
        let dir = Self::lazy(url, options)?;
        let probe = RedisStore::new(
            dir.store.conn.clone(),
            Backend::Redis,
            options.connect_timeout,
        );
        probe.ping().await?;
        Ok(dir)
    }

    /// Builds the directory without connecting: the first call connects.
    /// For a router that must start while Redis is down.
    pub fn lazy(url: &str, options: &DirectoryOptions) -> Result<Self, DirectoryError> {
        let bad_url = |e: RedisError| DirectoryConfigError::RedisUrl(format!("{url}: {e}"));
        let client = redis::Client::open(url).map_err(bad_url)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(options.timeout))
            .set_response_timeout(Some(options.timeout))
            .set_min_delay(Duration::from_millis(10))
            .set_max_delay(Duration::from_millis(100))
            .set_number_of_retries(5);
        let manager = ConnectionManager::new_lazy_with_config(client, config).map_err(bad_url)?;
        Ok(RedisDirectory {
            store: RedisStore::new(manager, Backend::Redis, options.timeout),
            url: url.to_owned(),
        })
    }
}

impl Directory for RedisDirectory {
    fn backend(&self) -> Backend {
        Backend::Redis
    }

    fn publish(
        &self,
        name: Name,
        router: Name,
        record: Bytes,
        expires: Timestamp,
    ) -> BoxFuture<'_, Result<(), DirectoryError>> {
        Box::pin(self.store.publish(name, router, record, expires))
    }

    fn unpublish(&self, name: Name, router: Name) -> BoxFuture<'_, Result<(), DirectoryError>> {
        Box::pin(self.store.unpublish(name, router))
    }

    fn lookup(&self, name: Name) -> BoxFuture<'_, Result<Lookup, DirectoryError>> {
        Box::pin(self.store.lookup(name))
    }

    fn ping(&self) -> BoxFuture<'_, Result<Duration, DirectoryError>> {
        Box::pin(self.store.ping())
    }

    fn fields(&self, name: Name) -> BoxFuture<'_, Result<Vec<(Name, Bytes)>, DirectoryError>> {
        Box::pin(self.store.fields(name))
    }

    fn remove_fields(
        &self,
        name: Name,
        routers: Vec<Name>,
    ) -> BoxFuture<'_, Result<usize, DirectoryError>> {
        Box::pin(self.store.remove_fields(name, routers))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn header(o: i64, m: i64, e: i64) -> Vec<Value> {
        vec![Value::Int(o), Value::Int(m), Value::Int(e)]
    }

    #[test]
    fn lookup_reply_strips_the_expiry_prefix() {
        let mut items = header(0, 0, 0);
        items.push(Value::BulkString(encode_value(Timestamp(7), b"record")));
        let lookup = parse_lookup(Value::Array(items)).expect("well formed");
        assert_eq!(lookup.records, vec![Bytes::from_static(b"record")]);
        assert_eq!(lookup.skipped(), 0);
    }

    #[test]
    fn lookup_reply_bounds_are_enforced_client_side() {
        let mut items = header(1, 2, 3);
        items.push(Value::BulkString(vec![
            0;
            EXPIRY_PREFIX_LEN
                + MAX_ROUTE_RECORD_LEN
                + 1
        ]));
        items.push(Value::BulkString(vec![0; 3]));
        for _ in 0..MAX_RECORDS_PER_NAME + 5 {
            items.push(Value::BulkString(encode_value(Timestamp(1), b"r")));
        }
        let lookup = parse_lookup(Value::Array(items)).expect("well formed");
        assert_eq!(lookup.records.len(), MAX_RECORDS_PER_NAME);
        assert_eq!(lookup.oversize, 2);
        assert_eq!(lookup.malformed, 3);
        assert_eq!(lookup.excess, 3 + 5);
    }

    #[test]
    fn lookup_replies_of_the_wrong_shape_are_refused() {
        for bad in [
            Value::Nil,
            Value::Int(3),
            Value::Array(vec![]),
            Value::Array(vec![Value::Int(0), Value::Int(0)]),
            Value::Array(vec![Value::Int(-1), Value::Int(0), Value::Int(0)]),
            Value::Array(vec![Value::Okay, Value::Int(0), Value::Int(0)]),
            Value::Array({
                let mut v = header(0, 0, 0);
                v.push(Value::Int(5));
                v
            }),
        ] {
            assert!(parse_lookup(bad.clone()).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn key_expiry_rounds_up_and_clamps() {
        assert_eq!(expire_at_ms(Timestamp(1_000_001)), 1_001);
        assert_eq!(expire_at_ms(Timestamp(1_000_000)), 1_000);
        assert_eq!(expire_at_ms(Timestamp::MAX), MAX_EXPIRE_AT_MS);
    }

    #[test]
    fn server_errors_are_sorted() {
        let wrongtype = RedisError::from((
            ErrorKind::Extension,
            "WRONGTYPE",
            "Operation against a key holding the wrong kind of value".to_string(),
        ));
        assert!(matches!(
            map_error(Backend::Redis, wrongtype),
            DirectoryError::Protocol { .. }
        ));
        let refused = RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert!(matches!(
            map_error(Backend::Redis, refused),
            DirectoryError::Unavailable {
                cause: Unavailable::Connection(_),
                ..
            }
        ));
    }

    proptest! {
        #[test]
        fn parse_lookup_never_panics_and_keeps_bounds(
            values in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..80),
            counts in (0i64..5, 0i64..5, 0i64..5),
        ) {
            let mut items = header(counts.0, counts.1, counts.2);
            items.extend(values.iter().cloned().map(Value::BulkString));
            let lookup = parse_lookup(Value::Array(items)).expect("well formed");
            prop_assert!(lookup.records.len() <= MAX_RECORDS_PER_NAME);
            let short = values.iter().filter(|v| v.len() < EXPIRY_PREFIX_LEN).count();
            prop_assert_eq!(lookup.malformed, counts.1 as usize + short);
            prop_assert_eq!(
                lookup.records.len() + lookup.excess,
                counts.2 as usize + values.len() - short
            );
        }
    }
}
