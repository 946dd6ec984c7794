//! `ServerAuth`: refuses every call without the cluster token (when one is
//! configured) with `Unauthenticated`, before any handler runs.

use std::sync::Arc;

use tonic::service::Interceptor;
use tonic::{Request, Status};

#[derive(Clone)]
pub(crate) struct ServerAuth {
    token: Option<Arc<str>>,
}

impl ServerAuth {
    pub fn new(token: Option<&str>) -> Self {
        ServerAuth { token: token.map(Arc::from) }
    }
}

impl Interceptor for ServerAuth {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(token) = &self.token {
            proto::auth::check_bearer(token, request.metadata())?;
        }
        Ok(request)
    }
}
