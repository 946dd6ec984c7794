//! One admin connection: the validated [`Target`] (server URL, token and
//! where it came from, timeout), the gRPC channel, and every call bounded by the timeout, with
//! its failure turned into one sentence an operator can act on.
//!
//! Invariant: every error that leaves this module reads as a plain
//! sentence on one line; gRPC codes and transport error chains stay inside.

use std::future::Future;
use std::io;
use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use proto::admin::admin_client::AdminClient;
use proto::auth::BearerToken;
use proto::tls::ClientTls;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

use crate::args::GlobalArgs;

/// The admin client with the cluster token attached to every call.
pub type Admin = AdminClient<InterceptedService<Channel, BearerToken>>;

/// Where to send requests and how long to wait: the global options,
/// validated.
#[derive(Clone, Debug)]
pub struct Target {
    /// `http://HOST:PORT`, without a trailing slash.
    pub server: String,
    /// `None` when no token was found (an empty one counts as none).
    pub token: Option<String>,
    /// Where the token came from, for error messages ("--token", ...).
    pub token_source: String,
    pub timeout: Duration,
    /// TLS for an `https://` server (`--cacert`, `--cert`, `--key`).
    pub tls: ClientTls,
}

/// The admin token a standalone `mqttd` writes, relative to its directory.
pub const DEFAULT_TOKEN_FILE: &str = "data/admin.token";

impl Target {
    /// Validates the options; the token comes from `--token`, else
    /// `--token-file`, else `MQTTD_TOKEN`, else `./data/admin.token`.
    pub fn new(global: &GlobalArgs) -> Result<Self> {
        let env_token = std::env::var("MQTTD_TOKEN").ok();
        Self::resolve(global, env_token, Path::new(DEFAULT_TOKEN_FILE))
    }

    fn resolve(global: &GlobalArgs, env_token: Option<String>, default_file: &Path) -> Result<Self> {
        let server = normalize_server(&global.server)?;
        let nonempty = |token: Option<String>| token.map(|t| t.trim().to_owned()).filter(|t| !t.is_empty());
        let from_file = |path: &Path| {
            proto::auth::read_token_file(path)
                .map_err(|error| anyhow!("cannot use the token file {}: {error}", path.display()))
        };
        let (token, token_source) = if let Some(token) = nonempty(global.token.clone()) {
            (Some(token), "--token".to_owned())
        } else if let Some(path) = &global.token_file {
            (Some(from_file(path)?), format!("--token-file {}", path.display()))
        } else if let Some(token) = nonempty(env_token) {
            (Some(token), "MQTTD_TOKEN".to_owned())
        } else if default_file.is_file() {
            (Some(from_file(default_file)?), format!("./{}", default_file.display()))
        } else {
            (None, String::new())
        };
        if let Some(token) = &token {
            if !token.bytes().all(|byte| byte.is_ascii_graphic()) {
                bail!("the token ({token_source}) must be visible ASCII characters without spaces");
            }
        }
        let tls =
            ClientTls::from_files(global.cacert.as_deref(), global.cert.as_deref(), global.key.as_deref())
                .map_err(|error| anyhow!("TLS: {error}"))?;
        if server.starts_with("https://") && !tls.is_enabled() {
            bail!("--server {server} uses https: give the CA that signed its certificate with --cacert FILE");
        }
        Ok(Target { server, token, token_source, timeout: Duration::from_secs(global.timeout), tls })
    }
}

/// Accepts `http://HOST:PORT`, `https://HOST:PORT` or a bare `HOST:PORT`
/// (plain http).
fn normalize_server(server: &str) -> Result<String> {
    let trimmed = server.trim();
    if trimmed.is_empty() {
        bail!("--server is empty; give a URL like http://127.0.0.1:50051");
    }
    let (scheme, rest) = match trimmed.strip_prefix("https://") {
        Some(rest) => ("https", rest),
        None => ("http", trimmed.strip_prefix("http://").unwrap_or(trimmed)),
    };
    let authority = rest.trim_end_matches('/');
    let url = format!("{scheme}://{authority}");
    let malformed = authority.is_empty() || authority.contains('/') || authority.ends_with(':');
    if malformed || Endpoint::from_shared(url.clone()).is_err() {
        bail!("--server {server:?} is not a URL like http://127.0.0.1:50051");
    }
    Ok(url)
}

/// A connected admin client.
pub struct Connection {
    target: Target,
    admin: Admin,
}

impl Connection {
    /// Connects within the timeout, or says why it could not.
    pub async fn open(target: Target) -> Result<Self> {
        let endpoint = target
            .tls
            .endpoint(&target.server)
            .map_err(|error| anyhow!("--server {:?}: {error}", target.server))?
            .connect_timeout(target.timeout);
        let channel = match tokio::time::timeout(target.timeout, endpoint.connect()).await {
            Err(_) => {
                bail!("cannot reach {}: no connection within {}", target.server, seconds(target.timeout))
            }
            Ok(Err(error)) => bail!("cannot reach {}: {}", target.server, transport_reason(&error)),
            Ok(Ok(channel)) => channel,
        };
        let token = BearerToken::new(target.token.as_deref())
            .map_err(|_| anyhow!("the cluster token is not a valid header value"))?;
        Ok(Connection { admin: AdminClient::with_interceptor(channel, token), target })
    }

    /// A handle for one call (clones share the connection).
    pub fn admin(&self) -> Admin {
        self.admin.clone()
    }

    /// Awaits a call that changes nothing, within the timeout.
    pub async fn read<T>(&self, call: impl Future<Output = Result<tonic::Response<T>, Status>>) -> Result<T> {
        self.call(call, "").await
    }

    /// Awaits a call that changes the cluster, within the timeout. The
    /// answer may be lost after the change was made, and the sentence says so.
    pub async fn write<T>(
        &self,
        call: impl Future<Output = Result<tonic::Response<T>, Status>>,
    ) -> Result<T> {
        self.call(call, "; the change may still be applied").await
    }

    async fn call<T>(
        &self,
        call: impl Future<Output = Result<tonic::Response<T>, Status>>,
        after_timeout: &str,
    ) -> Result<T> {
        match tokio::time::timeout(self.target.timeout, call).await {
            Err(_) => Err(anyhow!(
                "no answer from {} within {}{after_timeout} (see --timeout)",
                self.target.server,
                seconds(self.target.timeout)
            )),
            Ok(Err(status)) => Err(anyhow!(explain(&status, &self.target))),
            Ok(Ok(response)) => Ok(response.into_inner()),
        }
    }
}

fn seconds(duration: Duration) -> String {
    match duration.as_secs() {
        1 => "1 second".to_owned(),
        count => format!("{count} seconds"),
    }
}

/// What a failed call means, in one line.
pub fn explain(status: &Status, target: &Target) -> String {
    let message = one_line(status.message());
    let server_said = |fallback: &str| if message.is_empty() { fallback.to_owned() } else { message.clone() };
    match status.code() {
        Code::Unauthenticated if target.token.is_some() => format!(
            "the server refused the token from {} (check --token, --token-file or MQTTD_TOKEN)",
            target.token_source
        ),
        Code::Unauthenticated => {
            "the server wants a token (--token-file FILE, MQTTD_TOKEN, or run next to ./data/admin.token)"
                .to_owned()
        }
        Code::PermissionDenied => format!(
            "the token from {} is not allowed to do this: {}",
            target.token_source,
            server_said("permission denied")
        ),
        // A status with a source was made on this side: the transport failed.
        Code::Unavailable if std::error::Error::source(status).is_some() => {
            format!("cannot reach {}: {}", target.server, transport_reason(status))
        }
        // Other failures made on this side: the connection broke mid-call.
        Code::Unknown | Code::Internal | Code::Cancelled if std::error::Error::source(status).is_some() => {
            format!("the connection to {} failed: {}", target.server, transport_reason(status))
        }
        Code::Unavailable => server_said("the control plane is unavailable (no leader?); retry shortly"),
        Code::NotFound => server_said("not found"),
        Code::AlreadyExists => server_said("already exists"),
        Code::InvalidArgument => server_said("the server refused the request as invalid"),
        Code::FailedPrecondition => {
            server_said("the server refused the request in the cluster's current state")
        }
        Code::DeadlineExceeded => {
            server_said("the server gave up waiting; the change may or may not have been made")
        }
        Code::Unimplemented => {
            format!("{} does not serve the mqttd admin API (is it a control-plane node?)", target.server)
        }
        code => format!(
            "{} failed the request ({}): {}",
            target.server,
            code_name(code),
            server_said("no details")
        ),
    }
}

fn code_name(code: Code) -> String {
    format!("{code:?}").to_lowercase()
}

/// The deepest I/O error in a transport error's chain, in plain words
/// ("connection refused"), else its innermost message.
fn transport_reason(error: &(dyn std::error::Error + 'static)) -> String {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    let mut innermost = error.to_string();
    while let Some(cause) = current {
        if let Some(io_error) = cause.downcast_ref::<io::Error>() {
            return io_reason(io_error);
        }
        innermost = cause.to_string();
        current = cause.source();
    }
    one_line(&innermost)
}

fn io_reason(error: &io::Error) -> String {
    match error.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused".to_owned(),
        io::ErrorKind::ConnectionReset => "connection reset".to_owned(),
        io::ErrorKind::TimedOut => "timed out".to_owned(),
        _ => {
            // "Network is unreachable (os error 101)" -> "network is unreachable".
            let text = error.to_string();
            let text = match text.rfind(" (os error ") {
                Some(at) => &text[..at],
                None => &text,
            };
            lowercase_first(&one_line(text))
        }
    }
}

fn lowercase_first(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Collapses newlines and runs of whitespace so a message fits on one line.
pub fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(token: Option<&str>) -> Target {
        Target {
            server: "http://127.0.0.1:1".to_owned(),
            token: token.map(str::to_owned),
            token_source: "--token".to_owned(),
            timeout: Duration::from_secs(1),
            tls: ClientTls::none(),
        }
    }

    fn global(server: &str, token: Option<&str>) -> GlobalArgs {
        GlobalArgs {
            server: server.to_owned(),
            token: token.map(str::to_owned),
            token_file: None,
            cacert: None,
            cert: None,
            key: None,
            json: false,
            timeout: 10,
        }
    }

    #[test]
    fn servers_are_normalized_or_refused() {
        let server = |text: &str| Target::new(&global(text, None)).map(|target| target.server);
        assert_eq!(server("http://h:1/").ok().as_deref(), Some("http://h:1"));
        assert_eq!(server("10.0.0.1:50051").ok().as_deref(), Some("http://10.0.0.1:50051"));
        assert!(server("https://h:1").unwrap_err().to_string().contains("--cacert"));
        assert!(server("").is_err());
        assert!(server("http://").is_err());
        assert!(server("http://bad host:1").is_err());
        assert!(server("http://h:1/path").is_err());
        assert!(server("http:").is_err());
        assert!(server("grpc://h:1").is_err());
    }

    #[test]
    fn tokens_empty_is_none_and_spaces_are_refused() {
        assert_eq!(Target::new(&global("h:1", Some(""))).map(|target| target.token).ok(), Some(None));
        assert!(Target::new(&global("h:1", Some("a b"))).is_err());
    }

    #[test]
    fn tokens_come_from_flag_then_file_then_environment_then_data_dir() {
        let dir = tempfile::tempdir().expect("temp dir");
        let default_file = dir.path().join("admin.token");
        let flag_file = dir.path().join("flag.token");
        std::fs::write(&flag_file, "from-file\n").expect("write");
        let resolve = |token: Option<&str>, file: bool, env: Option<&str>| {
            let mut args = global("h:1", token);
            args.token_file = file.then(|| flag_file.clone());
            Target::resolve(&args, env.map(str::to_owned), &default_file).expect("valid").token
        };
        assert_eq!(resolve(None, false, None), None);
        std::fs::write(&default_file, "from-data-dir\n").expect("write");
        assert_eq!(resolve(None, false, None).as_deref(), Some("from-data-dir"));
        assert_eq!(resolve(None, false, Some("from-env")).as_deref(), Some("from-env"));
        assert_eq!(resolve(None, true, Some("from-env")).as_deref(), Some("from-file"));
        assert_eq!(resolve(Some("from-flag"), false, Some("from-env")).as_deref(), Some("from-flag"));
        let mut missing = global("h:1", None);
        missing.token_file = Some(dir.path().join("missing"));
        let error = Target::resolve(&missing, None, &default_file).expect_err("missing file").to_string();
        assert!(error.contains("cannot use the token file"), "{error}");
    }

    #[test]
    fn unauthenticated_says_what_to_do() {
        let status = Status::unauthenticated("missing `authorization: Bearer TOKEN` metadata");
        assert!(explain(&status, &target(None)).starts_with("the server wants a token (--token-file"));
        assert!(explain(&status, &target(Some("x"))).contains("refused the token from --token"));
    }

    #[test]
    fn server_messages_pass_through_on_one_line() {
        let status = Status::not_found("user \"bob\"\nnot found");
        assert_eq!(explain(&status, &target(None)), "user \"bob\" not found");
        let status = Status::unavailable("no control-plane leader is elected at the moment; retry shortly");
        assert!(explain(&status, &target(None)).starts_with("no control-plane leader"));
        assert!(explain(&Status::internal(""), &target(None)).contains("(internal): no details"));
    }

    #[test]
    fn transport_failures_name_the_server_and_the_cause() {
        let refused = io::Error::new(io::ErrorKind::ConnectionRefused, "Connection refused (os error 111)");
        let mut status = Status::unavailable("tcp connect error");
        status.set_source(std::sync::Arc::new(refused));
        assert_eq!(explain(&status, &target(None)), "cannot reach http://127.0.0.1:1: connection refused");
        let other = io::Error::other("Network is unreachable (os error 101)");
        assert_eq!(io_reason(&other), "network is unreachable");
    }
}
