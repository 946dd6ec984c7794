//! `type = "http"`: an HTTP service decides who may connect, as EMQX's HTTP
//! authenticator does, so the same service works for both.
//!
//! ```toml
//! [[auth.authenticators]]
//! type = "http"
//! url = "http://127.0.0.1:8080/auth"
//! method = "post"                 # "get": the body's fields go in the query
//! body = { username = "${username}", password = "${password}", clientid = "${clientid}", peerhost = "${peerhost}" }
//! headers = { "content-type" = "application/json" }   # or application/x-www-form-urlencoded
//! timeout_ms = 5000
//! pool_size = 8                   # requests in flight to the service
//! queue = 64                      # requests that may wait for one of them
//! on_error = "deny"               # or "ignore": ask the next authenticator
//! cache_entries = 10000           # answers held; 0: none
//! cache_ttl_s = 60
//! ```
//!
//! Answers: 200 with `{"result": "allow" | "deny" | "ignore", "is_superuser":
//! bool}` decides; 204 allows; anything else (another status, a body that
//! does not parse or is over 64 KiB, a refused connection, the timeout, a
//! full queue) is a failure and `on_error` decides: `deny` refuses with 0x88
//! (server unavailable; 3.1.1: return code 3), `ignore` asks the next.
//!
//! Invariants:
//! - **Values are never pasted into the request's text**: placeholders
//!   (`${username}`, `${password}`, `${clientid}`, `${peerhost}`,
//!   `${cert_common_name}`: the CN of a client certificate TLS verified) are
//!   replaced inside JSON strings, form fields or query values, each encoded
//!   by its encoder; the URL's own text is fixed by the config.
//! - **Nothing runs on the connection's task**: the request is a task of
//!   its own, at most `pool_size` at once and `queue` more waiting; the
//!   connection waits for the answer, at most `timeout_ms` in all.
//! - **Credentials are never logged**: failures are logged with the status
//!   or error kind only.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use dataplane::cluster::access::{default_refusal, Grant};
use dataplane::hooks::{Authenticator, ConnectRequest, HookFuture, Verdict};
use mqtt_codec::ReasonCode;
use serde::Deserialize;
use tokio::sync::Semaphore;

use crate::cache::AnswerCache;
use crate::template::{check_template, expand, request_values, Chain, Limits, OnError, PLACEHOLDERS};

/// The most of an answer's body that is read.
const MAX_BODY: usize = 64 << 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Method {
    Get,
    Post,
}

/// The settings of one `type = "http"` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    url: String,
    #[serde(default = "default_method")]
    method: Method,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default = "default_body")]
    body: BTreeMap<String, String>,
}

fn default_method() -> Method {
    Method::Post
}
fn default_body() -> BTreeMap<String, String> {
    ["username", "password", "clientid", "peerhost"]
        .into_iter()
        .map(|name| (name.to_owned(), format!("${{{name}}}")))
        .collect()
}

/// Settings that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("{0}")]
    Parse(String),
    #[error("{key}: {reason}")]
    Invalid { key: &'static str, reason: String },
}

/// How the request's fields are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Query,
    Json,
    Form,
}

/// An HTTP service asked with the request a config describes (shared by
/// the `http` authenticator and authorizer).
pub(crate) struct Endpoint {
    client: reqwest::Client,
    url: reqwest::Url,
    encoding: Encoding,
    headers: reqwest::header::HeaderMap,
    body: Vec<(String, String)>,
    timeout: Duration,
    /// `pool_size` permits: requests in flight.
    pool: Arc<Semaphore>,
    /// `pool_size + queue` permits: requests in flight or waiting.
    admission: Arc<Semaphore>,
}

/// What an endpoint is made of, from its entry's settings.
pub(crate) struct EndpointSettings<'a> {
    pub url: &'a str,
    pub method: Method,
    pub headers: &'a BTreeMap<String, String>,
    pub body: &'a BTreeMap<String, String>,
    /// Placeholders the body may hold.
    pub placeholders: &'a [&'a str],
    pub timeout_ms: u64,
    pub pool_size: usize,
    pub queue: usize,
}

/// The `http` authenticator.
pub struct HttpAuthenticator {
    endpoint: Endpoint,
    on_error: OnError,
    cache: AnswerCache<Answer>,
}

impl std::fmt::Debug for HttpAuthenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpAuthenticator")
            .field("url", &redacted(&self.endpoint.url))
            .finish_non_exhaustive()
    }
}

/// What the service answered.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Answer {
    Allow { superuser: bool },
    Deny,
    Ignore,
}

/// Why no answer came.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Failure {
    #[error("the request queue is full")]
    Busy,
    #[error("no answer within the timeout")]
    Timeout,
    #[error("request failed: {0}")]
    Request(String),
    #[error("answered with status {0}")]
    Status(u16),
    #[error("answer not understood: {0}")]
    Body(String),
}

#[derive(Deserialize)]
struct Reply {
    result: String,
    #[serde(default)]
    is_superuser: bool,
}

impl HttpAuthenticator {
    /// Reads one `[[auth.authenticators]]` entry (its `type` taken out).
    pub fn from_table(table: &toml::Table) -> Result<HttpAuthenticator, SettingsError> {
        let (settings, limits): (Settings, Limits) =
            crate::stored::parse_settings(table, Chain::Authenticator)?;
        HttpAuthenticator::new(settings, limits)
    }

    fn new(settings: Settings, limits: Limits) -> Result<HttpAuthenticator, SettingsError> {
        let endpoint = Endpoint::new(&EndpointSettings {
            url: &settings.url,
            method: settings.method,
            headers: &settings.headers,
            body: &settings.body,
            placeholders: &PLACEHOLDERS,
            timeout_ms: limits.timeout_ms,
            pool_size: limits.pool_size,
            queue: limits.queue,
        })?;
        Ok(HttpAuthenticator {
            endpoint,
            on_error: limits.on_error,
            cache: AnswerCache::new(limits.cache_entries, Duration::from_secs(limits.cache_ttl_s)),
        })
    }

    async fn verdict(&self, request: ConnectRequest<'_>) -> Verdict<Grant> {
        let fields = self.endpoint.fields(&request_values(&request));
        let key: Vec<&[u8]> =
            fields.iter().flat_map(|(name, value)| [name.as_bytes(), value.as_bytes()]).collect();
        let answer = match self.cache.get(&key) {
            Some(answer) => Ok(answer),
            None => {
                let asked = self.endpoint.ask(fields.clone(), read_answer).await;
                if let Ok(answer) = &asked {
                    let key: Vec<&[u8]> =
                        fields.iter().flat_map(|(name, value)| [name.as_bytes(), value.as_bytes()]).collect();
                    self.cache.put(&key, answer.clone());
                }
                asked
            }
        };
        match answer {
            Ok(Answer::Allow { superuser }) => Verdict::Allow(Grant {
                superuser,
                credential: None,
                external: true,
                username: None,
                rules: None,
                expires_at: None,
                client_id: None,
            }),
            Ok(Answer::Deny) => Verdict::Deny(default_refusal(request.username)),
            Ok(Answer::Ignore) => Verdict::Ignore,
            Err(failure) => {
                tracing::warn!(url = %redacted(&self.endpoint.url), %failure, on_error = ?self.on_error, "HTTP authenticator failed");
                match self.on_error {
                    OnError::Deny => Verdict::Deny(ReasonCode::SERVER_UNAVAILABLE),
                    OnError::Ignore => Verdict::Ignore,
                }
            }
        }
    }
}

impl Endpoint {
    pub fn new(settings: &EndpointSettings<'_>) -> Result<Endpoint, SettingsError> {
        let invalid = |key, reason: String| SettingsError::Invalid { key, reason };
        let url = reqwest::Url::parse(settings.url).map_err(|error| invalid("url", error.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(invalid("url", format!("scheme {:?} is not http or https", url.scheme())));
        }
        if settings.timeout_ms == 0 || settings.pool_size == 0 {
            return Err(invalid("timeout_ms, pool_size", "must be at least 1".into()));
        }
        for (name, template) in settings.body {
            check_template(template, settings.placeholders)
                .map_err(|reason| invalid("body", format!("{name}: {reason}")))?;
        }
        let mut headers = reqwest::header::HeaderMap::new();
        for (name, value) in settings.headers {
            let name = reqwest::header::HeaderName::from_bytes(name.as_bytes())
                .map_err(|error| invalid("headers", format!("{name:?}: {error}")))?;
            let value = reqwest::header::HeaderValue::from_str(value)
                .map_err(|error| invalid("headers", format!("{name}: {error}")))?;
            headers.insert(name, value);
        }
        let content_type = headers
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .unwrap_or("application/json")
            .to_ascii_lowercase();
        let encoding = match settings.method {
            Method::Get => Encoding::Query,
            Method::Post if content_type.starts_with("application/json") => Encoding::Json,
            Method::Post if content_type.starts_with("application/x-www-form-urlencoded") => Encoding::Form,
            Method::Post => {
                return Err(invalid("headers", format!("content-type {content_type:?} is not JSON or form")))
            }
        };
        let timeout = Duration::from_millis(settings.timeout_ms);
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .pool_max_idle_per_host(settings.pool_size)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|error| invalid("url", error.to_string()))?;
        Ok(Endpoint {
            client,
            url,
            encoding,
            headers,
            body: settings.body.iter().map(|(name, value)| (name.clone(), value.clone())).collect(),
            timeout,
            pool: Arc::new(Semaphore::new(settings.pool_size)),
            admission: Arc::new(Semaphore::new(settings.pool_size.saturating_add(settings.queue))),
        })
    }

    /// The URL as logs may show it.
    pub fn name(&self) -> String {
        redacted(&self.url)
    }

    /// The request's fields, placeholders replaced by `values`.
    pub fn fields(&self, values: &[String; 5]) -> Vec<(String, String)> {
        self.body.iter().map(|(name, template)| (name.clone(), expand(template, values))).collect()
    }

    /// Asks the service, on a task of its own, within the timeout; `read`
    /// makes the answer of the response.
    pub async fn ask<T, F, R>(&self, fields: Vec<(String, String)>, read: R) -> Result<T, Failure>
    where
        T: Send + 'static,
        F: std::future::Future<Output = Result<T, Failure>> + Send + 'static,
        R: FnOnce(reqwest::Response) -> F + Send + 'static,
    {
        let admitted = self.admission.clone().try_acquire_owned().map_err(|_| Failure::Busy)?;
        let request = match self.encoding {
            Encoding::Query => self.client.get(self.url.clone()).query(&fields),
            Encoding::Json => {
                let object: serde_json::Map<String, serde_json::Value> = fields
                    .into_iter()
                    .map(|(name, value)| (name, serde_json::Value::String(value)))
                    .collect();
                self.client.post(self.url.clone()).json(&object)
            }
            Encoding::Form => self.client.post(self.url.clone()).form(&fields),
        }
        .headers(self.headers.clone());
        let pool = self.pool.clone();
        let mut task = tokio::spawn(async move {
            let _admitted = admitted;
            let _permit = pool.acquire_owned().await.map_err(|_| Failure::Busy)?;
            let response = request.send().await.map_err(describe)?;
            read(response).await
        });
        match tokio::time::timeout(self.timeout, &mut task).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(error)) => Err(Failure::Request(error.to_string())),
            Err(_) => {
                task.abort();
                Err(Failure::Timeout)
            }
        }
    }
}

/// A response's body, at most `limit` bytes.
pub(crate) async fn read_body(mut response: reqwest::Response, limit: usize) -> Result<Vec<u8>, Failure> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(describe)? {
        if body.len() + chunk.len() > limit {
            return Err(Failure::Body(format!("over {limit} bytes")));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The URL as logs may show it: no user, password or query (the config may
/// put credentials there).
fn redacted(url: &reqwest::Url) -> String {
    let host = url.host_str().unwrap_or("");
    match url.port() {
        Some(port) => format!("{}://{host}:{port}{}", url.scheme(), url.path()),
        None => format!("{}://{host}{}", url.scheme(), url.path()),
    }
}

/// A request error without the URL's query (which may hold a password).
fn describe(error: reqwest::Error) -> Failure {
    if error.is_timeout() {
        Failure::Timeout
    } else if error.is_connect() {
        Failure::Request("cannot connect".into())
    } else {
        Failure::Request(error.without_url().to_string())
    }
}

async fn read_answer(response: reqwest::Response) -> Result<Answer, Failure> {
    match response.status().as_u16() {
        204 => return Ok(Answer::Allow { superuser: false }),
        200 => {}
        other => return Err(Failure::Status(other)),
    }
    let body = read_body(response, MAX_BODY).await?;
    let reply: Reply = serde_json::from_slice(&body).map_err(|error| Failure::Body(error.to_string()))?;
    match reply.result.as_str() {
        "allow" => Ok(Answer::Allow { superuser: reply.is_superuser }),
        "deny" => Ok(Answer::Deny),
        "ignore" => Ok(Answer::Ignore),
        other => Err(Failure::Body(format!("result {other:?} is not allow, deny or ignore"))),
    }
}

impl Authenticator for HttpAuthenticator {
    fn authenticate<'a>(&'a self, request: ConnectRequest<'a>) -> HookFuture<'a, Verdict<Grant>> {
        Box::pin(self.verdict(request))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str) -> toml::Table {
        text.parse().expect("toml")
    }

    #[test]
    fn bad_settings_are_refused_with_the_key() {
        for (text, expect) in [
            ("url = \"ftp://x/\"", "url"),
            ("url = \"not a url\"", "url"),
            ("url = \"http://x/\"\nbody = { u = \"${user}\" }", "placeholder ${user} not allowed"),
            ("url = \"http://x/\"\nbody = { u = \"${username\" }", "unclosed"),
            ("url = \"http://x/\"\ntimeout_ms = 0", "timeout_ms"),
            ("url = \"http://x/\"\nheaders = { content-type = \"text/plain\" }", "content-type"),
            ("url = \"http://x/\"\nmethod = \"put\"", "put"),
            ("url = \"http://x/\"\nsurprise = 1", "surprise"),
        ] {
            let error = HttpAuthenticator::from_table(&table(text)).err().map(|error| error.to_string());
            assert!(error.as_deref().is_some_and(|error| error.contains(expect)), "{text:?}: {error:?}");
        }
    }

    #[test]
    fn placeholders_are_replaced_in_values_only() {
        let hook = HttpAuthenticator::from_table(&table(
            "url = \"http://127.0.0.1:1/auth\"\nbody = { user = \"u-${username}\", who = \"${clientid}@${peerhost}\" }",
        ))
        .expect("valid");
        let request = ConnectRequest {
            client_id: "c\"1",
            username: Some("a&b=${password}"),
            password: Some(b"pw"),
            address: std::net::IpAddr::from([10, 0, 0, 1]),
            certificate: None,
        };
        let fields = hook.endpoint.fields(&request_values(&request));
        // A placeholder inside a value is not expanded again.
        assert_eq!(
            fields,
            vec![
                ("user".to_owned(), "u-a&b=${password}".to_owned()),
                ("who".to_owned(), "c\"1@10.0.0.1".to_owned())
            ]
        );
    }

    #[test]
    fn urls_are_logged_without_credentials() {
        let url = reqwest::Url::parse("https://svc:s3cret@auth.example:8443/check?key=s3cret").expect("url");
        assert_eq!(redacted(&url), "https://auth.example:8443/check");
        let hook = HttpAuthenticator::from_table(&table("url = \"http://u:s3cret@127.0.0.1/a?k=s3cret\""))
            .expect("valid");
        assert!(!format!("{hook:?}").contains("s3cret"));
    }

    #[test]
    fn the_certificate_common_name_is_a_placeholder() {
        let hook = HttpAuthenticator::from_table(&table(
            "url = \"http://127.0.0.1:1/auth\"\nbody = { cn = \"${cert_common_name}\" }",
        ))
        .expect("valid");
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name.push(rcgen::DnType::CommonName, "device-9");
        let certificate = params.self_signed(&key).expect("certificate");
        let mut request = ConnectRequest {
            client_id: "c",
            username: None,
            password: None,
            address: std::net::IpAddr::from([127, 0, 0, 1]),
            certificate: Some(certificate.der()),
        };
        assert_eq!(
            hook.endpoint.fields(&request_values(&request)),
            vec![("cn".to_owned(), "device-9".to_owned())]
        );
        request.certificate = None;
        assert_eq!(hook.endpoint.fields(&request_values(&request)), vec![("cn".to_owned(), String::new())]);
    }
}
