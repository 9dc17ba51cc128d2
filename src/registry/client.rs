//! The OCI distribution client: one connection per registry host, with TLS that trusts the
//! system roots plus the registry's own CA certificates, `insecure` (plain HTTP or unverified
//! TLS, and only then), anonymous / basic / bearer-token authentication, timeouts, and retries
//! with exponential backoff and jitter on connection errors, 429 and 5xx. Blobs stream from
//! and to files; nothing large is held in memory.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use reqwest::header::{
    HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, LOCATION,
    WWW_AUTHENTICATE,
};
use reqwest::{Method, Response, StatusCode};
use tokio::io::AsyncWriteExt as _;
use tokio::sync::Mutex;

use crate::config::Proxies;
use crate::limits::{MAX_MANIFEST_BYTES, MAX_REGISTRY_REPLY_BYTES, MIN_BLOB_BYTES_PER_SECOND};
use crate::oci::{BlobFile, Digest};
use crate::secret::Credentials;

/// Every manifest type forge reads or writes.
pub const MANIFEST_TYPES: &[&str] = &[
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];

/// How to reach one registry.
#[derive(Clone, Default)]
pub struct Access {
    /// Basic-auth username and password.
    pub credentials: Option<Credentials>,
    /// PEM CA certificates trusted in addition to the system roots.
    pub certificates: Vec<String>,
    /// Allow plain HTTP and unverified TLS.
    pub insecure: bool,
    /// The proxies the connection goes through (reqwest finds them in the environment; they
    /// name the proxy when it is the one that does not answer).
    pub proxies: Proxies,
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Access")
            .field("credentials", &self.credentials)
            .field("certificates", &self.certificates.len())
            .field("insecure", &self.insecure)
            .finish()
    }
}

/// Times a transient fault is retried (the README states it).
pub const RETRIES: u32 = 5;
/// How long one request may take, retries included (uploads aside), unless
/// `--registry-timeout` says otherwise (the README states it).
pub const DEADLINE: Duration = Duration::from_secs(30);
/// How often a request that is still waiting says so on stderr.
const WAITING_NOTICE: Duration = Duration::from_secs(10);

/// Told every 10 s that a request to a registry is still waiting, and for how long.
pub type OnWait = Arc<dyn Fn(&str, Duration) + Send + Sync>;

/// Retry policy for transient faults.
#[derive(Clone)]
pub struct Retry {
    pub attempts: u32,
    pub base: Duration,
    pub max: Duration,
    /// The whole of one request, every attempt and pause included.
    pub deadline: Duration,
    pub on_wait: OnWait,
}

impl std::fmt::Debug for Retry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Retry")
            .field("attempts", &self.attempts)
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            attempts: RETRIES + 1,
            base: Duration::from_millis(200),
            max: Duration::from_secs(10),
            deadline: DEADLINE,
            on_wait: Arc::new(|_, _| {}),
        }
    }
}

impl Retry {
    /// Full-jitter exponential backoff before attempt `n` (1-based retries).
    fn delay(&self, n: u32) -> Duration {
        let cap = self.base.saturating_mul(1 << n.min(16)).min(self.max);
        cap.mul_f64(rand::random::<f64>().max(0.1))
    }
}

/// Registry failures, naming the registry and the cause; never a credential. Cloned when one
/// failed probe answers every image of its registry.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    #[error("{registry}: authentication failed (401 Unauthorized{realm}){user}; check the username and password")]
    Unauthorized {
        registry: String,
        realm: String,
        user: String,
    },
    #[error("{registry}: access denied (403 Forbidden) to {what}")]
    Forbidden { registry: String, what: String },
    #[error("{registry}: TLS verification failed ({detail}); give the registry's CA certificate (user-data `certificates`, or --registry-ca), or set insecure: true if it really is untrusted")]
    Tls { registry: String, detail: String },
    #[error(
        "{registry}: the server does not speak TLS (an HTTP-only registry needs insecure: true)"
    )]
    NotTls { registry: String },
    #[error("{registry}: cannot resolve the host name ({detail})")]
    Dns { registry: String, detail: String },
    #[error("{registry}: cannot connect ({detail})")]
    Connect { registry: String, detail: String },
    #[error("{registry}: cannot reach the proxy {proxy} ({detail}); check HTTPS_PROXY, HTTP_PROXY and NO_PROXY")]
    Proxy {
        registry: String,
        /// The proxy URL, its password masked.
        proxy: String,
        detail: String,
    },
    #[error("{registry}: timed out after {} s", after.as_secs())]
    Timeout { registry: String, after: Duration },
    #[error("{registry}: {method} {path} answered {status}: {body}")]
    Status {
        registry: String,
        method: String,
        path: String,
        status: StatusCode,
        body: String,
    },
    #[error("{registry}: {what} has digest {actual}, expected {expected}")]
    DigestMismatch {
        registry: String,
        what: String,
        expected: String,
        actual: String,
    },
    #[error("{registry}: {detail}")]
    Protocol { registry: String, detail: String },
    #[error("{registry}: the answer to {what} is larger than {limit}")]
    TooLarge {
        registry: String,
        what: String,
        limit: String,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: Arc<std::io::Error>,
    },
}

impl Error {
    /// Whether trying again may help: a connection that failed or timed out, 429 and 5xx. A
    /// definite answer (401, 403, 404, a malformed or oversized answer) stands.
    fn transient(&self) -> bool {
        match self {
            Error::Connect { .. } | Error::Proxy { .. } | Error::Timeout { .. } => true,
            Error::Status { status, .. } => {
                *status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
            }
            _ => false,
        }
    }
}

/// A descriptor as the registry reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
}

/// A registry's answer, its body read (bounded) within the request's deadline.
struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: impl reqwest::header::AsHeaderName) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// The most of an answer's body a request reads, by what the answer is.
#[derive(Debug, Clone, Copy)]
enum Limit {
    /// A manifest or an index.
    Manifest,
    /// Anything else that is not a blob: a token, an error, an upload's answer.
    Reply,
}

impl Limit {
    fn bytes(self) -> u64 {
        match self {
            Limit::Manifest => MAX_MANIFEST_BYTES,
            Limit::Reply => MAX_REGISTRY_REPLY_BYTES,
        }
    }

    fn what(self) -> &'static str {
        match self {
            Limit::Manifest => "a manifest",
            Limit::Reply => "a registry's answer",
        }
    }
}

/// Body of a request, re-creatable for retries.
enum Body<'a> {
    Empty,
    Bytes(&'a [u8]),
    Blob(&'a BlobFile),
}

/// A connection to one registry host.
pub struct Registry {
    /// The host as references name it (`docker.io`), for messages and credentials.
    host: String,
    /// Where its API is: `https://HOST/` (`http://` for an insecure one that needs it).
    base: reqwest::Url,
    http: reqwest::Client,
    access: Access,
    retry: Retry,
    /// Authorization header per scope, once obtained.
    tokens: Mutex<HashMap<String, HeaderValue>>,
}

const READ_TIMEOUT: Duration = Duration::from_secs(30);
const INSECURE_PROBE: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

fn client(access: &Access, verify: bool) -> Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .read_timeout(READ_TIMEOUT)
        .user_agent(concat!("forge/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::limited(5));
    if verify {
        let mut roots = Vec::new();
        for pem in &access.certificates {
            roots.extend(
                reqwest::Certificate::from_pem_bundle(pem.as_bytes())
                    .map_err(|e| format!("registry CA certificate: {e}"))?,
            );
        }
        builder = builder.tls_certs_merge(roots);
    } else {
        builder = builder
            .tls_danger_accept_invalid_certs(true)
            .tls_danger_accept_invalid_hostnames(true);
    }
    builder.build().map_err(|e| e.to_string())
}

/// The text of an error and all its sources.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// The host a registry's API is served from: Docker Hub's references name `docker.io`, its API
/// is at `registry-1.docker.io`, as the Docker CLI reaches it.
fn endpoint(host: &str) -> &str {
    match host {
        "docker.io" | "index.docker.io" => "registry-1.docker.io",
        other => other,
    }
}

/// Whether `url` is on the same origin (scheme, host and port) as `base`: only then does a
/// request carry the registry's credentials or token.
fn same_origin(url: &reqwest::Url, base: &reqwest::Url) -> bool {
    url.scheme() == base.scheme()
        && url.host_str() == base.host_str()
        && url.port_or_known_default() == base.port_or_known_default()
}

impl Registry {
    /// Connect to `host` (`host[:port]`): HTTPS, verified unless `insecure`; an insecure
    /// registry that does not speak TLS is used over plain HTTP.
    pub async fn connect(host: &str, access: Access, retry: Retry) -> Result<Registry, Error> {
        let protocol = |detail: String| Error::Protocol {
            registry: host.to_string(),
            detail,
        };
        let http = client(&access, !access.insecure).map_err(protocol)?;
        let base = |scheme: &str| {
            reqwest::Url::parse(&format!("{scheme}://{}/", endpoint(host)))
                .map_err(|e| protocol(format!("not a registry host: {e}")))
        };
        let mut registry = Registry {
            host: host.to_string(),
            base: base("https")?,
            http,
            access,
            retry,
            tokens: Mutex::new(HashMap::new()),
        };
        if !registry.access.insecure {
            registry.ping().await?;
            return Ok(registry);
        }
        // An insecure registry may speak TLS (unverified) or plain HTTP: probe TLS briefly,
        // once (a plain-HTTP server's answer to a TLS handshake is no reason to try again).
        let (headers, body) = (HeaderMap::new(), Body::Empty);
        let probe = registry.exchange(&Method::GET, "/v2/", "", &headers, &body);
        match tokio::time::timeout(INSECURE_PROBE, probe).await {
            Ok(Ok(_)) => {}
            // It answered over TLS, or cannot be found at all: the error stands.
            Ok(Err(
                e @ (Error::Unauthorized { .. } | Error::Forbidden { .. } | Error::Dns { .. }),
            )) => return Err(e),
            Ok(Err(_)) | Err(_) => {
                registry.base = base("http")?;
                registry.ping().await?;
            }
        }
        Ok(registry)
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    /// `GET /v2/`: reachable, and authenticated when the registry asks for it.
    async fn ping(&self) -> Result<(), Error> {
        self.request(
            Method::GET,
            "/v2/",
            "",
            HeaderMap::new(),
            Body::Empty,
            Limit::Reply,
        )
        .await
        .map(drop)
    }

    fn classify(&self, e: reqwest::Error) -> Error {
        let registry = self.host.clone();
        let detail = chain(&e);
        let lower = detail.to_lowercase();
        // Behind a proxy, connecting means connecting to the proxy.
        let proxy = e
            .url()
            .filter(|_| e.is_connect())
            .and_then(|url| self.access.proxies.for_url(url.scheme(), url.host_str()?));
        if let Some(proxy) = proxy {
            Error::Proxy {
                registry,
                proxy: crate::secret::mask_url(proxy),
                detail: if e.is_timeout() {
                    format!("no answer in {} s", CONNECT_TIMEOUT.as_secs())
                } else {
                    connect_reason(&detail)
                },
            }
        } else if e.is_timeout() {
            let after = if e.is_connect() {
                CONNECT_TIMEOUT
            } else {
                READ_TIMEOUT
            };
            Error::Timeout { registry, after }
        } else if lower.contains("certificate")
            || lower.contains("unknownissuer")
            || lower.contains("invalid peer")
        {
            Error::Tls {
                registry,
                detail: tls_reason(&detail),
            }
        } else if [
            "invalid http version",
            "wrong version number",
            "invalid content type",
            "received corrupt message",
        ]
        .iter()
        .any(|m| lower.contains(m))
        {
            Error::NotTls { registry }
        } else if lower.contains("dns error")
            || lower.contains("failed to lookup")
            || lower.contains("name or service not known")
        {
            Error::Dns {
                registry,
                detail: "no such host".into(),
            }
        } else if e.is_connect() || e.is_request() || e.is_body() || e.is_decode() {
            Error::Connect {
                registry,
                detail: connect_reason(&detail),
            }
        } else {
            Error::Protocol {
                registry,
                detail: crate::limits::clip(&detail).into_owned(),
            }
        }
    }

    /// Send a request and read its answer's body (at most `limit`), with authentication and
    /// retries, all within the deadline (a streamed upload has none and is not retried: its
    /// caller retries it whole), telling `retry.on_wait` every 10 s that it is still waiting.
    /// `scope` is the token scope, e.g. `repository:app:pull`. The caller sees 2xx and 404;
    /// other statuses are errors.
    async fn request(
        &self,
        method: Method,
        path: &str,
        scope: &str,
        headers: HeaderMap,
        body: Body<'_>,
        limit: Limit,
    ) -> Result<Reply, Error> {
        let exchange = || async {
            let response = self.exchange(&method, path, scope, &headers, &body).await?;
            let (status, headers) = (response.status(), response.headers().clone());
            // A HEAD answer's Content-Length is the size of what it describes, not a body.
            let body = match method {
                Method::HEAD => Vec::new(),
                _ => self.read_body(response, path, limit).await?,
            };
            Ok(Reply {
                status,
                headers,
                body,
            })
        };
        match body {
            Body::Blob(_) => self.waiting(None, exchange()).await,
            _ => {
                let deadline = Some(self.retry.deadline);
                self.waiting(deadline, self.retrying(|_| false, exchange))
                    .await
            }
        }
    }

    /// `work` within `deadline` (none: unbounded), telling `retry.on_wait` every 10 s that it
    /// is still waiting.
    async fn waiting<T>(
        &self,
        deadline: Option<Duration>,
        work: impl std::future::Future<Output = Result<T, Error>>,
    ) -> Result<T, Error> {
        let started = Instant::now();
        tokio::pin!(work);
        let expired = tokio::time::sleep(deadline.unwrap_or(Duration::MAX / 4));
        tokio::pin!(expired);
        let mut notices =
            tokio::time::interval_at(tokio::time::Instant::now() + WAITING_NOTICE, WAITING_NOTICE);
        loop {
            tokio::select! {
                result = &mut work => return result,
                () = &mut expired, if deadline.is_some() => {
                    return Err(Error::Timeout {
                        registry: self.host.clone(),
                        after: deadline.unwrap_or_default(),
                    })
                }
                _ = notices.tick() => (self.retry.on_wait)(&self.host, started.elapsed()),
            }
        }
    }

    /// The one retry loop: `attempt` again after a backoff while it fails with a transient
    /// error (or one `also` accepts), at most `retry.attempts` times.
    async fn retrying<T, F, Fut>(
        &self,
        also: fn(&Error) -> bool,
        mut attempt: F,
    ) -> Result<T, Error>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, Error>>,
    {
        let mut tried = 0;
        loop {
            match attempt().await {
                Err(e) if (e.transient() || also(&e)) && tried + 1 < self.retry.attempts => {
                    tried += 1;
                    tokio::time::sleep(self.retry.delay(tried)).await;
                }
                other => return other,
            }
        }
    }

    /// One request, answering a 401 challenge once: a response with a 2xx or 404 status, or
    /// the error the status means (an error body read up to [`Limit::Reply`]).
    async fn exchange(
        &self,
        method: &Method,
        path: &str,
        scope: &str,
        headers: &HeaderMap,
        body: &Body<'_>,
    ) -> Result<Response, Error> {
        let mut authenticated = false;
        loop {
            let response = self.send_once(method, path, scope, headers, body).await?;
            let status = response.status();
            let challenge = || {
                response
                    .headers()
                    .get(WWW_AUTHENTICATE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string()
            };
            if status == StatusCode::UNAUTHORIZED && !authenticated {
                authenticated = true;
                self.authenticate(&challenge(), scope).await?;
                continue;
            }
            if status == StatusCode::UNAUTHORIZED {
                return Err(self.unauthorized(&challenge()));
            }
            if status == StatusCode::FORBIDDEN {
                return Err(Error::Forbidden {
                    registry: self.host.clone(),
                    what: if scope.is_empty() { path } else { scope }.to_string(),
                });
            }
            if status.is_success() || status == StatusCode::NOT_FOUND {
                return Ok(response);
            }
            let body = self.read_body(response, path, Limit::Reply).await?;
            let body = String::from_utf8_lossy(&body);
            return Err(Error::Status {
                registry: self.host.clone(),
                method: method.to_string(),
                path: path.to_string(),
                status,
                body: crate::limits::clip(body.trim()).into_owned(),
            });
        }
    }

    /// The body of `response`, refused once it is longer than `limit`.
    async fn read_body(
        &self,
        response: Response,
        path: &str,
        limit: Limit,
    ) -> Result<Vec<u8>, Error> {
        let too_large = || Error::TooLarge {
            registry: self.host.clone(),
            what: path.to_string(),
            limit: format!(
                "{} MiB, the most forge reads of {}",
                limit.bytes() >> 20,
                limit.what()
            ),
        };
        if response.content_length().is_some_and(|n| n > limit.bytes()) {
            return Err(too_large());
        }
        let mut body = Vec::new();
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| self.classify(e))?;
            if (body.len() + chunk.len()) as u64 > limit.bytes() {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    /// `path` (relative to the registry, or a URL the registry gave: an upload's `Location`)
    /// as a URL, resolved as a browser resolves a link.
    fn url(&self, path: &str) -> Result<reqwest::Url, Error> {
        self.base.join(path).map_err(|e| Error::Protocol {
            registry: self.host.clone(),
            detail: format!(
                "the registry named `{}` as a location: {e}",
                crate::limits::clip(path)
            ),
        })
    }

    async fn send_once(
        &self,
        method: &Method,
        path: &str,
        scope: &str,
        headers: &HeaderMap,
        body: &Body<'_>,
    ) -> Result<Response, Error> {
        let url = self.url(path)?;
        let mut request = self
            .http
            .request(method.clone(), url.clone())
            .headers(headers.clone());
        // Credentials belong to the registry: a location on another host gets none.
        if same_origin(&url, &self.base) {
            if let Some(auth) = self.tokens.lock().await.get(scope).cloned() {
                request = request.header(AUTHORIZATION, auth);
            }
        }
        request = match body {
            Body::Empty => request,
            Body::Bytes(bytes) => request.body(bytes.to_vec()),
            Body::Blob(blob) => {
                let read_error = |source| Error::Io {
                    what: blob.path.display().to_string(),
                    source: Arc::new(source),
                };
                let size = blob.size().await.map_err(read_error)?;
                let stream = blob.stream().await.map_err(read_error)?;
                request
                    .header(CONTENT_LENGTH, size)
                    .body(reqwest::Body::wrap_stream(stream))
            }
        };
        request.send().await.map_err(|e| self.classify(e))
    }

    fn unauthorized(&self, challenge: &str) -> Error {
        let realm = param(challenge, "realm")
            .map(|r| format!(", realm \"{}\"", crate::limits::clip(&r)))
            .unwrap_or_default();
        let user = match &self.access.credentials {
            Some(credentials) => format!(" as `{}`", credentials.username),
            None => " (no credentials given)".to_string(),
        };
        Error::Unauthorized {
            registry: self.host.clone(),
            realm,
            user,
        }
    }

    /// Answer a `WWW-Authenticate` challenge: basic credentials, or a bearer token fetched from
    /// the realm (with basic credentials when there are some, anonymously otherwise: Docker's
    /// rule, the realm is the one other host that sees them).
    async fn authenticate(&self, challenge: &str, scope: &str) -> Result<(), Error> {
        let scheme = challenge
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        let header = match scheme.as_str() {
            "basic" => {
                let Some(credentials) = &self.access.credentials else {
                    return Err(self.unauthorized(challenge));
                };
                basic(credentials)
            }
            "bearer" => {
                let realm = param(challenge, "realm").ok_or_else(|| Error::Protocol {
                    registry: self.host.clone(),
                    detail: "bearer challenge without a realm".into(),
                })?;
                self.token(&realm, param(challenge, "service"), scope, challenge)
                    .await?
            }
            _ => return Err(self.unauthorized(challenge)),
        };
        self.tokens.lock().await.insert(scope.to_string(), header);
        Ok(())
    }

    /// A bearer token for `scope` from the token service at `realm`.
    async fn token(
        &self,
        realm: &str,
        service: Option<String>,
        scope: &str,
        challenge: &str,
    ) -> Result<HeaderValue, Error> {
        let protocol = |detail: String| Error::Protocol {
            registry: self.host.clone(),
            detail,
        };
        let realm = reqwest::Url::parse(realm).map_err(|e| {
            protocol(format!(
                "the token service `{}` is not a URL: {e}",
                crate::limits::clip(realm)
            ))
        })?;
        let mut query: Vec<(String, String)> = service
            .map(|service| ("service".to_string(), service))
            .into_iter()
            .collect();
        for s in scope.split(' ').filter(|s| !s.is_empty()) {
            query.push(("scope".into(), s.to_string()));
        }
        let path = realm.path().to_string();
        let mut request = self.http.get(realm).query(&query);
        if let Some(credentials) = &self.access.credentials {
            request = request.header(AUTHORIZATION, basic(credentials));
        }
        let response = request.send().await.map_err(|e| self.classify(e))?;
        let status = response.status();
        if status == StatusCode::UNAUTHORIZED {
            return Err(self.unauthorized(challenge));
        }
        let body = self.read_body(response, &path, Limit::Reply).await?;
        if !status.is_success() {
            return Err(Error::Status {
                registry: self.host.clone(),
                method: "GET".into(),
                path: format!("{path} (the token service)"),
                status,
                body: crate::limits::clip(String::from_utf8_lossy(&body).trim()).into_owned(),
            });
        }
        #[derive(serde::Deserialize)]
        struct Answer {
            token: Option<String>,
            access_token: Option<String>,
        }
        let answer: Answer = serde_json::from_slice(&body)
            .map_err(|e| protocol(format!("the token service's answer is not JSON ({e})")))?;
        let token = answer
            .token
            .or(answer.access_token)
            .ok_or_else(|| protocol("token service returned no token".into()))?;
        let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| protocol("malformed token".into()))?;
        value.set_sensitive(true);
        Ok(value)
    }

    fn manifest_accept() -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            ACCEPT,
            HeaderValue::from_str(&MANIFEST_TYPES.join(", ")).expect("static header"),
        );
        headers
    }

    /// The digest a registry names in its `Docker-Content-Digest` header, parsed.
    fn content_digest(&self, reply: &Reply, what: &str) -> Result<Option<Digest>, Error> {
        reply
            .header("docker-content-digest")
            .map(|text| {
                Digest::parse(text).map_err(|e| Error::Protocol {
                    registry: self.host.clone(),
                    detail: format!("{what}: the Docker-Content-Digest header: {e}"),
                })
            })
            .transpose()
    }

    /// Ask for a manifest (any of [`MANIFEST_TYPES`]): `None` when it is missing.
    async fn manifest_request(
        &self,
        method: Method,
        repository: &str,
        reference: &str,
    ) -> Result<Option<(Reply, String)>, Error> {
        let path = format!("/v2/{repository}/manifests/{reference}");
        let reply = self
            .request(
                method,
                &path,
                &pull(repository),
                Self::manifest_accept(),
                Body::Empty,
                Limit::Manifest,
            )
            .await?;
        Ok((reply.status != StatusCode::NOT_FOUND).then_some((reply, path)))
    }

    /// `HEAD` a manifest (image, index or list, Docker or OCI): `None` when it is missing.
    pub async fn manifest_head(
        &self,
        repository: &str,
        reference: &str,
    ) -> Result<Option<Found>, Error> {
        let Some((reply, path)) = self
            .manifest_request(Method::HEAD, repository, reference)
            .await?
        else {
            return Ok(None);
        };
        let digest = self
            .content_digest(&reply, &path)?
            .ok_or_else(|| Error::Protocol {
                registry: self.host.clone(),
                detail: format!("{path}: no Docker-Content-Digest header"),
            })?;
        Ok(Some(Found {
            digest,
            media_type: reply.header(CONTENT_TYPE).unwrap_or_default().to_string(),
            size: reply
                .header(CONTENT_LENGTH)
                .and_then(|l| l.parse().ok())
                .unwrap_or(0),
        }))
    }

    /// `GET` a manifest: its media type, bytes and digest (verified when asked by digest).
    pub async fn manifest_get(
        &self,
        repository: &str,
        reference: &str,
    ) -> Result<Option<(String, Vec<u8>, Digest)>, Error> {
        let Some((reply, path)) = self
            .manifest_request(Method::GET, repository, reference)
            .await?
        else {
            return Ok(None);
        };
        let media_type = reply.header(CONTENT_TYPE).unwrap_or_default().to_string();
        let digest = match Digest::parse(reference) {
            Ok(expected) => {
                let mut hasher = expected.hasher();
                hasher.update(&reply.body);
                let actual = hasher.finish();
                if actual != expected {
                    return Err(Error::DigestMismatch {
                        registry: self.host.clone(),
                        what: path,
                        expected: expected.to_string(),
                        actual: actual.to_string(),
                    });
                }
                expected
            }
            Err(_) => Digest::sha256(&reply.body),
        };
        Ok(Some((media_type, reply.body, digest)))
    }

    /// `PUT` a manifest and check the registry stored exactly these bytes.
    pub async fn manifest_put(
        &self,
        repository: &str,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<Digest, Error> {
        let path = format!("/v2/{repository}/manifests/{reference}");
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_str(media_type).map_err(|_| Error::Protocol {
                registry: self.host.clone(),
                detail: format!("bad media type {}", crate::limits::clip(media_type)),
            })?,
        );
        let reply = self
            .request(
                Method::PUT,
                &path,
                &push(repository),
                headers,
                Body::Bytes(bytes),
                Limit::Reply,
            )
            .await?;
        self.expect_created(&reply, &path)?;
        let expected = Digest::sha256(bytes);
        match self.content_digest(&reply, &path)? {
            Some(stored) if stored != expected => Err(Error::DigestMismatch {
                registry: self.host.clone(),
                what: path,
                expected: expected.to_string(),
                actual: stored.to_string(),
            }),
            _ => Ok(expected),
        }
    }

    fn expect_created(&self, reply: &Reply, path: &str) -> Result<(), Error> {
        if reply.status.is_success() {
            Ok(())
        } else {
            Err(Error::Status {
                registry: self.host.clone(),
                method: "PUT".into(),
                path: path.to_string(),
                status: reply.status,
                body: String::new(),
            })
        }
    }

    /// Whether the repository has the blob.
    pub async fn blob_exists(&self, repository: &str, digest: &Digest) -> Result<bool, Error> {
        let path = format!("/v2/{repository}/blobs/{digest}");
        let reply = self
            .request(
                Method::HEAD,
                &path,
                &pull(repository),
                HeaderMap::new(),
                Body::Empty,
                Limit::Reply,
            )
            .await?;
        Ok(reply.status.is_success())
    }

    /// Download the blob `digest` of `size` bytes to `dest`: it stops at `size`, and the
    /// digest is checked before the file is used; `progress` gets byte counts. It may take
    /// the deadline plus a second per [`MIN_BLOB_BYTES_PER_SECOND`].
    pub async fn blob_download(
        &self,
        repository: &str,
        digest: &Digest,
        size: u64,
        dest: &Path,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<(), Error> {
        let path = format!("/v2/{repository}/blobs/{digest}");
        let deadline = self.retry.deadline + Duration::from_secs(size / MIN_BLOB_BYTES_PER_SECOND);
        let attempt = || async {
            let response = self
                .exchange(
                    &Method::GET,
                    &path,
                    &pull(repository),
                    &HeaderMap::new(),
                    &Body::Empty,
                )
                .await?;
            if response.status() == StatusCode::NOT_FOUND {
                return Err(Error::Protocol {
                    registry: self.host.clone(),
                    detail: format!("blob {digest} is missing from {repository}"),
                });
            }
            let oversized = || {
                Error::Protocol {
                registry: self.host.clone(),
                detail: format!(
                    "blob {digest} of {repository} is longer than the {size} bytes its descriptor gives"
                ),
            }
            };
            if response.content_length().is_some_and(|n| n > size) {
                return Err(oversized());
            }
            let io = |source| Error::Io {
                what: dest.display().to_string(),
                source: Arc::new(source),
            };
            let mut file = tokio::fs::File::create(dest).await.map_err(io)?;
            let mut hasher = digest.hasher();
            let mut received = 0u64;
            let mut stream = response.bytes_stream();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| self.classify(e))?;
                received += chunk.len() as u64;
                if received > size {
                    return Err(oversized());
                }
                hasher.update(&chunk);
                file.write_all(&chunk).await.map_err(io)?;
                progress(chunk.len() as u64);
            }
            file.flush().await.map_err(io)?;
            if received < size {
                return Err(Error::Connect {
                    registry: self.host.clone(),
                    detail: format!("blob {digest} ended after {received} of {size} bytes"),
                });
            }
            let actual = hasher.finish();
            if actual != *digest {
                return Err(Error::DigestMismatch {
                    registry: self.host.clone(),
                    what: path.clone(),
                    expected: digest.to_string(),
                    actual: actual.to_string(),
                });
            }
            Ok(())
        };
        self.waiting(Some(deadline), self.retrying(|_| false, attempt))
            .await
    }

    /// Mount a blob from another repository of this registry. `false` when the registry
    /// would rather have it uploaded.
    pub async fn blob_mount(
        &self,
        repository: &str,
        digest: &Digest,
        from: &str,
    ) -> Result<bool, Error> {
        let path = format!("/v2/{repository}/blobs/uploads/?mount={digest}&from={from}");
        let scope = format!("{} {}", push(repository), pull(from));
        let reply = self
            .request(
                Method::POST,
                &path,
                &scope,
                HeaderMap::new(),
                Body::Empty,
                Limit::Reply,
            )
            .await?;
        if reply.status == StatusCode::CREATED {
            return Ok(true);
        }
        if let Some(location) = reply.header(LOCATION) {
            let _ = self
                .request(
                    Method::DELETE,
                    location,
                    &push(repository),
                    HeaderMap::new(),
                    Body::Empty,
                    Limit::Reply,
                )
                .await;
        }
        Ok(false)
    }

    /// Upload a blob from a file (monolithic PUT, streamed); retried from the start, also
    /// when the registry lost the upload session (404).
    pub async fn blob_upload(
        &self,
        repository: &str,
        digest: &Digest,
        blob: &BlobFile,
    ) -> Result<(), Error> {
        let attempt = || async {
            let start = format!("/v2/{repository}/blobs/uploads/");
            let reply = self
                .request(
                    Method::POST,
                    &start,
                    &push(repository),
                    HeaderMap::new(),
                    Body::Empty,
                    Limit::Reply,
                )
                .await?;
            let location = reply.header(LOCATION).ok_or_else(|| Error::Protocol {
                registry: self.host.clone(),
                detail: "upload start without a Location".into(),
            })?;
            let mut target = self.url(location)?;
            target
                .query_pairs_mut()
                .append_pair("digest", &digest.to_string());
            let mut headers = HeaderMap::new();
            headers.insert(
                CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            let reply = self
                .request(
                    Method::PUT,
                    target.as_str(),
                    &push(repository),
                    headers,
                    Body::Blob(blob),
                    Limit::Reply,
                )
                .await?;
            self.expect_created(&reply, &start)
        };
        let lost_session = |e: &Error| {
            matches!(
                e,
                Error::Status {
                    status: StatusCode::NOT_FOUND,
                    ..
                }
            )
        };
        self.retrying(lost_session, attempt).await
    }
}

fn pull(repository: &str) -> String {
    format!("repository:{repository}:pull")
}

fn push(repository: &str) -> String {
    format!("repository:{repository}:pull,push")
}

fn basic(credentials: &Credentials) -> HeaderValue {
    use base64::Engine as _;
    let Credentials { username, password } = credentials;
    let encoded =
        base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
    let mut value =
        HeaderValue::from_str(&format!("Basic {encoded}")).expect("base64 is a valid header");
    value.set_sensitive(true);
    value
}

/// `key="value"` from a `WWW-Authenticate` header.
fn param(challenge: &str, key: &str) -> Option<String> {
    let start = challenge.find(&format!("{key}=\""))? + key.len() + 2;
    let end = challenge[start..].find('"')? + start;
    Some(challenge[start..end].to_string())
}

fn connect_reason(detail: &str) -> String {
    let lower = detail.to_lowercase();
    if lower.contains("refused") {
        "connection refused".to_string()
    } else if lower.contains("reset") {
        "connection reset".to_string()
    } else {
        crate::limits::clip(detail).into_owned()
    }
}

fn tls_reason(detail: &str) -> String {
    let lower = detail.to_lowercase();
    if lower.contains("unknownissuer") || lower.contains("unknown issuer") {
        "the certificate is signed by an unknown authority".into()
    } else if lower.contains("notvalidforname") || lower.contains("not valid for name") {
        "the certificate does not match the host name".into()
    } else if lower.contains("expired") {
        "the certificate has expired".into()
    } else {
        detail
            .rsplit(": ")
            .next()
            .unwrap_or(detail)
            .chars()
            .take(160)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_challenge_parameters() {
        let c = r#"Bearer realm="https://auth.example.com/token",service="registry.example.com",scope="repository:a:pull""#;
        assert_eq!(
            param(c, "realm").as_deref(),
            Some("https://auth.example.com/token")
        );
        assert_eq!(param(c, "service").as_deref(), Some("registry.example.com"));
        assert_eq!(
            param(r#"Basic realm="Registry Realm""#, "realm").as_deref(),
            Some("Registry Realm")
        );
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let r = Retry {
            attempts: 5,
            base: Duration::from_millis(100),
            max: Duration::from_secs(1),
            ..Retry::default()
        };
        for n in 1..20 {
            assert!(r.delay(n) <= Duration::from_secs(1));
        }
    }

    #[test]
    fn access_debug_hides_the_password() {
        let a = Access {
            credentials: Some(Credentials {
                username: "user".into(),
                password: "Hunter2!".into(),
            }),
            ..Access::default()
        };
        assert!(!format!("{a:?}").contains("Hunter2"));
    }
}
