//! Loopback sockets for tests, bound before anyone learns their address.
//!
//! Finding a free port and binding it later is a race: between the two,
//! another test (or process) may take the port. These helpers bind first
//! and hand over the bound socket; a test passes the socket itself to the
//! code under test (`gdp_link::Transport::bind_socket`), or keeps it to hold
//! the port.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

/// A UDP socket bound to a free port on 127.0.0.1.
///
/// Kept and never read, it is a peer that never answers: QUIC handshakes
/// to its address time out.
///
/// # Panics
///
/// When no socket can be bound.
pub fn udp_socket() -> UdpSocket {
    UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap_or_else(|e| panic!("cannot bind a UDP socket on 127.0.0.1: {e}"))
}

/// A TCP port on 127.0.0.1 that refuses every connection for as long as
/// this value lives: its socket is bound, so no one else can take the
/// port, but it does not listen, so the kernel answers each connection
/// attempt with a reset. For tests of a peer that is down.
#[derive(Debug)]
pub struct ClosedTcpPort {
    // Held for the port; never read.
    _socket: Socket,
    addr: SocketAddr,
}

impl ClosedTcpPort {
    /// Reserves a port.
    ///
    /// # Panics
    ///
    /// When no socket can be bound.
    pub fn new() -> ClosedTcpPort {
        let bind = || -> std::io::Result<(Socket, SocketAddr)> {
            let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
            socket.bind(&SocketAddr::from((Ipv4Addr::LOCALHOST, 0)).into())?;
            let addr = socket
                .local_addr()?
                .as_socket()
                .ok_or_else(|| std::io::Error::other("an IPv4 socket has an IPv4 address"))?;
            Ok((socket, addr))
        };
        let (socket, addr) =
            bind().unwrap_or_else(|e| panic!("cannot bind a TCP socket on 127.0.0.1: {e}"));
        ClosedTcpPort {
            _socket: socket,
            addr,
        }
    }

    /// The refused address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The refused port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }
}

impl Default for ClosedTcpPort {
    fn default() -> Self {
        Self::new()
    }
}

/// Fetches `GET /metrics` at `addr` (a router's or a capsule server's
/// Prometheus endpoint) and parses its samples, keyed by name and labels as
/// written (`gdp_router_dropped_total{reason="ttl"}`).
///
/// # Panics
/// When the endpoint does not answer 200 within 5 s.
pub fn scrape_metrics(addr: SocketAddr) -> HashMap<String, f64> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connects");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("sets a timeout");
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .expect("writes");
    let mut text = String::new();
    s.read_to_string(&mut text).expect("reads");
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (key, value) = l.rsplit_once(' ')?;
            Some((key.to_owned(), value.parse().ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};
    use std::time::Duration;

    #[test]
    fn sockets_come_bound_to_distinct_loopback_ports() {
        let (a, b) = (udp_socket(), udp_socket());
        let (a, b) = (
            a.local_addr().expect("bound"),
            b.local_addr().expect("bound"),
        );
        assert!(a.ip().is_loopback() && a.port() != 0);
        assert_ne!(a, b);
    }

    #[test]
    fn a_closed_port_refuses_connections_and_cannot_be_taken() {
        let closed = ClosedTcpPort::new();
        let err = TcpStream::connect_timeout(&closed.addr(), Duration::from_secs(5))
            .expect_err("nobody listens");
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
        assert!(
            TcpListener::bind(closed.addr()).is_err(),
            "the port is held"
        );
    }
}
