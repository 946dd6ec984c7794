//! MQTT 5 enhanced authentication with SCRAM-SHA-256 against the built-in
//! users (`auth::scram` does the cryptography): the exchange inside CONNECT
//! (AUTH packets before the CONNACK) and re-authentication on a live
//! connection (AUTH 0x19).
//!
//! Invariants:
//! - Offered only while the listener's authenticator chain holds `builtin` (the users
//!   SCRAM checks): a chain without it answers the method 0x8C, so SCRAM is
//!   never a way around the configured authenticators.
//! - The exchange goes through the door like any login: admission and bans
//!   first, a failure counted toward the address's ban, the identity's
//!   rules loaded after.
//! - The whole exchange in CONNECT is bounded by `mqtt.connect_timeout`;
//!   anything but the expected AUTH is refused (0x82), a wrong proof or an
//!   unknown user alike is 0x86. A failed re-authentication ends the
//!   connection (DISCONNECT 0x87).

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use mqtt_codec::{Auth, AuthProperties, Connect, Packet, ProtocolVersion, ReasonCode};

use super::{Close, Connection};
use crate::auth::scram::{self, Exchange};
use crate::broker::Broker;
use crate::cluster::access::Identity;
use crate::hooks::ConnectRequest;
use crate::transport::Transport;

/// Re-authentication of a connection that authenticated with SCRAM.
#[derive(Debug)]
pub(super) enum ReAuth {
    /// No exchange under way.
    Ready,
    /// The server-first message was sent; the client-final is awaited.
    Pending(Box<Exchange>),
}

/// Whether this CONNECT asks for SCRAM, and whether it may have it: `Err`
/// with 0x8C for a method this node does not offer.
pub(super) fn wants_scram(broker: &Broker, connect: &Connect, listener: u8) -> Result<bool, ReasonCode> {
    match connect.properties.authentication_method.as_deref() {
        None => Ok(false),
        Some(scram::METHOD) if broker.hooks.has_builtin_authenticator(listener) => Ok(true),
        Some(_) => Err(ReasonCode::BAD_AUTHENTICATION_METHOD),
    }
}

fn auth_packet(reason: ReasonCode, data: Vec<u8>) -> Packet {
    Packet::Auth(Auth {
        reason,
        properties: AuthProperties {
            authentication_method: Some(scram::METHOD.to_owned()),
            authentication_data: Some(Bytes::from(data)),
            ..Default::default()
        },
    })
}

/// The SCRAM exchange inside CONNECT: the identity it proves, and the
/// server-final message for the CONNACK.
pub(super) async fn connect_exchange<T: Transport>(
    broker: &Arc<Broker>,
    transport: &mut T,
    buf: &mut BytesMut,
    connect: &Connect,
    request: ConnectRequest<'_>,
) -> Result<(Identity, Vec<u8>), ReasonCode> {
    broker.admit(&request).await?;
    let data = connect.properties.authentication_data.as_deref().unwrap_or_default();
    let first = scram::client_first(data).map_err(|error| {
        tracing::debug!(%error, "SCRAM client-first refused");
        ReasonCode::NOT_AUTHORIZED
    })?;
    let username = first.username.clone();
    if request.username.is_some_and(|name| name != username) {
        return Err(ReasonCode::BAD_USER_NAME_OR_PASSWORD);
    }
    let (verifier, secret) = broker.access.scram(&username);
    let (exchange, server_first) = Exchange::start(first, verifier, &secret);
    let mut out = BytesMut::new();
    mqtt_codec::encode(
        &auth_packet(ReasonCode::CONTINUE_AUTHENTICATION, server_first),
        ProtocolVersion::V5,
        &mut out,
    )
    .map_err(|_| ReasonCode::UNSPECIFIED_ERROR)?;
    transport.write_all(&out).await.map_err(|_| ReasonCode::UNSPECIFIED_ERROR)?;

    let timeout = Duration::from_secs(broker.config.mqtt.connect_timeout);
    let max_packet = broker.config.mqtt.max_packet_size as usize;
    let answer = tokio::time::timeout(timeout, read_packet(transport, buf, max_packet))
        .await
        .map_err(|_| ReasonCode::NOT_AUTHORIZED)??;
    let final_data = match answer {
        Packet::Auth(auth)
            if auth.reason == ReasonCode::CONTINUE_AUTHENTICATION
                && auth.properties.authentication_method.as_deref() == Some(scram::METHOD) =>
        {
            auth.properties.authentication_data.unwrap_or_default()
        }
        _ => return Err(ReasonCode::PROTOCOL_ERROR),
    };
    let request = ConnectRequest { username: Some(&username), ..request };
    let server_final = match exchange.finish(&final_data) {
        Ok(server_final) => server_final,
        Err(error) => {
            tracing::debug!(%error, "SCRAM exchange failed");
            broker.login_failed(&request, ReasonCode::BAD_USER_NAME_OR_PASSWORD);
            return Err(ReasonCode::BAD_USER_NAME_OR_PASSWORD);
        }
    };
    let grant = broker.access.scram_grant(&username).ok_or(ReasonCode::BAD_USER_NAME_OR_PASSWORD)?;
    Ok((broker.identity_for(&request, grant).await, server_final))
}

/// Reads one whole packet (5.0).
async fn read_packet<T: Transport>(
    transport: &mut T,
    buf: &mut BytesMut,
    max_packet: usize,
) -> Result<Packet, ReasonCode> {
    loop {
        match mqtt_codec::decode(buf, ProtocolVersion::V5, max_packet) {
            Ok(Some(packet)) => return Ok(packet),
            Ok(None) => {}
            Err(error) => return Err(error.reason_code()),
        }
        match transport.read(buf).await {
            Ok(0) | Err(_) => return Err(ReasonCode::NOT_AUTHORIZED),
            Ok(_) => {}
        }
    }
}

impl<T: Transport> Connection<T> {
    /// An AUTH packet on a live connection: re-authentication.
    pub(super) fn on_auth(&mut self, auth: Auth) -> Result<(), Close> {
        let state = self.extras.as_mut().and_then(|extras| extras.reauth.take());
        let Some(state) = state else {
            // AUTH from a client that used no enhanced authentication.
            return Err(Close::Violation(ReasonCode::PROTOCOL_ERROR));
        };
        if auth.properties.authentication_method.as_deref() != Some(scram::METHOD) {
            return Err(Close::Violation(ReasonCode::PROTOCOL_ERROR));
        }
        let data = auth.properties.authentication_data.unwrap_or_default();
        let next = match (state, auth.reason) {
            (ReAuth::Ready, ReasonCode::REAUTHENTICATE) => {
                let first =
                    scram::client_first(&data).map_err(|_| Close::Revoked(ReasonCode::NOT_AUTHORIZED))?;
                if self.session.identity.username.as_deref() != Some(first.username.as_str()) {
                    return Err(Close::Revoked(ReasonCode::NOT_AUTHORIZED));
                }
                let (verifier, secret) = self.broker.access.scram(&first.username);
                let (exchange, server_first) = Exchange::start(first, verifier, &secret);
                self.send(&auth_packet(ReasonCode::CONTINUE_AUTHENTICATION, server_first));
                ReAuth::Pending(Box::new(exchange))
            }
            (ReAuth::Pending(exchange), ReasonCode::CONTINUE_AUTHENTICATION) => {
                let server_final =
                    exchange.finish(&data).map_err(|_| Close::Revoked(ReasonCode::NOT_AUTHORIZED))?;
                let username = self.session.identity.username.as_deref().unwrap_or_default();
                let grant = self
                    .broker
                    .access
                    .scram_grant(username)
                    .ok_or(Close::Revoked(ReasonCode::NOT_AUTHORIZED))?;
                // The user as it stands now (its password or role may have
                // changed since it connected).
                self.session.identity.superuser = grant.superuser;
                self.session.identity.credential = grant.credential;
                self.send(&auth_packet(ReasonCode::SUCCESS, server_final));
                ReAuth::Ready
            }
            _ => return Err(Close::Violation(ReasonCode::PROTOCOL_ERROR)),
        };
        self.extras_mut().reauth = Some(next);
        Ok(())
    }

    /// Marks the connection as authenticated with SCRAM (AUTH may follow).
    pub(super) fn enable_reauth(&mut self) {
        self.extras_mut().reauth = Some(ReAuth::Ready);
    }
}
