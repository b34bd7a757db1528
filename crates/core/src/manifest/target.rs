//! `TargetConfig`: one manifest target of an environment in the config file (a file and what is
//! edited in it), its validation, and the `Change` it turns a deploy step into.
//!
//! It only describes targets; it does not read files or decide when a step happens.

use serde::{Deserialize, Serialize};

use super::image::ImageRef;
use super::{Change, EditOptions, HelmImagePaths, ImageChange};

/// What a target carries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetKind {
    /// Container images in workloads, or the `images:` list of a kustomization.
    #[default]
    Image,
    /// A canary weight in an HTTPRoute / GRPCRoute / VirtualService.
    Weight,
    /// `spec.replicas` of a canary and a stable Deployment.
    Replicas,
    /// Image repository / tag (/ digest) in a Helm values file.
    HelmValues,
}

/// Which workloads an image target deploys, and so when a rollout changes it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Track {
    /// The stable workloads: they get the new image only when the rollout reaches 100 %.
    #[default]
    Stable,
    /// The canary workload: it gets the new image at the first canary step.
    Canary,
}

/// One manifest target of an environment (a file and what to edit in it).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    /// Path of the manifest file inside the GitOps repository.
    pub path: String,
    /// What the file carries (default `image`).
    #[serde(default)]
    pub kind: TargetKind,
    /// `image` / `helm_values`: the image name (repository part, no tag) to match; defaults to
    /// the name of the image being deployed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// `weight` / `replicas`: the canary backend (HTTPRoute backendRef name, VirtualService
    /// destination host, subset or host/subset) or Deployment name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<String>,
    /// `weight`: the stable backend (default: the one other backend of the rule);
    /// `replicas`: the stable Deployment (required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable: Option<String>,
    /// `replicas`: pods shared between canary and stable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_replicas: Option<u32>,
    /// `helm_values`: dotted key paths of the repository, tag and digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest_key: Option<String>,
    /// `image` / `helm_values`: `canary` (the canary workload, changed at the first step) or
    /// `stable` (changed when the rollout reaches 100 %).
    #[serde(default, skip_serializing_if = "is_stable")]
    pub track: Track,
    /// `image` in a kustomization: add an `images:` entry when the name is absent.
    #[serde(default, skip_serializing_if = "is_false")]
    pub add_missing: bool,
    /// Write a value that would read as another type unquoted (tag `1.20`) double-quoted
    /// instead of refusing.
    #[serde(default, skip_serializing_if = "is_false")]
    pub quote_ambiguous: bool,
}

fn is_false(b: &bool) -> bool {
    !b
}

fn is_stable(t: &Track) -> bool {
    *t == Track::Stable
}

impl TargetConfig {
    pub fn validate(&self, key: &str, problems: &mut Vec<String>) {
        if self.path.trim().is_empty() {
            problems.push(format!("{key}.path: must not be empty"));
        } else if self.path.starts_with('/') || self.path.split('/').any(|c| c == "..") {
            problems.push(format!(
                "{key}.path: must be relative to the repository root without '..', got {:?}",
                self.path
            ));
        }
        let kind = match self.kind {
            TargetKind::Image => "image",
            TargetKind::Weight => "weight",
            TargetKind::Replicas => "replicas",
            TargetKind::HelmValues => "helm_values",
        };
        let mut only = |set: bool, field: &str, kinds: &str| {
            if set {
                problems.push(format!(
                    "{key}.{field}: only used with kind {kinds}, not {kind}"
                ));
            }
        };
        let images = matches!(self.kind, TargetKind::Image | TargetKind::HelmValues);
        let canaries = matches!(self.kind, TargetKind::Weight | TargetKind::Replicas);
        let helm = self.kind == TargetKind::HelmValues;
        only(
            self.image.is_some() && !images,
            "image",
            "image or helm_values",
        );
        only(
            self.canary.is_some() && !canaries,
            "canary",
            "weight or replicas",
        );
        only(
            self.stable.is_some() && !canaries,
            "stable",
            "weight or replicas",
        );
        only(
            self.total_replicas.is_some() && self.kind != TargetKind::Replicas,
            "total_replicas",
            "replicas",
        );
        only(
            self.repository_key.is_some() && !helm,
            "repository_key",
            "helm_values",
        );
        only(self.tag_key.is_some() && !helm, "tag_key", "helm_values");
        only(
            self.digest_key.is_some() && !helm,
            "digest_key",
            "helm_values",
        );
        only(
            self.track == Track::Canary && !images,
            "track",
            "image or helm_values",
        );
        only(
            self.add_missing && self.kind != TargetKind::Image,
            "add_missing",
            "image",
        );
        if let Some(image) = &self.image {
            let r = ImageRef::parse(image);
            if image.trim().is_empty() || r.tag.is_some() || r.digest.is_some() {
                problems.push(format!(
                    "{key}.image: the image name to match, without tag or digest, got {image:?}"
                ));
            }
        }
        if canaries && self.canary.as_deref().is_none_or(|c| c.trim().is_empty()) {
            problems.push(format!("{key}.canary: required for kind {kind}"));
        }
        if self.kind == TargetKind::Replicas {
            if self.stable.as_deref().is_none_or(|s| s.trim().is_empty()) {
                problems.push(format!("{key}.stable: required for kind replicas"));
            }
            match self.total_replicas {
                None => problems.push(format!("{key}.total_replicas: required for kind replicas")),
                Some(0) => problems.push(format!("{key}.total_replicas: must be at least 1")),
                Some(_) => {}
            }
        }
        if canaries && self.canary.is_some() && self.canary == self.stable {
            problems.push(format!("{key}.stable: must differ from {key}.canary"));
        }
        for (field, value) in [
            ("repository_key", &self.repository_key),
            ("tag_key", &self.tag_key),
            ("digest_key", &self.digest_key),
        ] {
            if let Some(v) = value
                && (v.is_empty() || v.split('.').any(str::is_empty))
            {
                problems.push(format!(
                    "{key}.{field}: a dotted key path like image.tag, got {v:?}"
                ));
            }
        }
    }

    /// The options `manifest::apply` needs for this target.
    pub fn edit_options(&self) -> EditOptions {
        let helm_values = (self.kind == TargetKind::HelmValues).then(|| {
            let d = HelmImagePaths::default();
            HelmImagePaths {
                repository: self.repository_key.clone().or(d.repository),
                tag: self.tag_key.clone().unwrap_or(d.tag),
                digest: self.digest_key.clone(),
            }
        });
        EditOptions {
            add_missing_kustomize_image: self.add_missing,
            helm_values,
            quote_ambiguous: self.quote_ambiguous,
        }
    }

    /// The change that deploys `image` (a full reference `name:tag` or `name@digest`) to this
    /// target; `None` for traffic targets.
    pub fn image_change(&self, image: &str) -> Option<ImageChange> {
        if !matches!(self.kind, TargetKind::Image | TargetKind::HelmValues) {
            return None;
        }
        let r = ImageRef::parse(image);
        let (name, new_name) = match &self.image {
            Some(own) if own != r.name => (own.clone(), Some(r.name.to_string())),
            _ => (r.name.to_string(), None),
        };
        Some(ImageChange {
            name,
            new_name,
            tag: r.tag.map(Into::into),
            digest: r.digest.map(Into::into),
        })
    }

    /// What a rollout step at `weight` percent of `image` (`name:tag`) changes in this target:
    /// below 100 the canary image targets get the image and the traffic targets the weight; at
    /// 100 every image target gets the image and the traffic goes back to the stable backend,
    /// which now runs the new version (Flagger's promotion: copy canary to primary, route to it).
    pub fn step_change(&self, image: &str, weight: u8) -> Option<Change> {
        let full = weight >= 100;
        match self.kind {
            TargetKind::Image | TargetKind::HelmValues => (full || self.track == Track::Canary)
                .then(|| self.image_change(image).map(Change::SetImage))
                .flatten(),
            TargetKind::Weight | TargetKind::Replicas => {
                self.weight_change(if full { 0 } else { weight })
            }
        }
    }

    /// The change that gives the canary `weight` percent; `None` for image targets.
    pub fn weight_change(&self, weight: u8) -> Option<Change> {
        let canary = self.canary.clone()?;
        match self.kind {
            TargetKind::Weight => Some(Change::SetWeight {
                canary,
                weight,
                stable: self.stable.clone(),
            }),
            TargetKind::Replicas => Some(Change::SetReplicas {
                canary,
                stable: self.stable.clone()?,
                weight,
                total: self.total_replicas?,
            }),
            TargetKind::Image | TargetKind::HelmValues => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(yaml: &str) -> Vec<String> {
        let t: TargetConfig = yaml_serde::from_str(yaml).unwrap();
        let mut p = Vec::new();
        t.validate("services[0].environments[0].targets[0]", &mut p);
        p
    }

    #[test]
    fn steps_change_the_canary_first_and_the_stable_at_full() {
        let t = |yaml: &str| yaml_serde::from_str::<TargetConfig>(yaml).unwrap();
        let canary = t("path: c.yaml\ntrack: canary\nimage: ghcr.io/a/x\n");
        let stable = t("path: s.yaml\nimage: ghcr.io/a/x\n");
        let route = t("path: r.yaml\nkind: weight\ncanary: x-canary\nstable: x\n");
        let img = "ghcr.io/a/x:v2";
        let tag = |c: Option<Change>| match c {
            Some(Change::SetImage(i)) => i.tag,
            other => panic!("{other:?}"),
        };
        assert_eq!(tag(canary.step_change(img, 5)).as_deref(), Some("v2"));
        assert!(
            stable.step_change(img, 5).is_none(),
            "stable waits for 100 %"
        );
        assert_eq!(tag(stable.step_change(img, 100)).as_deref(), Some("v2"));
        let weight = |c: Option<Change>| match c {
            Some(Change::SetWeight { weight, .. }) => weight,
            other => panic!("{other:?}"),
        };
        assert_eq!(weight(route.step_change(img, 25)), 25);
        assert_eq!(
            weight(route.step_change(img, 100)),
            0,
            "promoted: stable takes it all"
        );
        let p = problems("path: r.yaml\nkind: weight\ncanary: c\ntrack: canary\n");
        assert!(p.iter().any(|p| p.ends_with("track: only used with kind image or helm_values, not weight")), "{p:?}");
    }

    #[test]
    fn a_bare_path_is_an_image_target() {
        assert!(problems("path: apps/x/kustomization.yaml").is_empty());
    }

    #[test]
    fn messages_name_the_full_key() {
        let p = problems("path: r.yaml\nkind: replicas\ncanary: c\ntag_key: image.tag\n");
        let k = "services[0].environments[0].targets[0]";
        assert!(
            p.contains(&format!("{k}.stable: required for kind replicas")),
            "{p:?}"
        );
        assert!(
            p.contains(&format!("{k}.total_replicas: required for kind replicas")),
            "{p:?}"
        );
        assert!(
            p.contains(&format!(
                "{k}.tag_key: only used with kind helm_values, not replicas"
            )),
            "{p:?}"
        );
        let p = problems("path: /etc/x.yaml\nkind: weight\nimage: app:v1\n");
        assert_eq!(p.len(), 4, "{p:?}");
    }

    #[test]
    fn unknown_keys_and_kinds_are_rejected() {
        assert!(yaml_serde::from_str::<TargetConfig>("path: a\nkind: helm\n").is_err());
        assert!(yaml_serde::from_str::<TargetConfig>("path: a\ncanry: x\n").is_err());
    }

    #[test]
    fn changes_follow_the_kind() {
        let t: TargetConfig = yaml_serde::from_str(
            "path: v.yaml\nkind: helm_values\nimage: ghcr.io/o/app\ntag_key: app.image.tag\n",
        )
        .unwrap();
        let c = t.image_change("ghcr.io/o/app:v2").unwrap();
        assert_eq!(
            (c.name.as_str(), c.new_name, c.tag.as_deref()),
            ("ghcr.io/o/app", None, Some("v2"))
        );
        assert_eq!(t.edit_options().helm_values.unwrap().tag, "app.image.tag");
        assert_eq!(t.weight_change(10), None);
        let t: TargetConfig = yaml_serde::from_str(
            "path: r.yaml\nkind: replicas\ncanary: c\nstable: s\ntotal_replicas: 4\n",
        )
        .unwrap();
        assert_eq!(
            t.weight_change(50),
            Some(Change::SetReplicas {
                canary: "c".into(),
                stable: "s".into(),
                weight: 50,
                total: 4
            })
        );
    }
}
