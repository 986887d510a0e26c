//! A registry:2 in token-auth mode, its realm a token server the tests run
//! (support::token_server: JWTs with an x5c chain the registry trusts,
//! per-user grants, short lifetimes, every request recorded): login, an
//! identity token used as Docker uses it, per-user scopes, renewal of
//! expired tokens in the middle of a pull or a push, the mount's source
//! scope, and the errors users see.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::login::{Home, assert_no_secret, assert_ok_without, text};
use crate::support::proxy::{Action, Proxy, Rule};
use crate::support::token_server::{Seen, TokenServer, User};
use crate::support::{Registry, copy_busybox_to};
use hoist_registry::{Client, ClientOptions};

const ADMIN_PASSWORD: &str = "admin-pw-7f3a";
const READER_PASSWORD: &str = "reader-pw-91c2";
const NOBODY_PASSWORD: &str = "nobody-pw-4d8e";

fn users() -> Vec<User> {
    vec![
        User {
            name: "admin",
            password: ADMIN_PASSWORD,
            grants: &[("*", "pull,push")],
        },
        User {
            name: "reader",
            password: READER_PASSWORD,
            grants: &[("library/*", "pull")],
        },
        User {
            name: "nobody",
            password: NOBODY_PASSWORD,
            grants: &[],
        },
    ]
}

/// A token server (tokens lasting `expires_in` s) and a registry trusting
/// it, holding library/busybox:latest (pushed by skopeo as admin).
fn token_registry(expires_in: u64) -> (TokenServer, Registry) {
    token_registry_with(TokenServer::start(users(), expires_in))
}

fn token_registry_with(tokens: TokenServer) -> (TokenServer, Registry) {
    let registry = Registry::start_with(&tokens.registry_config());
    copy_busybox_to(registry.addr(), Some(&format!("admin:{ADMIN_PASSWORD}")));
    tokens.clear();
    (tokens, registry)
}

#[test]
fn login_keeps_the_identity_token_and_pulls_with_per_user_scopes() {
    let (tokens, registry) = token_registry(300);
    let addr = registry.addr();
    let home = Home::new();
    let secrets = [READER_PASSWORD, NOBODY_PASSWORD, "refresh-"];

    // A wrong password is refused by the token server: nothing is saved.
    let wrong = home.login(addr, "reader", "wrong-password");
    assert_eq!(wrong.status.code(), Some(1), "{}", text(&wrong));
    assert!(
        String::from_utf8_lossy(&wrong.stderr).contains(&format!(
            "registry {addr} refused the user name or password"
        )),
        "{}",
        text(&wrong)
    );
    assert!(!home.docker_config().exists());

    // Login asks for no scope, as Docker's does, and for a refresh token,
    // which is kept as the identity token in place of the password.
    let ok = home.login(addr, "reader", READER_PASSWORD);
    assert_ok_without(&ok, &secrets);
    let login_request = tokens.seen().last().cloned().unwrap();
    assert_eq!(
        login_request,
        Seen {
            method: "GET".into(),
            user: Some("reader".into()),
            scopes: vec![],
            grant_type: None,
            offline: true,
            status: 200,
        }
    );
    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(home.docker_config()).unwrap()).unwrap();
    let entry = &config["auths"][addr];
    assert_eq!(
        entry["auth"], "cmVhZGVyOg==",
        "base64 of `reader:`: {config}"
    );
    let identity = entry["identitytoken"].as_str().unwrap();
    assert!(identity.starts_with("refresh-reader-"), "{config}");
    assert!(!config.to_string().contains(READER_PASSWORD));

    // A pull exchanges the identity token for a token scoped to the
    // repository, with OAuth2's refresh_token grant.
    tokens.clear();
    let built = home.build_from(&format!("{addr}/library/busybox:latest"));
    assert_ok_without(&built, &secrets);
    let seen = tokens.seen();
    assert!(!seen.is_empty());
    for request in &seen {
        assert_eq!(request.method, "POST", "{seen:?}");
        assert_eq!(request.grant_type.as_deref(), Some("refresh_token"));
        assert_eq!(request.user.as_deref(), Some("reader"));
        assert_eq!(
            request.scopes,
            ["repository:library/busybox:pull"],
            "{seen:?}"
        );
    }

    // A user the registry knows but who may not pull: a clear error
    // naming the registry and the repository.
    let out = home.login(addr, "nobody", NOBODY_PASSWORD);
    assert_ok_without(&out, &secrets);
    let denied = home.build_from(&format!("{addr}/library/busybox:latest"));
    assert_eq!(denied.status.code(), Some(1), "{}", text(&denied));
    let stderr = String::from_utf8_lossy(&denied.stderr);
    assert!(
        stderr.contains(&format!(
            "access to library/busybox was refused by registry {addr}"
        )),
        "{stderr}"
    );
    assert_no_secret(&denied, &secrets);
}

#[test]
fn tokens_are_cached_per_scope_and_renewed_when_they_expire() {
    let lifetime = 2;
    let (tokens, registry) = token_registry(lifetime);
    let addr = registry.addr();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.json");
    std::fs::write(
        &config,
        format!(
            r#"{{"auths":{{"{addr}":{{"username":"reader","password":"{READER_PASSWORD}"}}}}}}"#
        ),
    )
    .unwrap();
    let client = Client::new(ClientOptions {
        docker_config: Some(config),
        auth_file: Some(dir.path().join("no-auth.json")),
        ..ClientOptions::default()
    });
    let endpoint = client.endpoint(addr);
    let started = Instant::now();
    let manifest = client
        .get_manifest(&endpoint, "library/busybox", "latest")
        .unwrap();
    let manifest: Value = serde_json::from_slice(&manifest.bytes).unwrap();
    let config_digest: hoist_oci::Digest = manifest["config"]["digest"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    // Within the token's life: the cached token serves the next request.
    client
        .get_manifest(&endpoint, "library/busybox", "latest")
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(lifetime - 1));
    assert_eq!(tokens.seen().len(), 1, "{:?}", tokens.seen());

    // Another repository is another scope, hence another token.
    let other = client.get_manifest(&endpoint, "library/other", "latest");
    assert!(other.is_err());
    assert_eq!(
        tokens.seen()[1].scopes,
        ["repository:library/other:pull"],
        "{:?}",
        tokens.seen()
    );

    // Once the token has expired, the next request gets a new one first.
    while started.elapsed() < Duration::from_secs(lifetime) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut blob = client
        .get_blob(&endpoint, "library/busybox", &config_digest)
        .unwrap();
    std::io::copy(&mut blob, &mut std::io::sink()).unwrap();
    let seen = tokens.seen();
    let pulls: Vec<&Seen> = seen
        .iter()
        .filter(|s| s.scopes == ["repository:library/busybox:pull"])
        .collect();
    assert_eq!(pulls.len(), 2, "{seen:?}");
    assert!(
        pulls
            .iter()
            .all(|s| s.method == "GET" && s.user.as_deref() == Some("reader"))
    );
}

/// Builds a three-layer image `name` (FROM scratch) in `home`'s store.
fn build_image(home: &Home, name: &str) {
    let context = home.path().join("context");
    std::fs::create_dir_all(&context).unwrap();
    for file in ["a", "b", "c"] {
        std::fs::write(context.join(file), format!("{file} {name}\n")).unwrap();
    }
    std::fs::write(
        context.join("Dockerfile"),
        "FROM scratch\nCOPY a /a\nCOPY b /b\nCOPY c /c\n",
    )
    .unwrap();
    let out = home
        .hoist()
        .args(["build", "-q", "-t", name])
        .arg(&context)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn push_renews_tokens_mid_push_mounts_with_the_source_scope_and_refuses_readers() {
    // Tokens live 1 s; every blob upload's last request is held 1.3 s by a
    // proxy, so the push outlives the token it started with.
    let (tokens, registry) = token_registry(1);
    let proxy = Proxy::start(registry.addr());
    proxy.rule(Rule::always(
        "PUT",
        "/blobs/uploads/",
        Action::Delay { millis: 1300 },
    ));
    let addr = proxy.addr();
    let home = Home::new();
    let secrets = [ADMIN_PASSWORD, READER_PASSWORD, "refresh-"];
    assert_ok_without(&home.login(addr, "admin", ADMIN_PASSWORD), &secrets);
    let app = format!("{addr}/team/app:v1");
    build_image(&home, &app);

    tokens.clear();
    let out = home.hoist().args(["push", "-q", &app]).output().unwrap();
    assert_ok_without(&out, &secrets);
    let seen = tokens.seen();
    let push_scope = ["repository:team/app:pull,push".to_owned()];
    let renewals = seen.iter().filter(|s| s.scopes == push_scope).count();
    assert!(renewals >= 2, "no token was renewed mid-push: {seen:?}");
    for request in &seen {
        assert_eq!(
            (request.method.as_str(), request.grant_type.as_deref()),
            ("POST", Some("refresh_token")),
            "{seen:?}"
        );
        assert_eq!(request.user.as_deref(), Some("admin"));
        assert_eq!(request.status, 200);
    }
    assert!(
        proxy.count("PUT", "/v2/team/app/manifests/v1") == 1,
        "{}",
        proxy.summary()
    );

    // The same image to another repository: every blob is mounted, and
    // the token for the mount covers the source in the same request.
    let copy = format!("{addr}/team/copy:v1");
    tokens.clear();
    proxy.clear_log();
    let out = home
        .hoist()
        .args(["push", "-q", &app, &copy])
        .output()
        .unwrap();
    assert_ok_without(&out, &secrets);
    let seen = tokens.seen();
    let mount_scope = vec![
        "repository:team/copy:pull,push".to_owned(),
        "repository:team/app:pull".to_owned(),
    ];
    assert!(
        seen.iter().any(|s| s.scopes == mount_scope),
        "no token request asked for the mount's source: {seen:?}"
    );
    assert_eq!(
        proxy.count("PATCH", "/blobs/uploads/"),
        0,
        "{}",
        proxy.summary()
    );
    assert!(proxy.count("POST", "mount=") >= 1, "{}", proxy.summary());

    // A user with pull rights only: the push is refused with the registry
    // and the repository named.
    let reader = Home::new();
    assert_ok_without(&reader.login(addr, "reader", READER_PASSWORD), &secrets);
    build_image(&reader, &format!("{addr}/team/app:v2"));
    let denied = reader
        .hoist()
        .args(["push", "-q", &format!("{addr}/team/app:v2")])
        .output()
        .unwrap();
    assert_eq!(denied.status.code(), Some(1), "{}", text(&denied));
    let stderr = String::from_utf8_lossy(&denied.stderr);
    assert!(
        stderr.contains(&format!(
            "pushing to team/app was refused by registry {addr}"
        )),
        "{stderr}"
    );
    assert_no_secret(&denied, &secrets);
}

#[test]
fn a_token_server_without_oauth2_is_asked_with_a_get_instead() {
    let (tokens, registry) = token_registry_with(TokenServer::start_with(users(), 300, false));
    let addr = registry.addr();
    let home = Home::new();
    let secrets = [READER_PASSWORD, "refresh-"];
    assert_ok_without(&home.login(addr, "reader", READER_PASSWORD), &secrets);
    tokens.clear();
    let built = home.build_from(&format!("{addr}/library/busybox:latest"));
    assert_ok_without(&built, &secrets);
    // The refresh grant is refused (405), then the same token goes as the
    // password of a GET, scoped as before; the build's other token
    // requests (if any) go straight to GET.
    let seen = tokens.seen();
    assert_eq!(
        seen.iter().filter(|s| s.method == "POST").count(),
        1,
        "{seen:?}"
    );
    assert_eq!(
        (seen[0].method.as_str(), seen[0].status),
        ("POST", 405),
        "{seen:?}"
    );
    assert_eq!(
        seen[1],
        Seen {
            method: "GET".into(),
            user: Some("reader".into()),
            scopes: vec!["repository:library/busybox:pull".into()],
            grant_type: None,
            offline: false,
            status: 200,
        }
    );
}

/// A token server behind a fault-injecting proxy, and a registry whose
/// realm points at the proxy: every token request goes through it.
fn token_registry_behind_proxy() -> (TokenServer, Proxy, Registry) {
    let tokens = TokenServer::start(users(), 300);
    let proxy = Proxy::start(&tokens.addr);
    let registry = Registry::start_with(&tokens.registry_config_via(proxy.addr()));
    (tokens, proxy, registry)
}

/// Token requests the proxy broke on purpose, by status (0: reset); a
/// push asks for tokens from several threads, so in no set order.
fn injected_token_failures(proxy: &Proxy) -> Vec<(String, u16)> {
    let mut failures: Vec<(String, u16)> = proxy
        .log()
        .into_iter()
        .filter(|e| e.injected && e.target.starts_with("/token"))
        .map(|e| (e.method, e.status))
        .collect();
    failures.sort();
    failures
}

/// The 1st token request with `method` answers 503, the 2nd is reset, the
/// 3rd answers 429 with `Retry-After: 1`.
fn break_token_requests(proxy: &Proxy, method: &str) {
    proxy.clear_rules();
    let rules = [
        Action::Status {
            status: 503,
            retry_after: None,
        },
        Action::Reset,
        Action::Status {
            status: 429,
            retry_after: Some(1),
        },
    ];
    // A rule counts only the requests no earlier rule took: each takes
    // the first one left.
    for action in rules {
        proxy.rule(Rule::nth(method, "/token", 1, action));
    }
}

#[test]
fn token_requests_that_fail_transiently_are_retried_and_permanent_failures_stop_soon() {
    let (tokens, proxy, registry) = token_registry_behind_proxy();
    let addr = registry.addr();
    // Passwords, refresh tokens and the tokens themselves (JWTs start
    // with a base64 `{"`).
    let secrets = [ADMIN_PASSWORD, "refresh-", "eyJ"];
    let broken = vec![
        ("GET".to_owned(), 0),
        ("GET".to_owned(), 429),
        ("GET".to_owned(), 503),
    ];

    // Login's token request (a GET) gets through on its 4th attempt.
    let home = Home::new();
    break_token_requests(&proxy, "GET");
    let started = Instant::now();
    assert_ok_without(&home.login(addr, "admin", ADMIN_PASSWORD), &secrets);
    assert_eq!(
        injected_token_failures(&proxy),
        broken,
        "{}",
        proxy.summary()
    );
    // The 429's Retry-After was honoured.
    assert!(started.elapsed() >= Duration::from_secs(1));

    // The push's token requests (refresh_token grants, POSTed) likewise.
    let app = format!("{addr}/team/app:v1");
    build_image(&home, &app);
    proxy.clear_log();
    tokens.clear();
    break_token_requests(&proxy, "POST");
    let digest_file = home.path().join("digest");
    let out = home
        .hoist()
        .args(["push", "-q", "--digest-file"])
        .arg(&digest_file)
        .arg(&app)
        .output()
        .unwrap();
    assert_ok_without(&out, &secrets);
    let post = |status| ("POST".to_owned(), status);
    assert_eq!(
        injected_token_failures(&proxy),
        [post(0), post(429), post(503)],
        "{}",
        proxy.summary()
    );
    assert!(
        tokens.seen().iter().all(|s| s.status == 200),
        "{:?}",
        tokens.seen()
    );
    let digest = std::fs::read_to_string(&digest_file).unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("@{digest}")),
        "{}",
        text(&out)
    );

    // The registry holds a valid image: skopeo reads it, and a pull from
    // another store through the same failures gets it.
    let inspected = crate::support::skopeo()
        .args(["inspect", "--tls-verify=false", "--creds"])
        .arg(format!("admin:{ADMIN_PASSWORD}"))
        .arg(format!("docker://{app}"))
        .output()
        .unwrap();
    assert!(inspected.status.success(), "{}", text(&inspected));
    let inspected: Value = serde_json::from_slice(&inspected.stdout).unwrap();
    assert_eq!(inspected["Digest"], digest.as_str());
    assert_eq!(inspected["Layers"].as_array().unwrap().len(), 3);

    let other = Home::new();
    proxy.clear_rules();
    assert_ok_without(&other.login(addr, "admin", ADMIN_PASSWORD), &secrets);
    proxy.clear_log();
    break_token_requests(&proxy, "POST");
    let pulled = other.hoist().args(["pull", &app]).output().unwrap();
    assert_ok_without(&pulled, &secrets);
    assert_eq!(
        injected_token_failures(&proxy),
        [post(0), post(429), post(503)],
        "{}",
        proxy.summary()
    );
    assert!(
        String::from_utf8_lossy(&pulled.stdout).contains(digest.as_str()),
        "{}",
        text(&pulled)
    );

    // A token server that never answers but 503, then one that resets
    // every connection: the push and the pull stop within bounded time,
    // naming the registry and the token server, and saying what failed.
    let realm = format!("http://{}/token", proxy.addr());
    for (action, says) in [
        (
            Action::Status {
                status: 503,
                retry_after: None,
            },
            "answered 503".to_owned(),
        ),
        (Action::Reset, "kept dropping the connection".to_owned()),
    ] {
        proxy.clear_rules();
        proxy.rule(Rule::always("POST", "/token", action.clone()));
        proxy.rule(Rule::always("GET", "/token", action.clone()));
        for args in [vec!["push", "-q", &app], vec!["pull", &app]] {
            proxy.clear_log();
            let started = Instant::now();
            let out = home.hoist().args(&args).output().unwrap();
            let took = started.elapsed();
            assert_eq!(
                out.status.code(),
                Some(1),
                "{args:?} {action:?}: {}",
                text(&out)
            );
            assert!(
                took < Duration::from_secs(30),
                "{args:?} {action:?} took {took:?}"
            );
            let stderr = String::from_utf8_lossy(&out.stderr);
            for part in [addr, realm.as_str(), says.as_str()] {
                assert!(
                    stderr.contains(part),
                    "{args:?} {action:?}: no `{part}` in {stderr}"
                );
            }
            assert_no_secret(&out, &secrets);
            // Token requests were tried 4 times each (the default), from
            // one thread per blob at most: not once, nor forever.
            let failures = injected_token_failures(&proxy).len();
            assert!(
                (4..=20).contains(&failures),
                "{args:?} {action:?}: {}",
                proxy.summary()
            );
        }
    }
}

#[test]
fn a_cache_the_user_may_not_read_or_write_is_a_warning_and_the_build_goes_on() {
    let (_tokens, registry) = token_registry(300);
    let addr = registry.addr();
    let home = Home::new();
    let secrets = [READER_PASSWORD, "refresh-"];
    assert_ok_without(&home.login(addr, "reader", READER_PASSWORD), &secrets);
    let context = tempfile::tempdir().unwrap();
    std::fs::write(
        context.path().join("Dockerfile"),
        format!("FROM {addr}/library/busybox\nCOPY hello /hello\n"),
    )
    .unwrap();
    std::fs::write(context.path().join("hello"), "hi\n").unwrap();
    let build = |cache: &str| {
        let spec = format!("type=registry,ref={addr}/{cache}");
        home.hoist()
            .args(["build", "--progress", "plain", "-t", "probe"])
            .args(["--cache-from", &spec, "--cache-to", &spec])
            .arg(context.path())
            .output()
            .unwrap()
    };
    // No access at all: the lookup and the export are refused (401/403).
    let denied = build("team/cache");
    assert_ok_without(&denied, &secrets);
    let stderr = String::from_utf8_lossy(&denied.stderr);
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("warning:"))
        .collect();
    assert_eq!(warnings.len(), 2, "{stderr}");
    assert!(warnings[0].contains(&format!("registry cache {addr}/team/cache is not used for the rest of this build: access to team/cache was refused")), "{stderr}");
    assert!(
        warnings[1].contains(&format!(
            "were not written to the registry cache {addr}/team/cache"
        )),
        "{stderr}"
    );
    assert!(warnings[1].contains("refused"), "{stderr}");
    // Read access only: lookups miss quietly, the export is refused.
    let read_only = build("library/cache");
    assert_ok_without(&read_only, &secrets);
    let stderr = String::from_utf8_lossy(&read_only.stderr);
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("warning:"))
        .collect();
    assert_eq!(warnings.len(), 1, "{stderr}");
    assert!(warnings[0].contains("were not written"), "{stderr}");
    assert!(stderr.contains("COPY hello /hello ... "), "{stderr}");
}
