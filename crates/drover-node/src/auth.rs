//! Who may make requests of a node, and what a browser may do there.
//!
//! Every node requires credentials, on loopback too: a node accepts its **local token**, made at
//! first start in `DATA_DIR/token` (mode 0600, so only the node's user can read it, and the CLI
//! finds it there as it finds the address), and the **shared token** a cluster is configured with
//! (`DROVER_TOKEN`, `--token-file`, drover.toml), if any. A request shows one of them as
//! `Authorization: Bearer TOKEN`, or — the web page, whose `EventSource` cannot set headers — as
//! the `HttpOnly`, `SameSite=Strict` cookie that the login link `/?token=…` sets.
//!
//! Browsers get more rules, because a page on any site can make the user's browser send requests
//! to `127.0.0.1` (cross-site request forgery) and a name of the attacker's can be made to resolve
//! to it (DNS rebinding). [`guard`] therefore, before anything else:
//! - refuses a `Host` that is not one of the node's own names (403): rebinding sends the
//!   attacker's name;
//! - refuses an `Origin` other than the node's own (403), cookie or not;
//! - accepts the cookie only on same-origin requests (`Sec-Fetch-Site`), never on a cross-site one;
//! - refuses a `POST` whose body is not `application/json` (415): the kinds of body a browser may
//!   send cross-site without asking first (text, forms, multipart) are never accepted;
//! - stamps every answer with `X-Content-Type-Options: nosniff`, `X-Frame-Options: DENY` and
//!   `Referrer-Policy: no-referrer`; the page also gets a strict Content-Security-Policy.
//!
//! The page itself (`/` and its script and style) holds no data and is served to anyone who gets
//! past the `Host` and `Origin` rules, so that it can say how to log in.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::api::ApiError;

/// The page's Content-Security-Policy: its own script and style only, requests to the node only,
/// never framed.
pub const PAGE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     connect-src 'self'; img-src 'self'; form-action 'self'; base-uri 'none'; \
     frame-ancestors 'none'";

/// The tokens a node accepts.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// This node's own token, from `DATA_DIR/token`.
    local: Arc<str>,
    /// The token shared by a cluster and its remote clients, when one is configured.
    shared: Option<Arc<str>>,
}

/// The rule for a shared token (`DROVER_TOKEN`, `--token-file`, drover.toml): at least
/// [`crate::MIN_TOKEN_LEN`] printable characters, no spaces. The local token, made by the
/// node itself, is 64 hex digits.
pub fn check_token(token: &str) -> Result<(), String> {
    if token.len() < crate::MIN_TOKEN_LEN {
        return Err(format!(
            "is {} bytes long; it must be at least {} (for example `openssl rand -hex 32`)",
            token.len(),
            crate::MIN_TOKEN_LEN
        ));
    }
    if !token.chars().all(|c| c.is_ascii_graphic()) {
        return Err("must be printable ASCII without spaces".to_string());
    }
    Ok(())
}

impl Credentials {
    /// The node's local token and, if configured, the cluster's shared one.
    pub fn new(local: String, shared: Option<String>) -> Self {
        Self {
            local: Arc::from(local),
            shared: shared.map(Arc::from),
        }
    }

    /// Whether `offered` is one of the node's tokens (compared in constant time).
    pub fn accepts(&self, offered: &str) -> bool {
        let local = token_matches(offered, &self.local);
        let shared = self
            .shared
            .as_deref()
            .is_some_and(|t| token_matches(offered, t));
        local | shared
    }

    /// The token this node shows other nodes (to fetch logs they hold): the shared one.
    pub fn shared(&self) -> Option<&str> {
        self.shared.as_deref()
    }
}

/// Whom a node answers and how: its tokens, the names it answers to, its cookie.
#[derive(Debug, Clone)]
pub struct AccessPolicy {
    credentials: Credentials,
    /// Host names (lowercase, without port) besides `localhost` and loopback addresses.
    names: Vec<String>,
    /// Whether any IP address literal is a valid `Host` (the node listens beyond loopback).
    any_ip: bool,
    /// The cookie's name: per port, so that two nodes on one machine keep separate logins
    /// (browsers share cookies between ports of one host).
    cookie: String,
}

impl AccessPolicy {
    /// The policy of a node listening on `listen` (its real address, port included), that also
    /// answers to `allowed_hosts` (`--allow-host`).
    pub fn new(credentials: Credentials, listen: SocketAddr, allowed_hosts: &[String]) -> Self {
        let any_ip = !listen.ip().is_loopback();
        let mut names: Vec<String> = allowed_hosts.iter().map(|h| h.to_lowercase()).collect();
        if any_ip {
            // Beyond loopback, the machine's own names reach it too.
            let short = crate::datadir::hostname().to_lowercase();
            names.push(format!("{short}.local"));
            names.push(short);
            // With its domain (`mac.lan`), when the OS has one.
            if let Some(full) = crate::datadir::os_hostname().filter(|n| n.contains('.')) {
                names.push(full.to_lowercase());
            }
        }
        Self {
            credentials,
            names,
            any_ip,
            cookie: format!("drover_token_{}", listen.port()),
        }
    }

    /// The tokens.
    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    /// The name of the login cookie.
    pub fn cookie_name(&self) -> &str {
        &self.cookie
    }

    /// Whether `host` (a `Host` header: name or address, with or without port) names this node.
    pub fn host_allowed(&self, host: &str) -> bool {
        let name = host_name(host).to_lowercase();
        if name == "localhost" || name.ends_with(".localhost") {
            return true;
        }
        if let Ok(ip) = name
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
        {
            return ip.is_loopback() || self.any_ip;
        }
        self.names.contains(&name)
    }

    /// The login cookie for `token`.
    fn login_cookie(&self, token: &str) -> String {
        format!(
            "{}={}; Path=/; HttpOnly; SameSite=Strict",
            self.cookie,
            percent_encode(token)
        )
    }

    /// The token a request carries: its bearer header, else its login cookie (`via_cookie`).
    fn offered(&self, headers: &HeaderMap) -> Option<(String, bool)> {
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(|t| (t.trim().to_string(), false));
        bearer.or_else(|| {
            headers
                .get_all(header::COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(';'))
                .find_map(|c| {
                    let (name, value) = c.trim().split_once('=')?;
                    (name == self.cookie).then(|| (percent_decode(value), true))
                })
        })
    }
}

/// The part of a `Host` header before its port (`[::1]:7878` → `[::1]`).
fn host_name(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |end| &host[..=end]);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name,
        _ => host,
    }
}

/// Whether `offered` is `token`, in time that depends only on their lengths (so a wrong guess
/// says nothing about how much of it was right).
pub fn token_matches(offered: &str, token: &str) -> bool {
    let (a, b) = (offered.as_bytes(), token.as_bytes());
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= usize::from(x ^ y);
    }
    diff == 0
}

/// Encodes every byte outside RFC 3986's unreserved set, so that any token is a valid cookie
/// value or URL query.
pub fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Undoes [`percent_encode`].
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(hi), Some(lo)) => {
                out.push(u8::try_from(hi * 16 + lo).unwrap_or(b'?'));
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The paths served without credentials: the page and its script and style.
fn is_page(path: &str) -> bool {
    matches!(path, "/" | "/web/app.js" | "/web/app.css" | "/favicon.ico")
}

/// The middleware in front of every route: names, origins, credentials, body types, and the
/// headers every answer carries (see the module's documentation).
pub async fn guard(
    State(policy): State<Arc<AccessPolicy>>,
    request: Request,
    next: axum::middleware::Next,
) -> Response {
    let mut response = match check(&policy, &request) {
        Ok(()) => next.run(request).await,
        Err(refusal) => refusal.into_response(),
    };
    let headers = response.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

/// Why a request is refused, if it is.
fn check(policy: &AccessPolicy, request: &Request) -> Result<(), ApiError> {
    let headers = request.headers();
    // HTTP/1.1 requires Host; without one (HTTP/1.0) there is no name to have been rebound.
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    if let Some(host) = host.filter(|h| !policy.host_allowed(h)) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            None,
            format!(
                "this node does not answer to the name `{}` (a page on another site may have \
                 pointed it here); serve --allow-host NAME adds a name",
                host_name(host)
            ),
        ));
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let own = host.is_some_and(|host| {
            origin
                .to_str()
                .ok()
                .and_then(|o| o.strip_prefix("http://").or(o.strip_prefix("https://")))
                .is_some_and(|o| o.eq_ignore_ascii_case(host))
        });
        if !own {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                None,
                "requests from another site's pages are refused",
            ));
        }
    }
    if is_page(request.uri().path()) {
        return Ok(());
    }
    let Some((offered, via_cookie)) = policy.offered(headers) else {
        return Err(unauthorized());
    };
    if via_cookie {
        // The login cookie stands for the page, so it counts only on the page's own requests;
        // browsers that send no Sec-Fetch-Site are covered by the Origin rule above.
        let site = headers
            .get("sec-fetch-site")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("same-origin");
        if site != "same-origin" && site != "none" {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                None,
                "the login cookie is accepted only on this node's own page",
            ));
        }
    }
    if !policy.credentials.accepts(&offered) {
        return Err(unauthorized());
    }
    if request.method() == Method::POST && !is_json(headers) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            None,
            "a POST body must be JSON, sent as Content-Type: application/json",
        ));
    }
    Ok(())
}

fn unauthorized() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        None,
        "this node requires its token: Authorization: Bearer TOKEN. The node's own user finds it \
         in the data dir (the CLI reads it from there); other machines use the cluster's shared \
         token (DROVER_TOKEN, --token-file); a browser opens the link `drover web` prints",
    )
}

/// Whether the request says its body is JSON (`application/json`, parameters allowed).
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"))
}

/// `GET /?token=…`, the login link: a right token sets the login cookie and sends the browser to
/// `/` (so the token leaves the address bar and the history); a wrong one is refused.
pub fn login(policy: &AccessPolicy, token: &str) -> Response {
    if !policy.credentials.accepts(token) {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::CACHE_CONTROL, "no-store")],
            "this is not this node's token: run `drover web` for a fresh login link\n",
        )
            .into_response();
    }
    let mut response = (
        StatusCode::SEE_OTHER,
        [(header::LOCATION, "/"), (header::CACHE_CONTROL, "no-store")],
    )
        .into_response();
    if let Ok(cookie) = HeaderValue::from_str(&policy.login_cookie(token)) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(listen: &str, allowed: &[&str]) -> AccessPolicy {
        let allowed: Vec<String> = allowed.iter().map(|s| s.to_string()).collect();
        AccessPolicy::new(
            Credentials::new("local-token".into(), Some("shared-token".into())),
            listen.parse().expect("addr"),
            &allowed,
        )
    }

    #[test]
    fn only_the_exact_token_matches() {
        assert!(token_matches("s3cret-token", "s3cret-token"));
        assert!(!token_matches("s3cret-tokeN", "s3cret-token"));
        assert!(
            !token_matches("s3cret", "s3cret-token"),
            "a prefix is not the token"
        );
        assert!(!token_matches("s3cret-token-and-more", "s3cret-token"));
        assert!(!token_matches("", "s3cret-token"));
    }

    #[test]
    fn both_the_local_and_the_shared_token_are_accepted() {
        let p = policy("127.0.0.1:7878", &[]);
        assert!(p.credentials().accepts("local-token"));
        assert!(p.credentials().accepts("shared-token"));
        assert!(!p.credentials().accepts("other"));
        assert_eq!(p.credentials().shared(), Some("shared-token"));
        let alone = Credentials::new("only".into(), None);
        assert!(alone.accepts("only") && !alone.accepts(""));
    }

    #[test]
    fn a_loopback_node_answers_to_loopback_names_only() {
        let p = policy("127.0.0.1:7878", &["drover.example"]);
        for host in [
            "127.0.0.1:7878",
            "localhost:7878",
            "[::1]:7878",
            "LOCALHOST",
            "127.0.0.2",
        ] {
            assert!(p.host_allowed(host), "{host}");
        }
        assert!(p.host_allowed("drover.example:7878"), "an allowed name");
        for host in [
            "evil.example",
            "evil.example:7878",
            "192.168.1.5:7878",
            "[fe80::1]:7878",
        ] {
            assert!(!p.host_allowed(host), "{host}");
        }
    }

    #[test]
    fn a_node_beyond_loopback_answers_to_its_addresses_and_host_name() {
        let p = policy("0.0.0.0:7878", &[]);
        let me = crate::datadir::hostname();
        assert!(p.host_allowed("192.168.1.5:7878"));
        assert!(p.host_allowed("[fe80::1]:7878"));
        assert!(p.host_allowed(&format!("{me}:7878")));
        assert!(p.host_allowed(&format!("{}.local", me.to_uppercase())));
        assert!(!p.host_allowed("evil.example:7878"));
    }

    #[test]
    fn the_login_cookie_is_per_port_http_only_and_strict() {
        let p = policy("127.0.0.1:7879", &[]);
        assert_eq!(p.cookie_name(), "drover_token_7879");
        let answer = login(&p, "local-token");
        assert_eq!(answer.status(), StatusCode::SEE_OTHER);
        let cookie = answer.headers()[header::SET_COOKIE]
            .to_str()
            .expect("ascii");
        assert_eq!(
            cookie,
            "drover_token_7879=local-token; Path=/; HttpOnly; SameSite=Strict"
        );
        assert_eq!(answer.headers()[header::LOCATION], "/");
        let refused = login(&p, "guess");
        assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
        assert!(refused.headers().get(header::SET_COOKIE).is_none());
    }

    #[test]
    fn any_token_survives_the_cookie() {
        for token in ["plain-token", "a;b c=d%e/f", "ü"] {
            assert_eq!(percent_decode(&percent_encode(token)), token);
            assert!(!percent_encode(token).contains([';', ' ', '=']));
        }
        assert_eq!(percent_decode("bad%zz"), "bad%zz");
    }

    #[test]
    fn host_names_lose_their_port() {
        assert_eq!(host_name("a.example:80"), "a.example");
        assert_eq!(host_name("[::1]:7878"), "[::1]");
        assert_eq!(host_name("[::1]"), "[::1]");
        assert_eq!(host_name("a.example"), "a.example");
    }
}
