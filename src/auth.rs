//! Who may do what on the operator listener: named API tokens, each with a
//! scope (`read` < `operate` < `admin`), compared in constant time and never
//! logged. The tokens file (`api.tokens_file`) has one token per line:
//!
//! ```text
//! # name     scope    secret
//! jenkins    operate  4f1c…
//! grafana    read     9b2e…
//! ```
//!
//! A line with the secret alone (the format before scopes) is an `admin`
//! token named `line-N`. The token of `api.token_env` is `admin` and named
//! after the variable; the generated `data_dir/api-token` is `admin` and
//! named `default`.
//!
//! The checks themselves (routes → scope, 401/403) are `http::guard`; this
//! module holds the tokens, the UI's session cookie and the failure counts.

use hmac::{KeyInit, Mac};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

/// What a token may do. Ordered: a scope includes every scope below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    /// GET: systems, profiles, runs, logs, artifacts, events, metrics, UI pages.
    Read,
    /// Runs, power, boot device, netboot (and everything `read` may).
    Operate,
    /// Systems and profiles edits, reload (and everything `operate` may).
    Admin,
}

impl Scope {
    pub const ALL: [Scope; 3] = [Scope::Read, Scope::Operate, Scope::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Operate => "operate",
            Scope::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One API token. `Debug` leaves the secret out.
#[derive(Clone)]
pub struct Token {
    pub name: String,
    pub scope: Scope,
    secret: String,
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("name", &self.name)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

impl Token {
    pub fn new(name: impl Into<String>, scope: Scope, secret: impl Into<String>) -> Token {
        Token {
            name: name.into(),
            scope,
            secret: secret.into(),
        }
    }

    pub fn secret(&self) -> &str {
        &self.secret
    }
}

/// Who made a request: the token's name and scope (put into the request's
/// extensions by the guard; handlers read it for `requested_by` and audit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    pub scope: Scope,
}

/// A line of the tokens file that is not a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenLineError {
    pub line: usize,
    pub reason: String,
}

/// Parse a tokens file (see the module doc). Pure.
pub fn parse_tokens(text: &str) -> Result<Vec<Token>, TokenLineError> {
    let mut out: Vec<Token> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let err = |reason: String| TokenLineError {
            line: i + 1,
            reason,
        };
        let f: Vec<&str> = line.split_whitespace().collect();
        let t = match f.as_slice() {
            [secret] => Token::new(format!("line-{}", i + 1), Scope::Admin, *secret),
            [name, scope, secret] => {
                let scope = Scope::parse(scope).ok_or_else(|| {
                    err(format!(
                        "scope {scope:?} is not one of read, operate, admin"
                    ))
                })?;
                Token::new(*name, scope, *secret)
            }
            _ => {
                return Err(err(
                    "expected `NAME SCOPE SECRET` (or a secret alone, an admin token)".into(),
                ))
            }
        };
        if t.secret.len() < 16 {
            return Err(err(format!(
                "the secret of {:?} is shorter than 16 characters",
                t.name
            )));
        }
        if out.iter().any(|o| o.name == t.name) {
            return Err(err(format!("token name {:?} is used twice", t.name)));
        }
        out.push(t);
    }
    Ok(out)
}

/// Failed-token attempts, by reason (exported as
/// `rackboot_api_auth_failures_total{reason}`).
#[derive(Debug, Default)]
pub struct AuthStats {
    pub missing: AtomicU64,
    pub invalid: AtomicU64,
    pub forbidden: AtomicU64,
}

impl AuthStats {
    pub fn snapshot(&self) -> [(&'static str, u64); 3] {
        [
            ("missing", self.missing.load(Ordering::Relaxed)),
            ("invalid", self.invalid.load(Ordering::Relaxed)),
            ("forbidden", self.forbidden.load(Ordering::Relaxed)),
        ]
    }
}

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// The daemon's tokens, the key of the UI's login cookie and the counts.
pub struct Auth {
    tokens: Vec<Token>,
    key: Vec<u8>,
    pub stats: AuthStats,
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auth")
            .field("tokens", &self.tokens)
            .finish_non_exhaustive()
    }
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Auth {
    /// `key` signs the UI's cookies (random per daemon start).
    pub fn new(tokens: Vec<Token>, key: Vec<u8>) -> Auth {
        Auth {
            tokens,
            key,
            stats: AuthStats::default(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    pub fn tokens(&self) -> &[Token] {
        &self.tokens
    }

    /// The token with this secret. Every token is compared (constant time
    /// in the secret, whatever matches).
    pub fn find(&self, given: &str) -> Option<&Token> {
        if given.is_empty() {
            return None;
        }
        let mut hit = None;
        for t in &self.tokens {
            if ct_eq(t.secret.as_bytes(), given.as_bytes()) && hit.is_none() {
                hit = Some(t);
            }
        }
        hit
    }

    /// HMAC-SHA256 of `purpose|value` under the daemon's key, hex.
    pub fn mac(&self, purpose: &str, value: &str) -> String {
        hmac_hex(&self.key, purpose, value)
    }

    /// The UI login cookie's value for a token: its name and a MAC over name
    /// and secret (the secret itself never reaches the browser).
    pub fn cookie_for(&self, t: &Token) -> String {
        format!(
            "{}.{}",
            hex(&t.name),
            self.mac("auth", &format!("{}|{}", t.name, t.secret))
        )
    }

    /// The token a UI login cookie stands for.
    pub fn from_cookie(&self, v: &str) -> Option<&Token> {
        let (name, mac) = v.split_once('.')?;
        let name = unhex(name)?;
        let t = self.tokens.iter().find(|t| t.name == name)?;
        let want = self.mac("auth", &format!("{}|{}", t.name, t.secret));
        ct_eq(want.as_bytes(), mac.as_bytes()).then_some(t)
    }
}

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<String> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect();
    String::from_utf8(bytes?).ok()
}

/// HMAC-SHA256 of `purpose|value` under `key`, lowercase hex (the UI's
/// CSRF tokens and login cookies).
pub fn hmac_hex(key: &[u8], purpose: &str, value: &str) -> String {
    let mut m = <HmacSha256 as KeyInit>::new_from_slice(key).expect("hmac takes any key");
    m.update(purpose.as_bytes());
    m.update(b"|");
    m.update(value.as_bytes());
    m.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_named_scoped_and_bare_tokens() {
        let t = parse_tokens(
            "# comment\n\njenkins operate 0123456789abcdef0\nbare-secret-0123456789\n  ro read 0123456789abcdefX  \n",
        )
        .unwrap();
        let got: Vec<(&str, Scope, &str)> = t
            .iter()
            .map(|t| (t.name.as_str(), t.scope, t.secret()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("jenkins", Scope::Operate, "0123456789abcdef0"),
                ("line-4", Scope::Admin, "bare-secret-0123456789"),
                ("ro", Scope::Read, "0123456789abcdefX"),
            ]
        );
    }

    #[test]
    fn refuses_bad_lines_with_their_number() {
        for (text, line, word) in [
            ("a writer 0123456789abcdef0", 1, "scope \"writer\""),
            ("\na read", 2, "expected"),
            ("a read short", 1, "shorter than 16"),
            (
                "a read 0123456789abcdef0\na admin 0123456789abcdef1",
                2,
                "used twice",
            ),
            ("a b c d", 1, "expected"),
        ] {
            let e = parse_tokens(text).unwrap_err();
            assert_eq!(e.line, line, "{text}");
            assert!(e.reason.contains(word), "{text}: {}", e.reason);
        }
    }

    #[test]
    fn scopes_are_ordered() {
        assert!(Scope::Read < Scope::Operate && Scope::Operate < Scope::Admin);
        for s in Scope::ALL {
            assert_eq!(Scope::parse(s.as_str()), Some(s));
        }
    }

    #[test]
    fn finds_tokens_and_cookies_and_hides_secrets() {
        let a = Auth::new(
            parse_tokens("x read 0123456789abcdefA\ny admin 0123456789abcdefB").unwrap(),
            b"key".to_vec(),
        );
        assert_eq!(a.find("0123456789abcdefB").unwrap().name, "y");
        assert!(a.find("0123456789abcdefC").is_none());
        assert!(a.find("").is_none());
        let c = a.cookie_for(&a.tokens()[0]);
        assert!(!c.contains("0123456789abcdefA"));
        assert_eq!(a.from_cookie(&c).unwrap().name, "x");
        // Another token's name with x's MAC is refused.
        let forged = format!("{}.{}", hex("y"), c.split_once('.').unwrap().1);
        assert!(a.from_cookie(&forged).is_none());
        let other = Auth::new(a.tokens().to_vec(), b"other key".to_vec());
        assert!(other.from_cookie(&c).is_none());
        assert!(!format!("{a:?}").contains("0123456789abcdef"));
    }
}
