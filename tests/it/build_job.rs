//! `hoist build --job`: the context goes to registry:2 as an artifact
//! (unchanged files are not sent again), and the Job printed is
//! strict-valid, meets Pod Security "baseline" (its rules are listed
//! below), and, its pod template played as a Pod by `podman kube play`
//! with a dockerconfigjson Secret against a registry:2 that wants a
//! password, builds the context and pushes the digest a local build of
//! the same context has.

use crate::container::podman_hoist_image;
use crate::k8s::{documents, validate};
use crate::support::process::ProcessDir;
use crate::support::{
    Registry, busybox_context, podman, repo_root, require, run_ok, skopeo, tutorial_bases,
};
use crate::support::{hoist_with_store as hoist, output_text as text};
use serde_json::{Value, json};
use std::process::{Command, Output};

/// The `context: ...` line's counts: blobs sent, blobs already there.
fn sent_and_present(out: &Output) -> (usize, usize) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stderr
        .lines()
        .find(|l| l.contains(" blobs ("))
        .unwrap_or_else(|| panic!("no upload line:\n{stderr}"));
    let number_before = |word: &str| -> usize {
        let head = &line[..line.find(word).unwrap()];
        head.split_whitespace().last().unwrap().parse().unwrap()
    };
    (number_before(" blobs ("), number_before(" already in"))
}

/// The context artifact the run uploaded: `REGISTRY/REPO@sha256:...`.
fn artifact_of(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    stderr
        .lines()
        .find_map(|l| l.strip_prefix("context: oci-artifact://"))
        .unwrap_or_else(|| panic!("no artifact line:\n{stderr}"))
        .to_owned()
}

/// Pod Security Standards "baseline" (Kubernetes 1.37), checked over a pod
/// spec; the violations, empty when it passes.
fn baseline_violations(pod: &Value) -> Vec<String> {
    const CAPABILITIES: [&str; 13] = [
        "AUDIT_WRITE",
        "CHOWN",
        "DAC_OVERRIDE",
        "FOWNER",
        "FSETID",
        "KILL",
        "MKNOD",
        "NET_BIND_SERVICE",
        "SETFCAP",
        "SETGID",
        "SETPCAP",
        "SETUID",
        "SYS_CHROOT",
    ];
    const SELINUX_TYPES: [&str; 5] = [
        "",
        "container_t",
        "container_init_t",
        "container_kvm_t",
        "container_engine_t",
    ];
    const SAFE_SYSCTLS: [&str; 9] = [
        "kernel.shm_rmid_forced",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.ip_unprivileged_port_start",
        "net.ipv4.tcp_syncookies",
        "net.ipv4.ping_group_range",
        "net.ipv4.ip_local_reserved_ports",
        "net.ipv4.tcp_keepalive_time",
        "net.ipv4.tcp_fin_timeout",
        "net.ipv4.tcp_keepalive_intvl",
    ];
    let mut found = Vec::new();
    // Host namespaces.
    for key in ["hostNetwork", "hostPID", "hostIPC"] {
        if pod[key] == json!(true) {
            found.push(format!("{key}: true"));
        }
    }
    // HostPath volumes.
    for volume in pod["volumes"].as_array().into_iter().flatten() {
        if !volume["hostPath"].is_null() {
            found.push(format!("hostPath volume {}", volume["name"]));
        }
    }
    // Sysctls.
    for sysctl in pod["securityContext"]["sysctls"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let name = sysctl["name"].as_str().unwrap_or_default();
        if !SAFE_SYSCTLS.contains(&name) {
            found.push(format!("sysctl {name}"));
        }
    }
    let contexts = std::iter::once(("pod".to_owned(), &pod["securityContext"]));
    let containers: Vec<&Value> = ["containers", "initContainers", "ephemeralContainers"]
        .iter()
        .flat_map(|key| pod[*key].as_array().into_iter().flatten())
        .collect();
    for container in &containers {
        let name = container["name"].as_str().unwrap_or_default();
        let context = &container["securityContext"];
        // Privileged containers.
        if context["privileged"] == json!(true) {
            found.push(format!("{name}: privileged"));
        }
        // Capabilities.
        for cap in context["capabilities"]["add"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let cap = cap.as_str().unwrap_or_default();
            if !CAPABILITIES.contains(&cap) {
                found.push(format!("{name}: adds {cap}"));
            }
        }
        // Host ports.
        for port in container["ports"].as_array().into_iter().flatten() {
            if port["hostPort"].as_i64().unwrap_or(0) != 0 {
                found.push(format!("{name}: hostPort"));
            }
        }
        // /proc mount type.
        if !context["procMount"].is_null() && context["procMount"] != json!("Default") {
            found.push(format!("{name}: procMount {}", context["procMount"]));
        }
    }
    let all_contexts = contexts.chain(containers.iter().map(|c| {
        (
            c["name"].as_str().unwrap_or_default().to_owned(),
            &c["securityContext"],
        )
    }));
    for (who, context) in all_contexts {
        // HostProcess.
        if context["windowsOptions"]["hostProcess"] == json!(true) {
            found.push(format!("{who}: hostProcess"));
        }
        // Seccomp.
        if context["seccompProfile"]["type"] == json!("Unconfined") {
            found.push(format!("{who}: seccomp Unconfined"));
        }
        // AppArmor.
        if context["appArmorProfile"]["type"] == json!("Unconfined") {
            found.push(format!("{who}: AppArmor Unconfined"));
        }
        // SELinux.
        let selinux = &context["seLinuxOptions"];
        let kind = selinux["type"].as_str().unwrap_or_default();
        if !SELINUX_TYPES.contains(&kind)
            || !selinux["user"].is_null()
            || !selinux["role"].is_null()
        {
            found.push(format!("{who}: SELinux options {selinux}"));
        }
    }
    found
}

#[test]
fn the_baseline_check_sees_what_baseline_forbids() {
    // The referee of the Job's check: each rule trips on its violation.
    let bad = json!({
        "hostNetwork": true,
        "volumes": [{"name": "h", "hostPath": {"path": "/"}}],
        "securityContext": {"seccompProfile": {"type": "Unconfined"}},
        "containers": [{
            "name": "c",
            "ports": [{"containerPort": 80, "hostPort": 80}],
            "securityContext": {
                "privileged": true,
                "capabilities": {"add": ["SYS_ADMIN"]},
                "procMount": "Unmasked",
                "appArmorProfile": {"type": "Unconfined"},
                "seLinuxOptions": {"type": "spc_t"}
            }
        }]
    });
    let found = baseline_violations(&bad);
    assert_eq!(found.len(), 9, "{found:#?}");
    assert!(baseline_violations(&json!({"containers": [{"name": "c"}]})).is_empty());
}

#[test]
fn a_job_uploads_only_changed_files_and_is_strict_valid_and_baseline() {
    let registry = Registry::shared();
    let dir = ProcessDir::owned("job-upload");
    let ctx = dir.path().join("ctx");
    busybox_context(&ctx);
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM scratch\nCOPY . /\nRUN cat /msg > /copied\n",
    )
    .unwrap();
    std::fs::write(ctx.join("msg"), "one\n").unwrap();
    std::fs::create_dir(ctx.join("empty")).unwrap();
    std::fs::write(ctx.join("left-out"), "not for the cluster\n").unwrap();
    std::fs::write(ctx.join(".dockerignore"), "left-out\n").unwrap();
    let store = dir.path().join("store");
    let tag = format!("{}/job/upload:1", registry.addr());
    let job = dir.path().join("job.yaml");
    let upload = || {
        let out = hoist(&store)
            .args(["build", "-t", &tag, "--job-image", "example.test/hoist:1"])
            .args(["--job-secret", "regcred", "--build-arg", "GREETING=hi"])
            .arg(format!("--job={}", job.display()))
            .arg(&ctx)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out));
        out
    };
    let first = upload();
    let (sent, present) = sent_and_present(&first);
    assert!(sent >= 4 && present == 0, "{}", text(&first));
    // The same context again: every blob is there, and the artifact is the
    // same one.
    let again = upload();
    assert_eq!(sent_and_present(&again).0, 0, "{}", text(&again));
    assert_eq!(artifact_of(&again), artifact_of(&first));
    // One file changed: its content and the index go, nothing else.
    std::fs::write(ctx.join("msg"), "two\n").unwrap();
    let changed = upload();
    assert_eq!(sent_and_present(&changed).0, 2, "{}", text(&changed));
    let artifact = artifact_of(&changed);
    assert_ne!(artifact, artifact_of(&first));
    // The ignored file's content was never sent.
    let manifest = run_ok(
        skopeo()
            .args(["inspect", "--raw", "--tls-verify=false"])
            .arg(format!("docker://{artifact}")),
    );
    let left_out = hoist_oci::Digest::of(b"not for the cluster\n").to_string();
    assert!(!manifest.contains(&left_out), "{manifest}");
    assert!(
        manifest.contains("application/vnd.hoist.build-context.v1"),
        "{manifest}"
    );

    // The Job: strict-valid, baseline, and running the same build.
    validate(std::slice::from_ref(&job));
    let docs = documents(&std::fs::read_to_string(&job).unwrap());
    assert_eq!(docs.len(), 1);
    let pod = &docs[0]["spec"]["template"]["spec"];
    assert_eq!(baseline_violations(pod), Vec::<String>::new(), "{pod:#}");
    let container = &pod["containers"][0];
    assert_eq!(container["image"], "example.test/hoist:1");
    let context = &container["securityContext"];
    assert_eq!(context["allowPrivilegeEscalation"], json!(false));
    assert_eq!(context["capabilities"]["drop"], json!(["ALL"]));
    assert_eq!(pod["automountServiceAccountToken"], json!(false));
    let args: Vec<&str> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    for wanted in [
        "--push",
        "--build-arg=GREETING=hi",
        "--digest-file=/dev/termination-log",
        &format!("--tag={tag}"),
        &format!("oci-artifact://{artifact}"),
    ] {
        assert!(args.contains(&wanted), "{wanted} missing from {args:?}");
    }

    // The artifact builds here into the image the directory gives.
    let local = run_ok(hoist(&store).args(["build", "-q"]).arg(&ctx));
    let remote = run_ok(
        hoist(&dir.path().join("other-store"))
            .args(["build", "-q"])
            .arg(format!("oci-artifact://{artifact}")),
    );
    assert_eq!(remote.trim(), local.trim());
}

#[test]
fn job_refuses_flags_it_cannot_carry_and_needs_an_image() {
    let dir = ProcessDir::owned("job-refusals");
    let ctx = dir.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("Dockerfile"), "FROM scratch\n").unwrap();
    let store = dir.path().join("store");
    let tag = format!("{}/job/refused:1", Registry::shared().addr());
    let run = |args: &[&str]| {
        let out = hoist(&store)
            .args(["build", "--job", "-t", &tag])
            .args(args)
            .arg(&ctx)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = run(&[]);
    assert!(
        err.contains("--job-image") && err.contains("HOIST_JOB_IMAGE"),
        "{err}"
    );
    let err = run(&["--job-image", "x/hoist:1", "--output", "type=oci,dest=out"]);
    assert!(err.contains("--output acts on this machine"), "{err}");
    let err = run(&["--job-image", "x/hoist:1", "--secret", "id=a,env=HOME"]);
    assert!(err.contains("--secret"), "{err}");
    // Without -t there is nowhere to push.
    let out = hoist(&store)
        .args(["build", "--job", "--job-image", "x/hoist:1"])
        .arg(&ctx)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--job needs a -t NAME"),
        "{}",
        text(&out)
    );
    // Something that is not a context artifact is refused by name.
    let out = hoist(&store)
        .args(["build", "-q"])
        .arg(format!(
            "oci-artifact://{}/library/busybox:latest",
            Registry::shared().addr()
        ))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("is an image, not an artifact"),
        "{err}"
    );
}

/// The Job's pod template as a Pod, with the Secret, played by `podman
/// kube play` (podman 4.3 has no Job). Two changes, both what a cluster
/// gives the pod by itself: the host network, so the pod reaches the
/// loopback registries (baseline forbids `hostNetwork` in the manifest,
/// so it is podman's `--network host`); and a file mounted at
/// /dev/termination-log, as the kubelet mounts one.
#[test]
fn the_jobs_pod_builds_under_podman_kube_play_and_pushes_the_local_digest() {
    require("htpasswd", "apache2-utils");
    let bases = tutorial_bases();
    let dir = ProcessDir::owned("job-pod");
    let users = dir.path().join("htpasswd");
    let line = run_ok(Command::new("htpasswd").args(["-Bbn", "ci-bot", "s3cret"]));
    std::fs::write(&users, line).unwrap();
    let private = Registry::start_with(&format!(
        "auth: {{htpasswd: {{realm: hoist-test, path: {}}}}}",
        users.display()
    ));
    let docker_config = dir.path().join("docker");
    std::fs::create_dir_all(&docker_config).unwrap();
    use base64::Engine as _;
    let auth = base64::engine::general_purpose::STANDARD.encode("ci-bot:s3cret");
    let config = json!({"auths": {private.addr(): {"auth": auth}}}).to_string();
    std::fs::write(docker_config.join("config.json"), &config).unwrap();

    let ctx = repo_root().join("fixtures/tutorial/web-app");
    let mirror = format!("--registry-mirror=docker.io={}", bases.addr());
    let local = run_ok(
        hoist(&dir.path().join("local-store"))
            .args(["build", "-q", "--isolation", "namespaces", &mirror])
            .arg(&ctx),
    );
    let image = podman_hoist_image();
    let pid = std::process::id();
    let secret = format!("regcred-{pid}");
    let tag = format!("{}/job/web-app:{pid}", private.addr());
    let job = dir.path().join("job.yaml");
    run_ok(
        hoist(&dir.path().join("client-store"))
            .env("DOCKER_CONFIG", &docker_config)
            .args(["build", "-t", &tag, "--job-image", image])
            .args(["--job-secret", &secret, &mirror])
            .arg(format!("--job={}", job.display()))
            .arg(&ctx),
    );
    let docs = documents(&std::fs::read_to_string(&job).unwrap());
    let name = docs[0]["metadata"]["name"].as_str().unwrap().to_owned();
    let mut spec = docs[0]["spec"]["template"]["spec"].clone();
    let termination_log = dir.path().join("termination-log");
    std::fs::write(&termination_log, "").unwrap();
    spec["containers"][0]["volumeMounts"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "termination-log", "mountPath": "/dev/termination-log"}));
    spec["volumes"].as_array_mut().unwrap().push(json!({
        "name": "termination-log",
        "hostPath": {"path": termination_log, "type": "File"}
    }));
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec});
    let secret_doc = json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": secret},
        "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": base64::engine::general_purpose::STANDARD.encode(&config)}
    });
    let play = dir.path().join("play.yaml");
    std::fs::write(&play, format!("{secret_doc}\n---\n{pod}\n")).unwrap();
    let played = podman()
        .args(["kube", "play", "--network", "host"])
        .arg(&play)
        .output()
        .unwrap();
    let container = format!("{name}-hoist");
    let waited = podman().args(["wait", &container]).output().unwrap();
    let logs = podman().args(["logs", &container]).output().unwrap();
    let _ = podman().args(["pod", "rm", "-f", &name]).output();
    let _ = podman().args(["secret", "rm", &secret]).output();
    assert!(played.status.success(), "{}", text(&played));
    let log = text(&logs);
    assert_eq!(
        String::from_utf8_lossy(&waited.stdout).trim(),
        "0",
        "the build failed:\n{log}"
    );
    assert!(log.contains("RUN steps run with chroot isolation"), "{log}");
    let pushed = std::fs::read_to_string(&termination_log).unwrap();
    assert_eq!(pushed.trim(), local.trim(), "{log}");
    assert!(log.contains(&format!("@{}", local.trim())), "{log}");
    let inspected = run_ok(
        skopeo()
            .args(["inspect", "--tls-verify=false", "--format", "{{.Digest}}"])
            .args(["--creds", "ci-bot:s3cret"])
            .arg(format!("docker://{tag}")),
    );
    assert_eq!(inspected.trim(), local.trim());
}
