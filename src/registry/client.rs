//! The OCI distribution client: one connection per registry host, with TLS that trusts the
//! system roots plus the registry's own CA certificates, `insecure` (plain HTTP or unverified
//! TLS, and only then), anonymous / basic / bearer-token authentication, timeouts, and retries
//! with exponential backoff and jitter on connection errors, 429 and 5xx. Blobs stream from
//! and to files; nothing large is held in memory.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use reqwest::header::{
    HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, LOCATION,
    WWW_AUTHENTICATE,
};
use reqwest::{Method, Response, StatusCode};
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncWriteExt as _;
use tokio::sync::Mutex;

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
    pub credentials: Option<(String, String)>,
    /// PEM CA certificates trusted in addition to the system roots.
    pub certificates: Vec<String>,
    /// Allow plain HTTP and unverified TLS.
    pub insecure: bool,
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Access")
            .field("username", &self.credentials.as_ref().map(|(u, _)| u))
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

/// Retry policy for transient faults.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    pub attempts: u32,
    pub base: Duration,
    pub max: Duration,
    /// The whole of one request, every attempt and pause included.
    pub deadline: Duration,
    /// Told every 10 s that a request to a registry is still waiting, and for how long.
    pub on_wait: fn(registry: &str, waited: Duration),
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            attempts: RETRIES + 1,
            base: Duration::from_millis(200),
            max: Duration::from_secs(10),
            deadline: DEADLINE,
            on_wait: |_, _| {},
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
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: Arc<std::io::Error>,
    },
}

impl Error {
    /// Whether trying again may help.
    fn transient(&self) -> bool {
        match self {
            Error::Connect { .. } | Error::Proxy { .. } | Error::Timeout { .. } => true,
            Error::Status { status, .. } => {
                *status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
            }
            Error::Protocol { .. } => true,
            _ => false,
        }
    }
}

/// A descriptor as the registry reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub digest: String,
    pub media_type: String,
    pub size: u64,
}

/// Body of a request, re-creatable for retries.
enum Body<'a> {
    Empty,
    Bytes(&'a [u8]),
    Blob(&'a BlobFile),
}

/// A blob's bytes on disk: a file, framed by bytes before and after it (a tar member's header
/// and padding, so that a file becomes a one-file layer without being copied).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlobFile {
    pub path: PathBuf,
    pub head: Vec<u8>,
    pub tail: Vec<u8>,
}

impl BlobFile {
    /// A blob that is the whole file.
    pub fn plain(path: PathBuf) -> BlobFile {
        BlobFile {
            path,
            ..BlobFile::default()
        }
    }

    /// The blob's size: the file's and its frame's.
    pub async fn size(&self) -> std::io::Result<u64> {
        let file = tokio::fs::metadata(&self.path).await?.len();
        Ok(self.head.len() as u64 + file + self.tail.len() as u64)
    }

    /// The blob's sha256 (hex) and size, read in blocks of 1 MiB (blocking).
    pub fn sha256(&self) -> std::io::Result<(String, u64)> {
        use std::io::Read as _;
        let mut file = std::fs::File::open(&self.path)?;
        let mut hasher = Sha256::new();
        hasher.update(&self.head);
        let mut buf = vec![0; 1 << 20];
        let mut size = self.head.len() as u64;
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            size += n as u64;
        }
        hasher.update(&self.tail);
        size += self.tail.len() as u64;
        Ok((hex::encode(hasher.finalize()), size))
    }

    /// The blob's bytes, in blocks of 1 MiB.
    async fn stream(
        &self,
    ) -> std::io::Result<impl futures_util::Stream<Item = std::io::Result<bytes::Bytes>> + use<>>
    {
        let file = tokio::fs::File::open(&self.path).await?;
        let frame = |bytes: &[u8]| {
            futures_util::stream::iter(
                (!bytes.is_empty()).then(|| Ok(bytes::Bytes::copy_from_slice(bytes))),
            )
        };
        Ok(frame(&self.head)
            .chain(tokio_util::io::ReaderStream::with_capacity(file, 1 << 20))
            .chain(frame(&self.tail)))
    }
}

/// A connection to one registry host.
pub struct Registry {
    host: String,
    base: String,
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

/// The proxy `url` goes through, from the environment as reqwest reads it (`HTTPS_PROXY`,
/// `HTTP_PROXY`, `ALL_PROXY`, upper or lower case; `NO_PROXY` exempts hosts and domains).
fn proxy_for(url: &reqwest::Url) -> Option<String> {
    let var = |name: &str| {
        [name.to_string(), name.to_lowercase()]
            .iter()
            .find_map(|n| std::env::var(n).ok().filter(|v| !v.is_empty()))
    };
    let host = url.host_str()?;
    let exempt = var("NO_PROXY").is_some_and(|list| {
        list.split(',').map(str::trim).any(|entry| {
            let entry = entry.trim_start_matches('.');
            entry == "*" || host == entry || host.ends_with(&format!(".{entry}"))
        })
    });
    if exempt {
        return None;
    }
    let scheme = if url.scheme() == "https" {
        "HTTPS_PROXY"
    } else {
        "HTTP_PROXY"
    };
    var(scheme).or_else(|| var("ALL_PROXY"))
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

impl Registry {
    /// Connect to `host` (`host[:port]`): HTTPS, verified unless `insecure`; an insecure
    /// registry that does not speak TLS is used over plain HTTP.
    pub async fn connect(host: &str, access: Access, retry: Retry) -> Result<Registry, Error> {
        let http = client(&access, !access.insecure).map_err(|detail| Error::Protocol {
            registry: host.to_string(),
            detail,
        })?;
        let mut registry = Registry {
            host: host.to_string(),
            base: format!("https://{host}"),
            http,
            access,
            retry,
            tokens: Mutex::new(HashMap::new()),
        };
        if !registry.access.insecure {
            registry.ping().await?;
            return Ok(registry);
        }
        // An insecure registry may speak TLS (unverified) or plain HTTP: probe TLS briefly.
        match tokio::time::timeout(INSECURE_PROBE, registry.ping()).await {
            Ok(Ok(())) => {}
            // It answered over TLS, or cannot be found at all: the error stands.
            Ok(Err(
                e @ (Error::Unauthorized { .. } | Error::Forbidden { .. } | Error::Dns { .. }),
            )) => return Err(e),
            Ok(Err(_)) | Err(_) => {
                registry.base = format!("http://{host}");
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
        self.request(Method::GET, "/v2/", "", HeaderMap::new(), Body::Empty)
            .await
            .map(drop)
    }

    fn classify(&self, e: reqwest::Error) -> Error {
        let registry = self.host.clone();
        let detail = chain(&e);
        let lower = detail.to_lowercase();
        // Behind a proxy, connecting means connecting to the proxy.
        let proxy = e.url().and_then(proxy_for).filter(|_| e.is_connect());
        if let Some(proxy) = proxy {
            Error::Proxy {
                registry,
                proxy: crate::secret::mask_url(&proxy),
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
        } else if e.is_connect() || e.is_request() || e.is_body() {
            Error::Connect {
                registry,
                detail: connect_reason(&detail),
            }
        } else {
            Error::Protocol {
                registry,
                detail: detail.chars().take(200).collect(),
            }
        }
    }

    /// Send a request with authentication and retries, all within the deadline (a streamed
    /// upload has none: its caller retries it whole), telling `retry.on_wait` every 10 s that
    /// it is still waiting. `scope` is the token scope, e.g. `repository:app:pull`. Non-success
    /// statuses other than 404 and 401/403 (after auth) are errors; the caller sees 2xx and 404.
    async fn request(
        &self,
        method: Method,
        path: &str,
        scope: &str,
        headers: HeaderMap,
        body: Body<'_>,
    ) -> Result<Response, Error> {
        let deadline = match body {
            Body::Blob(_) => None,
            _ => Some(self.retry.deadline),
        };
        let started = Instant::now();
        let work = self.attempts(method, path, scope, headers, body);
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
                        after: self.retry.deadline,
                    })
                }
                _ = notices.tick() => (self.retry.on_wait)(&self.host, started.elapsed()),
            }
        }
    }

    /// [`Registry::request`]'s attempts, without its deadline.
    async fn attempts(
        &self,
        method: Method,
        path: &str,
        scope: &str,
        headers: HeaderMap,
        body: Body<'_>,
    ) -> Result<Response, Error> {
        let mut attempt = 0;
        let mut authenticated = false;
        loop {
            let result = self.send_once(&method, path, scope, &headers, &body).await;
            let error = match result {
                Ok(response) if response.status() == StatusCode::UNAUTHORIZED && !authenticated => {
                    let challenge = response
                        .headers()
                        .get(WWW_AUTHENTICATE)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_string();
                    authenticated = true;
                    match self.authenticate(&challenge, scope).await {
                        Ok(()) => continue,
                        Err(e) => e,
                    }
                }
                Ok(response) if response.status() == StatusCode::UNAUTHORIZED => {
                    let challenge = response
                        .headers()
                        .get(WWW_AUTHENTICATE)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default();
                    self.unauthorized(challenge)
                }
                Ok(response) if response.status() == StatusCode::FORBIDDEN => Error::Forbidden {
                    registry: self.host.clone(),
                    what: if scope.is_empty() {
                        path.to_string()
                    } else {
                        scope.to_string()
                    },
                },
                Ok(response)
                    if response.status().is_success()
                        || response.status() == StatusCode::NOT_FOUND =>
                {
                    return Ok(response)
                }
                Ok(response) => {
                    let status = response.status();
                    let body: String = response
                        .text()
                        .await
                        .unwrap_or_default()
                        .chars()
                        .take(300)
                        .collect();
                    Error::Status {
                        registry: self.host.clone(),
                        method: method.to_string(),
                        path: path.to_string(),
                        status,
                        body: body.trim().to_string(),
                    }
                }
                Err(e) => e,
            };
            attempt += 1;
            // A streamed upload cannot be replayed into the same session: its caller restarts it.
            let replayable = !matches!(body, Body::Blob(_));
            if !replayable || !error.transient() || attempt >= self.retry.attempts {
                return Err(error);
            }
            tokio::time::sleep(self.retry.delay(attempt)).await;
        }
    }

    async fn send_once(
        &self,
        method: &Method,
        path: &str,
        scope: &str,
        headers: &HeaderMap,
        body: &Body<'_>,
    ) -> Result<Response, Error> {
        let url = if path.starts_with("http://") || path.starts_with("https://") {
            path.to_string()
        } else {
            format!("{}{path}", self.base)
        };
        let mut request = self
            .http
            .request(method.clone(), &url)
            .headers(headers.clone());
        if let Some(auth) = self.tokens.lock().await.get(scope).cloned() {
            request = request.header(AUTHORIZATION, auth);
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
            .map(|r| format!(", realm \"{r}\""))
            .unwrap_or_default();
        let user = match &self.access.credentials {
            Some((user, _)) => format!(" as `{user}`"),
            None => " (no credentials given)".to_string(),
        };
        Error::Unauthorized {
            registry: self.host.clone(),
            realm,
            user,
        }
    }

    /// Answer a `WWW-Authenticate` challenge: basic credentials, or a bearer token fetched from
    /// the realm (with basic credentials when there are some, anonymously otherwise).
    async fn authenticate(&self, challenge: &str, scope: &str) -> Result<(), Error> {
        let scheme = challenge
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        let header = match scheme.as_str() {
            "basic" => {
                let Some((user, password)) = &self.access.credentials else {
                    return Err(self.unauthorized(challenge));
                };
                basic(user, password)
            }
            "bearer" => {
                let realm = param(challenge, "realm").ok_or_else(|| Error::Protocol {
                    registry: self.host.clone(),
                    detail: "bearer challenge without a realm".into(),
                })?;
                let mut query: Vec<(String, String)> = Vec::new();
                if let Some(service) = param(challenge, "service") {
                    query.push(("service".into(), service));
                }
                for s in scope.split(' ').filter(|s| !s.is_empty()) {
                    query.push(("scope".into(), s.to_string()));
                }
                let mut request = self.http.get(&realm).query(&query);
                if let Some((user, password)) = &self.access.credentials {
                    request = request.header(AUTHORIZATION, basic(user, password));
                }
                let response = request.send().await.map_err(|e| self.classify(e))?;
                if response.status() == StatusCode::UNAUTHORIZED {
                    return Err(self.unauthorized(challenge));
                }
                if !response.status().is_success() {
                    return Err(Error::Protocol {
                        registry: self.host.clone(),
                        detail: format!("token service answered {}", response.status()),
                    });
                }
                let body: serde_json::Value =
                    response.json().await.map_err(|e| self.classify(e))?;
                let token = body
                    .get("token")
                    .or_else(|| body.get("access_token"))
                    .and_then(|t| t.as_str())
                    .ok_or_else(|| Error::Protocol {
                        registry: self.host.clone(),
                        detail: "token service returned no token".into(),
                    })?;
                let mut value =
                    HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
                        Error::Protocol {
                            registry: self.host.clone(),
                            detail: "malformed token".into(),
                        }
                    })?;
                value.set_sensitive(true);
                value
            }
            _ => return Err(self.unauthorized(challenge)),
        };
        self.tokens.lock().await.insert(scope.to_string(), header);
        Ok(())
    }

    fn manifest_accept() -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            ACCEPT,
            HeaderValue::from_str(&MANIFEST_TYPES.join(", ")).expect("static header"),
        );
        headers
    }

    fn found(&self, response: &Response, what: &str) -> Result<Found, Error> {
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let digest = header("docker-content-digest").ok_or_else(|| Error::Protocol {
            registry: self.host.clone(),
            detail: format!("{what}: no Docker-Content-Digest header"),
        })?;
        Ok(Found {
            digest,
            media_type: header("content-type").unwrap_or_default(),
            size: header("content-length")
                .and_then(|l| l.parse().ok())
                .unwrap_or(0),
        })
    }

    /// Ask for a manifest (any of [`MANIFEST_TYPES`]): `None` when it is missing.
    async fn manifest_request(
        &self,
        method: Method,
        repository: &str,
        reference: &str,
    ) -> Result<Option<(Response, String)>, Error> {
        let path = format!("/v2/{repository}/manifests/{reference}");
        let response = self
            .request(
                method,
                &path,
                &pull(repository),
                Self::manifest_accept(),
                Body::Empty,
            )
            .await?;
        Ok((response.status() != StatusCode::NOT_FOUND).then_some((response, path)))
    }

    /// `HEAD` a manifest (image, index or list, Docker or OCI): `None` when it is missing.
    pub async fn manifest_head(
        &self,
        repository: &str,
        reference: &str,
    ) -> Result<Option<Found>, Error> {
        match self
            .manifest_request(Method::HEAD, repository, reference)
            .await?
        {
            Some((response, path)) => self.found(&response, &path).map(Some),
            None => Ok(None),
        }
    }

    /// `GET` a manifest: its media type, bytes and digest (verified when asked by digest).
    pub async fn manifest_get(
        &self,
        repository: &str,
        reference: &str,
    ) -> Result<Option<(String, Vec<u8>, String)>, Error> {
        let Some((response, path)) = self
            .manifest_request(Method::GET, repository, reference)
            .await?
        else {
            return Ok(None);
        };
        let media_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| self.classify(e))?
            .to_vec();
        let digest = sha256_digest(&bytes);
        if reference.starts_with("sha256:") && reference != digest {
            return Err(Error::DigestMismatch {
                registry: self.host.clone(),
                what: path,
                expected: reference.to_string(),
                actual: digest,
            });
        }
        Ok(Some((media_type, bytes, digest)))
    }

    /// `PUT` a manifest and check the registry stored exactly these bytes.
    pub async fn manifest_put(
        &self,
        repository: &str,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<String, Error> {
        let path = format!("/v2/{repository}/manifests/{reference}");
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_str(media_type).map_err(|_| Error::Protocol {
                registry: self.host.clone(),
                detail: format!("bad media type {media_type}"),
            })?,
        );
        let response = self
            .request(
                Method::PUT,
                &path,
                &push(repository),
                headers,
                Body::Bytes(bytes),
            )
            .await?;
        self.expect_created(&response, &path)?;
        let expected = sha256_digest(bytes);
        let stored = response
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .unwrap_or(&expected)
            .to_string();
        if stored != expected {
            return Err(Error::DigestMismatch {
                registry: self.host.clone(),
                what: path,
                expected,
                actual: stored,
            });
        }
        Ok(expected)
    }

    fn expect_created(&self, response: &Response, path: &str) -> Result<(), Error> {
        if response.status().is_success() {
            Ok(())
        } else {
            Err(Error::Status {
                registry: self.host.clone(),
                method: "PUT".into(),
                path: path.to_string(),
                status: response.status(),
                body: String::new(),
            })
        }
    }

    /// Whether the repository has the blob.
    pub async fn blob_exists(&self, repository: &str, digest: &str) -> Result<bool, Error> {
        let path = format!("/v2/{repository}/blobs/{digest}");
        let response = self
            .request(
                Method::HEAD,
                &path,
                &pull(repository),
                HeaderMap::new(),
                Body::Empty,
            )
            .await?;
        Ok(response.status().is_success())
    }

    /// Download a blob to `dest`, verifying its digest; `progress` gets byte counts.
    pub async fn blob_download(
        &self,
        repository: &str,
        digest: &str,
        dest: &Path,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<u64, Error> {
        let path = format!("/v2/{repository}/blobs/{digest}");
        let mut attempt = 0;
        loop {
            let result = async {
                let response = self
                    .request(
                        Method::GET,
                        &path,
                        &pull(repository),
                        HeaderMap::new(),
                        Body::Empty,
                    )
                    .await?;
                if response.status() == StatusCode::NOT_FOUND {
                    return Err(Error::Protocol {
                        registry: self.host.clone(),
                        detail: format!("blob {digest} is missing from {repository}"),
                    });
                }
                let io = |source| Error::Io {
                    what: dest.display().to_string(),
                    source: Arc::new(source),
                };
                let mut file = tokio::fs::File::create(dest).await.map_err(io)?;
                let mut hasher = Sha256::new();
                let mut size = 0u64;
                let mut stream = response.bytes_stream();
                while let Some(chunk) = stream.next().await {
                    let chunk = chunk.map_err(|e| self.classify(e))?;
                    hasher.update(&chunk);
                    file.write_all(&chunk).await.map_err(io)?;
                    size += chunk.len() as u64;
                    progress(chunk.len() as u64);
                }
                file.flush().await.map_err(io)?;
                let actual = format!("sha256:{}", hex::encode(hasher.finalize()));
                if digest.starts_with("sha256:") && actual != digest {
                    return Err(Error::DigestMismatch {
                        registry: self.host.clone(),
                        what: path.clone(),
                        expected: digest.to_string(),
                        actual,
                    });
                }
                Ok(size)
            }
            .await;
            match result {
                Err(e) if e.transient() && attempt + 1 < self.retry.attempts => {
                    attempt += 1;
                    tokio::time::sleep(self.retry.delay(attempt)).await;
                }
                other => return other,
            }
        }
    }

    /// Mount a blob from another repository of this registry. `false` when the registry
    /// would rather have it uploaded.
    pub async fn blob_mount(
        &self,
        repository: &str,
        digest: &str,
        from: &str,
    ) -> Result<bool, Error> {
        let path = format!("/v2/{repository}/blobs/uploads/?mount={digest}&from={from}");
        let scope = format!("{} {}", push(repository), pull(from));
        let response = self
            .request(Method::POST, &path, &scope, HeaderMap::new(), Body::Empty)
            .await?;
        if response.status() == StatusCode::CREATED {
            return Ok(true);
        }
        if let Some(location) = response
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
        {
            let location = self.absolute(location);
            let _ = self
                .request(
                    Method::DELETE,
                    &location,
                    &push(repository),
                    HeaderMap::new(),
                    Body::Empty,
                )
                .await;
        }
        Ok(false)
    }

    /// Upload a blob from a file (monolithic PUT, streamed); retried from the start.
    pub async fn blob_upload(
        &self,
        repository: &str,
        digest: &str,
        blob: &BlobFile,
    ) -> Result<(), Error> {
        let mut attempt = 0;
        loop {
            let result = async {
                let start = format!("/v2/{repository}/blobs/uploads/");
                let response = self
                    .request(
                        Method::POST,
                        &start,
                        &push(repository),
                        HeaderMap::new(),
                        Body::Empty,
                    )
                    .await?;
                let location = response
                    .headers()
                    .get(LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .ok_or_else(|| Error::Protocol {
                        registry: self.host.clone(),
                        detail: "upload start without a Location".into(),
                    })?;
                let location = self.absolute(location);
                let separator = if location.contains('?') { '&' } else { '?' };
                let target = format!("{location}{separator}digest={digest}");
                let mut headers = HeaderMap::new();
                headers.insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static("application/octet-stream"),
                );
                let response = self
                    .request(
                        Method::PUT,
                        &target,
                        &push(repository),
                        headers,
                        Body::Blob(blob),
                    )
                    .await?;
                self.expect_created(&response, &start)
            }
            .await;
            // A session the registry dropped (cut connection) answers 404: start a new one.
            let lost_session = |e: &Error| {
                matches!(
                    e,
                    Error::Status {
                        status: StatusCode::NOT_FOUND,
                        ..
                    }
                )
            };
            match result {
                Err(e)
                    if (e.transient() || lost_session(&e)) && attempt + 1 < self.retry.attempts =>
                {
                    attempt += 1;
                    tokio::time::sleep(self.retry.delay(attempt)).await;
                }
                other => return other,
            }
        }
    }

    fn absolute(&self, location: &str) -> String {
        if location.starts_with("http://") || location.starts_with("https://") {
            location.to_string()
        } else {
            format!("{}{location}", self.base)
        }
    }
}

fn pull(repository: &str) -> String {
    format!("repository:{repository}:pull")
}

fn push(repository: &str) -> String {
    format!("repository:{repository}:pull,push")
}

fn basic(user: &str, password: &str) -> HeaderValue {
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
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
        detail.chars().take(200).collect()
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

/// `sha256:<hex>` of bytes.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
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
            credentials: Some(("user".into(), "Hunter2!".into())),
            ..Access::default()
        };
        assert!(!format!("{a:?}").contains("Hunter2"));
    }
}
