//! The UDP socket under a transport, with deliberately sized buffers.
//!
//! quinn's own constructors leave the socket buffers at the OS default
//! (about 208 KiB on Linux), which at high packet rates overflows and drops
//! around 1% of packets even on loopback; each drop costs a QUIC loss
//! recovery. The transport therefore creates the socket itself, asks for
//! larger buffers, and logs what the kernel granted.

use std::io;
use std::net::{SocketAddr, UdpSocket};

use socket2::{Domain, Protocol, SockRef, Socket, Type};

/// The socket buffer sizes the kernel granted, in bytes, as it reports them
/// (Linux reports twice the usable size, its bookkeeping included).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SocketBuffers {
    /// `SO_SNDBUF`.
    pub send: usize,
    /// `SO_RCVBUF`.
    pub recv: usize,
}

/// A non-blocking UDP socket bound to `addr`, with `SO_SNDBUF` and
/// `SO_RCVBUF` requested at `send_buffer` and `recv_buffer` bytes. An IPv6
/// wildcard address is made dual-stack where the OS allows it.
///
/// The kernel silently caps the sizes (Linux at `net.core.wmem_max` and
/// `net.core.rmem_max`); what it granted is returned, logged, and warned
/// about when it is less than requested.
pub fn udp_socket(
    addr: SocketAddr,
    send_buffer: usize,
    recv_buffer: usize,
) -> io::Result<(UdpSocket, SocketBuffers)> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6()
        && let Err(e) = socket.set_only_v6(false)
    {
        tracing::debug!(error = %e, "cannot make the socket dual-stack");
    }
    socket.set_send_buffer_size(send_buffer)?;
    socket.set_recv_buffer_size(recv_buffer)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    let granted = report(&socket, send_buffer, recv_buffer)?;
    Ok((socket.into(), granted))
}

/// Gives a UDP socket the caller bound already what [`udp_socket`] gives a
/// new one: `SO_SNDBUF` and `SO_RCVBUF` requested at `send_buffer` and
/// `recv_buffer` bytes, and non-blocking mode. Returns, logs and warns
/// about what the kernel granted as [`udp_socket`] does.
pub fn size_udp_socket(
    socket: &UdpSocket,
    send_buffer: usize,
    recv_buffer: usize,
) -> io::Result<SocketBuffers> {
    let socket = SockRef::from(socket);
    socket.set_send_buffer_size(send_buffer)?;
    socket.set_recv_buffer_size(recv_buffer)?;
    socket.set_nonblocking(true)?;
    report(&socket, send_buffer, recv_buffer)
}

/// Reads back the buffer sizes the kernel granted `socket`, logs them, and
/// warns when they are less than requested.
fn report(socket: &Socket, send_buffer: usize, recv_buffer: usize) -> io::Result<SocketBuffers> {
    let granted = SocketBuffers {
        send: socket.send_buffer_size()?,
        recv: socket.recv_buffer_size()?,
    };
    let local = socket.local_addr()?.as_socket();
    tracing::info!(
        ?local,
        send_requested = send_buffer,
        send_granted = granted.send,
        recv_requested = recv_buffer,
        recv_granted = granted.recv,
        "udp socket bound"
    );
    if granted.send < send_buffer || granted.recv < recv_buffer {
        tracing::warn!(
            send_requested = send_buffer,
            send_granted = granted.send,
            recv_requested = recv_buffer,
            recv_granted = granted.recv,
            "the kernel granted smaller udp buffers than requested; raise \
             net.core.wmem_max / net.core.rmem_max to avoid packet drops at high rates"
        );
    }
    Ok(granted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_set_and_reported() {
        let (sock, granted) =
            udp_socket("127.0.0.1:0".parse().expect("address"), 1 << 18, 1 << 18).expect("binds");
        assert_ne!(sock.local_addr().expect("bound").port(), 0);
        // Every OS grants at least a small buffer; Linux grants the request
        // (doubled) when it is under the system maximum.
        assert!(granted.send >= 1 << 16, "send buffer {}", granted.send);
        assert!(granted.recv >= 1 << 16, "recv buffer {}", granted.recv);
    }

    #[test]
    fn a_socket_bound_elsewhere_is_sized_and_made_non_blocking() {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("binds");
        let granted = size_udp_socket(&sock, 1 << 18, 1 << 18).expect("sizes");
        assert!(granted.send >= 1 << 16, "send buffer {}", granted.send);
        assert!(granted.recv >= 1 << 16, "recv buffer {}", granted.recv);
        let mut buf = [0u8; 8];
        let err = sock.recv(&mut buf).expect_err("nothing to read");
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
    }
}
