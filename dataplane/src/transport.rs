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
}

/// Plain TCP. An idle connection holds no read buffer: the buffer is only
/// grown once the socket is readable, and the connection drops it again
/// when it has consumed every byte.
pub struct TcpTransport(pub tokio::net::TcpStream);

/// Bytes reserved for one read from a readable socket.
const READ_CHUNK: usize = 16 * 1024;

impl Transport for TcpTransport {
    async fn read(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        loop {
            self.0.readable().await?;
            if buf.capacity() - buf.len() < READ_CHUNK / 4 {
                buf.reserve(READ_CHUNK);
            }
            match self.0.try_read_buf(buf) {
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
        self.0.write_all(data).await
    }

    async fn close(&mut self) {
        let _ = self.0.shutdown().await;
    }
}

/// A byte stream such as TLS.
pub struct StreamTransport<S>(pub S);

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> Transport for StreamTransport<S> {
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

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> Transport for WsTransport<S> {
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
