//! `Peers`: gRPC clients to other control-plane members, with the member
//! token (and TLS for `https://` members), over channels cached per address.
//!
//! Channels connect lazily and reconnect on their own, so building a client
//! never fails on an unreachable peer; the call does. The cache holds one
//! channel per address ever used (bounded by the membership's size in
//! practice).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use proto::admin::admin_client::AdminClient;
use proto::auth::BearerToken;
use proto::raft::raft_client::RaftClient;
use proto::tls::{ClientTls, TlsError};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

/// The largest gRPC message accepted (snapshots, Watch snapshots).
pub(crate) const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

pub(crate) type RaftRpcClient = RaftClient<InterceptedService<Channel, BearerToken>>;
pub(crate) type AdminRpcClient = AdminClient<InterceptedService<Channel, BearerToken>>;

#[derive(Clone)]
pub(crate) struct Peers {
    token: BearerToken,
    tls: ClientTls,
    channels: Arc<Mutex<HashMap<String, Channel>>>,
}

impl Peers {
    pub fn new(token: BearerToken, tls: ClientTls) -> Self {
        Peers { token, tls, channels: Arc::new(Mutex::new(HashMap::new())) }
    }

    fn channel(&self, addr: &str) -> Result<Channel, TlsError> {
        if let Some(channel) = self.channels.lock().get(addr) {
            return Ok(channel.clone());
        }
        let channel =
            self.tls.endpoint(addr)?.connect_timeout(CONNECT_TIMEOUT).tcp_nodelay(true).connect_lazy();
        self.channels.lock().insert(addr.to_owned(), channel.clone());
        Ok(channel)
    }

    pub fn raft(&self, addr: &str) -> Result<RaftRpcClient, TlsError> {
        Ok(RaftClient::with_interceptor(self.channel(addr)?, self.token.clone())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES))
    }

    pub fn admin(&self, addr: &str) -> Result<AdminRpcClient, TlsError> {
        Ok(AdminClient::with_interceptor(self.channel(addr)?, self.token.clone()))
    }
}
