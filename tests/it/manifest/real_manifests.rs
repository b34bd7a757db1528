//! Every manifest in `fixtures/manifests/real/` that carries an image or a weight is
//! edited and diffed (only the target lines differ, and the parsed documents differ only at the
//! target); Helm templates are refused; the kustomize trees are rendered with `kubectl
//! kustomize` before and after, and only the image changes.

use std::path::{Path, PathBuf};
use std::process::Command;

use deploybot_core::manifest::{self, Change, EditError, EditOptions, ImageChange};
use yaml_serde::Value;

fn manifests_dir() -> PathBuf {
    crate::support::fixtures_dir().join("manifests/real")
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            yaml_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(p);
        }
    }
}

fn parse_all(text: &str) -> Vec<Value> {
    yaml_serde::Deserializer::from_str(text)
        .map(|d| serde::Deserialize::deserialize(d).expect("parses"))
        .collect()
}

/// Paths (a.b[0].c) where two parsed documents differ.
fn differences(a: &Value, b: &Value, path: String, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Mapping(x), Value::Mapping(y)) => {
            for (k, va) in x {
                let key = k
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("{k:?}"));
                match y.get(k) {
                    Some(vb) => differences(va, vb, format!("{path}.{key}"), out),
                    None => out.push(format!("{path}.{key} (removed)")),
                }
            }
            for k in y.keys().filter(|k| !x.contains_key(*k)) {
                out.push(format!("{path}.{} (added)", k.as_str().unwrap_or("?")));
            }
        }
        (Value::Sequence(x), Value::Sequence(y)) if x.len() == y.len() => {
            for (i, (va, vb)) in x.iter().zip(y).enumerate() {
                differences(va, vb, format!("{path}[{i}]"), out);
            }
        }
        _ if a == b => {}
        _ => out.push(path),
    }
}

/// The repository part of an image reference (no tag, no digest; a registry port stays).
fn image_name(image: &str) -> &str {
    let no_digest = image.split('@').next().unwrap();
    let slash = no_digest.rfind('/').map_or(0, |i| i + 1);
    match no_digest[slash..].rfind(':') {
        Some(i) => &no_digest[..slash + i],
        None => no_digest,
    }
}

/// What to edit in one parsed file, found independently of the editor.
fn pick_change(path: &Path, docs: &[Value]) -> Option<(Change, EditOptions)> {
    let opts = EditOptions::default();
    for doc in docs {
        let kind = doc["kind"].as_str().unwrap_or_default();
        let pod = match kind {
            "CronJob" => &doc["spec"]["jobTemplate"]["spec"]["template"]["spec"],
            "Pod" => &doc["spec"],
            _ => &doc["spec"]["template"]["spec"],
        };
        if let Some(image) = pod["containers"][0]["image"].as_str() {
            let name = image_name(image);
            return Some((
                Change::SetImage(format!("{name}=:deploybot-test").parse().unwrap()),
                opts,
            ));
        }
        if let Some(name) = doc["images"][0]["name"].as_str() {
            return Some((
                Change::SetImage(format!("{name}=:deploybot-test").parse().unwrap()),
                opts,
            ));
        }
        if let Some(backend) = doc["spec"]["rules"][0]["backendRefs"][1]["name"].as_str() {
            return Some((
                Change::SetWeight {
                    canary: backend.into(),
                    weight: 33,
                    stable: None,
                },
                opts,
            ));
        }
        if let Some(subset) = doc["spec"]["http"][0]["route"][1]["destination"]["subset"].as_str() {
            return Some((
                Change::SetWeight {
                    canary: subset.into(),
                    weight: 33,
                    stable: None,
                },
                opts,
            ));
        }
    }
    let file = path.file_name()?.to_str()?;
    if file.starts_with("values") {
        let repo = docs.first()?["image"]["repository"].as_str()?;
        return Some((
            Change::SetImage(format!("{repo}=:deploybot-test").parse().unwrap()),
            opts,
        ));
    }
    None
}

#[test]
fn every_shared_manifest_is_edited_only_at_its_target() {
    let root = manifests_dir();
    let mut files = Vec::new();
    yaml_files(&root, &mut files);
    assert!(
        files.len() > 40,
        "shared manifests missing under {}",
        root.display()
    );
    let (mut edited, mut templates, mut without_target) = (0, 0, 0);
    for file in &files {
        let rel = file
            .strip_prefix(&root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let text = std::fs::read_to_string(file).unwrap();
        if rel.contains("/templates/") {
            let change = Change::SetImage("app:v1".parse().unwrap());
            let err = manifest::apply(&rel, &text, &change, &EditOptions::default()).unwrap_err();
            assert!(
                matches!(err, EditError::HelmTemplate { .. }),
                "{rel}: {err}"
            );
            templates += 1;
            continue;
        }
        let before = parse_all(&text);
        let Some((change, opts)) = pick_change(file, &before) else {
            // Nothing to edit: the editor must say so, listing what it saw, not invent a target.
            let change = Change::SetImage("example.com/nothing:v1".parse().unwrap());
            match manifest::apply(&rel, &text, &change, &EditOptions::default()) {
                Err(EditError::NotFound { .. }) => {}
                other => panic!("{rel}: expected NotFound, got {other:?}"),
            }
            without_target += 1;
            continue;
        };
        let result =
            manifest::apply(&rel, &text, &change, &opts).unwrap_or_else(|e| panic!("{rel}: {e}"));
        assert!(!result.changes.is_empty(), "{rel}: nothing changed");
        // The text: every line that differs is a reported line or an added key line.
        let reported: Vec<usize> = result.changes.iter().map(|c| c.line).collect();
        let diff = similar::TextDiff::from_lines(&text, &result.text);
        for change in diff.iter_all_changes() {
            match change.tag() {
                similar::ChangeTag::Equal => {}
                similar::ChangeTag::Delete => {
                    let line = change.old_index().unwrap() + 1;
                    assert!(
                        reported.contains(&line),
                        "{rel}: line {line} changed unreported:\n{}",
                        diff.unified_diff()
                    );
                }
                similar::ChangeTag::Insert => {
                    let v = change.value().trim_start().trim_start_matches("- ");
                    assert!(
                        ["image:", "newTag:", "weight:", "tag:"]
                            .iter()
                            .any(|k| v.starts_with(k)),
                        "{rel}: unexpected added line {v:?}"
                    );
                }
            }
        }
        // The documents: they differ only at the target.
        let after = parse_all(&result.text);
        assert_eq!(before.len(), after.len(), "{rel}: document count changed");
        let mut diffs = Vec::new();
        for (i, (a, b)) in before.iter().zip(&after).enumerate() {
            differences(a, b, format!("doc{i}"), &mut diffs);
        }
        assert!(
            !diffs.is_empty(),
            "{rel}: parsed documents identical after an edit"
        );
        for d in &diffs {
            assert!(
                [".image", ".newTag", ".newTag (added)", ".weight", ".tag"]
                    .iter()
                    .any(|s| d.ends_with(s)),
                "{rel}: unexpected difference at {d}"
            );
        }
        // Editing again is a no-op: the file is already at the target.
        let again = manifest::apply(&rel, &result.text, &change, &opts).unwrap();
        assert!(
            again.changes.is_empty() && again.text == result.text,
            "{rel}: second edit not idempotent"
        );
        edited += 1;
    }
    assert!(
        edited >= 15 && templates >= 2 && without_target >= 10,
        "{edited} edited, {templates} templates, {without_target} without target"
    );
}

fn render(kubectl: &Path, dir: &Path) -> String {
    let out = Command::new(kubectl)
        .arg("kustomize")
        .arg(dir)
        .output()
        .expect("running kubectl kustomize");
    assert!(
        out.status.success(),
        "kubectl kustomize {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        let dest = to.join(p.file_name().unwrap());
        if p.is_dir() {
            copy_tree(&p, &dest);
        } else {
            std::fs::copy(&p, &dest).unwrap();
        }
    }
}

fn edit_file(path: &Path, change: &Change, opts: &EditOptions) {
    let text = std::fs::read_to_string(path).unwrap();
    let result = manifest::apply(&path.to_string_lossy(), &text, change, opts).unwrap();
    assert!(
        !result.changes.is_empty(),
        "{}: nothing changed",
        path.display()
    );
    std::fs::write(path, result.text).unwrap();
}

/// The rendered output differs in exactly one line, which is `old` -> `new`.
fn assert_render_changes_only(before: &str, after: &str, old: &str, new: &str) {
    let diff = similar::TextDiff::from_lines(before, after);
    let changed: Vec<(similar::ChangeTag, String)> = diff
        .iter_all_changes()
        .filter(|c| c.tag() != similar::ChangeTag::Equal)
        .map(|c| {
            (
                c.tag(),
                c.value().trim().trim_start_matches("- ").to_string(),
            )
        })
        .collect();
    assert_eq!(
        changed,
        vec![
            (similar::ChangeTag::Delete, format!("image: {old}")),
            (similar::ChangeTag::Insert, format!("image: {new}")),
        ],
        "rendered diff:\n{}",
        diff.unified_diff()
    );
}

#[test]
fn kustomize_trees_render_with_only_the_image_changed() {
    let Some(kubectl) = crate::support::tool::require("kubectl", "kubernetes-client") else {
        return; // missing, and opted out of failing: said so on stderr
    };
    let tmp = tempfile::tempdir().unwrap();
    let boutique = tmp.path().join("boutique");
    copy_tree(
        &manifests_dir().join("online-boutique/kustomize"),
        &boutique,
    );
    let old = "us-central1-docker.pkg.dev/online-boutique-ci/microservices-demo/frontend:v0.10.6";
    let name = old.rsplit_once(':').unwrap().0;

    // 1. The base Deployment edited directly.
    let before = render(&kubectl, &boutique);
    let change = Change::SetImage(format!("{name}=:v0.10.7").parse::<ImageChange>().unwrap());
    edit_file(
        &boutique.join("base/frontend.yaml"),
        &change,
        &EditOptions::default(),
    );
    let after = render(&kubectl, &boutique);
    assert_render_changes_only(&before, &after, old, &format!("{name}:v0.10.7"));

    // 2. An images: entry added to the overlay kustomization, then bumped in place.
    let add = EditOptions {
        add_missing_kustomize_image: true,
        ..EditOptions::default()
    };
    let change = Change::SetImage(format!("{name}=:v0.11.0").parse().unwrap());
    edit_file(&boutique.join("kustomization.yaml"), &change, &add);
    let after_add = render(&kubectl, &boutique);
    assert_render_changes_only(
        &after,
        &after_add,
        &format!("{name}:v0.10.7"),
        &format!("{name}:v0.11.0"),
    );
    let change = Change::SetImage(format!("{name}=:v0.11.1").parse().unwrap());
    edit_file(
        &boutique.join("kustomization.yaml"),
        &change,
        &EditOptions::default(),
    );
    let after_bump = render(&kubectl, &boutique);
    assert_render_changes_only(
        &after_add,
        &after_bump,
        &format!("{name}:v0.11.0"),
        &format!("{name}:v0.11.1"),
    );

    // 3. The Argo CD kustomize guestbook: a kustomization without images: gets one.
    let guestbook = tmp.path().join("guestbook");
    copy_tree(
        &manifests_dir().join("argocd-example-apps/kustomize-guestbook"),
        &guestbook,
    );
    let before = render(&kubectl, &guestbook);
    let change = Change::SetImage("gcr.io/google-samples/gb-frontend=:v6".parse().unwrap());
    edit_file(&guestbook.join("kustomization.yaml"), &change, &add);
    let after = render(&kubectl, &guestbook);
    assert_render_changes_only(
        &before,
        &after,
        "gcr.io/google-samples/gb-frontend:v5",
        "gcr.io/google-samples/gb-frontend:v6",
    );
}
