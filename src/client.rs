//! The CLI's client of the operator API: a small blocking HTTP/1.1 client
//! (the CLI makes a handful of requests; no HTTP client crate needed).
//! Where: `--api ADDR` / `RACKBOOT_API`, else `api.listen` of the config.
//! Token: `RACKBOOT_TOKEN`, else `data_dir/api-token` of the config.

use serde_json::Value;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::Path;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("no daemon answering at {0}: {1}")]
    Unreachable(String, String),
    #[error("{0}")]
    Config(String),
    #[error("bad response from the daemon: {0}")]
    Protocol(String),
}

pub struct Client {
    pub addr: SocketAddr,
    token: Option<String>,
}

pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Response {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }
    /// The API's error message, or the body.
    pub fn error_message(&self) -> String {
        let v = self.json();
        match v["error"]["message"].as_str() {
            Some(m) => {
                let mut s = m.to_string();
                if let Some(errs) = v["error"]["errors"].as_array() {
                    for e in errs {
                        s.push_str(&format!(
                            "\n  {}: {}: {}",
                            e["file"].as_str().unwrap_or(""),
                            e["key"].as_str().unwrap_or(""),
                            e["reason"].as_str().unwrap_or("")
                        ));
                    }
                }
                s
            }
            None => format!("HTTP {}: {}", self.status, self.text().trim()),
        }
    }
}

impl Client {
    pub fn new(addr: SocketAddr, token: Option<String>) -> Client {
        Client { addr, token }
    }

    pub fn from_config(dir: &Path, api: Option<&str>) -> Result<Client, ClientError> {
        let settings = crate::config::load_settings(dir).ok();
        let addr_s = match (api, &settings) {
            (Some(a), _) => a.to_string(),
            (None, Some(s)) => s.api_listen.to_string(),
            (None, None) => {
                return Err(ClientError::Config(format!(
                    "cannot read {}/rackboot.toml to find the API; pass --api ADDR",
                    dir.display()
                )))
            }
        };
        let addr = addr_s
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| ClientError::Config(format!("bad API address {addr_s:?}")))?;
        let token = match &settings {
            Some(s) => api_token(s),
            None => std::env::var("RACKBOOT_TOKEN").ok(),
        };
        Ok(Client { addr, token })
    }

    pub fn get(&self, path: &str) -> Result<Response, ClientError> {
        self.request("GET", path, None)
    }

    pub fn post(&self, path: &str, body: &Value) -> Result<Response, ClientError> {
        self.request("POST", path, Some(body))
    }

    pub fn put(&self, path: &str, body: &Value) -> Result<Response, ClientError> {
        self.request("PUT", path, Some(body))
    }

    pub fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Response, ClientError> {
        let unreachable =
            |e: std::io::Error| ClientError::Unreachable(self.addr.to_string(), e.to_string());
        let mut s =
            TcpStream::connect_timeout(&self.addr, Duration::from_secs(5)).map_err(unreachable)?;
        s.set_read_timeout(Some(Duration::from_secs(120)))
            .map_err(unreachable)?;
        let body = body.map(|b| b.to_string());
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
            self.addr
        );
        if let Some(t) = &self.token {
            req.push_str(&format!("Authorization: Bearer {t}\r\n"));
        }
        if let Some(b) = &body {
            req.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                b.len()
            ));
        }
        req.push_str("\r\n");
        if let Some(b) = &body {
            req.push_str(b);
        }
        s.write_all(req.as_bytes()).map_err(unreachable)?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).map_err(unreachable)?;
        parse_response(&raw)
    }
}

fn parse_response(raw: &[u8]) -> Result<Response, ClientError> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| ClientError::Protocol("no header end".into()))?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let status: u16 = head
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| ClientError::Protocol("no status line".into()))?;
    let chunked = head
        .lines()
        .any(|l| l.to_ascii_lowercase().starts_with("transfer-encoding:") && l.contains("chunked"));
    let mut body = raw[split + 4..].to_vec();
    if chunked {
        body = dechunk(&body);
    }
    Ok(Response { status, body })
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(nl) = b.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(
            String::from_utf8_lossy(&b[..nl])
                .split(';')
                .next()
                .unwrap_or("")
                .trim(),
            16,
        )
        .unwrap_or(0);
        if size == 0 || b.len() < nl + 2 + size {
            break;
        }
        out.extend_from_slice(&b[nl + 2..nl + 2 + size]);
        b = &b[(nl + 4 + size).min(b.len())..];
    }
    out
}

/// The token the CLI presents: `RACKBOOT_TOKEN`, then the configured
/// `api.token_env`, then the first token of `api.tokens_file`, then the one
/// the daemon generated into `data_dir/api-token`.
pub fn api_token(settings: &crate::config::Settings) -> Option<String> {
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
        if let Ok(text) = std::fs::read_to_string(f) {
            if let Some(l) = text
                .lines()
                .map(str::trim)
                .find(|l| !l.is_empty() && !l.starts_with('#'))
            {
                return Some(l.to_string());
            }
        }
    }
    std::fs::read_to_string(settings.data_dir.join("api-token"))
        .ok()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
}
