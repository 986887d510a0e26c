//! `hoist k8s`, `hoist build --k8s-out` and `hoist resolve` against real
//! components: the tutorial's two apps built from the stand-in base images
//! (and a busybox stand-in where only hoist's mechanics matter), pushed to
//! a registry:2; every generated document checked by `kubernetes-validate
//! --strict`; the tutorial's own manifests (fixtures/tutorial/k8s) as the
//! reference for what the flags produce; `podman kube play` running the
//! output.

use crate::support::{Registry, podman, repo_root, require, run_ok, wait_until};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

fn hoist(store: &Path) -> Command {
    let mut cmd = Command::new(assert_cmd::cargo::cargo_bin("hoist"));
    cmd.arg("--store").arg(store);
    cmd
}

fn output(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// An image built from `context` with `FROM busybox` resolved through the
/// shared registry, tagged `ADDR/k8s/NAME:v1` and, with `push`, pushed.
struct Built {
    reference: String,
    digest: String,
}

fn build(store: &Path, context: &Path, name: &str, push: bool, extra: &[&str]) -> Built {
    let registry = Registry::shared();
    let reference = format!("{}/k8s/{name}:v1", registry.addr());
    let mut cmd = hoist(store);
    cmd.args(["build", "-q", "-t", &reference])
        .arg("--registry-mirror")
        .arg(format!("docker.io={}", registry.addr()));
    if push {
        cmd.arg("--push");
    }
    cmd.args(extra);
    cmd.arg(context);
    let digest = run_ok(&mut cmd).trim().to_owned();
    assert!(digest.starts_with("sha256:"), "{digest}");
    Built { reference, digest }
}

/// One of the tutorial's apps (fixtures/tutorial, unchanged), built from
/// the stand-in base images (`node:14-alpine`, `python:3.9-slim`) and
/// pushed as `ADDR/k8s/NAME:v1`.
fn tutorial_image(store: &Path, app: &str, name: &str) -> Built {
    crate::support::tutorial_bases();
    build(
        store,
        &repo_root().join("fixtures/tutorial").join(app),
        name,
        true,
        &[],
    )
}

/// The tutorial's configurable app, built once for the tests that use it
/// (its store is the run's shared directory, removed by a later run).
fn configurable_app() -> &'static (crate::support::process::ProcessDir, Built) {
    static BUILT: std::sync::OnceLock<(crate::support::process::ProcessDir, Built)> =
        std::sync::OnceLock::new();
    BUILT.get_or_init(|| {
        let store = crate::support::process::ProcessDir::shared("k8s-configurable-app");
        let built = tutorial_image(store.path(), "configurable-app", "configurable-app");
        (store, built)
    })
}

/// `ADDR/k8s/NAME@sha256:...`, as the manifests must pin it.
fn pinned(built: &Built) -> String {
    let repo = built.reference.rsplit_once(':').unwrap().0;
    format!("{repo}@{}", built.digest)
}

fn fixture(name: &str) -> PathBuf {
    repo_root().join("fixtures/k8s").join(name)
}

pub(crate) fn documents(text: &str) -> Vec<Value> {
    serde_saphyr::from_multiple::<Value>(text)
        .unwrap_or_else(|e| panic!("not YAML: {e}\n{text}"))
        .into_iter()
        .filter(|v| !v.is_null())
        .collect()
}

fn by_kind_and_name(docs: Vec<Value>) -> BTreeMap<(String, String), Value> {
    docs.into_iter()
        .map(|d| {
            let key = (
                d["kind"].as_str().unwrap().to_owned(),
                d["metadata"]["name"].as_str().unwrap().to_owned(),
            );
            (key, d)
        })
        .collect()
}

/// Runs `kubernetes-validate --strict` (the Kubernetes version k8s-openapi
/// is built for) over `files`, which must all pass.
pub(crate) fn validate(files: &[PathBuf]) {
    assert!(!files.is_empty());
    let tool = require(
        "kubernetes-validate",
        "python3-pip && pip install kubernetes-validate",
    );
    let out = output(
        Command::new(&tool)
            .args(["--strict", "-k", "1.37.0"])
            .args(files),
    );
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
    assert!(out.status.success(), "kubernetes-validate failed:\n{text}");
    assert!(!text.contains("ERROR") && !text.contains("WARN"), "{text}");
}

/// The documents as they lie in files, for `validate`.
fn write_documents(dir: &Path, name: &str, yaml: &str) -> PathBuf {
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(&path, yaml).unwrap();
    path
}

#[test]
fn kubernetes_validate_rejects_what_it_should() {
    // The validator is the referee of every other test here: it must see
    // an unknown field and a wrong type.
    let dir = tempfile::tempdir().unwrap();
    let bad = write_documents(
        dir.path(),
        "bad",
        "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec:\n  ports: [{port: \"eighty\"}]\n  bogus: 1\n",
    );
    let tool = require(
        "kubernetes-validate",
        "python3-pip && pip install kubernetes-validate",
    );
    let out = output(Command::new(tool).arg("--strict").arg(&bad));
    assert!(!out.status.success(), "{out:?}");
}

/// Every field `reference` sets, with its value, as `path = value` lines.
fn leaves(value: &Value, path: &str, out: &mut BTreeMap<String, Value>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                leaves(v, &format!("{path}.{k}"), out);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                leaves(v, &format!("{path}[{i}]"), out);
            }
        }
        v => {
            out.insert(path.to_owned(), v.clone());
        }
    }
}

/// hoist's additions to what the tutorial writes, as documented in
/// docs/k8s.md ("hoist's additions"): the `app` label on every object,
/// and the container's security context.
fn is_documented_addition(path: &str) -> bool {
    path == ".metadata.labels.app"
        || path.starts_with(".spec.template.spec.containers[0].securityContext.")
}

/// Compares hoist's documents with the tutorial's: every field the
/// tutorial sets has its value (the image: pinned by digest), and every
/// field hoist adds is a documented addition. Returns the problems.
fn compare(
    tutorial: &BTreeMap<(String, String), Value>,
    hoist: &BTreeMap<(String, String), Value>,
    image: &str,
    skip: &[(&str, &str)],
) -> Vec<String> {
    let mut problems = Vec::new();
    for (key, want) in tutorial {
        if skip.contains(&(key.0.as_str(), key.1.as_str())) {
            continue;
        }
        let Some(got) = hoist.get(key) else {
            problems.push(format!("{key:?}: hoist wrote no such object"));
            continue;
        };
        let (mut w, mut g) = (BTreeMap::new(), BTreeMap::new());
        leaves(want, "", &mut w);
        leaves(got, "", &mut g);
        for (path, value) in &w {
            let expected = if path.ends_with(".image") {
                Value::String(image.to_owned())
            } else {
                value.clone()
            };
            match g.get(path) {
                Some(v) if *v == expected => {}
                other => problems.push(format!(
                    "{key:?} {path}: tutorial {expected}, hoist {other:?}"
                )),
            }
        }
        for path in g.keys().filter(|p| !w.contains_key(*p)) {
            if !is_documented_addition(path) {
                problems.push(format!("{key:?} {path}: added by hoist, not documented"));
            }
        }
    }
    for key in hoist.keys() {
        if !tutorial.contains_key(key) {
            problems.push(format!(
                "{key:?}: hoist wrote an object the tutorial has not"
            ));
        }
    }
    problems
}

fn tutorial(name: &str) -> String {
    std::fs::read_to_string(repo_root().join("fixtures/tutorial/k8s").join(name)).unwrap()
}

#[test]
fn the_tutorial_web_app_manifests_come_from_flags() {
    let store = tempfile::tempdir().unwrap();
    // The tutorial's repository name; the app is called web-app.
    let built = tutorial_image(store.path(), "web-app", "my-k8s-app");
    let out = output(hoist(store.path()).args([
        "k8s",
        &built.reference,
        "--name",
        "web-app",
        "--replicas",
        "3",
        "--limits",
        "cpu=0.5,memory=512Mi",
        "--requests",
        "cpu=0.2,memory=256Mi",
        "--liveness",
        "http=/health,port=3000,initial-delay=5,period=10",
        "--readiness",
        "http=/health,port=3000,initial-delay=2,period=5",
        "--service-name",
        "web-app-service",
        "--service-port",
        "80:3000",
        "--ingress-name",
        "web-app-ingress",
        "--ingress-host",
        "web-app.local",
        "--ingress-annotation",
        "nginx.ingress.kubernetes.io/rewrite-target=/",
    ]));
    assert!(out.status.success(), "{}", stderr(&out));
    let yaml = String::from_utf8(out.stdout.clone()).unwrap();
    let got = by_kind_and_name(documents(&yaml));
    let want = by_kind_and_name(documents(&tutorial("web-app-deployment.yaml")));
    let problems = compare(&want, &got, &pinned(&built), &[]);
    assert!(problems.is_empty(), "{}\n{yaml}", problems.join("\n"));
    // USER appuser resolved through the image's /etc/passwd (the
    // Dockerfile's `adduser -u 1001`).
    let deployment = &got[&("Deployment".into(), "web-app".into())];
    let security = &deployment["spec"]["template"]["spec"]["containers"][0]["securityContext"];
    assert_eq!(security["runAsUser"], 1001);
    assert_eq!(security["runAsNonRoot"], true);
    // The tutorial's update flow, with the digest.
    assert!(
        stderr(&out).contains(&format!(
            "kubectl set image deployment/web-app web-app={}",
            pinned(&built)
        )),
        "{}",
        stderr(&out)
    );
    let dir = tempfile::tempdir().unwrap();
    validate(&[write_documents(dir.path(), "web-app", &yaml)]);
}

/// The tutorial's configurable-app flags; `config` and `secrets` are the
/// files they read.
fn configurable_app_flags(config: &Path, secrets: &Path) -> Vec<String> {
    [
        "--replicas",
        "2",
        "--limits",
        "cpu=0.5,memory=512Mi",
        "--requests",
        "cpu=0.2,memory=256Mi",
        "--env",
        "APP_ENV=kubernetes",
        "--env",
        "CONFIG_PATH=/app/config/config.json",
        "--liveness",
        "http=/health,port=8080,initial-delay=5,period=10",
        "--configmap-name",
        "app-config",
        "--config-volume-name",
        "config-volume",
        "--config-mount",
        "/app/config",
        "--secret-name",
        "app-secrets",
        "--service-name",
        "configurable-app-service",
        "--service-port",
        "80:8080",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([
        "--config-file".to_owned(),
        format!("config.json={}", config.display()),
        "--secret-env-file".to_owned(),
        secrets.display().to_string(),
    ])
    .collect()
}

#[test]
fn the_tutorial_configurable_app_manifests_come_from_flags_with_the_secret_fixed() {
    let (store, built) = configurable_app();
    // The ConfigMap's and Secret's contents, from the tutorial's own YAML.
    let config_docs = by_kind_and_name(documents(&tutorial("configurable-app-config.yaml")));
    let configmap = &config_docs[&("ConfigMap".into(), "app-config".into())];
    let secret = &config_docs[&("Secret".into(), "app-secrets".into())];
    let env_file = secret["stringData"]["app-secrets.env"].as_str().unwrap();
    let files = tempfile::tempdir().unwrap();
    let config = files.path().join("config.json");
    std::fs::write(&config, configmap["data"]["config.json"].as_str().unwrap()).unwrap();
    let secrets = files.path().join("app-secrets.env");
    std::fs::write(&secrets, env_file).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let out = output(
        hoist(store.path())
            .args(["k8s", &built.reference, "-o"])
            .arg(dir.path())
            .args(configurable_app_flags(&config, &secrets)),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let mut files_written: Vec<PathBuf> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files_written.sort();
    let names: Vec<String> = files_written
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "configmap-app-config.yaml",
            "deployment-configurable-app.yaml",
            "secret-app-secrets.yaml",
            "service-configurable-app-service.yaml",
        ]
    );
    let mut docs = Vec::new();
    for f in &files_written {
        docs.extend(documents(&std::fs::read_to_string(f).unwrap()));
    }
    let got = by_kind_and_name(docs);
    let mut want = by_kind_and_name(documents(&tutorial("configurable-app-deployment.yaml")));
    want.extend(config_docs.clone());
    // The Secret is compared apart: the tutorial's is the one thing fixed.
    let problems = compare(&want, &got, &pinned(built), &[("Secret", "app-secrets")]);
    assert!(problems.is_empty(), "{}", problems.join("\n"));

    // The fix: the tutorial puts the whole env file under one key,
    // `app-secrets.env`, and consumes it with envFrom, which would make
    // one variable of that (invalid) name holding the file. hoist writes
    // one key per variable, as `kubectl create secret --from-env-file`.
    let got_secret = &got[&("Secret".into(), "app-secrets".into())];
    assert_eq!(got_secret["type"], secret["type"]);
    assert_eq!(
        got_secret["stringData"],
        serde_json::json!({"APP_VERSION": "2.0.0", "SECRET_KEY": "my-super-secret-key"})
    );
    let mut want_keys: Vec<String> = env_file
        .lines()
        .filter_map(|l| l.split_once('=').map(|(k, _)| k.to_owned()))
        .collect();
    want_keys.sort();
    let got_keys: Vec<String> = got_secret["stringData"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    assert_eq!(got_keys, want_keys);
    // The image's VOLUME /app/config holds the ConfigMap: no emptyDir.
    let deployment = &got[&("Deployment".into(), "configurable-app".into())];
    assert_eq!(
        deployment["spec"]["template"]["spec"]["volumes"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    validate(&files_written);
}

#[test]
fn image_metadata_drives_the_no_flag_manifests_and_every_extra_validates() {
    let store = tempfile::tempdir().unwrap();
    let context = tempfile::tempdir().unwrap();
    std::fs::write(
        context.path().join("Dockerfile"),
        "FROM busybox\nSHELL [\"/bin/sh\", \"-ec\"]\nEXPOSE 8080 9090/udp\nVOLUME /data /cache\n\
         USER 1234:1234\nHEALTHCHECK --interval=10s --timeout=2500ms --start-period=3s --retries=5 \
         CMD wget -q -O- http://127.0.0.1:8080/ || exit 1\nCMD [\"httpd\", \"-f\", \"-p\", \"8080\"]\n",
    )
    .unwrap();
    let built = build(store.path(), context.path(), "metadata", true, &[]);
    let out = output(hoist(store.path()).args(["k8s", &built.reference]));
    assert!(out.status.success(), "{}", stderr(&out));
    let yaml = String::from_utf8(out.stdout.clone()).unwrap();
    let docs = by_kind_and_name(documents(&yaml));
    assert_eq!(
        docs.keys().cloned().collect::<Vec<_>>(),
        [
            ("Deployment".to_string(), "metadata".to_string()),
            ("Service".to_string(), "metadata".to_string())
        ]
    );
    let container = &docs[&("Deployment".into(), "metadata".into())]["spec"]["template"]["spec"]["containers"]
        [0];
    assert_eq!(container["image"], pinned(&built).as_str());
    assert_eq!(
        container["ports"],
        serde_json::json!([{"containerPort": 8080}, {"containerPort": 9090, "protocol": "UDP"}])
    );
    let probe = serde_json::json!({
        "exec": {"command": ["/bin/sh", "-ec", "wget -q -O- http://127.0.0.1:8080/ || exit 1"]},
        "periodSeconds": 10, "timeoutSeconds": 3, "initialDelaySeconds": 3, "failureThreshold": 5,
    });
    assert_eq!(container["livenessProbe"], probe);
    assert_eq!(container["readinessProbe"], probe);
    assert_eq!(container["securityContext"]["runAsUser"], 1234);
    assert_eq!(
        container["volumeMounts"],
        serde_json::json!([{"mountPath": "/cache", "name": "cache"}, {"mountPath": "/data", "name": "data"}])
    );
    let service = &docs[&("Service".into(), "metadata".into())];
    assert_eq!(
        service["spec"]["ports"],
        serde_json::json!([
            {"name": "tcp-8080", "port": 8080, "targetPort": 8080},
            {"name": "udp-9090", "port": 9090, "protocol": "UDP", "targetPort": 9090},
        ])
    );
    // By digest, the same manifests.
    let by_digest = run_ok(hoist(store.path()).args(["k8s", &pinned(&built)]));
    assert_eq!(by_digest, yaml);
    let dir = tempfile::tempdir().unwrap();
    let mut files = vec![write_documents(dir.path(), "plain", &yaml)];

    // Every other flag family, each validated.
    let variants: &[(&str, &[&str])] = &[
        (
            "extras",
            &[
                "--ingress-host",
                "app.example.com",
                "--ingress-class",
                "nginx",
                "--ingress-tls",
                "app-tls",
                "--ingress-path",
                "/api",
                "--ingress-path-type",
                "Exact",
                "--pdb-min-available",
                "50%",
                "--replicas",
                "4",
                "--hpa-min",
                "2",
                "--hpa-max",
                "8",
                "--hpa-cpu",
                "75",
                "--hpa-memory",
                "80",
                "--requests",
                "cpu=100m,memory=64Mi",
                "--max-surge",
                "25%",
                "--max-unavailable",
                "0",
                "--read-only-root-filesystem",
                "--image-pull-secret",
                "regcred",
                "--label",
                "tier=web",
                "--env-from-configmap",
                "shared",
                "--startup",
                "tcp=8080,period=2,failure-threshold=30",
                "--config-literal",
                "MODE=fast",
                "--secret-literal",
                "TOKEN=abc",
                "--secret-mount",
                "/run/secrets/app",
                "--service-type",
                "NodePort",
            ],
        ),
        (
            "recreate",
            &[
                "--strategy",
                "Recreate",
                "--no-hardening",
                "--no-healthcheck-probes",
                "--pull-policy",
                "Always",
                "--keep-tag",
                "--pdb-max-unavailable",
                "1",
                "--no-service",
            ],
        ),
        ("never", &["--pull-policy", "Never"]),
    ];
    for (name, flags) in variants {
        let out = output(
            hoist(store.path())
                .args(["k8s", &built.reference])
                .args(*flags),
        );
        assert!(out.status.success(), "{name}: {}", stderr(&out));
        let yaml = String::from_utf8(out.stdout.clone()).unwrap();
        files.push(write_documents(dir.path(), name, &yaml));
        if *name == "never" {
            // A loaded image has no registry digest: referenced by tag.
            assert!(
                yaml.contains(&format!("image: {}\n", built.reference)),
                "{yaml}"
            );
        }
        if *name == "extras" {
            let kinds: Vec<String> = documents(&yaml)
                .iter()
                .map(|d| d["kind"].as_str().unwrap().to_owned())
                .collect();
            assert_eq!(
                kinds,
                [
                    "ConfigMap",
                    "Secret",
                    "Deployment",
                    "Service",
                    "Ingress",
                    "PodDisruptionBudget",
                    "HorizontalPodAutoscaler"
                ]
            );
        }
    }
    validate(&files);
}

#[test]
fn an_image_missing_from_its_registry_is_refused_unless_allowed() {
    let store = tempfile::tempdir().unwrap();
    let context = tempfile::tempdir().unwrap();
    std::fs::write(
        context.path().join("Dockerfile"),
        format!(
            "FROM busybox\nLABEL unique={}\nEXPOSE 80\n",
            std::process::id()
        ),
    )
    .unwrap();
    let built = build(store.path(), context.path(), "unpushed", false, &[]);
    let out = output(hoist(store.path()).args(["k8s", &built.reference]));
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains(&format!("is not in registry {}", Registry::shared().addr()))
            && err.contains("--allow-unpushed"),
        "{err}"
    );
    let out = output(hoist(store.path()).args(["k8s", &built.reference, "--allow-unpushed"]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("warning: image"), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains(&pinned(&built)));
    // Not in the store at all.
    let out = output(hoist(store.path()).args(["k8s", "nothing/here:v9"]));
    assert!(!out.status.success());
    assert!(
        stderr(&out)
            .contains("is not in the store: build it with `hoist build -t nothing/here:v9`"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_pull_secret_is_written_private_and_never_logged() {
    let store = tempfile::tempdir().unwrap();
    let built = build(store.path(), &fixture("web-app"), "web-app", true, &[]);
    let home = tempfile::tempdir().unwrap();
    let password = "s3cret-Pa55word";
    let auth = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(format!("ci-bot:{password}"))
    };
    std::fs::write(
        home.path().join("config.json"),
        format!(
            "{{\"auths\":{{\"{}\":{{\"auth\":\"{auth}\"}}}}}}",
            Registry::shared().addr()
        ),
    )
    .unwrap();
    let file = home.path().join("regcred.yaml");
    let out = output(
        hoist(store.path())
            .env("DOCKER_CONFIG", home.path())
            .args(["k8s", &built.reference, "--pull-secret", "regcred"])
            .arg(&file),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains(password) && !stdout.contains(&auth));
    assert!(!stderr(&out).contains(password) && !stderr(&out).contains(&auth));
    assert!(
        stdout.contains("imagePullSecrets:\n      - name: regcred"),
        "{stdout}"
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let secret = &documents(&std::fs::read_to_string(&file).unwrap())[0];
    assert_eq!(secret["type"], "kubernetes.io/dockerconfigjson");
    let raw = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD
            .decode(secret["data"][".dockerconfigjson"].as_str().unwrap())
            .unwrap()
    };
    let config: Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(
        config["auths"][Registry::shared().addr()],
        serde_json::json!({"auth": auth, "username": "ci-bot", "password": password})
    );
    validate(&[file]);
}

#[test]
fn a_registry_that_needs_credentials_asks_for_a_pull_secret() {
    let htpasswd = require("htpasswd", "apache2-utils");
    let auth_dir = tempfile::tempdir().unwrap();
    let users = auth_dir.path().join("htpasswd");
    let line = run_ok(Command::new(htpasswd).args(["-Bbn", "ci-bot", "s3cret"]));
    std::fs::write(&users, line).unwrap();
    let private = Registry::start_with(&format!(
        "auth: {{htpasswd: {{realm: test, path: {}}}}}",
        users.display()
    ));
    let reference = format!("{}/priv/app:v1", private.addr());
    let store = tempfile::tempdir().unwrap();
    let layout = tempfile::tempdir().unwrap();
    run_ok(
        hoist(store.path())
            .args(["build", "-q", "-t", &reference])
            .arg("--registry-mirror")
            .arg(format!("docker.io={}", Registry::shared().addr()))
            .arg("--output")
            .arg(format!("type=oci,dest={}", layout.path().display()))
            .arg(fixture("web-app")),
    );
    run_ok(
        crate::support::skopeo()
            .args([
                "copy",
                "-q",
                "--preserve-digests",
                "--dest-tls-verify=false",
            ])
            .args(["--dest-creds", "ci-bot:s3cret"])
            .arg(format!("oci:{}", layout.path().display()))
            .arg(format!("docker://{reference}")),
    );
    let config = tempfile::tempdir().unwrap();
    std::fs::write(
        config.path().join("config.json"),
        format!(
            "{{\"auths\":{{\"{}\":{{\"username\":\"ci-bot\",\"password\":\"s3cret\"}}}}}}",
            private.addr()
        ),
    )
    .unwrap();
    let k8s = |extra: &[&str]| {
        output(
            hoist(store.path())
                .env("DOCKER_CONFIG", config.path())
                .args(["k8s", &reference])
                .args(extra),
        )
    };
    let warning = "only with credentials: the cluster needs a pull Secret";
    let out = k8s(&[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains(warning), "{}", stderr(&out));
    for flags in [
        &["--image-pull-secret", "regcred"][..],
        &["--pull-secret", "regcred", "-"],
    ] {
        let out = k8s(flags);
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(
            !stderr(&out).contains(warning),
            "{flags:?}: {}",
            stderr(&out)
        );
        assert!(!stderr(&out).contains("s3cret"));
    }
    // Without credentials hoist cannot even check: an error, not a guess.
    let out = output(
        hoist(store.path())
            .env("DOCKER_CONFIG", auth_dir.path())
            .args(["k8s", &reference]),
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("cannot check that"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_push_that_converted_the_manifest_pins_the_registry_digest() {
    let store = tempfile::tempdir().unwrap();
    let built = build(
        store.path(),
        &fixture("web-app"),
        "docker-format",
        false,
        &[],
    );
    // Docker's schema 2: the same blobs, another manifest, another digest.
    let pushed =
        run_ok(hoist(store.path()).args(["push", "-q", "--format", "docker", &built.reference]));
    let pushed = pushed.trim();
    let repo = built.reference.rsplit_once(':').unwrap().0;
    assert!(pushed.starts_with(&format!("{repo}@sha256:")), "{pushed}");
    assert_ne!(pushed, pinned(&built));
    let out = output(hoist(store.path()).args(["k8s", &built.reference]));
    assert!(out.status.success(), "{}", stderr(&out));
    let yaml = String::from_utf8(out.stdout).unwrap();
    assert!(yaml.contains(&format!("image: {pushed}\n")), "{yaml}");
}

fn read_dir_sorted(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

#[test]
fn build_k8s_out_is_byte_identical_for_unchanged_sources_and_follows_a_change() {
    let store = tempfile::tempdir().unwrap();
    let context = tempfile::tempdir().unwrap();
    let src = fixture("web-app");
    std::fs::copy(src.join("Dockerfile"), context.path().join("Dockerfile")).unwrap();
    std::fs::create_dir(context.path().join("www")).unwrap();
    for f in ["index.html", "health"] {
        std::fs::copy(src.join("www").join(f), context.path().join("www").join(f)).unwrap();
    }
    let out_dir = tempfile::tempdir().unwrap();
    let k8s_flags = ["--", "--replicas", "3", "--service-port", "80:3000"];
    let run = |dir: &str| {
        let target = out_dir.path().join(dir);
        let mut extra = vec!["--k8s-out", target.to_str().unwrap()];
        extra.extend(k8s_flags);
        // `--` and the k8s flags come after the context.
        let registry = Registry::shared();
        let reference = format!("{}/k8s/rebuild:v1", registry.addr());
        let out = run_ok(
            hoist(store.path())
                .args(["build", "-q", "--push", "-t", &reference])
                .arg("--registry-mirror")
                .arg(format!("docker.io={}", registry.addr()))
                .args(&extra[..2])
                .arg(context.path())
                .args(&extra[2..]),
        );
        (out.trim().to_owned(), read_dir_sorted(&target))
    };
    let (digest_a, first) = run("a");
    let (digest_b, second) = run("b");
    assert_eq!(digest_a, digest_b);
    assert_eq!(
        first, second,
        "an unchanged rebuild wrote different manifests"
    );
    let names: Vec<&str> = first.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["deployment-rebuild.yaml", "service-rebuild.yaml"]);
    let deployment = String::from_utf8(first[0].1.clone()).unwrap();
    assert!(
        deployment.contains(&format!("@{digest_a}\n")),
        "{deployment}"
    );

    std::fs::write(
        context.path().join("www/index.html"),
        "Hello from updated Kubernetes app!\n",
    )
    .unwrap();
    let (digest_c, third) = run("c");
    assert_ne!(digest_c, digest_a);
    let changed = String::from_utf8(third[0].1.clone()).unwrap();
    assert_eq!(changed, deployment.replace(&digest_a, &digest_c));
    assert_eq!(
        third[1], first[1],
        "the Service does not depend on the image"
    );
}

#[test]
fn build_k8s_out_refuses_flags_it_cannot_use() {
    let store = tempfile::tempdir().unwrap();
    let context = tempfile::tempdir().unwrap();
    std::fs::write(context.path().join("Dockerfile"), "FROM scratch\n").unwrap();
    let out = output(
        hoist(store.path())
            .args(["build", "--k8s-out", "x"])
            .arg(context.path()),
    );
    assert!(
        stderr(&out).contains("--k8s-out needs a -t NAME"),
        "{}",
        stderr(&out)
    );
    let out = output(
        hoist(store.path())
            .args(["build", "-t", "a:b", "--k8s-out", "x"])
            .arg(context.path())
            .args(["--", "--replicaz", "3"]),
    );
    assert!(
        stderr(&out)
            .contains("in the `hoist k8s` flags after --: unexpected argument '--replicaz'"),
        "{}",
        stderr(&out)
    );
}

// ------------------------------------------------------------------ resolve

fn resolve(store: &Path, file: &Path, extra: &[&str]) -> (String, String) {
    let out = output(hoist(store).arg("resolve").arg("-f").arg(file).args(extra));
    assert!(out.status.success(), "{}", stderr(&out));
    (String::from_utf8(out.stdout.clone()).unwrap(), stderr(&out))
}

#[test]
fn resolve_changes_only_the_image_line_of_the_tutorial_deployment() {
    let store = tempfile::tempdir().unwrap();
    let built = build(store.path(), &fixture("web-app"), "web-app", true, &[]);
    let input = repo_root().join("fixtures/tutorial/k8s/web-app-deployment.yaml");
    let mapping = format!("votre-username/my-k8s-app:v1={}", built.reference);
    let (out, err) = resolve(store.path(), &input, &["--image", &mapping]);
    assert!(
        err.contains("resolved 1 image reference in 1 file"),
        "{err}"
    );
    let before = std::fs::read_to_string(&input).unwrap();
    let changed: Vec<(usize, &str, &str)> = before
        .split_inclusive('\n')
        .zip(out.split_inclusive('\n'))
        .enumerate()
        .filter(|(_, (a, b))| a != b)
        .map(|(i, (a, b))| (i + 1, a, b))
        .collect();
    assert_eq!(before.lines().count(), out.lines().count());
    assert_eq!(
        changed,
        [(
            20,
            "        image: votre-username/my-k8s-app:v1\n",
            &*format!("        image: {}\n", pinned(&built))
        )]
    );
    // The commented-out minikube alternative stays a comment.
    assert!(out.contains("        # image: my-k8s-app:v1\n"));
}

#[test]
fn resolve_corpus_changes_only_image_fields() {
    let store = tempfile::tempdir().unwrap();
    let built = build(store.path(), &fixture("web-app"), "web-app", true, &[]);
    let corpus = repo_root().join("fixtures/k8s-resolve");
    let work = tempfile::tempdir().unwrap();
    let mapping = format!("registry.example.com/team/api:1.4={}", built.reference);
    let mut cases = 0;
    let mut failures = Vec::new();
    let mut entries: Vec<PathBuf> = std::fs::read_dir(&corpus)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.ends_with(".yaml") && !name.ends_with(".expected.yaml")
        })
        .collect();
    entries.sort();
    for input in entries {
        let name = input.file_name().unwrap().to_string_lossy().into_owned();
        let expected_path = corpus.join(name.replace(".yaml", ".expected.yaml"));
        let text = std::fs::read_to_string(&input)
            .unwrap()
            .replace("{{REF}}", &built.reference);
        let expected = std::fs::read_to_string(&expected_path)
            .unwrap()
            .replace("{{REF}}", &built.reference)
            .replace("{{IMAGE}}", &pinned(&built));
        let file = work.path().join(&name);
        std::fs::write(&file, &text).unwrap();
        let (out, _) = resolve(store.path(), &file, &["--image", &mapping]);
        cases += 1;
        if out != expected {
            let diff: Vec<String> = expected
                .split_inclusive('\n')
                .zip(out.split_inclusive('\n'))
                .enumerate()
                .filter(|(_, (e, o))| e != o)
                .map(|(i, (e, o))| {
                    format!("  line {}: expected {e:?}\n           got {o:?}", i + 1)
                })
                .collect();
            failures.push(format!("{name}:\n{}", diff.join("\n")));
        }
    }
    assert!(cases >= 6, "the corpus has {cases} cases");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn resolve_a_directory_joins_files_as_documents() {
    let store = tempfile::tempdir().unwrap();
    let built = build(store.path(), &fixture("web-app"), "web-app", true, &[]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("a.yaml"),
        format!(
            "kind: Pod\nspec: {{containers: [{{image: hoist://{}}}]}}",
            built.reference
        ),
    )
    .unwrap();
    std::fs::write(dir.path().join("b.yml"), "---\nkind: ConfigMap\n").unwrap();
    std::fs::write(dir.path().join("notes.txt"), "image: hoist://x\n").unwrap();
    let (out, _) = resolve(store.path(), dir.path(), &[]);
    assert_eq!(
        out,
        format!(
            "kind: Pod\nspec: {{containers: [{{image: {}}}]}}\n---\nkind: ConfigMap\n",
            pinned(&built)
        )
    );
    // A reference to an image the store lacks fails before any output.
    std::fs::write(dir.path().join("c.yaml"), "image: hoist://missing/app:v1\n").unwrap();
    let out = output(hoist(store.path()).arg("resolve").arg("-f").arg(dir.path()));
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    assert!(
        stderr(&out).contains("missing/app:v1 is not in the store"),
        "{}",
        stderr(&out)
    );
}

// ------------------------------------------------------------------ kube play

/// The body of `GET path` from `addr` (HTTP/1.0, so the server closes).
fn http_body(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(
        head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
        "{head}"
    );
    body.to_owned()
}

/// Removes the pod `podman kube play` made and the podman secret the test
/// created, even when the test fails.
struct PlayedPod {
    pod: String,
    secret: String,
}

impl Drop for PlayedPod {
    fn drop(&mut self) {
        let _ = podman()
            .args(["pod", "rm", "-f", "-t", "0", &self.pod])
            .output();
        let _ = podman().args(["secret", "rm", &self.secret]).output();
    }
}

#[test]
fn podman_kube_play_runs_the_manifests_with_the_config_map_and_the_fixed_secret() {
    require("catatonit", "catatonit");
    let (store, built) = configurable_app();
    // The ConfigMap's and Secret's contents, from the tutorial's YAML.
    let config_docs = by_kind_and_name(documents(&tutorial("configurable-app-config.yaml")));
    let message = config_docs[&("ConfigMap".into(), "app-config".into())]["data"]["config.json"]
        .as_str()
        .unwrap()
        .to_owned();
    let env_file =
        config_docs[&("Secret".into(), "app-secrets".into())]["stringData"]["app-secrets.env"]
            .as_str()
            .unwrap()
            .to_owned();
    let files = tempfile::tempdir().unwrap();
    let config = files.path().join("config.json");
    std::fs::write(&config, &message).unwrap();
    let secrets = files.path().join("app-secrets.env");
    std::fs::write(&secrets, &env_file).unwrap();
    // Names of its own, so runs at the same time do not collide.
    let name = format!("kube-play-{}", std::process::id());
    let secret_name = format!("{name}-secrets");
    let dir = tempfile::tempdir().unwrap();
    run_ok(
        hoist(store.path())
            .args(["k8s", &built.reference, "--name", &name, "-o"])
            .arg(dir.path())
            .args(["--replicas", "1", "--env", "APP_ENV=kubernetes"])
            .args(["--config-mount", "/app/config", "--config-file"])
            .arg(format!("config.json={}", config.display()))
            .args(["--secret-name", &secret_name, "--secret-env-file"])
            .arg(&secrets)
            .args(["--liveness", "http=/health,initial-delay=5,period=10"]),
    );
    let deployment = dir.path().join(format!("deployment-{name}.yaml"));
    let configmap = dir.path().join(format!("configmap-{name}-config.yaml"));
    let secret_file = dir.path().join(format!("secret-{secret_name}.yaml"));
    let _played = PlayedPod {
        pod: format!("{name}-pod-0"),
        secret: secret_name.clone(),
    };

    // podman 4.3 keeps Secrets in its own store and reads one there as a
    // JSON map of base64 values (what a cluster stores as `data`): the
    // Secret hoist wrote, put there as such.
    let secret = documents(&std::fs::read_to_string(&secret_file).unwrap()).remove(0);
    let data: serde_json::Map<String, Value> = secret["stringData"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            use base64::Engine as _;
            let encoded = base64::engine::general_purpose::STANDARD.encode(v.as_str().unwrap());
            (k.clone(), Value::String(encoded))
        })
        .collect();
    let podman_secret = dir.path().join("podman-secret.json");
    std::fs::write(&podman_secret, serde_json::to_vec(&data).unwrap()).unwrap();
    run_ok(
        podman()
            .args(["secret", "create", &secret_name])
            .arg(&podman_secret),
    );

    // The one edit of the Deployment, for this machine and not for
    // Kubernetes: podman 4.3 publishes every containerPort on the host
    // (0.0.0.0, same number), and tests here listen on 127.0.0.1 and free
    // ports only; a hostIP and hostPort, which podman honours, say where.
    let port = crate::support::free_port();
    let mut doc = documents(&std::fs::read_to_string(&deployment).unwrap()).remove(0);
    let ports = doc["spec"]["template"]["spec"]["containers"][0]["ports"]
        .as_array_mut()
        .unwrap();
    assert_eq!(ports.len(), 1, "{ports:?}");
    ports[0]["hostIP"] = "127.0.0.1".into();
    ports[0]["hostPort"] = port.into();
    let played = dir.path().join("played.yaml");
    std::fs::write(&played, serde_saphyr::to_string(&doc).unwrap()).unwrap();
    run_ok(
        podman()
            .args([
                "kube",
                "play",
                "--tls-verify=false",
                "--network",
                "slirp4netns",
            ])
            .arg("--configmap")
            .arg(&configmap)
            .arg(&played),
    );
    let container = format!("{name}-pod-0-{name}");
    let addr = format!("127.0.0.1:{port}");
    wait_until(
        "the app started by podman kube play",
        Duration::from_secs(30),
        || Ok(()),
        || crate::support::http_status(&addr, "/health") == Some(200),
    );
    // The tutorial's check: the message from the mounted ConfigMap, the
    // environment from the Deployment, the version from the fixed Secret.
    let answer: Value = serde_json::from_str(&http_body(&addr, "/")).unwrap();
    assert_eq!(
        answer,
        serde_json::json!({
            "message": "Hello from Kubernetes ConfigMap!",
            "environment": "kubernetes",
            "version": "2.0.0",
        })
    );
    // The pod runs what the manifest pinned, as the user it names.
    let image = run_ok(podman().args(["inspect", "--format", "{{.ImageName}}", &container]));
    assert_eq!(image.trim(), pinned(built));
    let deployment_doc = documents(&std::fs::read_to_string(&deployment).unwrap()).remove(0);
    let uid = &deployment_doc["spec"]["template"]["spec"]["containers"][0]["securityContext"]["runAsUser"];
    assert!(uid.as_u64().is_some_and(|u| u > 0), "{uid}");
    let id = run_ok(podman().args(["exec", &container, "id", "-u"]));
    assert_eq!(id.trim(), uid.to_string());
    // The fixed Secret reaches the app as the tutorial meant: one variable
    // per line of its env file, over the image's defaults (1.0.0).
    let env = run_ok(podman().args(["exec", &container, "env"]));
    let env: Vec<&str> = env.lines().collect();
    for want in [
        "APP_VERSION=2.0.0",
        "SECRET_KEY=my-super-secret-key",
        "APP_ENV=kubernetes",
        "CONFIG_PATH=/app/config/config.json",
    ] {
        assert!(env.contains(&want), "{want} not in {env:?}");
    }
}
