//! Who may call what: `ServerAuth` identifies the caller from its
//! `authorization: Bearer TOKEN` metadata before any handler runs, refuses a
//! missing or unknown token with `Unauthenticated` and a token of another
//! role with `PermissionDenied`, and leaves the [`Grant`] in the request's
//! extensions for handlers that check more (a data-plane token's node id).
//!
//! Credentials, checked in this order:
//! - the member token (`controlplane.token`), shared by the members: Raft,
//!   and also admin and data-plane for any node id (single-token clusters);
//! - this node's admin token (`node.data_dir/admin.token`): admin;
//! - the in-process data-plane token (random per start, never written):
//!   data-plane for this node's own id (standalone mode);
//! - API tokens in the replicated state, by SHA-256 hash: admin, or
//!   data-plane for the node id each is bound to.
//!
//! Services: `Raft` needs a member; `ControlPlane` (Watch, RegisterRoutes,
//! Heartbeat) a member or a data-plane credential; `Admin` a member or an
//! admin credential.

use std::sync::Arc;

use proto::auth::{constant_time_eq, presented_token};
use tonic::service::Interceptor;
use tonic::{Request, Status};

use crate::applied::SharedState;
use crate::credentials::hash_token;
use crate::state::TokenRole;
use crate::NodeId;

/// What a caller's credential allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Grant {
    /// The member token: everything.
    Member,
    Admin,
    /// A data-plane node; it may speak only for `node_id`.
    Dataplane {
        node_id: NodeId,
    },
}

impl Grant {
    /// `Ok` when this grant may speak for data-plane node `node_id`.
    pub fn check_node(self, node_id: NodeId) -> Result<(), Status> {
        match self {
            Grant::Member => Ok(()),
            Grant::Dataplane { node_id: bound } if bound == node_id => Ok(()),
            Grant::Dataplane { node_id: bound } => Err(Status::permission_denied(format!(
                "this credential is bound to data-plane node {bound}, not node {node_id}"
            ))),
            Grant::Admin => {
                Err(Status::permission_denied("an admin credential cannot speak for a data-plane node"))
            }
        }
    }
}

/// The grant a handler's request carries (set by [`ServerAuth`]).
pub(crate) fn grant_of<T>(request: &Request<T>) -> Result<Grant, Status> {
    request
        .extensions()
        .get::<Grant>()
        .copied()
        .ok_or_else(|| Status::internal("the request passed no credential check"))
}

/// The credentials this member accepts.
pub(crate) struct Credentials {
    member: Option<String>,
    admin: String,
    local_dataplane: String,
    node_id: NodeId,
    shared: Arc<SharedState>,
}

impl Credentials {
    pub fn new(
        member: Option<String>,
        admin: String,
        local_dataplane: String,
        node_id: NodeId,
        shared: Arc<SharedState>,
    ) -> Self {
        Credentials { member, admin, local_dataplane, node_id, shared }
    }

    fn identify(&self, token: &str) -> Option<Grant> {
        let same = |expected: &str| constant_time_eq(token.as_bytes(), expected.as_bytes());
        if self.member.as_deref().is_some_and(same) {
            return Some(Grant::Member);
        }
        if same(&self.admin) {
            return Some(Grant::Admin);
        }
        if same(&self.local_dataplane) {
            return Some(Grant::Dataplane { node_id: self.node_id });
        }
        let hash = hash_token(token);
        self.shared.read(|applied| {
            applied.state.token_by_hash(&hash).and_then(|record| match (record.role, record.node_id) {
                (TokenRole::Admin, _) => Some(Grant::Admin),
                (TokenRole::Dataplane, Some(node_id)) => Some(Grant::Dataplane { node_id }),
                (TokenRole::Dataplane, None) => None,
            })
        })
    }
}

/// Which service a [`ServerAuth`] guards.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Service {
    Raft,
    ControlPlane,
    Admin,
}

#[derive(Clone)]
pub(crate) struct ServerAuth {
    credentials: Arc<Credentials>,
    service: Service,
}

impl ServerAuth {
    pub fn new(credentials: Arc<Credentials>, service: Service) -> Self {
        ServerAuth { credentials, service }
    }
}

impl Interceptor for ServerAuth {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let token = presented_token(request.metadata())?;
        let grant =
            self.credentials.identify(token).ok_or_else(|| Status::unauthenticated("unknown token"))?;
        let allowed = matches!(
            (self.service, grant),
            (_, Grant::Member)
                | (Service::Admin, Grant::Admin)
                | (Service::ControlPlane, Grant::Dataplane { .. })
        );
        if !allowed {
            let needed = match self.service {
                Service::Raft => "the Raft service needs the member token (controlplane.token)",
                Service::ControlPlane => "the data-plane service needs a data-plane or member token",
                Service::Admin => "the admin API needs an admin or member token",
            };
            return Err(Status::permission_denied(needed));
        }
        request.extensions_mut().insert(grant);
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(token: Option<&str>) -> Request<()> {
        let mut interceptor = proto::auth::BearerToken::new(token).expect("token");
        tonic::service::Interceptor::call(&mut interceptor, Request::new(())).expect("request")
    }

    fn auth(service: Service) -> ServerAuth {
        let credentials =
            Credentials::new(Some("member".into()), "admin".into(), "local".into(), 1, SharedState::new());
        ServerAuth::new(Arc::new(credentials), service)
    }

    fn code(service: Service, token: Option<&str>) -> Option<tonic::Code> {
        auth(service).call(request(token)).err().map(|status| status.code())
    }

    #[test]
    fn each_credential_opens_only_its_services() {
        use tonic::Code::{PermissionDenied, Unauthenticated};
        for service in [Service::Raft, Service::ControlPlane, Service::Admin] {
            assert_eq!(code(service, None), Some(Unauthenticated));
            assert_eq!(code(service, Some("guess")), Some(Unauthenticated));
            assert_eq!(code(service, Some("member")), None);
        }
        assert_eq!(code(Service::Admin, Some("admin")), None);
        assert_eq!(code(Service::Raft, Some("admin")), Some(PermissionDenied));
        assert_eq!(code(Service::ControlPlane, Some("admin")), Some(PermissionDenied));
        assert_eq!(code(Service::ControlPlane, Some("local")), None);
        assert_eq!(code(Service::Admin, Some("local")), Some(PermissionDenied));
        assert_eq!(code(Service::Raft, Some("local")), Some(PermissionDenied));
    }

    #[test]
    fn a_dataplane_grant_speaks_for_its_own_node_only() {
        let accepted = auth(Service::ControlPlane).call(request(Some("local"))).expect("accepted");
        let grant = grant_of(&accepted).expect("grant");
        assert!(grant.check_node(1).is_ok());
        assert_eq!(grant.check_node(2).map_err(|status| status.code()), Err(tonic::Code::PermissionDenied));
        assert!(Grant::Member.check_node(2).is_ok());
    }
}
