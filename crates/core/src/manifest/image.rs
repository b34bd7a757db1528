//! Set image, with `kustomize edit set image` semantics, in the three places images live: pod
//! templates of workloads (`image:` of containers and initContainers), the `images:` list of a
//! kustomization, and Helm values at configured key paths.
//!
//! Matching is by image name (the repository part, registry host and port included, tag and
//! digest excluded), exactly as kustomize matches; it does not normalise `docker.io/library/`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::yaml::{Doc, Kind, Node, Value, after_line, column, line_ending, line_start};
use super::{EditError, HelmImagePaths, Plan, ValueChange, render_new};

/// `NAME=NEWNAME:TAG`, `NAME=:TAG`, `NAME:TAG`, `NAME@sha256:...` as kustomize understands them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageChange {
    /// The image name (repository part) to match.
    pub name: String,
    pub new_name: Option<String>,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

/// An image reference split into name, tag and digest. A `:` is a tag separator only after
/// the last `/`, so a registry port (`localhost:5000/app`) stays part of the name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ImageRef<'a> {
    pub name: &'a str,
    pub tag: Option<&'a str>,
    pub digest: Option<&'a str>,
}

impl<'a> ImageRef<'a> {
    pub fn parse(s: &'a str) -> ImageRef<'a> {
        let (rest, digest) = match s.split_once('@') {
            Some((a, d)) => (a, Some(d)),
            None => (s, None),
        };
        let slash = rest.rfind('/').map_or(0, |i| i + 1);
        match rest[slash..].rfind(':') {
            Some(i) => ImageRef {
                name: &rest[..slash + i],
                tag: Some(&rest[slash + i + 1..]),
                digest,
            },
            None => ImageRef {
                name: rest,
                tag: None,
                digest,
            },
        }
    }
}

impl fmt::Display for ImageRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)?;
        if let Some(t) = self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl ImageChange {
    /// The image a container running `current` runs after this change: the name replaced when a
    /// new name is given; tag and digest replaced together when either is given (setting a tag
    /// drops a digest and back, as kustomize does), kept otherwise.
    pub fn apply_to(&self, current: &str) -> String {
        let cur = ImageRef::parse(current);
        let name = self.new_name.as_deref().unwrap_or(cur.name);
        let (tag, digest) = if self.tag.is_some() || self.digest.is_some() {
            (self.tag.as_deref(), self.digest.as_deref())
        } else {
            (cur.tag, cur.digest)
        };
        ImageRef { name, tag, digest }.to_string()
    }
}

impl fmt::Display for ImageChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}=", self.name)?;
        if let Some(n) = &self.new_name {
            f.write_str(n)?;
        }
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// Why a `set image` argument was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "image {input:?}: {reason} (expected NAME=NEWNAME:TAG, NAME=:TAG, NAME:TAG or NAME@sha256:DIGEST)"
)]
pub struct ImageChangeError {
    input: String,
    reason: String,
}

impl FromStr for ImageChange {
    type Err = ImageChangeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason: &str| ImageChangeError {
            input: s.into(),
            reason: reason.into(),
        };
        let change = match s.split_once('=') {
            Some((name, target)) => {
                let r = ImageRef::parse(target);
                ImageChange {
                    name: name.into(),
                    new_name: (!r.name.is_empty()).then(|| r.name.into()),
                    tag: r.tag.map(Into::into),
                    digest: r.digest.map(Into::into),
                }
            }
            None => {
                let r = ImageRef::parse(s);
                ImageChange {
                    name: r.name.into(),
                    new_name: None,
                    tag: r.tag.map(Into::into),
                    digest: r.digest.map(Into::into),
                }
            }
        };
        let bad_name = |n: &str| {
            n.is_empty()
                || n.contains(|c: char| c.is_whitespace() || c.is_control() || "=@#'\"".contains(c))
                || n.starts_with(['/', '-', '.'])
                || n.ends_with('/')
        };
        if bad_name(&change.name) {
            return Err(err("the image name to match is empty or malformed"));
        }
        if change.new_name.as_deref().is_some_and(bad_name) {
            return Err(err("the new image name is malformed"));
        }
        if let Some(t) = &change.tag
            && (t.is_empty()
                || t.len() > 128
                || t.starts_with(['.', '-'])
                || !t
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c)))
        {
            return Err(err(
                "the tag must be 1-128 of [A-Za-z0-9_.-], not starting with . or -",
            ));
        }
        if let Some(d) = &change.digest {
            let ok = d.split_once(':').is_some_and(|(algo, hex)| {
                !algo.is_empty()
                    && algo
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
                    && hex.len() >= 32
                    && hex.chars().all(|c| c.is_ascii_hexdigit())
            });
            if !ok {
                return Err(err("the digest must look like sha256:<64 hex digits>"));
            }
        }
        if change.new_name.is_none() && change.tag.is_none() && change.digest.is_none() {
            return Err(err("nothing to set: give a new name, a tag or a digest"));
        }
        Ok(change)
    }
}

/// Where a workload kind keeps its pod spec.
fn pod_spec_path(kind: &str) -> Option<&'static [&'static str]> {
    match kind {
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" | "Job" | "Rollout" => {
            Some(&["spec", "template", "spec"])
        }
        "CronJob" => Some(&["spec", "jobTemplate", "spec", "template", "spec"]),
        "Pod" => Some(&["spec"]),
        _ => None,
    }
}

fn is_kustomization(path: &str, doc: &Doc) -> bool {
    let file = path.rsplit(['/', '\\']).next().unwrap_or(path);
    matches!(doc.kind(), Some("Kustomization" | "Component"))
        || (doc.kind().is_none()
            && matches!(
                file,
                "kustomization.yaml" | "kustomization.yml" | "Kustomization"
            ))
}

fn is_helm_values(path: &str, docs: &[Doc]) -> bool {
    let file = path.rsplit(['/', '\\']).next().unwrap_or(path);
    let named = file.starts_with("values") && (file.ends_with(".yaml") || file.ends_with(".yml"));
    named && docs.iter().all(|d| d.kind().is_none())
}

pub(crate) fn set_image(
    plan: &mut Plan<'_>,
    docs: &[Doc],
    change: &ImageChange,
) -> Result<(), EditError> {
    if let Some(paths) = &plan.options.helm_values {
        return set_helm(plan, docs, change, paths);
    }
    if is_helm_values(plan.path, docs) {
        return set_helm(plan, docs, change, &HelmImagePaths::default());
    }
    let mut found = Vec::new();
    let mut matched = 0;
    let mut kustomizations = Vec::new();
    for doc in docs {
        if is_kustomization(plan.path, doc) {
            kustomizations.push(doc);
            continue;
        }
        let Some(spec_path) = doc.kind().and_then(pod_spec_path) else {
            continue;
        };
        let Some(pod) = doc.root.path(spec_path) else {
            continue;
        };
        for list in ["initContainers", "containers"] {
            let Some(containers) = pod.get(list) else {
                continue;
            };
            for (i, c) in containers.items().iter().enumerate() {
                let Some(image) = c.get("image") else {
                    continue;
                };
                let location = format!(
                    "{} {}.{list}[{i}].image",
                    doc.describe(),
                    spec_path.join(".")
                );
                let Some(current) = image.as_str() else {
                    found.push(format!("{location} (not a plain value)"));
                    continue;
                };
                found.push(format!("{current} at {location}"));
                if ImageRef::parse(current).name != change.name {
                    continue;
                }
                matched += 1;
                plan.set(image, &change.apply_to(current), Kind::Str, location)?;
            }
        }
    }
    for doc in &kustomizations {
        matched += set_kustomize(plan, doc, change, &mut found)?;
    }
    if matched == 0 {
        if let [doc] = kustomizations[..]
            && plan.options.add_missing_kustomize_image
        {
            return add_kustomize_image(plan, doc, change);
        }
        let mut what = format!("image {:?}", change.name);
        if !kustomizations.is_empty() {
            what.push_str(" (to add it to the kustomization's images:, allow adding: --add)");
        }
        return Err(plan.not_found(what, found));
    }
    Ok(())
}

/// Edits the matching entry of `images:`; returns how many entries matched (0 or 1).
fn set_kustomize(
    plan: &mut Plan<'_>,
    doc: &Doc,
    change: &ImageChange,
    found: &mut Vec<String>,
) -> Result<usize, EditError> {
    let Some(images) = doc.root.get("images") else {
        return Ok(0);
    };
    let mut hits = Vec::new();
    for (i, entry) in images.items().iter().enumerate() {
        let name = entry.get("name").and_then(Node::as_str).unwrap_or("?");
        let location = format!("{} images[{i}]", doc.describe());
        found.push(format!("{name} at {location}"));
        if name == change.name {
            hits.push((entry, location));
        }
    }
    let [(entry, location)] = &hits[..] else {
        if hits.len() > 1 {
            return Err(plan.ambiguous(
                format!("image {:?}", change.name),
                hits.into_iter().map(|(_, l)| l).collect(),
            ));
        }
        return Ok(0);
    };
    if !entry.is_map() {
        return Err(plan.unsupported(entry, location, "is not a mapping"));
    }
    let fields: [(&str, Option<&String>); 3] = [
        ("newName", change.new_name.as_ref()),
        ("newTag", change.tag.as_ref()),
        ("digest", change.digest.as_ref()),
    ];
    for (key, value) in fields {
        let loc = format!("{location}.{key}");
        match (value, entry.entry(key)) {
            (Some(v), Some((_, node))) => plan.set(node, v, Kind::Str, loc)?,
            (Some(v), None) => plan.insert(entry, key, v, Kind::Str, loc)?,
            // Setting a tag drops the digest and back: the two together would pin the digest
            // and silently ignore the tag.
            (None, Some((k, node)))
                if key != "newName" && (change.tag.is_some() || change.digest.is_some()) =>
            {
                plan.remove(k, node, loc)?
            }
            (None, _) => {}
        }
    }
    Ok(1)
}

/// Appends `- name: NAME` with the change's fields to `images:` (creating the key if needed).
fn add_kustomize_image(
    plan: &mut Plan<'_>,
    doc: &Doc,
    change: &ImageChange,
) -> Result<(), EditError> {
    let text = plan.text;
    let eol = line_ending(text);
    let fields: Vec<(&str, &String)> = [
        ("newName", change.new_name.as_ref()),
        ("newTag", change.tag.as_ref()),
        ("digest", change.digest.as_ref()),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.map(|v| (k, v)))
    .collect();
    let location = format!("{} images[+]", doc.describe());
    let (at, dash_indent, key_indent, header) = match doc.root.get("images") {
        Some(images) => {
            let Value::Seq { items, flow: false } = &images.value else {
                return Err(plan.unsupported(
                    images,
                    &location,
                    "images: is not a block list; add the entry by hand once",
                ));
            };
            let Some(last) = items.last() else {
                return Err(plan.unsupported(images, &location, "images: is empty"));
            };
            let first = &items[0];
            let dash = text[line_start(text, first.start)..first.start]
                .rfind('-')
                .map(|i| line_start(text, first.start) + i)
                .ok_or_else(|| plan.unsupported(first, &location, "cannot find the list's '-'"))?;
            let dash_col = column(text, dash);
            (
                after_line(text, last.end),
                " ".repeat(dash_col),
                " ".repeat(column(text, first.start)),
                String::new(),
            )
        }
        None => {
            let root = &doc.root;
            let Value::Map {
                flow: false,
                entries,
            } = &root.value
            else {
                return Err(plan.unsupported(
                    root,
                    &location,
                    "the document is not a block mapping",
                ));
            };
            let Some((first, last)) = entries.first().zip(entries.last()) else {
                return Err(plan.unsupported(root, &location, "the document is empty"));
            };
            if column(text, first.0.start) != 0 {
                return Err(plan.unsupported(root, &location, "the document is indented"));
            }
            (
                after_line(text, last.1.end),
                String::new(),
                "  ".into(),
                format!("images:{eol}"),
            )
        }
    };
    let mut with = String::new();
    if at == text.len() && !text.is_empty() && !text.ends_with('\n') {
        with.push_str(eol);
    }
    with.push_str(&header);
    with.push_str(&format!(
        "{dash_indent}- name: {}{eol}",
        render_new(&change.name, Kind::Str)
    ));
    for (k, v) in fields {
        with.push_str(&format!(
            "{key_indent}{k}: {}{eol}",
            render_new(v, Kind::Str)
        ));
    }
    let line = text[..at].matches('\n').count() + 1;
    plan.insert_text(
        at,
        with,
        ValueChange {
            location,
            line,
            old: String::new(),
            new: change.to_string(),
        },
    );
    Ok(())
}

fn set_helm(
    plan: &mut Plan<'_>,
    docs: &[Doc],
    change: &ImageChange,
    paths: &HelmImagePaths,
) -> Result<(), EditError> {
    let [doc] = docs else {
        return Err(plan.invalid(format!(
            "a Helm values file has one document, this one has {}",
            docs.len()
        )));
    };
    let root = &doc.root;
    let lookup = |dotted: &str| {
        let keys: Vec<&str> = dotted.split('.').collect();
        root.path(&keys)
    };
    let found = |plan: &Plan<'_>| -> Vec<String> {
        let mut f = Vec::new();
        for p in [
            paths.repository.as_deref(),
            Some(paths.tag.as_str()),
            paths.digest.as_deref(),
        ]
        .into_iter()
        .flatten()
        {
            match lookup(p) {
                Some(n) => f.push(format!(
                    "{p} = {} (line {})",
                    n.as_str().unwrap_or("<not a plain value>"),
                    n.line
                )),
                None => f.push(format!("no {p}")),
            }
        }
        let _ = plan;
        f
    };
    if let Some(repo_path) = &paths.repository {
        let Some(repo) = lookup(repo_path) else {
            return Err(plan.not_found(format!("Helm value {repo_path}"), found(plan)));
        };
        let current = repo.as_str().unwrap_or_default();
        if current != change.name {
            return Err(plan.not_found(
                format!("image {:?} at Helm value {repo_path}", change.name),
                found(plan),
            ));
        }
        if let Some(new_name) = &change.new_name {
            plan.set(repo, new_name, Kind::Str, format!("{repo_path} (values)"))?;
        }
    } else if change.new_name.is_some() {
        return Err(
            plan.invalid("a new image name needs a repository path for this Helm values file")
        );
    }
    for (want, dotted) in [
        (&change.tag, Some(&paths.tag)),
        (&change.digest, paths.digest.as_ref()),
    ] {
        let Some(value) = want else { continue };
        let Some(dotted) = dotted else {
            return Err(plan.invalid(format!(
                "setting digest {value} needs a digest path for this Helm values file"
            )));
        };
        let location = format!("{dotted} (values)");
        match lookup(dotted) {
            Some(node) => plan.set(node, value, Kind::Str, location)?,
            None => {
                let (parent, key) = match dotted.rsplit_once('.') {
                    Some((p, k)) => (lookup(p), k),
                    None => (Some(root), dotted.as_str()),
                };
                match parent {
                    Some(parent) => plan.insert(parent, key, value, Kind::Str, location)?,
                    None => return Err(plan.not_found(format!("Helm value {dotted}"), found(plan))),
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> ImageChange {
        s.parse().unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn kustomize_argument_forms() {
        assert_eq!(
            parse("nginx=registry.example:5000/team/nginx:1.25"),
            ImageChange {
                name: "nginx".into(),
                new_name: Some("registry.example:5000/team/nginx".into()),
                tag: Some("1.25".into()),
                digest: None
            }
        );
        assert_eq!(parse("nginx=:1.25").tag.as_deref(), Some("1.25"));
        assert_eq!(parse("nginx=:1.25").new_name, None);
        let c = parse("localhost:5000/app:v2");
        assert_eq!(
            (c.name.as_str(), c.tag.as_deref()),
            ("localhost:5000/app", Some("v2"))
        );
        let d = format!("sha256:{}", "a".repeat(64));
        let c = parse(&format!("ghcr.io/o/app@{d}"));
        assert_eq!(
            (c.name.as_str(), c.tag, c.digest.as_deref()),
            ("ghcr.io/o/app", None, Some(d.as_str()))
        );
        assert_eq!(parse("app=other").new_name.as_deref(), Some("other"));
    }

    #[test]
    fn bad_arguments_say_why() {
        for bad in [
            "",
            "=x:1",
            "app",
            "app:",
            "app:-x",
            "app@md5:zz",
            "app=:",
            "a b:1",
        ] {
            assert!(bad.parse::<ImageChange>().is_err(), "{bad:?} accepted");
        }
        let e = "app".parse::<ImageChange>().unwrap_err().to_string();
        assert!(e.contains("nothing to set"), "{e}");
    }

    #[test]
    fn image_refs_keep_registry_ports() {
        assert_eq!(
            ImageRef::parse("localhost:5000/app").name,
            "localhost:5000/app"
        );
        assert_eq!(ImageRef::parse("localhost:5000/app").tag, None);
        let r = ImageRef::parse("r:1/a:t@sha256:x");
        assert_eq!(
            (r.name, r.tag, r.digest),
            ("r:1/a", Some("t"), Some("sha256:x"))
        );
    }

    #[test]
    fn apply_to_follows_kustomize() {
        let tag = parse("app:v2");
        assert_eq!(tag.apply_to("app:v1"), "app:v2");
        assert_eq!(tag.apply_to("app@sha256:abc"), "app:v2");
        assert_eq!(parse("app=other").apply_to("app:v1"), "other:v1");
        let d = format!("sha256:{}", "b".repeat(64));
        assert_eq!(
            parse(&format!("app@{d}")).apply_to("app:v1"),
            format!("app@{d}")
        );
    }
}
