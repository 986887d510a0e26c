//! A token server for registry:2 in token-auth mode (distribution's token
//! spec), on a free 127.0.0.1 port, one thread per connection.
//!
//! Its tokens are JWTs signed as distribution 2.8 verifies them: RS256,
//! with an `x5c` header holding the signing certificate, which a CA made
//! with `openssl` at start-up signed; the registry trusts that CA through
//! `rootcertbundle`. Signing shells out to `openssl dgst -sha256 -sign`.
//!
//! It answers the token spec's `GET /token?service=&scope=&account=`
//! (basic credentials checked against its users; `offline_token=true`
//! adds a refresh token) and OAuth2's `POST /token` with
//! `grant_type=refresh_token` or `password`. Each user gets, per requested
//! scope, only the actions its grants allow; tokens expire after the
//! configured number of seconds. Every request is recorded (method, user,
//! scopes, grant) for tests to assert on.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;

use super::require;

/// One user: its password, and `(repository or "*", allowed actions)`.
pub struct User {
    pub name: &'static str,
    pub password: &'static str,
    pub grants: &'static [(&'static str, &'static str)],
}

/// A token request as the server saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// `GET` or `POST`.
    pub method: String,
    /// The user the request authenticated as (credentials or refresh
    /// token), if any.
    pub user: Option<String>,
    /// Every scope asked for, in order.
    pub scopes: Vec<String>,
    /// `grant_type` of a POST.
    pub grant_type: Option<String>,
    /// Whether a refresh token was asked for (`offline_token=true`).
    pub offline: bool,
    /// The HTTP status answered.
    pub status: u16,
}

pub const SERVICE: &str = "hoist-test-registry";
const ISSUER: &str = "hoist-test-token-server";

struct State {
    users: Vec<User>,
    /// Whether `POST /token` (OAuth2) is served; without it, a refresh
    /// token is accepted as the password of a GET's basic credentials.
    oauth: bool,
    expires_in: u64,
    seen: Vec<Seen>,
    /// Refresh token -> user name.
    refresh_tokens: HashMap<String, String>,
    key: PathBuf,
    /// base64 DER of the signing certificate, then of the CA.
    x5c: Vec<String>,
}

pub struct TokenServer {
    pub addr: String,
    dir: tempfile::TempDir,
    state: Arc<Mutex<State>>,
}

impl TokenServer {
    /// Starts a server whose tokens last `expires_in` seconds.
    pub fn start(users: Vec<User>, expires_in: u64) -> TokenServer {
        TokenServer::start_with(users, expires_in, true)
    }

    /// [`TokenServer::start`], without an OAuth2 endpoint when `oauth` is
    /// false: `POST /token` answers 405.
    pub fn start_with(users: Vec<User>, expires_in: u64, oauth: bool) -> TokenServer {
        let openssl = require("openssl", "openssl");
        let dir = tempfile::tempdir().unwrap();
        let path = |name: &str| dir.path().join(name);
        crate::support::signed_certificate(
            dir.path(),
            "/CN=hoist test token CA",
            "signer",
            "/CN=hoist test token signer",
            None,
        );
        let der = |pem: &str| {
            let out = Command::new(&openssl)
                .current_dir(dir.path())
                .args(["x509", "-in", pem, "-outform", "DER"])
                .output()
                .unwrap();
            assert!(out.status.success(), "openssl x509 -outform DER {pem}");
            base64::engine::general_purpose::STANDARD.encode(out.stdout)
        };
        let x5c = vec![der("signer.pem"), der("ca.pem")];
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let state = Arc::new(Mutex::new(State {
            users,
            oauth,
            expires_in,
            seen: Vec::new(),
            refresh_tokens: HashMap::new(),
            key: path("signer.key"),
            x5c,
        }));
        let shared = state.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let state = shared.clone();
                std::thread::spawn(move || serve(stream, &state));
            }
        });
        TokenServer { addr, dir, state }
    }

    /// The `auth:` line of a registry configuration trusting this server.
    pub fn registry_config(&self) -> String {
        self.registry_config_via(&self.addr)
    }

    /// [`TokenServer::registry_config`] with the realm on `host` (a
    /// `support::proxy` forwarding to this server).
    pub fn registry_config_via(&self, host: &str) -> String {
        format!(
            "auth: {{token: {{realm: \"http://{host}/token\", service: {SERVICE}, issuer: {ISSUER}, \
             rootcertbundle: {}}}}}",
            self.ca().display()
        )
    }

    /// The CA the registry trusts.
    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// Every request so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }

    /// Forgets the requests seen so far.
    pub fn clear(&self) {
        self.state.lock().unwrap().seen.clear();
    }
}

fn serve(stream: TcpStream, state: &Mutex<State>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_owned();
    let target = parts.next().unwrap_or("").to_owned();
    let mut authorization = None;
    let mut length = 0usize;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).unwrap_or(0) == 0 {
            return;
        }
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.eq_ignore_ascii_case("authorization") {
                authorization = Some(value.trim().to_owned());
            } else if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0u8; length];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let params = if method == "POST" {
        form(&String::from_utf8_lossy(&body))
    } else {
        form(query)
    };
    let (status, reply) = if path == "/token" {
        answer(state, &method, authorization.as_deref(), &params)
    } else {
        (404, "{}".to_owned())
    };
    let _ = write!(
        writer,
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{reply}",
        reply.len()
    );
}

fn answer(
    state: &Mutex<State>,
    method: &str,
    authorization: Option<&str>,
    params: &[(String, String)],
) -> (u16, String) {
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let mut state = state.lock().unwrap();
    let mut scopes: Vec<String> = params
        .iter()
        .filter(|(k, _)| k == "scope")
        .flat_map(|(_, v)| v.split(' ').map(str::to_owned).collect::<Vec<_>>())
        .filter(|s| !s.is_empty())
        .collect();
    if method == "POST" && scopes.len() == 1 {
        scopes = scopes[0].split(' ').map(str::to_owned).collect();
    }
    let grant_type = param("grant_type");
    let offline = param("offline_token").as_deref() == Some("true");
    // Who is asking, and did they prove it?
    let basic = authorization
        .and_then(|a| a.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.split_once(':').map(|(u, p)| (u.to_owned(), p.to_owned())));
    let check = |state: &State, user: &str, password: &str| {
        state
            .users
            .iter()
            .any(|u| u.name == user && u.password == password)
            || (!state.oauth
                && state
                    .refresh_tokens
                    .get(password)
                    .is_some_and(|u| u == user))
    };
    let user: Result<Option<String>, u16> = match (method, grant_type.as_deref()) {
        ("POST", _) if !state.oauth => Err(405),
        ("POST", Some("refresh_token")) => {
            match param("refresh_token").and_then(|t| state.refresh_tokens.get(&t).cloned()) {
                Some(user) => Ok(Some(user)),
                None => Err(400),
            }
        }
        ("POST", Some("password")) => {
            let (u, p) = (
                param("username").unwrap_or_default(),
                param("password").unwrap_or_default(),
            );
            if check(&state, &u, &p) {
                Ok(Some(u))
            } else {
                Err(401)
            }
        }
        ("POST", _) => Err(400),
        _ => match &basic {
            Some((u, p)) if check(&state, u, p) => Ok(Some(u.clone())),
            Some(_) => Err(401),
            None => Ok(None),
        },
    };
    let status = match &user {
        Ok(_) => 200,
        Err(status) => *status,
    };
    state.seen.push(Seen {
        method: method.to_owned(),
        user: user.clone().ok().flatten(),
        scopes: scopes.clone(),
        grant_type: grant_type.clone(),
        offline,
        status,
    });
    let user = match user {
        Ok(user) => user,
        Err(400) => return (400, r#"{"error":"invalid_grant"}"#.to_owned()),
        Err(405) => return (405, "{}".to_owned()),
        Err(status) => {
            return (
                status,
                r#"{"details":"incorrect username or password"}"#.to_owned(),
            );
        }
    };
    // What each scope grants this user.
    let mut access = Vec::new();
    for scope in &scopes {
        let mut fields = scope.splitn(3, ':');
        let (kind, name, actions) = (
            fields.next().unwrap_or(""),
            fields.next().unwrap_or(""),
            fields.next().unwrap_or(""),
        );
        let grants = state
            .users
            .iter()
            .find(|u| Some(u.name) == user.as_deref())
            .map(|u| u.grants)
            .unwrap_or(&[]);
        let allowed: Vec<&str> = actions
            .split(',')
            .filter(|action| {
                grants.iter().any(|(repo, granted)| {
                    (*repo == "*"
                        || *repo == name
                        || repo.strip_suffix('*').is_some_and(|p| name.starts_with(p)))
                        && granted.split(',').any(|g| g == *action || g == "*")
                })
            })
            .collect();
        access.push(serde_json::json!({"type": kind, "name": name, "actions": allowed}));
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = serde_json::json!({
        "iss": ISSUER,
        "sub": user.clone().unwrap_or_default(),
        "aud": SERVICE,
        "exp": now + state.expires_in,
        "nbf": now - 1,
        "iat": now,
        "jti": format!("{now}-{}", state.seen.len()),
        "access": access,
    });
    let header = serde_json::json!({"alg": "RS256", "typ": "JWT", "x5c": state.x5c});
    let token = sign(&state.key, &header, &claims);
    let mut reply = serde_json::json!({
        "token": token,
        "access_token": token,
        "expires_in": state.expires_in,
    });
    let wants_refresh = offline || grant_type.as_deref() == Some("password");
    if let (true, Some(user)) = (wants_refresh, &user) {
        let refresh = format!("refresh-{user}-{}", state.refresh_tokens.len() + 1);
        state.refresh_tokens.insert(refresh.clone(), user.clone());
        reply["refresh_token"] = refresh.into();
    }
    (200, reply.to_string())
}

/// `base64url(header).base64url(claims).base64url(RS256 signature)`.
fn sign(key: &Path, header: &serde_json::Value, claims: &serde_json::Value) -> String {
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let mut child = Command::new("openssl")
        .args(["dgst", "-sha256", "-sign"])
        .arg(key)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "openssl dgst -sign failed");
    format!("{input}.{}", b64(&out.stdout))
}

/// `application/x-www-form-urlencoded` (and query strings) decoded.
fn form(text: &str) -> Vec<(String, String)> {
    text.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
