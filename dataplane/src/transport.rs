//! Byte transports under an MQTT connection: a plain stream (TCP, TLS) or a
//! WebSocket carrying MQTT in binary frames.
//!
//! The connection task only needs "read some bytes into my buffer", "write
//! these bytes" and "close"; each transport maps that onto its framing.
//! `read` is cancel-safe, so the connection can `select!` on it.

use std::future::Future;
use std::io;

use bytes::BytesMut;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::WebSocketStream;

/// A bidirectional byte transport.
pub trait Transport: Send + 'static {
    /// Appends received bytes to `buf`; `Ok(0)` means the peer closed.
    fn read(&mut self, buf: &mut BytesMut) -> impl Future<Output = io::Result<usize>> + Send;
    /// Writes all of `data`.
    fn write_all(&mut self, data: &[u8]) -> impl Future<Output = io::Result<()>> + Send;
    /// Closes the transport politely.
    fn close(&mut self) -> impl Future<Output = ()> + Send;
    /// Takes the socket off the runtime so that the connection can
    /// hibernate; `None` when this transport cannot (it keeps state of its
    /// own, as TLS and WebSocket do) or the socket is gone.
    fn detach(&mut self) -> Option<std::net::TcpStream> {
        None
    }
    /// True if [`Transport::detach`] can succeed.
    fn can_detach(&self) -> bool {
        false
    }
    /// The client's certificate (DER), when TLS verified one.
    fn peer_certificate(&self) -> Option<&[u8]> {
        None
    }
}

/// A stream that may carry a verified client certificate.
pub trait PeerCertificate {
    fn peer_certificate(&self) -> Option<&[u8]>;
}

impl PeerCertificate for tokio::net::TcpStream {
    fn peer_certificate(&self) -> Option<&[u8]> {
        None
    }
}

impl PeerCertificate for Box<tokio_rustls::server::TlsStream<tokio::net::TcpStream>> {
    fn peer_certificate(&self) -> Option<&[u8]> {
        // The first is the client's own (the rest is its chain).
        self.get_ref().1.peer_certificates()?.first().map(|certificate| certificate.as_ref())
    }
}

/// Plain TCP. An idle connection holds no read buffer: the buffer is only
/// grown once the socket is readable, and the connection drops it again
/// when it has consumed every byte. The socket is `None` only while the
/// connection hibernates.
pub struct TcpTransport(Option<tokio::net::TcpStream>);

impl TcpTransport {
    pub fn new(stream: tokio::net::TcpStream) -> TcpTransport {
        TcpTransport(Some(stream))
    }

    /// A transport whose socket is gone: reads and writes fail.
    pub fn detached() -> TcpTransport {
        TcpTransport(None)
    }

    fn stream(&mut self) -> io::Result<&mut tokio::net::TcpStream> {
        self.0.as_mut().ok_or_else(|| io::Error::from(io::ErrorKind::NotConnected))
    }
}

/// Bytes reserved for one read from a readable socket.
const READ_CHUNK: usize = 16 * 1024;
/// Less room than this left in the buffer, and a read reserves a chunk.
/// Small, so that a caller can read into a small buffer of its own (the
/// handshake does, for CONNECT); consumed packets are split off the front,
/// so a busy connection's buffer usually has either lots of room or none.
const MIN_ROOM: usize = 512;

impl Transport for TcpTransport {
    async fn read(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        let stream = self.stream()?;
        loop {
            stream.readable().await?;
            if buf.capacity() - buf.len() < MIN_ROOM {
                buf.reserve(READ_CHUNK);
            }
            match stream.try_read_buf(buf) {
                Ok(n) => return Ok(n),
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    // Readiness was stale: give the buffer back before waiting.
                    if buf.is_empty() {
                        *buf = BytesMut::new();
                    }
                }
                Err(error) => return Err(error),
            }
        }
    }

    async fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        self.stream()?.write_all(data).await
    }

    async fn close(&mut self) {
        if let Ok(stream) = self.stream() {
            let _ = stream.shutdown().await;
        }
    }

    fn detach(&mut self) -> Option<std::net::TcpStream> {
        self.0.take()?.into_std().ok()
    }

    fn can_detach(&self) -> bool {
        self.0.is_some()
    }
}

/// A byte stream such as TLS.
pub struct StreamTransport<S>(pub S);

impl<S: AsyncRead + AsyncWrite + PeerCertificate + Unpin + Send + 'static> Transport for StreamTransport<S> {
    fn peer_certificate(&self) -> Option<&[u8]> {
        self.0.peer_certificate()
    }

    async fn read(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(8192);
        }
        self.0.read_buf(buf).await
    }

    async fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        self.0.write_all(data).await?;
        self.0.flush().await
    }

    async fn close(&mut self) {
        let _ = self.0.shutdown().await;
    }
}

/// MQTT over WebSocket: every binary frame is a chunk of the MQTT byte stream.
pub struct WsTransport<S>(pub WebSocketStream<S>);

impl<S: AsyncRead + AsyncWrite + PeerCertificate + Unpin + Send + 'static> Transport for WsTransport<S> {
    fn peer_certificate(&self) -> Option<&[u8]> {
        self.0.get_ref().peer_certificate()
    }

    async fn read(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        loop {
            match self.0.next().await {
                None => return Ok(0),
                Some(Err(error)) => return Err(io::Error::other(error)),
                Some(Ok(WsMessage::Binary(data))) => {
                    if data.is_empty() {
                        continue;
                    }
                    buf.extend_from_slice(&data);
                    return Ok(data.len());
                }
                Some(Ok(WsMessage::Close(_))) => return Ok(0),
                Some(Ok(WsMessage::Text(_))) => {
                    // MQTT-6.0.0-1: MQTT goes in binary frames only.
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "text frame on an MQTT WebSocket",
                    ));
                }
                Some(Ok(_)) => continue,
            }
        }
    }

    async fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        self.0.send(WsMessage::Binary(data.to_vec().into())).await.map_err(io::Error::other)
    }

    async fn close(&mut self) {
        let _ = self.0.close(None).await;
    }
}
