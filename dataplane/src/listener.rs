//! Accept loops for the TCP, TLS, WebSocket and WSS listeners.
//!
//! A listener is bound before the node reports itself started, so a port
//! that is taken fails start-up. Each accepted socket gets its own task; TLS
//! and WebSocket handshakes run on that task, under a timeout, never on the
//! accept loop. Accept errors (such as running out of file descriptors) are
//! logged and followed by a short pause, so the loop never spins.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use tracing::{debug, info, warn};

use crate::broker::Broker;
use crate::connection;
use crate::transport::{StreamTransport, TcpTransport, WsTransport};

/// Time allowed for a TLS or WebSocket handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What runs on top of an accepted TCP socket.
#[derive(Clone)]
pub enum Protocol {
    Mqtt,
    Tls(TlsAcceptor),
    Ws { path: String, origins: Arc<[String]> },
    Wss { acceptor: TlsAcceptor, path: String, origins: Arc<[String]> },
}

impl Protocol {
    /// The listener's slot in `Broker::listener_connections`.
    fn index(&self) -> u8 {
        match self {
            Protocol::Mqtt => 0,
            Protocol::Tls(_) => 1,
            Protocol::Ws { .. } => 2,
            Protocol::Wss { .. } => 3,
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Protocol::Mqtt => "tcp",
            Protocol::Tls(_) => "tls",
            Protocol::Ws { .. } => "ws",
            Protocol::Wss { .. } => "wss",
        }
    }
}

/// Binds `addr` for the listener `name`.
pub async fn bind(name: &'static str, addr: SocketAddr) -> Result<TcpListener, crate::StartError> {
    TcpListener::bind(addr).await.map_err(|source| crate::StartError::Bind { listener: name, addr, source })
}

/// Accepts connections until the broker shuts down.
pub async fn accept_loop(broker: Arc<Broker>, listener: TcpListener, protocol: Protocol) {
    let mut shutdown = broker.shutdown_signal();
    if let Ok(addr) = listener.local_addr() {
        info!(listener = protocol.name(), %addr, "listening");
    }
    // Validated at start; the load balancers a PROXY header is taken from.
    let proxies: Vec<ipnet::IpNet> = broker
        .config
        .listeners
        .proxy_protocol_from(protocol.name())
        .iter()
        .filter_map(|text| crate::config::parse_network(text))
        .collect();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.changed() => return,
        };
        match accepted {
            Ok((socket, peer)) => {
                let (index, max) =
                    (protocol.index(), broker.config.listeners.max_connections(protocol.name()));
                if !broker.listener_opened(index, max) {
                    debug!(%peer, listener = protocol.name(), max, "connection limit reached; closed");
                    drop(socket);
                    continue;
                }
                let _ = socket.set_nodelay(true);
                if broker.config.listeners.proxy_protocol(protocol.name()) {
                    let source = peer.ip().to_canonical();
                    if !proxies.is_empty() && !proxies.iter().any(|net| net.contains(&source)) {
                        debug!(%peer, listener = protocol.name(), "not from a trusted proxy; closed");
                        broker.listener_closed(protocol.index());
                        continue;
                    }
                    let (broker, protocol) = (broker.clone(), protocol.clone());
                    tokio::spawn(async move {
                        let mut socket = socket;
                        match crate::proxy::read_header(&mut socket).await {
                            Ok(real) => spawn_connection(broker, socket, real.unwrap_or(peer), &protocol),
                            Err(error) => {
                                debug!(%peer, %error, listener = protocol.name(), "PROXY header refused");
                                broker.listener_closed(protocol.index());
                            }
                        }
                    });
                    continue;
                }
                spawn_connection(broker.clone(), socket, peer, &protocol);
            }
            Err(error) => {
                warn!(%error, listener = protocol.name(), "accept failed; pausing");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Spawns the task of one connection. Each protocol gets a task of its own
/// type, so that a plain TCP connection's task is only as large as the MQTT
/// connection itself, not as large as a TLS-plus-WebSocket one.
fn spawn_connection(broker: Arc<Broker>, socket: TcpStream, peer: SocketAddr, protocol: &Protocol) {
    match protocol {
        Protocol::Mqtt => {
            tokio::spawn(connection::serve(broker, TcpTransport::new(socket), peer, 0));
        }
        Protocol::Tls(acceptor) => {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                match tls_handshake(&acceptor, socket, peer).await {
                    Some(stream) => {
                        connection::serve(broker, StreamTransport(Box::new(stream)), peer, 1).await
                    }
                    None => broker.listener_closed(1),
                }
            });
        }
        Protocol::Ws { path, origins } => {
            let (path, origins) = (path.clone(), origins.clone());
            tokio::spawn(async move {
                let max_frame = broker.config.mqtt.max_packet_size as usize;
                match ws_handshake(socket, &path, &origins, peer, max_frame).await {
                    Some(ws) => connection::serve(broker, WsTransport(ws), peer, 2).await,
                    None => broker.listener_closed(2),
                }
            });
        }
        Protocol::Wss { acceptor, path, origins } => {
            let (acceptor, path, origins) = (acceptor.clone(), path.clone(), origins.clone());
            tokio::spawn(async move {
                let max_frame = broker.config.mqtt.max_packet_size as usize;
                let ws = match tls_handshake(&acceptor, socket, peer).await {
                    Some(stream) => ws_handshake(Box::new(stream), &path, &origins, peer, max_frame).await,
                    None => None,
                };
                match ws {
                    Some(ws) => connection::serve(broker, WsTransport(ws), peer, 3).await,
                    None => broker.listener_closed(3),
                }
            });
        }
    }
}

async fn tls_handshake(
    acceptor: &TlsAcceptor,
    socket: TcpStream,
    peer: SocketAddr,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(socket)).await {
        Ok(Ok(stream)) => Some(stream),
        Ok(Err(error)) => {
            debug!(%peer, %error, "TLS handshake failed");
            None
        }
        Err(_) => {
            debug!(%peer, "TLS handshake timed out");
            None
        }
    }
}

async fn ws_handshake<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    path: &str,
    origins: &[String],
    peer: SocketAddr,
    max_packet: usize,
) -> Option<tokio_tungstenite::WebSocketStream<S>> {
    // The error type is tungstenite's own; its size is not ours to choose.
    #[allow(clippy::result_large_err)]
    let callback = |request: &Request, mut response: Response| -> Result<Response, ErrorResponse> {
        if request.uri().path() != path {
            let mut refusal =
                ErrorResponse::new(Some(format!("no MQTT endpoint at {}", request.uri().path())));
            *refusal.status_mut() = StatusCode::NOT_FOUND;
            return Err(refusal);
        }
        if !origins.is_empty() {
            let origin = request.headers().get("Origin").and_then(|v| v.to_str().ok());
            if !origin.is_some_and(|origin| origins.iter().any(|allowed| allowed == origin)) {
                let mut refusal = ErrorResponse::new(Some("origin not allowed".to_string()));
                *refusal.status_mut() = StatusCode::FORBIDDEN;
                return Err(refusal);
            }
        }
        let offered = request
            .headers()
            .get_all("Sec-WebSocket-Protocol")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .find(|p| matches!(*p, "mqtt" | "mqttv3.1" | "mqttv3.1.1" | "mqttv5.0"))
            .map(str::to_string);
        if let Some(protocol) = offered {
            if let Ok(value) = HeaderValue::from_str(&protocol) {
                response.headers_mut().insert("Sec-WebSocket-Protocol", value);
            }
        }
        Ok(response)
    };
    // No frame or message larger than the largest MQTT packet (plus its
    // fixed header), even before CONNECT: tungstenite's default is 64 MiB.
    let limit = Some(max_packet.saturating_add(5));
    let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(limit)
        .max_frame_size(limit);
    let accept = tokio_tungstenite::accept_hdr_async_with_config(stream, callback, Some(config));
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, accept).await {
        Ok(Ok(ws)) => Some(ws),
        Ok(Err(error)) => {
            debug!(%peer, %error, "WebSocket handshake failed");
            None
        }
        Err(_) => None,
    }
}
