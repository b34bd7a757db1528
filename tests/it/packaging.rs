//! Packaging as an operator meets it: the Kubernetes base rendered by `kubectl kustomize`, the
//! container config accepted by `check-config`, the Dockerfile's key lines and its HEALTHCHECK
//! run against a real `deploybot serve`, the GitHub App manifest against the events the intake
//! acts on, and the configuration reference against the config structs.
//!
//! Docker itself does not run here. kubectl, promtool and bash are required (`support::tool`):
//! a machine without them fails the test that needs them, naming the Debian package.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::tool;
use deploybot::config::{Config, RawConfig};
use deploybot_core::secret::SecretRef;
use deploybot_core::webhook::event;
use serde::Deserialize;
use serde_json::Value;

fn repo_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo_file(rel)).unwrap_or_else(|e| panic!("reading {rel}: {e}"))
}

/// Every YAML document in `text`, as JSON values (easy to walk with `pointer`).
fn yaml_documents(text: &str, what: &str) -> Vec<Value> {
    yaml_serde::Deserializer::from_str(text)
        .map(|doc| Value::deserialize(doc).unwrap_or_else(|e| panic!("parsing {what}: {e}")))
        .filter(|v| !v.is_null())
        .collect()
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("{pointer}: expected a string in {v:#}"))
}

/// The rendered base, by kind (each kind exactly once).
fn rendered_base(kubectl: &Path) -> BTreeMap<String, Value> {
    let out = Command::new(kubectl)
        .args(["kustomize", &repo_file("deploy").display().to_string()])
        .output()
        .expect("running kubectl kustomize");
    assert!(
        out.status.success(),
        "kubectl kustomize deploy/ failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("utf-8 output");
    let mut by_kind = BTreeMap::new();
    for doc in yaml_documents(&text, "kubectl kustomize output") {
        let kind = str_at(&doc, "/kind").to_string();
        assert!(
            by_kind.insert(kind.clone(), doc).is_none(),
            "{kind} rendered twice"
        );
    }
    by_kind
}

#[test]
fn kustomize_renders_a_single_non_root_deploybot_wired_to_its_config() {
    let Some(kubectl) = tool::require("kubectl", "kubernetes-client") else {
        return; // missing, and opted out of failing: said so on stderr
    };
    let objects = rendered_base(&kubectl);
    let kinds: BTreeSet<&str> = objects.keys().map(String::as_str).collect();
    assert_eq!(
        kinds,
        BTreeSet::from([
            "ConfigMap",
            "Deployment",
            "PersistentVolumeClaim",
            "Service",
            "ServiceAccount"
        ]),
        "the base renders exactly these kinds; a Secret in it would overwrite the real one on \
         every apply"
    );
    let deploy = &objects["Deployment"];
    let pod = deploy.pointer("/spec/template/spec").expect("pod spec");
    let containers = pod["containers"].as_array().expect("containers");
    assert_eq!(containers.len(), 1);
    let c = &containers[0];

    // One writer: the SQLite store must never see two pods.
    assert_eq!(deploy.pointer("/spec/replicas"), Some(&Value::from(1)));
    assert_eq!(str_at(deploy, "/spec/strategy/type"), "Recreate");

    // The ConfigMap's hash-suffixed name is what the pod mounts, and it holds deploy/deploybot.yaml.
    let cm = &objects["ConfigMap"];
    let cm_name = str_at(cm, "/metadata/name");
    let suffix = cm_name
        .strip_prefix("deploybot-config-")
        .unwrap_or_else(|| panic!("ConfigMap name {cm_name}"));
    assert!(
        !suffix.is_empty(),
        "configMapGenerator appends a content hash"
    );
    let volumes = pod["volumes"].as_array().expect("volumes");
    let volume_of = |pointer: &str, name: &str| -> String {
        volumes
            .iter()
            .find(|v| v.pointer(pointer).and_then(Value::as_str) == Some(name))
            .map(|v| str_at(v, "/name").to_string())
            .unwrap_or_else(|| panic!("no volume with {pointer} = {name}: {volumes:#?}"))
    };
    let config_volume = volume_of("/configMap/name", cm_name);
    let config_text = str_at(cm, "/data/deploybot.yaml");
    assert_eq!(config_text, read("deploy/deploybot.yaml"));
    let config = deploybot::config::from_yaml(config_text, Path::new("ConfigMap deploybot.yaml"))
        .unwrap_or_else(|e| panic!("{e}"));

    let mount_of = |volume: &str| -> String {
        c["volumeMounts"]
            .as_array()
            .expect("volumeMounts")
            .iter()
            .find(|m| m["name"] == volume)
            .map(|m| str_at(m, "/mountPath").to_string())
            .unwrap_or_else(|| panic!("volume {volume} is not mounted"))
    };
    let config_dir = mount_of(&config_volume);
    let args: Vec<&str> = c["args"]
        .as_array()
        .expect("args")
        .iter()
        .map(|a| a.as_str().expect("string arg"))
        .collect();
    assert_eq!(
        args,
        ["serve", "--config", &format!("{config_dir}/deploybot.yaml")]
    );

    // The store lives on the claim, at the data_dir the config names.
    let pvc_name = str_at(&objects["PersistentVolumeClaim"], "/metadata/name");
    let data_volume = volume_of("/persistentVolumeClaim/claimName", pvc_name);
    assert_eq!(
        Path::new(&mount_of(&data_volume)),
        config.store.data_dir,
        "store.data_dir is the PVC's mount"
    );

    // Reachable: the config listens on all interfaces, on the port the probes and Service use.
    assert!(config.server.listen.ip().is_unspecified(), "listen 0.0.0.0");
    let port_named = |name: &str| -> u64 {
        c["ports"]
            .as_array()
            .expect("ports")
            .iter()
            .find(|p| p["name"] == name)
            .and_then(|p| p["containerPort"].as_u64())
            .unwrap_or_else(|| panic!("no container port named {name}"))
    };
    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        let get = c.pointer(&format!("/{probe}/httpGet")).expect(probe);
        assert_eq!(str_at(get, "/path"), path, "{probe}");
        let port = match &get["port"] {
            Value::String(name) => port_named(name),
            p => p.as_u64().expect("port"),
        };
        assert_eq!(port, u64::from(config.server.listen.port()), "{probe} port");
    }
    let svc = &objects["Service"];
    let svc_port = &svc.pointer("/spec/ports/0").expect("service port");
    assert_eq!(svc_port["port"], 8080);
    assert_eq!(
        port_named(svc_port["targetPort"].as_str().expect("named targetPort")),
        u64::from(config.server.listen.port())
    );
    // The admin listener (status page, /metrics) has its own named port, on the Service too,
    // where Prometheus scrapes it; the webhook port does not serve it (issue 15.9).
    assert!(
        config.server.admin_listen.ip().is_unspecified(),
        "admin_listen 0.0.0.0, for the cluster's Prometheus"
    );
    assert_eq!(
        port_named("admin"),
        u64::from(config.server.admin_listen.port())
    );
    let admin_port = svc
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .and_then(|ports| ports.iter().find(|p| p["name"] == "admin"))
        .expect("the Service's admin port");
    assert_eq!(admin_port["targetPort"], "admin");
    // SIGTERM: deploybot's grace period ends before Kubernetes' SIGKILL.
    let kill_after = pod
        .pointer("/terminationGracePeriodSeconds")
        .and_then(Value::as_u64)
        .expect("terminationGracePeriodSeconds");
    assert!(
        config.server.shutdown_grace.as_duration() + Duration::from_secs(5)
            <= Duration::from_secs(kill_after),
        "server.shutdown_grace {} leaves no margin before the SIGKILL at {kill_after}s",
        config.server.shutdown_grace
    );
    // Memory: the pod's limit holds both budgets, two of the largest deliveries being parsed
    // and the process itself (measured at about 45 MiB idle; 128 MiB is allowed), so the
    // budgets and not the kernel's OOM killer decide what waits (docs/operations.md).
    let limit = str_at(c, "/resources/limits/memory");
    let limit_bytes: usize = limit
        .strip_suffix("Mi")
        .and_then(|m| m.parse::<usize>().ok())
        .map(|m| m * 1024 * 1024)
        .unwrap_or_else(|| panic!("memory limit {limit} in Mi"));
    let needed = config.server.limits.intake_budget_bytes
        + config.server.worker.budget_bytes
        + 2 * config.server.max_body_bytes
        + 128 * 1024 * 1024;
    assert!(
        limit_bytes >= needed,
        "the memory limit {limit} is below the budgets' {} MiB",
        needed / (1024 * 1024)
    );
    let selector = svc.pointer("/spec/selector").expect("selector");
    let labels = deploy
        .pointer("/spec/template/metadata/labels")
        .expect("pod labels");
    for (k, v) in selector.as_object().expect("selector map") {
        assert_eq!(&labels[k], v, "Service selector {k} matches the pod");
    }

    // Non-root, nothing writable but the volumes.
    assert_eq!(
        pod.pointer("/securityContext/runAsNonRoot"),
        Some(&true.into())
    );
    let uid = pod
        .pointer("/securityContext/runAsUser")
        .and_then(Value::as_u64)
        .expect("runAsUser");
    assert_ne!(uid, 0);
    assert_eq!(
        c.pointer("/securityContext/readOnlyRootFilesystem"),
        Some(&true.into())
    );
    assert_eq!(
        c.pointer("/securityContext/allowPrivilegeEscalation"),
        Some(&false.into())
    );
    assert_eq!(
        str_at(pod, "/serviceAccountName"),
        str_at(&objects["ServiceAccount"], "/metadata/name")
    );

    // Environment: JSON logs, and each secret the config references comes from the Secret
    // template's keys.
    let env = c["env"].as_array().expect("env");
    let var = |name: &str| {
        env.iter()
            .find(|e| e["name"] == name)
            .unwrap_or_else(|| panic!("env {name} missing: {env:#?}"))
    };
    assert_eq!(var("DEPLOYBOT_LOG_FORMAT")["value"], "json");
    let template = &yaml_documents(&read("deploy/secret.example.yaml"), "secret.example.yaml")[0];
    assert_eq!(str_at(template, "/kind"), "Secret");
    fn env_name(r: Option<&SecretRef>) -> Option<&str> {
        match r {
            Some(SecretRef::Env(var)) => Some(var.as_str()),
            _ => None,
        }
    }
    for referenced in [
        env_name(config.server.webhook_secret.as_ref()),
        env_name(config.github.token.as_ref()),
    ] {
        let name = referenced.expect("the container config references its secrets by env");
        let key_ref = var(name)
            .pointer("/valueFrom/secretKeyRef")
            .unwrap_or_else(|| panic!("{name} comes from the Secret"));
        assert_eq!(key_ref["name"], template["metadata"]["name"]);
        let key = str_at(key_ref, "/key");
        let placeholder = template
            .pointer(&format!("/stringData/{key}"))
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("secret template has no key {key}"));
        assert!(
            placeholder.contains("REPLACE-ME"),
            "{key}: the template holds placeholders only"
        );
    }
}

#[test]
fn container_config_passes_check_config() {
    let out = Command::new(env!("CARGO_BIN_EXE_deploybot"))
        // The image's config, checked where its Secret is not mounted (as in CI).
        .args([
            "check-config",
            "--shape-only",
            &repo_file("deploy/deploybot.yaml").display().to_string(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "deploy/deploybot.yaml: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let effective = String::from_utf8_lossy(&out.stdout);
    assert!(effective.contains("listen: 0.0.0.0:8080"), "{effective}");
    assert!(
        effective.contains("data_dir: /var/lib/deploybot"),
        "{effective}"
    );
}

/// The Dockerfile's instructions, continuation lines joined, comments dropped.
fn dockerfile_instructions() -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in read("Dockerfile").lines() {
        let t = line.trim();
        if t.starts_with('#') || (t.is_empty() && current.is_empty()) {
            continue;
        }
        match t.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part);
                current.push(' ');
            }
            None => {
                current.push_str(t);
                out.push(std::mem::take(&mut current));
            }
        }
    }
    out
}

fn instruction<'a>(all: &'a [String], keyword: &str) -> Vec<&'a str> {
    all.iter()
        .filter_map(|i| i.strip_prefix(keyword).filter(|r| r.starts_with(' ')))
        .map(str::trim)
        .collect()
}

#[test]
fn dockerfile_builds_locked_runs_non_root_and_ships_the_container_config() {
    let all = dockerfile_instructions();
    assert!(
        instruction(&all, "RUN")
            .iter()
            .any(|r| r.contains("cargo build --release --locked")),
        "the image builds exactly Cargo.lock"
    );
    let users = instruction(&all, "USER");
    assert_eq!(users.len(), 1, "{users:?}");
    let uid: u32 = users[0]
        .split(':')
        .next()
        .unwrap()
        .parse()
        .expect("USER is numeric so runAsNonRoot can verify it");
    assert_ne!(uid, 0);
    let deployment = &yaml_documents(&read("deploy/deployment.yaml"), "deployment.yaml")[0];
    assert_eq!(
        deployment.pointer("/spec/template/spec/securityContext/runAsUser"),
        Some(&Value::from(uid)),
        "the Deployment runs as the image's user"
    );
    assert!(
        instruction(&all, "COPY").contains(&"deploy/deploybot.yaml /etc/deploybot/deploybot.yaml"),
        "the image ships the container config (0.0.0.0), not the example (127.0.0.1)"
    );
    assert_eq!(instruction(&all, "ENTRYPOINT"), [r#"["deploybot"]"#]);
    assert_eq!(
        instruction(&all, "CMD"),
        [r#"["serve", "--config", "/etc/deploybot/deploybot.yaml"]"#]
    );
    let volumes = instruction(&all, "VOLUME").join(" ");
    for dir in ["/etc/deploybot", "/var/lib/deploybot"] {
        assert!(volumes.contains(&format!("\"{dir}\"")), "VOLUME {dir}");
    }
    let health = instruction(&all, "HEALTHCHECK");
    assert_eq!(health.len(), 1);
    assert!(health[0].contains("/healthz"), "{}", health[0]);
    let dockerignore = read(".dockerignore");
    assert!(dockerignore.lines().any(|l| l.trim() == "target"));
}

/// Files under `dir` with extension `ext`, recursively.
fn files_with_ext(dir: &Path, ext: &str, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().map(Result::unwrap) {
        let path = entry.path();
        if path.is_dir() {
            files_with_ext(&path, ext, out);
        } else if path.extension().is_some_and(|e| e == ext) {
            out.push(path);
        }
    }
}

#[test]
fn dockerignore_keeps_every_file_the_build_embeds() {
    // The image is built from the context minus .dockerignore: a file that src/ embeds with
    // include_str!/include_bytes! (templates, fixtures, migrations) must stay in it.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let patterns: Vec<globset::GlobMatcher> = read(".dockerignore")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|p| {
            globset::GlobBuilder::new(p.trim_start_matches('/'))
                .literal_separator(true)
                .build()
                .unwrap_or_else(|e| panic!(".dockerignore pattern {p}: {e}"))
                .compile_matcher()
        })
        .collect();
    let excluded = |rel: &Path| {
        // Excluding a directory excludes everything below it.
        rel.ancestors()
            .filter(|a| !a.as_os_str().is_empty())
            .any(|a| patterns.iter().any(|g| g.is_match(a)))
    };
    assert!(
        excluded(Path::new("target/debug/deploybot")),
        "the check works"
    );
    let mut sources = Vec::new();
    files_with_ext(&root.join("src"), "rs", &mut sources);
    let mut embedded = 0;
    for source in &sources {
        let text = std::fs::read_to_string(source).unwrap();
        for macro_name in ["include_str!(\"", "include_bytes!(\""] {
            for (i, _) in text.match_indices(macro_name) {
                let rest = &text[i + macro_name.len()..];
                let rel = &rest[..rest.find('"').expect("closing quote")];
                let path = source.parent().unwrap().join(rel);
                let path = path
                    .canonicalize()
                    .unwrap_or_else(|e| panic!("{} embeds {rel}: {e}", source.display()));
                let inside = path
                    .strip_prefix(root.canonicalize().unwrap())
                    .unwrap_or_else(|_| {
                        panic!(
                            "{} embeds {rel}, outside the build context",
                            source.display()
                        )
                    })
                    .to_path_buf();
                assert!(
                    !excluded(&inside),
                    ".dockerignore excludes {}, which {} embeds",
                    inside.display(),
                    source.display()
                );
                embedded += 1;
            }
        }
    }
    assert!(embedded > 0, "found the embedded files");
}

/// The HEALTHCHECK's exec-form command, as the argv Docker would run.
fn healthcheck_argv() -> Vec<String> {
    let all = dockerfile_instructions();
    let health = instruction(&all, "HEALTHCHECK")[0];
    let json = &health[health.find("CMD [").expect("exec-form CMD") + 4..];
    serde_json::from_str(json).unwrap_or_else(|e| panic!("HEALTHCHECK CMD {json}: {e}"))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn run_healthcheck(argv: &[String], port: u16) -> bool {
    let argv: Vec<String> = argv
        .iter()
        .map(|a| a.replace("127.0.0.1/8080", &format!("127.0.0.1/{port}")))
        .collect();
    Command::new(&argv[0])
        .args(&argv[1..])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("running the HEALTHCHECK command")
        .success()
}

#[test]
fn dockerfile_healthcheck_passes_on_a_live_server_and_fails_without_one() {
    let argv = healthcheck_argv();
    assert!(
        argv.iter().any(|a| a.contains("127.0.0.1/8080")),
        "{argv:?}"
    );
    // The HEALTHCHECK's program (bash) is also the name of its Debian package.
    if tool::require(&argv[0], &argv[0]).is_none() {
        return; // missing, and opted out of failing: said so on stderr
    }
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    // The shipped config, on a loopback test port and a temporary data dir.
    let config = read("deploy/deploybot.yaml")
        .replace("0.0.0.0:8080", &format!("127.0.0.1:{port}"))
        .replace("0.0.0.0:9090", &format!("127.0.0.1:{}", free_port()))
        .replace("/var/lib/deploybot", &dir.path().display().to_string());
    let config_path = dir.path().join("deploybot.yaml");
    std::fs::write(&config_path, config).unwrap();

    assert!(
        !run_healthcheck(&argv, port),
        "nothing listens yet: the healthcheck must fail"
    );
    let _serve = Serve(
        Command::new(env!("CARGO_BIN_EXE_deploybot"))
            .args(["serve", "--config", &config_path.display().to_string()])
            .env("DEPLOYBOT_WEBHOOK_SECRET", "test-secret")
            // serve resolves every secret the config references before it listens.
            .env("GITHUB_TOKEN", "test-token")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(Instant::now() < deadline, "serve did not start listening");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        run_healthcheck(&argv, port),
        "healthcheck against a live serve"
    );

    // And the probe really reads the status: a 404 path must not pass.
    let not_found: Vec<String> = argv
        .iter()
        .map(|a| a.replace("/healthz", "/no-such-path"))
        .collect();
    assert!(!run_healthcheck(&not_found, port));
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(b"GET /readyz HTTP/1.0\r\n\r\n").unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(
        answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200"),
        "{answer}"
    );
}

/// Every webhook event GitHub sends (docs: "Webhook events and payloads"). Used to find the ones
/// the intake acts on by asking the real parser, rather than by copying its list.
const GITHUB_EVENTS: &[&str] = &[
    "branch_protection_configuration",
    "branch_protection_rule",
    "check_run",
    "check_suite",
    "code_scanning_alert",
    "commit_comment",
    "create",
    "custom_property",
    "custom_property_values",
    "delete",
    "dependabot_alert",
    "deploy_key",
    "deployment",
    "deployment_protection_rule",
    "deployment_review",
    "deployment_status",
    "discussion",
    "discussion_comment",
    "fork",
    "github_app_authorization",
    "gollum",
    "installation",
    "installation_repositories",
    "installation_target",
    "issue_comment",
    "issues",
    "label",
    "marketplace_purchase",
    "member",
    "membership",
    "merge_group",
    "meta",
    "milestone",
    "org_block",
    "organization",
    "package",
    "page_build",
    "personal_access_token_request",
    "ping",
    "project",
    "project_card",
    "project_column",
    "projects_v2",
    "projects_v2_item",
    "public",
    "pull_request",
    "pull_request_review",
    "pull_request_review_comment",
    "pull_request_review_thread",
    "push",
    "registry_package",
    "release",
    "repository",
    "repository_advisory",
    "repository_dispatch",
    "repository_import",
    "repository_ruleset",
    "repository_vulnerability_alert",
    "secret_scanning_alert",
    "secret_scanning_alert_location",
    "security_advisory",
    "security_and_analysis",
    "sponsorship",
    "star",
    "status",
    "sub_issues",
    "team",
    "team_add",
    "watch",
    "workflow_dispatch",
    "workflow_job",
    "workflow_run",
];

/// The events `webhook::event::parse` acts on. An event it does not act on parses any object to
/// `Ignored`; one it acts on either needs its payload's shape (an empty object is an error) or,
/// like `ping`, yields its own variant.
fn events_the_intake_acts_on() -> BTreeSet<String> {
    GITHUB_EVENTS
        .iter()
        .filter(|name| match event::parse(name, b"{}") {
            Err(_) => true,
            Ok(p) => !p.event.is_ignored(),
        })
        .map(|s| s.to_string())
        .collect()
}

#[test]
fn every_event_the_parser_matches_is_a_known_github_event() {
    // The probe above only sees names in GITHUB_EVENTS; a new match arm in event.rs for an event
    // missing from that list would escape it, so the source's arms are checked against it.
    let source = read("crates/core/src/webhook/event.rs");
    let body = &source[source.find("pub fn parse(").expect("fn parse")..];
    let body = &body[..body.find("\nfn ").unwrap_or(body.len())];
    let arms: BTreeSet<&str> = body
        .lines()
        .filter_map(|l| l.trim().strip_suffix("=> {"))
        .filter_map(|l| l.trim().strip_prefix('"')?.strip_suffix('"'))
        .collect();
    assert!(
        arms.contains("pull_request"),
        "found the event arms: {arms:?}"
    );
    for arm in &arms {
        assert!(GITHUB_EVENTS.contains(arm), "{arm} is not in GITHUB_EVENTS");
    }
    let acted_on = events_the_intake_acts_on();
    let arms: BTreeSet<String> = arms.iter().map(|s| s.to_string()).collect();
    assert_eq!(
        arms, acted_on,
        "event arms in parse() vs what parse() acts on"
    );
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AppManifest {
    name: String,
    url: String,
    #[serde(default)]
    description: Option<String>,
    hook_attributes: HookAttributes,
    redirect_url: String,
    public: bool,
    default_permissions: BTreeMap<String, String>,
    default_events: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HookAttributes {
    url: String,
    #[serde(default)]
    active: Option<bool>,
}

#[test]
fn github_app_manifest_asks_for_exactly_what_deploybot_uses() {
    let m: AppManifest = yaml_serde::from_str(&read("github-app.yml"))
        .unwrap_or_else(|e| panic!("github-app.yml: {e}"));
    assert_eq!(m.name, "deploybot");
    assert!(!m.public, "an organisation's own App");
    assert!(m.url.starts_with("https://") && m.redirect_url.starts_with("https://"));
    assert!(m.description.is_some_and(|d| !d.is_empty()));
    let default_path = Config::default().server.webhook_path;
    assert!(
        m.hook_attributes.url.starts_with("https://")
            && m.hook_attributes.url.ends_with(&default_path),
        "the hook posts to server.webhook_path: {}",
        m.hook_attributes.url
    );
    assert_ne!(m.hook_attributes.active, Some(false));

    // Events: exactly what the intake acts on. `ping` is sent on creation and cannot be
    // subscribed to.
    let events: BTreeSet<String> = m.default_events.iter().cloned().collect();
    assert_eq!(events.len(), m.default_events.len(), "duplicate events");
    let mut wanted = events_the_intake_acts_on();
    assert!(wanted.remove("ping"));
    assert_eq!(
        events, wanted,
        "github-app.yml default_events vs crates/core/src/webhook/event.rs"
    );

    // Permissions: exactly these levels (least privilege, reasons in the file's comments).
    let expected: BTreeMap<String, String> = [
        ("actions", "read"),
        ("checks", "read"),
        ("contents", "write"),
        ("issues", "write"),
        ("members", "read"),
        ("metadata", "read"),
        ("packages", "read"),
        ("pull_requests", "write"),
        ("statuses", "write"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(m.default_permissions, expected);

    // Each permission says why it is needed, in the comment just above it.
    let raw = read("github-app.yml");
    let lines: Vec<&str> = raw.lines().map(str::trim).collect();
    for perm in m.default_permissions.keys() {
        let at = lines
            .iter()
            .position(|l| l.starts_with(&format!("{perm}:")))
            .unwrap_or_else(|| panic!("{perm} line"));
        assert!(
            at > 0 && lines[at - 1].starts_with('#'),
            "github-app.yml: no comment justifying {perm}"
        );
    }

    // GitHub delivers an event to an App only if it holds that event's permission.
    for e in &events {
        let needs = match e.as_str() {
            "pull_request" | "pull_request_review" => "pull_requests",
            "issue_comment" => "issues",
            "workflow_run" => "actions",
            "registry_package" | "package" => "packages",
            "check_suite" => "checks",
            other => panic!("which permission does {other} need? add it here"),
        };
        assert!(
            m.default_permissions.contains_key(needs),
            "{e} needs the {needs} permission"
        );
    }
}

/// Keys of the YAML mapping at `section` (top level when empty) of `RawConfig::default()`'s YAML,
/// so the list follows the structs.
fn config_keys(value: &Value, section: &str) -> Vec<String> {
    let v = if section.is_empty() {
        value
    } else {
        &value[section]
    };
    v.as_object()
        .unwrap_or_else(|| panic!("{section}: not a mapping"))
        .keys()
        .cloned()
        .collect()
}

/// Lines of `section:` in the example (top-level block, up to the next top-level key).
fn example_block<'a>(example: &'a str, section: &str) -> Vec<&'a str> {
    let start = format!("{section}:");
    example
        .lines()
        .skip_while(|l| !l.starts_with(&start))
        .skip(1)
        .take_while(|l| l.is_empty() || l.starts_with(' '))
        .collect()
}

/// Whether `key:` appears on a line, set or shown commented out (`# key:`): an example cannot
/// set both halves of a `*_env` / `*_file` pair, so one of them is a comment.
fn mentions_key(line: &str, key: &str) -> bool {
    let t = line.trim_start();
    let t = t.strip_prefix('#').map(str::trim_start).unwrap_or(t);
    t.strip_prefix(key).is_some_and(|r| r.starts_with(':'))
}

/// A config with one of every list and map entry, so that every struct of the file has a place
/// in it to be probed.
const EVERY_SECTION: &str = r#"
gitops:
  repo_url: file:///x
risk:
  labels:
    - label: hotfix
services:
  - name: a
    app_repo: o/a
    environments:
      - name: e
        targets:
          - path: p.yaml
    analysis:
      judge:
        extra:
          orders: {}
      queries:
        extra:
          orders: "sum(x{track='{{track}}'})"
"#;

/// One step into the config tree.
#[derive(Clone)]
enum Step {
    Key(String),
    Index(usize),
}

/// The fields of the struct at `path` in `base`, as the config parser names them, or `None` when
/// the value there is not a struct. The parser is handed a key no struct has, and its "unknown
/// field" refusal lists every field, the ones the defaults' YAML leaves out (`None` options)
/// included: the list is the code's own, not a copy.
fn struct_fields(base: &Value, path: &[Step]) -> Option<Vec<String>> {
    const PROBE: &str = "zz_probe";
    let mut tree = base.clone();
    let mut at = &mut tree;
    for step in path {
        at = match step {
            Step::Key(k) => {
                if !at.is_object() {
                    *at = Value::Object(Default::default());
                }
                at.as_object_mut()
                    .unwrap()
                    .entry(k.clone())
                    .or_insert(Value::Null)
            }
            Step::Index(i) => &mut at[*i],
        };
    }
    if !at.is_object() {
        *at = Value::Object(Default::default());
    }
    at.as_object_mut()
        .unwrap()
        .insert(PROBE.into(), Value::from(1));
    let text = yaml_serde::to_string(&tree).unwrap();
    let error = RawConfig::from_yaml(&text).err()?;
    let rest = error.split_once(&format!("unknown field `{PROBE}`"))?.1;
    let expected = rest.split_once("expected")?.1;
    let expected = expected.split(" at line").next().unwrap_or(expected);
    Some(
        expected
            .split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_string)
            .collect(),
    )
}

/// The keys the config file may contain, as the reference writes them (`services[].name`,
/// `services[].analysis.judge.extra.<name>.mode`, `risk.categories.<category>.weight`): the
/// values, and the sections and lists that hold them (`services[].rollout`).
struct ConfigKeys {
    values: BTreeSet<String>,
    sections: BTreeSet<String>,
}

fn every_config_key() -> ConfigKeys {
    fn walk(base: &Value, path: &mut Vec<Step>, name: &str, out: &mut ConfigKeys) {
        let Some(fields) = struct_fields(base, path) else {
            out.values.insert(name.to_string());
            return;
        };
        out.sections.insert(name.to_string());
        for field in fields {
            let key = match (name, field.as_str()) {
                ("", f) => f.to_string(),
                ("risk.categories", _) => "risk.categories.<category>".to_string(),
                (n, f) => format!("{n}.{f}"),
            };
            path.push(Step::Key(field.clone()));
            match field.as_str() {
                "services" | "environments" | "targets" | "labels" => {
                    out.sections.insert(key.clone());
                    path.push(Step::Index(0));
                    walk(base, path, &format!("{key}[]"), out);
                    path.pop();
                }
                "extra" => {
                    out.sections.insert(key.clone());
                    path.push(Step::Key("orders".into()));
                    walk(base, path, &format!("{key}.<name>"), out);
                    path.pop();
                }
                _ => walk(base, path, &key, out),
            }
            path.pop();
        }
    }
    let base: Value = yaml_serde::from_str(EVERY_SECTION).unwrap();
    let mut keys = ConfigKeys {
        values: BTreeSet::new(),
        sections: BTreeSet::new(),
    };
    walk(&base, &mut Vec::new(), "", &mut keys);
    keys
}

/// The config keys a reference page documents: the backquoted names in the first cell of its
/// table rows that start with a top-level section (`server.listen`, `services[].name`).
fn documented_keys(page: &str, sections: &[String]) -> BTreeSet<String> {
    page.lines()
        .filter_map(|l| l.strip_prefix("| "))
        .filter_map(|l| l.split(" |").next())
        .flat_map(|cell| cell.split('`').skip(1).step_by(2))
        .filter(|k| {
            let head = k.split(['.', '[']).next().unwrap_or(k);
            k.len() > head.len() && sections.iter().any(|s| s == head)
        })
        .map(str::to_string)
        .collect()
}

#[test]
fn the_reference_documents_every_config_key_and_no_other() {
    let keys = every_config_key();
    // The probe must reach into lists, maps and options the defaults leave out.
    for k in [
        "server.listen",
        "llm.timeout_ms",
        "services[].risk.approval_at",
        "services[].environments[].targets[].tag_key",
        "services[].analysis.judge.extra.<name>.tolerance",
        "services[].analysis.queries.extra.<name>",
        "risk.categories.<category>.patterns",
        "risk.labels[].strategy",
    ] {
        assert!(
            keys.values.contains(k),
            "{k} not found among {:#?}",
            keys.values
        );
    }
    let reference = read("docs/configuration.md");
    let sections = config_keys(
        &yaml_serde::from_str(&RawConfig::default().effective().to_yaml()).unwrap(),
        "",
    );
    let documented = documented_keys(&reference, &sections);
    let undocumented: Vec<&String> = keys.values.difference(&documented).collect();
    let unknown: Vec<&String> = documented
        .iter()
        .filter(|k| !keys.values.contains(*k) && !keys.sections.contains(*k))
        .collect();
    assert!(
        undocumented.is_empty() && unknown.is_empty(),
        "docs/configuration.md: keys the code reads but no table row names: {undocumented:#?}\n\
         table rows naming keys the code does not read: {unknown:#?}"
    );
}

#[test]
fn the_key_probe_tells_structs_from_values() {
    let base: Value = yaml_serde::from_str(EVERY_SECTION).unwrap();
    let key = |k: &str| Step::Key(k.into());
    let fields = struct_fields(&base, &[key("services"), Step::Index(0), key("risk")]);
    assert_eq!(
        fields,
        Some(
            ["canary_25_at", "canary_10_at", "canary_5_at", "approval_at"]
                .map(String::from)
                .to_vec()
        )
    );
    assert_eq!(struct_fields(&base, &[key("server"), key("listen")]), None);
    assert_eq!(
        struct_fields(&base, &[key("gitops"), key("pr_labels")]),
        None
    );
    let page =
        "| key | x |\n| `server.listen` / `server.nope` | a `llm.model` |\n| `server` | b |\n";
    let sections = ["server".to_string(), "llm".to_string()];
    assert_eq!(
        documented_keys(page, &sections),
        ["server.listen", "server.nope"].map(String::from).into()
    );
}

#[test]
fn every_config_key_is_documented_and_in_the_example() {
    let defaults: Value =
        yaml_serde::from_str(&RawConfig::default().effective().to_yaml()).unwrap();
    let reference = read("docs/configuration.md");
    let example = read("examples/deploybot.yaml");
    let mut missing = Vec::new();
    let top = config_keys(&defaults, "");
    assert!(
        top.contains(&"server".to_string()) && top.len() >= 5,
        "{top:?}"
    );
    for key in &top {
        if !reference.contains(&format!("`{key}`")) {
            missing.push(format!("docs/configuration.md: `{key}`"));
        }
        if !example
            .lines()
            .any(|l| !l.starts_with(' ') && mentions_key(l, key))
        {
            missing.push(format!("examples/deploybot.yaml: top-level {key}:"));
        }
    }
    for section in ["server", "github", "store"] {
        let block = example_block(&example, section);
        for key in config_keys(&defaults, section) {
            if block.is_empty() {
                missing.push(format!("examples/deploybot.yaml: no {section}: block"));
            } else if !block.iter().any(|l| mentions_key(l, &key)) {
                missing.push(format!("examples/deploybot.yaml: {section}.{key}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "undocumented keys:\n{}",
        missing.join("\n")
    );
}

#[test]
fn example_key_check_notices_a_missing_key() {
    // The check above must be able to fail: a key only in a comment elsewhere does not count.
    let example =
        "server:\n  listen: x\n# webhook_path: outside the block\ngithub:\n  api_url: y\n";
    let block = example_block(example, "server");
    assert!(block.iter().any(|l| mentions_key(l, "listen")));
    assert!(!block.iter().any(|l| mentions_key(l, "api_url")));
    assert!(!block.iter().any(|l| mentions_key(l, "webhook_path")));
    assert!(!mentions_key("  listener: x", "listen"));
    assert!(mentions_key(
        "  # webhook_secret_file: /run/s",
        "webhook_secret_file"
    ));
}

#[test]
fn alert_rules_are_valid_and_fire_on_the_failures_they_name() {
    let Some(promtool) = tool::require("promtool", "prometheus") else {
        return; // missing, and opted out of failing: said so on stderr
    };
    for args in [
        ["check", "rules", "deploy/prometheus-rules.yaml"],
        ["test", "rules", "fixtures/packaging/alerts.test.yaml"],
    ] {
        let out = Command::new(&promtool)
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .expect("running promtool");
        assert!(
            out.status.success(),
            "promtool {}:\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn alert_rules_and_operations_doc_name_only_series_deploybot_exports() {
    let exported = deploybot::shell::metrics::Metrics::default().render(Some(0));
    let families: BTreeSet<&str> = exported
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(families.contains("deploybot_queue_depth"), "{exported}");
    for file in ["deploy/prometheus-rules.yaml", "docs/operations.md"] {
        let text = read(file);
        let mut named = 0;
        for (i, _) in text.match_indices("deploybot_") {
            let name: String = text[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(&name);
            assert!(
                families.contains(family),
                "{file} names {name}, which /metrics does not export"
            );
            named += 1;
        }
        assert!(named >= 4, "{file} names the series to alert on");
    }
}
