//! QUIC handshakes between GDP identities over real loopback sockets.
//!
//! Each test starts a quinn server endpoint and a client endpoint on
//! 127.0.0.1:0 and checks what each side learns, or why the link is refused.
//! Run with `cargo test -p gdp-certs --test quic_handshake`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use gdp_certs::codec::Encode;
use gdp_certs::tls::{self, PeerPolicy, PeerVerifier};
use gdp_certs::{Identity, Kind, Metadata, SecretKey, Timestamp};
use proptest::prelude::*;
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{Connection, ConnectionError, Endpoint};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// Long enough for a loopback handshake on a loaded two-core machine, short
/// enough that a hang fails the test instead of the whole run.
const TIMEOUT: Duration = Duration::from_secs(20);

fn identity(kind: Kind, seed: u8) -> Identity {
    Identity::from_key(
        SecretKey::from_seed(&[seed; 32]),
        kind,
        format!("{kind}-{seed}"),
        Timestamp::from_secs(1_800_000_000),
    )
    .expect("valid principal")
}

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// Both ends of one handshake attempt.
struct Attempt {
    server: Result<Connection, ConnectionError>,
    client: Result<Connection, ConnectionError>,
    // Kept so the connections outlive the endpoints' drop at the end.
    _endpoints: (Endpoint, Endpoint),
}

async fn handshake(server: quinn::ServerConfig, client: quinn::ClientConfig) -> Attempt {
    let server_ep = Endpoint::server(server, loopback()).expect("binds loopback");
    let addr = server_ep.local_addr().expect("has an address");
    let accept = {
        let ep = server_ep.clone();
        tokio::spawn(async move {
            let incoming = ep.accept().await.expect("endpoint is open");
            incoming.await
        })
    };
    let client_ep = Endpoint::client(loopback()).expect("binds loopback");
    let connecting = client_ep
        .connect_with(client, addr, tls::SERVER_NAME)
        .expect("valid connect parameters");
    let client = tokio::time::timeout(TIMEOUT, connecting)
        .await
        .expect("client handshake finishes");
    let server = tokio::time::timeout(TIMEOUT, accept)
        .await
        .expect("server handshake finishes")
        .expect("accept task does not panic");
    Attempt {
        server,
        client,
        _endpoints: (server_ep, client_ep),
    }
}

/// Why a side's connection failed. A TLS 1.3 client finishes its handshake
/// before the server has checked the client's certificate, so a refused
/// client may first see an established connection that the server then
/// closes; both count.
async fn failure(side: Result<Connection, ConnectionError>) -> String {
    match side {
        Err(e) => e.to_string(),
        Ok(conn) => tokio::time::timeout(TIMEOUT, conn.closed())
            .await
            .expect("the refusing side closes the connection")
            .to_string(),
    }
}

/// A certificate that carries `metadata` but whose key is a fresh one, not
/// `metadata.key()`: what someone who copied a principal's public metadata
/// would present.
fn forged(metadata: &Metadata) -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
    let key_pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("ed25519 key");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("no names");
    let body = metadata.to_bytes();
    let len = u8::try_from(body.len()).expect("principal metadata in these tests is short");
    let mut value = vec![0x04];
    if len >= 0x80 {
        value.push(0x81);
    }
    value.push(len);
    value.extend_from_slice(&body);
    params
        .custom_extensions
        .push(rcgen::CustomExtension::from_oid_content(
            tls::METADATA_EXTENSION_OID,
            value,
        ));
    let cert = params.self_signed(&key_pair).expect("self-signs");
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_pair.serialize_der()));
    (cert.der().clone(), key)
}

fn forged_server(metadata: &Metadata) -> quinn::ServerConfig {
    let (cert, key) = forged(metadata);
    let mut config = rustls::ServerConfig::builder_with_provider(tls::crypto_provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3 is supported")
        .with_client_cert_verifier(Arc::new(PeerVerifier::new(PeerPolicy::AnyName)))
        .with_single_cert(vec![cert], key)
        .expect("key matches certificate");
    config.alpn_protocols = vec![tls::ALPN.to_vec()];
    let quic = QuicServerConfig::try_from(config).expect("ring has the initial suite");
    quinn::ServerConfig::with_crypto(Arc::new(quic))
}

fn forged_client(metadata: &Metadata) -> quinn::ClientConfig {
    let (cert, key) = forged(metadata);
    let mut config = rustls::ClientConfig::builder_with_provider(tls::crypto_provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3 is supported")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PeerVerifier::new(PeerPolicy::AnyName)))
        .with_client_auth_cert(vec![cert], key)
        .expect("key matches certificate");
    config.alpn_protocols = vec![tls::ALPN.to_vec()];
    let quic = QuicClientConfig::try_from(config).expect("ring has the initial suite");
    quinn::ClientConfig::new(Arc::new(quic))
}

#[tokio::test]
async fn both_sides_learn_each_others_names() {
    let router = identity(Kind::Router, 1);
    let client = identity(Kind::Client, 2);
    let attempt = handshake(
        tls::quinn_server_config(&router, PeerPolicy::Kinds(vec![Kind::Server, Kind::Client]))
            .expect("server config"),
        tls::quinn_client_config(&client, PeerPolicy::Expect(router.name()))
            .expect("client config"),
    )
    .await;
    let at_client = attempt.client.expect("client connects");
    let at_server = attempt.server.expect("server accepts");

    let seen_by_client = tls::quinn_peer_identity(&at_client).expect("server proved a name");
    let seen_by_server = tls::quinn_peer_identity(&at_server).expect("client proved a name");
    assert_eq!(seen_by_client.name(), router.name());
    assert_eq!(seen_by_client, router.to_public());
    assert_eq!(seen_by_server.name(), client.name());
    assert_eq!(seen_by_server.metadata().kind(), Kind::Client);
    assert_eq!(tls::quinn_protocol(&at_client), Some(tls::ALPN.to_vec()));

    // The link carries data.
    let (mut send, mut recv) = at_client.open_bi().await.expect("opens a stream");
    send.write_all(b"ping").await.expect("writes");
    send.finish().expect("finishes");
    let (mut s_send, mut s_recv) = at_server.accept_bi().await.expect("accepts the stream");
    assert_eq!(s_recv.read_to_end(64).await.expect("reads"), b"ping");
    s_send.write_all(b"pong").await.expect("writes");
    s_send.finish().expect("finishes");
    assert_eq!(recv.read_to_end(64).await.expect("reads"), b"pong");
}

#[tokio::test]
async fn any_name_policies_learn_unknown_peers() {
    let server = identity(Kind::Server, 3);
    let client = identity(Kind::Client, 4);
    let attempt = handshake(
        tls::quinn_server_config(&server, PeerPolicy::AnyName).expect("server config"),
        tls::quinn_client_config(&client, PeerPolicy::AnyName).expect("client config"),
    )
    .await;
    let at_client = attempt.client.expect("client connects");
    let at_server = attempt.server.expect("server accepts");
    assert_eq!(
        tls::quinn_peer_identity(&at_client).expect("proved").name(),
        server.name()
    );
    assert_eq!(
        tls::quinn_peer_identity(&at_server).expect("proved").name(),
        client.name()
    );
}

#[tokio::test]
async fn the_listener_picks_the_first_protocol_both_offer() {
    let server = identity(Kind::Router, 5);
    let client = identity(Kind::Client, 6);
    let both: &[&[u8]] = &[tls::ALPN_COMPACT, tls::ALPN];
    let one: &[&[u8]] = &[tls::ALPN];
    for (at_server, at_client, chosen) in [
        (both, both, tls::ALPN_COMPACT),
        (both, one, tls::ALPN),
        (one, both, tls::ALPN),
    ] {
        let attempt = handshake(
            tls::quinn_server_config_offering(&server, PeerPolicy::AnyName, at_server)
                .expect("server config"),
            tls::quinn_client_config_offering(&client, PeerPolicy::AnyName, at_client)
                .expect("client config"),
        )
        .await;
        let conn = attempt.client.expect("client connects");
        assert_eq!(tls::quinn_protocol(&conn), Some(chosen.to_vec()));
        let conn = attempt.server.expect("server accepts");
        assert_eq!(tls::quinn_protocol(&conn), Some(chosen.to_vec()));
    }
    // No protocol in common: refused.
    let attempt = handshake(
        tls::quinn_server_config_offering(&server, PeerPolicy::AnyName, &[tls::ALPN_COMPACT])
            .expect("server config"),
        tls::quinn_client_config(&client, PeerPolicy::AnyName).expect("client config"),
    )
    .await;
    assert!(attempt.client.is_err() || attempt.server.is_err());
}

#[tokio::test]
async fn dialer_expecting_another_name_is_refused_and_told_why() {
    let router = identity(Kind::Router, 5);
    let other = identity(Kind::Router, 6);
    let client = identity(Kind::Client, 7);
    let attempt = handshake(
        tls::quinn_server_config(&router, PeerPolicy::AnyName).expect("server config"),
        tls::quinn_client_config(&client, PeerPolicy::Expect(other.name())).expect("client config"),
    )
    .await;
    let err = attempt
        .client
        .expect_err("the server is not the expected router");
    assert!(
        matches!(err, ConnectionError::TransportError(_)),
        "refused locally, not by the peer: {err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains(&format!(
            "expected peer {}, but the peer proved the name {}",
            other.name(),
            router.name()
        )),
        "{text}"
    );
    // The server sees the handshake fail too.
    let server_err = attempt.server.expect_err("the client aborted");
    assert!(
        matches!(server_err, ConnectionError::ConnectionClosed(_)),
        "{server_err:?}"
    );
}

#[tokio::test]
async fn server_whose_metadata_is_not_its_tls_key_is_refused() {
    let victim = identity(Kind::Router, 8);
    let client = identity(Kind::Client, 9);
    let attempt = handshake(
        forged_server(victim.metadata()),
        tls::quinn_client_config(&client, PeerPolicy::AnyName).expect("client config"),
    )
    .await;
    let text = failure(attempt.client).await;
    assert!(
        text.contains(&format!(
            "is not the key {} of the metadata it carries",
            victim.public_key()
        )),
        "{text}"
    );
    assert!(attempt.server.is_err());
}

#[tokio::test]
async fn client_whose_metadata_is_not_its_tls_key_is_refused() {
    let router = identity(Kind::Router, 10);
    let victim = identity(Kind::Client, 11);
    let attempt = handshake(
        tls::quinn_server_config(&router, PeerPolicy::AnyName).expect("server config"),
        forged_client(victim.metadata()),
    )
    .await;
    let server_err = attempt.server.expect_err("the server refuses the client");
    let text = server_err.to_string();
    assert!(
        text.contains(&format!(
            "is not the key {} of the metadata it carries",
            victim.public_key()
        )),
        "{text}"
    );
    // The refused client learns why, from the server's close reason.
    let client_text = failure(attempt.client).await;
    assert!(
        client_text.contains("is not the key"),
        "the close reason reaches the client: {client_text}"
    );
}

#[tokio::test]
async fn listener_refuses_kinds_it_does_not_accept() {
    let router = identity(Kind::Router, 12);
    let client = identity(Kind::Client, 13);
    let attempt = handshake(
        tls::quinn_server_config(&router, PeerPolicy::Kinds(vec![Kind::Router]))
            .expect("server config"),
        tls::quinn_client_config(&client, PeerPolicy::Expect(router.name()))
            .expect("client config"),
    )
    .await;
    let text = attempt
        .server
        .expect_err("a client may not peer with a router")
        .to_string();
    assert!(
        text.contains(&format!(
            "peer {} is a client; this link accepts only router",
            client.name()
        )),
        "{text}"
    );
    assert!(
        failure(attempt.client)
            .await
            .contains("accepts only router")
    );
}

proptest! {
    #[test]
    fn peer_identity_of_arbitrary_bytes_never_panics(
        bytes in proptest::collection::vec(any::<u8>(), 0..1500),
    ) {
        // Random bytes are never a signed certificate with valid metadata.
        prop_assert!(tls::peer_identity(&[CertificateDer::from(bytes)]).is_err());
    }
}
