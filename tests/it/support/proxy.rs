//! A loopback HTTP/1.1 forwarder for registry tests: it counts every
//! request it passes on (method, target, status), and breaks chosen ones
//! on purpose. A rule picks the Nth request (or every request) whose
//! method and target match and answers it with a status (500, 503, 429
//! with `Retry-After`), resets the connection (before or in the middle of
//! the body), or redirects it to another address, as Docker Hub sends blob
//! downloads to its CDN.
//!
//! Only what registries and their clients use is understood: bodies framed
//! by `Content-Length` or chunked encoding, keep-alive connections, one
//! request at a time per connection. Everything else passes through byte
//! for byte, `Host` included, so a registry's absolute `Location`s point
//! back at the proxy.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};

/// What to do with a request a rule picked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Answer this status without passing the request on; `retry_after`
    /// seconds become a `Retry-After` header.
    Status {
        status: u16,
        retry_after: Option<u32>,
    },
    /// Reset the connection before passing anything on.
    Reset,
    /// Pass the head and half the body on, then reset both connections:
    /// the registry keeps a partial upload.
    ResetMidBody,
    /// Answer `307` to the same target on `base` (`http://HOST:PORT`).
    Redirect { base: String },
    /// Pass the request on after this many milliseconds: a slow link, to
    /// make an operation outlive a short-lived token.
    Delay { millis: u64 },
}

/// Which matching requests a rule acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// The Nth matching request (1-based) only.
    Nth(usize),
    /// Every matching request.
    Always,
}

#[derive(Debug, Clone)]
pub struct Rule {
    method: String,
    contains: String,
    when: When,
    action: Action,
    matched: usize,
}

impl Rule {
    /// Acts on the `n`th request with `method` whose target contains
    /// `contains`.
    pub fn nth(method: &str, contains: &str, n: usize, action: Action) -> Rule {
        Rule::new(method, contains, When::Nth(n), action)
    }

    /// Acts on every request with `method` whose target contains `contains`.
    pub fn always(method: &str, contains: &str, action: Action) -> Rule {
        Rule::new(method, contains, When::Always, action)
    }

    fn new(method: &str, contains: &str, when: When, action: Action) -> Rule {
        Rule {
            method: method.to_owned(),
            contains: contains.to_owned(),
            when,
            action,
            matched: 0,
        }
    }
}

/// One request as the proxy handled it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exchange {
    pub method: String,
    pub target: String,
    /// The status the client got; 0 when the connection was reset.
    pub status: u16,
    /// Whether a rule acted on it (nothing reached the registry, or only
    /// part of it).
    pub injected: bool,
    pub authorization: bool,
}

pub struct Proxy {
    addr: String,
    log: Arc<Mutex<Vec<Exchange>>>,
    rules: Arc<Mutex<Vec<Rule>>>,
}

impl Proxy {
    /// Forwards 127.0.0.1:PORT (a free port) to `upstream` (`host:port`).
    pub fn start(upstream: &str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let addr = listener.local_addr().unwrap().to_string();
        let log = Arc::new(Mutex::new(Vec::new()));
        let rules = Arc::new(Mutex::new(Vec::<Rule>::new()));
        let (upstream, shared) = (upstream.to_owned(), (log.clone(), rules.clone()));
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let (upstream, (log, rules)) = (upstream.clone(), shared.clone());
                std::thread::spawn(move || {
                    let _ = serve(client, &upstream, &log, &rules);
                });
            }
        });
        Proxy { addr, log, rules }
    }

    /// `127.0.0.1:PORT`: loopback, so hoist talks plain HTTP to it.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    pub fn rule(&self, rule: Rule) {
        self.rules.lock().unwrap().push(rule);
    }

    pub fn clear_rules(&self) {
        self.rules.lock().unwrap().clear();
    }

    pub fn log(&self) -> Vec<Exchange> {
        self.log.lock().unwrap().clone()
    }

    pub fn clear_log(&self) {
        self.log.lock().unwrap().clear();
    }

    /// Requests with `method` whose target contains `contains`.
    pub fn count(&self, method: &str, contains: &str) -> usize {
        self.log()
            .iter()
            .filter(|e| e.method == method && e.target.contains(contains))
            .count()
    }

    /// How many requests each `METHOD kind` got, for failure messages.
    pub fn summary(&self) -> String {
        self.log()
            .iter()
            .map(|e| format!("{} {} -> {}", e.method, e.target, e.status))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// A request or response head: the first line, the headers, and the raw
/// bytes to pass on.
struct Head {
    line: String,
    headers: Vec<(String, String)>,
    raw: Vec<u8>,
}

impl Head {
    fn read(reader: &mut impl BufRead) -> std::io::Result<Option<Head>> {
        let mut raw = Vec::new();
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        raw.extend_from_slice(line.as_bytes());
        let mut headers = Vec::new();
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header)? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            raw.extend_from_slice(header.as_bytes());
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
            }
        }
        Ok(Some(Head {
            line: line.trim_end().to_owned(),
            headers,
            raw,
        }))
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// How the body that follows is framed.
    fn body(&self) -> Body {
        if self
            .header("transfer-encoding")
            .is_some_and(|t| t.eq_ignore_ascii_case("chunked"))
        {
            Body::Chunked
        } else {
            Body::Length(
                self.header("content-length")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0),
            )
        }
    }
}

enum Body {
    Length(u64),
    Chunked,
    /// Until the server closes the connection.
    ToEof,
}

/// Copies a body framed as `body` from `from` to `to` (`None` drops it).
fn copy_body(
    from: &mut impl BufRead,
    to: Option<&mut dyn Write>,
    body: &Body,
) -> std::io::Result<()> {
    let mut sink = std::io::sink();
    let to: &mut dyn Write = match to {
        Some(to) => to,
        None => &mut sink,
    };
    match body {
        Body::Length(n) => {
            let copied = std::io::copy(&mut from.take(*n), to)?;
            if copied != *n {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
        }
        Body::ToEof => {
            std::io::copy(from, to)?;
        }
        Body::Chunked => loop {
            let mut size_line = String::new();
            if from.read_line(&mut size_line)? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            to.write_all(size_line.as_bytes())?;
            let size = u64::from_str_radix(size_line.trim().split(';').next().unwrap_or(""), 16)
                .map_err(|_| std::io::Error::other("bad chunk size"))?;
            if size == 0 {
                // Trailers, up to the empty line.
                loop {
                    let mut trailer = String::new();
                    from.read_line(&mut trailer)?;
                    to.write_all(trailer.as_bytes())?;
                    if trailer.trim_end().is_empty() {
                        return Ok(());
                    }
                }
            }
            std::io::copy(&mut from.take(size + 2), to)?;
        },
    }
    to.flush()
}

/// Resets `stream` (RST, not FIN), as a dropped connection looks.
fn reset(stream: &TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket and a correctly sized option value.
    unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
    let _ = stream.shutdown(Shutdown::Both);
}

/// The rule acting on this request, if any.
fn pick(rules: &Mutex<Vec<Rule>>, method: &str, target: &str) -> Option<Action> {
    let mut rules = rules.lock().unwrap();
    for rule in rules.iter_mut() {
        if rule.method == method && target.contains(&rule.contains) {
            rule.matched += 1;
            let fires = match rule.when {
                When::Nth(n) => rule.matched == n,
                When::Always => true,
            };
            if fires {
                return Some(rule.action.clone());
            }
        }
    }
    None
}

fn serve(
    client: TcpStream,
    upstream: &str,
    log: &Mutex<Vec<Exchange>>,
    rules: &Mutex<Vec<Rule>>,
) -> std::io::Result<()> {
    let mut from_client = BufReader::with_capacity(256 * 1024, client.try_clone()?);
    let mut to_client = client;
    let mut server: Option<(BufReader<TcpStream>, TcpStream)> = None;
    loop {
        let Some(request) = Head::read(&mut from_client)? else {
            return Ok(());
        };
        let mut words = request.line.split_whitespace();
        let method = words.next().unwrap_or("").to_owned();
        let target = words.next().unwrap_or("").to_owned();
        let record = |status: u16, injected: bool| {
            log.lock().unwrap().push(Exchange {
                method: method.clone(),
                target: target.clone(),
                status,
                injected,
                authorization: request.header("authorization").is_some(),
            })
        };
        let action = pick(rules, &method, &target);
        match action {
            Some(Action::Status {
                status,
                retry_after,
            }) => {
                copy_body(&mut from_client, None, &request.body())?;
                let retry = retry_after
                    .map(|s| format!("Retry-After: {s}\r\n"))
                    .unwrap_or_default();
                // Recorded before the answer: a client that gives up on it
                // may exit, and its test read the log, at once.
                record(status, true);
                write!(
                    to_client,
                    "HTTP/1.1 {status} Injected\r\nContent-Length: 0\r\n{retry}\r\n"
                )?;
                continue;
            }
            Some(Action::Redirect { base }) => {
                copy_body(&mut from_client, None, &request.body())?;
                record(307, true);
                write!(
                    to_client,
                    "HTTP/1.1 307 Temporary Redirect\r\nLocation: {base}{target}\r\nContent-Length: 0\r\n\r\n"
                )?;
                continue;
            }
            Some(Action::Reset) => {
                record(0, true);
                reset(&to_client);
                return Ok(());
            }
            Some(Action::ResetMidBody) => {
                record(0, true);
                let mut up = TcpStream::connect(upstream)?;
                up.write_all(&request.raw)?;
                if let Body::Length(n) = request.body() {
                    std::io::copy(&mut (&mut from_client).take(n / 2), &mut up)?;
                }
                up.flush()?;
                // Let the registry take in what it got before the cut.
                std::thread::sleep(std::time::Duration::from_millis(200));
                reset(&up);
                reset(&to_client);
                return Ok(());
            }
            Some(Action::Delay { millis }) => {
                std::thread::sleep(std::time::Duration::from_millis(millis));
            }
            None => {}
        }
        if server.is_none() {
            let up = TcpStream::connect(upstream)?;
            server = Some((BufReader::with_capacity(256 * 1024, up.try_clone()?), up));
        }
        let (from_server, to_server) = server.as_mut().unwrap();
        to_server.write_all(&request.raw)?;
        copy_body(&mut from_client, Some(to_server), &request.body())?;
        let Some(response) = Head::read(from_server)? else {
            record(0, false);
            reset(&to_client);
            return Ok(());
        };
        let status: u16 = response
            .line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        record(status, false);
        to_client.write_all(&response.raw)?;
        let body = if method == "HEAD" || status == 204 || status == 304 || status < 200 {
            Body::Length(0)
        } else if response.header("content-length").is_some()
            || response.header("transfer-encoding").is_some()
        {
            response.body()
        } else {
            Body::ToEof
        };
        let to_eof = matches!(body, Body::ToEof);
        copy_body(from_server, Some(&mut to_client), &body)?;
        if to_eof {
            return Ok(());
        }
    }
}
