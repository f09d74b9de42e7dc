//! The one client of the operator API, for the CLI and the integration tests:
//! blocking HTTP/1.1 over `ureq` 3 (already here for Redfish).
//! Where: [`api_addr`] (`--api ADDR` / `RACKBOOT_API`, else `api.listen` of
//! the config). Token: [`api_token`] (`RACKBOOT_TOKEN`, else the configured
//! token sources, else `data_dir/api-token`).

use crate::config::Settings;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing answered. `listening` is false when the address refused the
    /// connection or the connect timed out: no daemon runs there.
    #[error("no daemon answering at {addr}: {reason}")]
    Unreachable {
        addr: String,
        reason: String,
        listening: bool,
    },
    #[error("{0}")]
    Config(String),
    /// The daemon answered, but its certificate is not trusted here.
    #[error("TLS: {0}")]
    Tls(String),
    #[error("bad response from the daemon: {0}")]
    Protocol(String),
}

/// Where the operator API is: `api` (`--api ADDR`, which clap also fills from
/// `RACKBOOT_API`), else `api.listen` of the settings. An unspecified listen
/// address (`0.0.0.0`, `::`) is reached on loopback.
pub fn api_addr(api: Option<&str>, settings: Option<&Settings>) -> Result<SocketAddr, ClientError> {
    let mut addr = match (api, settings) {
        (Some(a), _) => a
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| ClientError::Config(format!("bad API address {a:?}")))?,
        (None, Some(s)) => s.api_listen,
        (None, None) => {
            return Err(ClientError::Config(
                "no API address: pass --api ADDR".into(),
            ))
        }
    };
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => addr.set_ip(Ipv4Addr::LOCALHOST.into()),
        IpAddr::V6(ip) if ip.is_unspecified() => addr.set_ip(Ipv6Addr::LOCALHOST.into()),
        _ => {}
    }
    Ok(addr)
}

/// The agent configuration of every client: no proxy from the environment
/// (the API is local or on a management net), statuses as values, no
/// redirects, `read_timeout` per read (a followed log may pause between reads).
pub fn agent_config(read_timeout: Duration) -> ureq::config::Config {
    agent_builder(read_timeout).build()
}

fn agent_builder(
    read_timeout: Duration,
) -> ureq::config::ConfigBuilder<ureq::typestate::AgentScope> {
    ureq::Agent::config_builder()
        .proxy(None)
        .http_status_as_error(false)
        .max_redirects(0)
        .user_agent(concat!("rackboot/", env!("CARGO_PKG_VERSION")))
        .timeout_connect(Some(Duration::from_secs(5)))
        .timeout_per_read(Some(read_timeout))
        .timeout_per_write(Some(read_timeout))
}

/// The CLI's `--ca-file` / `RACKBOOT_CA` (set once by `cli::main`).
static CA_FILE: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();

/// Trust only the certificates in `path` (PEM) for the API's TLS.
pub fn set_ca_file(path: std::path::PathBuf) {
    let _ = CA_FILE.set(path);
}

/// Which certificates a TLS client trusts.
pub enum Roots {
    /// These (a lab CA, or a self-signed daemon certificate).
    Pem(Vec<ureq::tls::Certificate<'static>>),
    /// The public web roots.
    Public,
}

/// The certificates of a PEM file (a CA bundle or a single certificate).
pub fn read_certs(path: &Path) -> Result<Vec<ureq::tls::Certificate<'static>>, ClientError> {
    let bad = |e: String| ClientError::Config(format!("CA file {}: {e}", path.display()));
    let pem = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        if let ureq::tls::PemItem::Certificate(c) = item.map_err(|e| bad(e.to_string()))? {
            certs.push(c);
        }
    }
    if certs.is_empty() {
        return Err(bad("no CERTIFICATE in it".into()));
    }
    Ok(certs)
}

pub struct Client {
    pub addr: SocketAddr,
    /// `http://ADDR` or `https://HOST:PORT` (the name the certificate names).
    base: String,
    token: Option<String>,
    agent: ureq::Agent,
    /// Sent as `X-Rackboot-Client` (the audit trail's `via`).
    via: Option<&'static str>,
}

/// A whole response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as untyped JSON (`Null` when it is not JSON).
    pub fn value(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// The body as one of the `api` types.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, ClientError> {
        serde_json::from_slice(&self.body).map_err(|e| {
            ClientError::Protocol(format!(
                "HTTP {}: {e}: {}",
                self.status,
                self.text().chars().take(200).collect::<String>()
            ))
        })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The API's error message with its per-file reasons, or the status and body.
    pub fn error_message(&self) -> String {
        match serde_json::from_slice::<crate::api::ErrorBody>(&self.body) {
            Ok(b) => {
                let mut s = b.error.message;
                for e in b.error.errors.iter().flatten() {
                    s.push_str(&format!("\n  {}: {}: {}", e.file, e.key, e.reason));
                }
                s
            }
            Err(_) => format!("HTTP {}: {}", self.status, self.text().trim()),
        }
    }
}

/// A response whose body is read as it arrives (a followed log, the event stream).
pub struct Streaming {
    pub status: u16,
    body: ureq::BodyReader<'static>,
}

impl Streaming {
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

impl Read for Streaming {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.body.read(buf)
    }
}

impl Client {
    /// The CLI's client: 120 s per read.
    pub fn new(addr: SocketAddr, token: Option<String>) -> Client {
        let agent = ureq::Agent::new_with_config(agent_config(Duration::from_secs(120)));
        Client {
            via: Some("cli"),
            ..Client::with_agent(addr, token, agent)
        }
    }

    /// A client on a given agent (tests: a shorter timeout, a source address).
    pub fn with_agent(addr: SocketAddr, token: Option<String>, agent: ureq::Agent) -> Client {
        Client {
            addr,
            base: format!("http://{addr}"),
            token,
            agent,
            via: None,
        }
    }

    /// Over TLS to `host` (the certificate's name; an address is fine when
    /// the certificate lists it), trusting `roots`.
    pub fn with_tls(
        addr: SocketAddr,
        host: &str,
        token: Option<String>,
        roots: Roots,
        read_timeout: Duration,
    ) -> Client {
        let mut tls = ureq::tls::TlsConfig::builder();
        if let Roots::Pem(certs) = roots {
            tls = tls.root_certs(ureq::tls::RootCerts::new_with_certs(&certs));
        }
        let config = agent_builder(read_timeout).tls_config(tls.build()).build();
        let agent = ureq::Agent::new_with_config(config);
        Client {
            base: format!("https://{host}"),
            ..Client::with_agent(addr, token, agent)
        }
    }

    /// The API of the daemon configured in `dir` (or at `api`), with the CLI's token.
    pub fn from_config(dir: &Path, api: Option<&str>) -> Result<Client, ClientError> {
        let settings = crate::config::load_settings(dir).ok();
        if api.is_none() && settings.is_none() {
            return Err(ClientError::Config(format!(
                "cannot read {}/rackboot.toml to find the API; pass --api ADDR",
                dir.display()
            )));
        }
        // `--api https://HOST:PORT` / `http://...` say the scheme; without
        // one, TLS when the config turns it on or a CA file is given.
        let (scheme, api) = match api {
            Some(a) if a.starts_with("https://") => (Some(true), Some(&a[8..])),
            Some(a) if a.starts_with("http://") => (Some(false), Some(&a[7..])),
            a => (None, a),
        };
        let api = api.map(|a| a.trim_end_matches('/'));
        let addr = api_addr(api, settings.as_ref())?;
        let token = match &settings {
            Some(s) => api_token(s),
            None => std::env::var("RACKBOOT_TOKEN").ok(),
        };
        let own_cert = settings
            .as_ref()
            .and_then(|s| s.api_tls.as_ref())
            .map(|t| t.cert.clone());
        let ca = CA_FILE.get().cloned();
        let tls = scheme.unwrap_or(own_cert.is_some() || ca.is_some());
        if !tls {
            return Ok(Client::new(addr, token));
        }
        // Trust: the CA file given, else (on the daemon's host) its own
        // certificate, else the public roots.
        let roots = match ca.or(own_cert) {
            Some(f) => Roots::Pem(read_certs(&f)?),
            None => Roots::Public,
        };
        let host = api.map(str::to_string).unwrap_or_else(|| addr.to_string());
        Ok(Client {
            via: Some("cli"),
            ..Client::with_tls(addr, &host, token, roots, Duration::from_secs(120))
        })
    }

    pub fn get(&self, path: &str) -> Result<Response, ClientError> {
        self.request("GET", path, &[], None)
    }

    pub fn post(&self, path: &str, body: &impl Serialize) -> Result<Response, ClientError> {
        self.send_json("POST", path, body)
    }

    pub fn put(&self, path: &str, body: &impl Serialize) -> Result<Response, ClientError> {
        self.send_json("PUT", path, body)
    }

    pub fn delete(&self, path: &str) -> Result<Response, ClientError> {
        self.request("DELETE", path, &[], None)
    }

    /// `method path` with `body` as JSON.
    pub fn send_json(
        &self,
        method: &str,
        path: &str,
        body: &impl Serialize,
    ) -> Result<Response, ClientError> {
        let b = serde_json::to_vec(body).map_err(|e| ClientError::Protocol(e.to_string()))?;
        self.request(method, path, &[], Some(&b))
    }

    /// Any request; a body is sent as `application/json`. Headers given here
    /// come after (and so override) the client's `Authorization`.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Result<Response, ClientError> {
        let mut r = self.call(method, path, headers, body)?;
        let status = r.status().as_u16();
        let headers = r
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let mut body = Vec::new();
        r.body_mut()
            .as_reader()
            .read_to_end(&mut body)
            .map_err(|e| self.io_error(e))?;
        Ok(Response {
            status,
            headers,
            body,
        })
    }

    /// A GET whose body is read as it arrives.
    pub fn stream(&self, path: &str) -> Result<Streaming, ClientError> {
        self.stream_with(path, &[])
    }

    /// [`Client::stream`] with extra request headers (e.g. `Last-Event-ID`).
    pub fn stream_with(
        &self,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<Streaming, ClientError> {
        let r = self.call("GET", path, headers, None)?;
        Ok(Streaming {
            status: r.status().as_u16(),
            body: r.into_body().into_reader(),
        })
    }

    /// GET `path` as an `api` type; a refusal is its message.
    pub fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, ApiFailure> {
        let r = self.get(path)?;
        if !r.ok() {
            return Err(ApiFailure::Refused(r));
        }
        Ok(r.json()?)
    }

    /// `method path` with a JSON body, the answer as an `api` type.
    pub fn call_json<T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: &impl Serialize,
    ) -> Result<T, ApiFailure> {
        let r = self.send_json(method, path, body)?;
        if !r.ok() {
            return Err(ApiFailure::Refused(r));
        }
        Ok(r.json()?)
    }

    fn call(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Result<ureq::http::Response<ureq::Body>, ClientError> {
        let mut b = ureq::http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            b = b.header("Authorization", format!("Bearer {t}"));
        }
        if let Some(v) = self.via {
            b = b.header(crate::api::CLIENT_HEADER, v);
        }
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let r = match body {
            Some(body) => {
                let req = b
                    .header("Content-Type", "application/json")
                    .body(body.to_vec())
                    .map_err(|e| ClientError::Protocol(e.to_string()))?;
                self.agent.run(req)
            }
            None => {
                let req = b
                    .body(())
                    .map_err(|e| ClientError::Protocol(e.to_string()))?;
                self.agent.run(req)
            }
        };
        r.map_err(|e| self.error(e))
    }

    fn io_error(&self, e: std::io::Error) -> ClientError {
        // ureq wraps its own errors in io::Error while a body is read.
        if e.get_ref().is_some_and(|i| i.is::<ureq::Error>()) {
            if let Some(Ok(u)) = e.into_inner().map(|i| i.downcast::<ureq::Error>()) {
                return self.error(*u);
            }
            return self.unreachable("body read failed".into(), true);
        }
        self.unreachable(e.to_string(), true)
    }

    fn unreachable(&self, reason: String, listening: bool) -> ClientError {
        ClientError::Unreachable {
            addr: self.addr.to_string(),
            reason,
            listening,
        }
    }

    fn error(&self, e: ureq::Error) -> ClientError {
        use std::io::ErrorKind;
        match e {
            ureq::Error::Io(io) if io.get_ref().is_some_and(|i| i.is::<rustls::Error>()) => {
                ClientError::Tls(format!(
                    "{io} (trust the daemon's CA with --ca-file or RACKBOOT_CA)"
                ))
            }
            ureq::Error::Rustls(e) => ClientError::Tls(format!(
                "{e} (trust the daemon's CA with --ca-file or RACKBOOT_CA)"
            )),
            ureq::Error::Io(io) => {
                let listening = !matches!(
                    io.kind(),
                    ErrorKind::ConnectionRefused | ErrorKind::TimedOut
                );
                self.unreachable(io.to_string(), listening)
            }
            ureq::Error::Timeout(t) => {
                let connect = matches!(t, ureq::Timeout::Connect | ureq::Timeout::Resolve);
                self.unreachable(format!("timed out ({t})"), !connect)
            }
            ureq::Error::ConnectionFailed | ureq::Error::HostNotFound => {
                self.unreachable(e.to_string(), false)
            }
            other => ClientError::Protocol(other.to_string()),
        }
    }
}

/// A typed call that did not give its answer.
#[derive(Debug)]
pub enum ApiFailure {
    /// No answer, or not the expected one.
    Client(ClientError),
    /// The daemon answered with a non-2xx status.
    Refused(Response),
}

impl From<ClientError> for ApiFailure {
    fn from(e: ClientError) -> Self {
        ApiFailure::Client(e)
    }
}

impl std::fmt::Display for ApiFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApiFailure::Client(e) => e.fmt(f),
            ApiFailure::Refused(r) => f.write_str(&r.error_message()),
        }
    }
}

/// The token the CLI presents: `RACKBOOT_TOKEN`, then the configured
/// `api.token_env`, then the strongest token of `api.tokens_file`, then the one
/// the daemon generated into `data_dir/api-token`.
pub fn api_token(settings: &Settings) -> Option<String> {
    let env = |v: &str| {
        std::env::var(v)
            .ok()
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
    };
    if let Some(t) = env("RACKBOOT_TOKEN") {
        return Some(t);
    }
    if let Some(t) = settings.api_tokens.env.as_deref().and_then(env) {
        return Some(t);
    }
    if let Some(f) = &settings.api_tokens.file {
        // The strongest token of the file (the first of that scope).
        if let Ok(tokens) = std::fs::read_to_string(f).map(|t| crate::auth::parse_tokens(&t)) {
            if let Some(t) = tokens
                .unwrap_or_default()
                .iter()
                .rev()
                .max_by_key(|t| t.scope)
            {
                return Some(t.secret().to_string());
            }
        }
    }
    std::fs::read_to_string(settings.data_dir.join("api-token"))
        .ok()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
}
