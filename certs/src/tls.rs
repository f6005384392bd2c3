//! TLS identity for QUIC links.
