//! TLS on accepted connections (feature `tls`), through futures-rustls,
//! with rustls's `ring` provider.
//!
//! [`accept`] turns a stream of accepted connections into a stream of
//! [`TlsConnection`]s, after concurrent, bounded handshakes (the same
//! bounds as the WebSocket acceptor's: at most 256 at once, each within
//! 10 s, timed by a [`Clock`](crate::Clock) of the acceptor's own). A TLS connection is a
//! futures-io connection like any other, so it composes with every
//! framing:
//!
//! - length-delimited or lines: `HalvesStream::new(tls::accept(incoming,
//!   config, clock), 2)`, as [`TlsConnection`] implements [`IntoHalves`](crate::IntoHalves);
//! - WebSocket over TLS (`wss://`): `websocket::accept(tls::accept(incoming,
//!   config, clock), other_clock)` (feature `websocket`).
//!
//! [`load_pem`] reads a certificate chain and its key from PEM files, and
//! [`server_config`] makes a server configuration of them with the `ring`
//! provider and rustls's safe defaults. For anything else (client
//! certificates, ALPN, session resumption), build a
//! [`rustls::ServerConfig`] directly.
//!
//! # Why `ring`
//!
//! rustls's default provider, `aws-lc-rs`, needs cmake and nasm to build
//! (and a C compiler with them); `ring` builds with the Rust toolchain and a
//! C compiler alone, so the feature builds wherever the crate does.
//!
//! # Examples
//!
//! Length-delimited frames over TLS, with a certificate made on the spot
//! (`rcgen`) and a futures-rustls client.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//!
//! use bytes::Bytes;
//! use futures::channel::mpsc;
//! use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
//! use futures_rustls::TlsConnector;
//! use futures_rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
//! use futures_rustls::rustls::{ClientConfig, RootCertStore};
//! use stream_multiplexer::runtime::smol::{clock, incoming};
//! use stream_multiplexer::{tls, ControlMessage, HalvesStream, IncomingPacket, Multiplexer, OutgoingPacket};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])?;
//! let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certified.signing_key.serialize_der()));
//! let config = tls::server_config(vec![certified.cert.der().clone()], key)?;
//!
//! smol::block_on(async {
//!     let (channel0, mut lobby) = mpsc::channel(32);
//!     let (_outgoing, outgoing_rx) = mpsc::channel::<OutgoingPacket<Bytes>>(32);
//!     let multiplexer = Multiplexer::new(128, outgoing_rx, vec![channel0]);
//!     let listener = async_net::TcpListener::bind("127.0.0.1:0").await?;
//!     let address = listener.local_addr()?;
//!     let connections = tls::accept(incoming(listener), config, clock(Duration::from_secs(1)));
//!     let (control, control_rx) = mpsc::unbounded();
//!     let server = smol::spawn(multiplexer.run(HalvesStream::new(connections, 2), control_rx));
//!
//!     // A client that trusts the certificate.
//!     let mut roots = RootCertStore::empty();
//!     roots.add(certified.cert.der().clone())?;
//!     let provider = Arc::new(futures_rustls::rustls::crypto::ring::default_provider());
//!     let client_config = ClientConfig::builder_with_provider(provider)
//!         .with_safe_default_protocol_versions()?
//!         .with_root_certificates(roots)
//!         .with_no_client_auth();
//!     let tcp = async_net::TcpStream::connect(address).await?;
//!     let mut client = TlsConnector::from(Arc::new(client_config))
//!         .connect(ServerName::try_from("localhost")?, tcp)
//!         .await?;
//!
//!     client.write_all(b"\x00\x05hello").await?;
//!     client.flush().await?;
//!     assert!(matches!(lobby.next().await, Some(IncomingPacket::StreamConnected(_))));
//!     let packet = lobby.next().await.expect("a message");
//!     assert_eq!(packet.value().expect("a value").as_ref().ok(), Some(&Bytes::from("hello")));
//!
//!     control.unbounded_send(ControlMessage::Shutdown)?;
//!     server.await?;
//!     let mut rest = Vec::new();
//!     client.read_to_end(&mut rest).await?; // the server closed cleanly
//!     Ok(())
//! })
//! # }
//! ```

mod accept;
mod config;
mod connection;

pub use accept::{Accept, Acceptor, accept};
pub use config::{load_pem, server_config};
pub use connection::TlsConnection;
pub use futures_rustls::rustls;
