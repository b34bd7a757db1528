//! The `deploybot manifest` commands run as a process: in-place edits, --dry-run diffs, exit
//! codes (0 changed, 3 nothing to change, 1 error) and nothing written on error.

use std::path::Path;
use std::process::{Command, Output};

fn deploybot(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_deploybot"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("running deploybot")
}

fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).into_owned()
}

const DEPLOY: &str = "apiVersion: apps/v1\r\nkind: Deployment\r\nmetadata: {name: shop}\r\nspec:\r\n  template:\r\n    spec:\r\n      containers:\r\n      - name: app  # ☕\r\n        image: ghcr.io/acme/shop:v1 # pinned\r\n";
const ROUTE: &str = "kind: HTTPRoute\napiVersion: gateway.networking.k8s.io/v1\nmetadata: {name: r}\nspec:\n  rules:\n  - backendRefs:\n    - name: stable\n      weight: 100\n    - name: canary\n      weight: 0\n";

#[test]
fn set_image_edits_in_place_then_reports_nothing_to_change() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("deploy.yaml"), DEPLOY).unwrap();
    std::fs::write(
        dir.path().join("other.yaml"),
        "kind: ConfigMap\ndata: {a: b}\n",
    )
    .unwrap();
    let out = deploybot(
        &[
            "manifest",
            "set-image",
            "deploy.yaml",
            "other.yaml",
            "ghcr.io/acme/shop:v2",
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("deploy.yaml")).unwrap(),
        DEPLOY.replace("shop:v1 # pinned", "shop:v2 # pinned")
    );
    assert!(
        text(&out.stderr).contains("deploy.yaml:9:"),
        "{}",
        text(&out.stderr)
    );
    // No temporary file is left behind.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");

    let again = deploybot(
        &[
            "manifest",
            "set-image",
            "deploy.yaml",
            "ghcr.io/acme/shop:v2",
        ],
        dir.path(),
    );
    assert_eq!(again.status.code(), Some(3), "{}", text(&again.stderr));
}

#[test]
fn dry_run_prints_a_unified_diff_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("route.yaml"), ROUTE).unwrap();
    let out = deploybot(
        &[
            "manifest",
            "set-weight",
            "route.yaml",
            "--canary",
            "canary=10",
            "--dry-run",
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let diff = text(&out.stdout);
    assert!(
        diff.starts_with("--- a/route.yaml\n+++ b/route.yaml\n"),
        "{diff}"
    );
    assert!(
        diff.contains("-      weight: 100\n+      weight: 90\n"),
        "{diff}"
    );
    assert!(
        diff.contains("-      weight: 0\n+      weight: 10\n"),
        "{diff}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("route.yaml")).unwrap(),
        ROUTE
    );
}

#[test]
fn errors_exit_1_name_the_problem_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("deploy.yaml"), DEPLOY).unwrap();
    std::fs::write(dir.path().join("broken.yaml"), "a: [1, 2\nb: {\n").unwrap();
    // One good file and one broken file: the good one must not be written either.
    let out = deploybot(
        &[
            "manifest",
            "set-image",
            "deploy.yaml",
            "broken.yaml",
            "ghcr.io/acme/shop:v2",
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("broken.yaml:") && err.contains("not YAML"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("deploy.yaml")).unwrap(),
        DEPLOY
    );

    let out = deploybot(
        &[
            "manifest",
            "set-image",
            "deploy.yaml",
            "ghcr.io/acme/cart:v2",
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("found ghcr.io/acme/shop:v1 at Deployment/shop"),
        "{}",
        text(&out.stderr)
    );

    let out = deploybot(
        &["manifest", "set-image", "deploy.yaml", "ghcr.io/acme/shop"],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("nothing to set"),
        "{}",
        text(&out.stderr)
    );

    let out = deploybot(
        &["manifest", "set-weight", "deploy.yaml", "--canary", "x=101"],
        dir.path(),
    );
    assert_ne!(out.status.code(), Some(0));
    assert!(
        text(&out.stderr).contains("0..=100"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn set_replicas_splits_the_total() {
    let dir = tempfile::tempdir().unwrap();
    let file = "kind: Deployment\nmetadata: {name: shop}\nspec:\n  replicas: 4\n---\nkind: Deployment\nmetadata: {name: shop-canary}\nspec:\n  replicas: 0\n";
    std::fs::write(dir.path().join("d.yaml"), file).unwrap();
    let out = deploybot(
        &[
            "manifest",
            "set-replicas",
            "d.yaml",
            "--canary",
            "shop-canary=25",
            "--stable",
            "shop",
            "--total",
            "4",
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("d.yaml")).unwrap(),
        file.replace("replicas: 4", "replicas: 3")
            .replace("replicas: 0", "replicas: 1")
    );
}

#[test]
fn help_shows_examples() {
    let out = deploybot(&["manifest", "set-image", "--help"], Path::new("."));
    let help = text(&out.stdout);
    assert!(
        help.contains("deploybot manifest set-image deploy.yaml ghcr.io/acme/shop:v1.4.2"),
        "{help}"
    );
    assert!(help.contains("--dry-run"), "{help}");
}

/// Runs deploybot, killing it if it has not finished within `limit` (an unbounded read would
/// otherwise eat the machine's memory).
fn deploybot_within(args: &[&str], dir: &Path, limit: std::time::Duration) -> Output {
    let child = Command::new(env!("CARGO_BIN_EXE_deploybot"))
        .args(args)
        .current_dir(dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("running deploybot");
    let pid = child.id();
    let killer = std::thread::spawn(move || {
        std::thread::sleep(limit);
        let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
    });
    let out = child.wait_with_output().unwrap();
    drop(killer);
    out
}

/// Issue 17.11: inputs are read with a limit. `/dev/zero` is refused at once (it grew `manifest`
/// to 23.9 GB and `assess` to 9.3 GB), and so is a manifest past the editor's limit (a 50 MB
/// multi-document file needed 1.9 GB).
#[test]
fn oversized_inputs_are_refused_at_their_limit() {
    let dir = tempfile::tempdir().unwrap();
    let limit = std::time::Duration::from_secs(20);
    for args in [
        &["manifest", "set-image", "/dev/zero", "nginx:1.27"][..],
        &["assess", "--diff", "/dev/zero"][..],
    ] {
        let out = deploybot_within(args, dir.path(), limit);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(
            text(&out.stderr).contains("larger than"),
            "{}",
            text(&out.stderr)
        );
    }
    let doc = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec:\n  template:\n    spec:\n      containers:\n      - name: a\n        image: nginx:1.0\n---\n";
    let big = doc.repeat(3 * 1024 * 1024 / doc.len());
    std::fs::write(dir.path().join("big.yaml"), &big).unwrap();
    let out = deploybot_within(
        &["manifest", "set-image", "big.yaml", "nginx:1.27"],
        dir.path(),
        limit,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("larger than 2097152 bytes"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("big.yaml")).unwrap(),
        big
    );
}

/// Issue 17.11: a repeated key is refused, naming both lines; before, the first was edited and
/// success reported while Kubernetes (which keeps the last) kept the old image.
#[test]
fn duplicate_keys_are_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let twice = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: shop}\nspec:\n  template:\n    spec:\n      containers:\n      - name: app\n        image: ghcr.io/acme/shop:v1\n        image: ghcr.io/acme/shop:v0\n";
    std::fs::write(dir.path().join("deploy.yaml"), twice).unwrap();
    let out = deploybot(
        &[
            "manifest",
            "set-image",
            "deploy.yaml",
            "ghcr.io/acme/shop:v2",
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("duplicate mapping key \"image\" (first on line 9)") && err.contains(":10:"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("deploy.yaml")).unwrap(),
        twice
    );
}

/// Issue 17.11: an edit through a symlink edits the file it points to and leaves the link a
/// link; before, the link was replaced by a regular file.
#[test]
fn an_edit_through_a_symlink_keeps_the_link() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("base")).unwrap();
    std::fs::write(dir.path().join("base/deploy.yaml"), DEPLOY).unwrap();
    std::os::unix::fs::symlink("base/deploy.yaml", dir.path().join("link.yaml")).unwrap();
    let out = deploybot(
        &["manifest", "set-image", "link.yaml", "ghcr.io/acme/shop:v2"],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let meta = std::fs::symlink_metadata(dir.path().join("link.yaml")).unwrap();
    assert!(meta.file_type().is_symlink(), "still a link");
    assert_eq!(
        std::fs::read_link(dir.path().join("link.yaml")).unwrap(),
        Path::new("base/deploy.yaml")
    );
    let edited = std::fs::read_to_string(dir.path().join("base/deploy.yaml")).unwrap();
    assert!(edited.contains("ghcr.io/acme/shop:v2 # pinned"), "{edited}");
}
