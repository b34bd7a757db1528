//! The demo's workspace: a bare GitOps repository seeded from `demo/gitops/` (embedded in the
//! binary), the config from `demo/deploybot.yaml` pointed at it, and the data directory.

use std::path::{Path, PathBuf};

use anyhow::Context;
use git2::{Repository, Signature};

/// The seed files of the GitOps repository, as (path, content).
const SEED: &[(&str, &str)] = &[
    ("README.md", include_str!("../../demo/gitops/README.md")),
    (
        "apps/checkout/base/kustomization.yaml",
        include_str!("../../demo/gitops/apps/checkout/base/kustomization.yaml"),
    ),
    (
        "apps/checkout/base/service.yaml",
        include_str!("../../demo/gitops/apps/checkout/base/service.yaml"),
    ),
    (
        "apps/checkout/overlays/staging/kustomization.yaml",
        include_str!("../../demo/gitops/apps/checkout/overlays/staging/kustomization.yaml"),
    ),
    (
        "apps/checkout/overlays/staging/deployment.yaml",
        include_str!("../../demo/gitops/apps/checkout/overlays/staging/deployment.yaml"),
    ),
    (
        "apps/checkout/overlays/staging/deployment-canary.yaml",
        include_str!("../../demo/gitops/apps/checkout/overlays/staging/deployment-canary.yaml"),
    ),
    (
        "apps/checkout/overlays/staging/httproute.yaml",
        include_str!("../../demo/gitops/apps/checkout/overlays/staging/httproute.yaml"),
    ),
    (
        "apps/checkout/overlays/production/kustomization.yaml",
        include_str!("../../demo/gitops/apps/checkout/overlays/production/kustomization.yaml"),
    ),
    (
        "apps/checkout/overlays/production/deployment.yaml",
        include_str!("../../demo/gitops/apps/checkout/overlays/production/deployment.yaml"),
    ),
    (
        "apps/checkout/overlays/production/deployment-canary.yaml",
        include_str!("../../demo/gitops/apps/checkout/overlays/production/deployment-canary.yaml"),
    ),
    (
        "apps/checkout/overlays/production/httproute.yaml",
        include_str!("../../demo/gitops/apps/checkout/overlays/production/httproute.yaml"),
    ),
];

const CONFIG: &str = include_str!("../../demo/deploybot.yaml");

/// The demo's places on disk.
pub struct Workspace {
    pub root: PathBuf,
    pub gitops: PathBuf,
    pub data_dir: PathBuf,
    pub config_path: PathBuf,
}

impl Workspace {
    /// Creates the workspace under `root`, which must not exist or be empty.
    pub fn create(root: &Path) -> anyhow::Result<Workspace> {
        if root.exists()
            && std::fs::read_dir(root)
                .with_context(|| format!("reading {}", root.display()))?
                .next()
                .is_some()
        {
            anyhow::bail!(
                "{} is not empty; give --dir a new or empty directory",
                root.display()
            );
        }
        std::fs::create_dir_all(root).with_context(|| format!("creating {}", root.display()))?;
        let root = root
            .canonicalize()
            .with_context(|| format!("resolving {}", root.display()))?;
        let ws = Workspace {
            gitops: root.join("gitops.git"),
            data_dir: root.join("data"),
            config_path: root.join("deploybot.yaml"),
            root,
        };
        seed_repository(&ws.gitops)?;
        std::fs::write(&ws.config_path, ws.config_text())
            .with_context(|| format!("writing {}", ws.config_path.display()))?;
        Ok(ws)
    }

    pub fn repo_url(&self) -> String {
        format!("file://{}", self.gitops.display())
    }

    /// The demo config with the workspace's paths filled in.
    pub fn config_text(&self) -> String {
        // Paths go into double-quoted YAML strings: escape what YAML would read specially.
        let quote = |s: String| s.replace('\\', "\\\\").replace('"', "\\\"");
        deploybot_core::template::fill(
            CONFIG,
            &[
                ("repo_url", quote(self.repo_url()).as_str()),
                (
                    "data_dir",
                    quote(self.data_dir.display().to_string()).as_str(),
                ),
            ],
        )
    }
}

/// A bare repository whose `main` holds the seed files in one commit.
fn seed_repository(path: &Path) -> anyhow::Result<()> {
    let repo = Repository::init_bare(path)
        .with_context(|| format!("creating the bare repository {}", path.display()))?;
    let files: Vec<(Vec<&str>, &str)> = SEED
        .iter()
        .map(|(p, c)| (p.split('/').collect(), *c))
        .collect();
    let tree = build_tree(&repo, &files)?;
    let tree = repo.find_tree(tree)?;
    let sig = Signature::now("Platform Team", "platform@example.org")?;
    repo.commit(
        Some("refs/heads/main"),
        &sig,
        &sig,
        "checkout: staging and production overlays with a canary HTTPRoute",
        &tree,
        &[],
    )?;
    repo.set_head("refs/heads/main")?;
    Ok(())
}

/// Writes the tree of `files` (paths split into components) and returns its id.
fn build_tree(repo: &Repository, files: &[(Vec<&str>, &str)]) -> anyhow::Result<git2::Oid> {
    let mut builder = repo.treebuilder(None)?;
    let mut dirs: Vec<&str> = Vec::new();
    for (parts, content) in files {
        match parts.as_slice() {
            [name] => {
                let blob = repo.blob(content.as_bytes())?;
                builder.insert(name, blob, 0o100644)?;
            }
            [dir, ..] if !dirs.contains(dir) => dirs.push(dir),
            _ => {}
        }
    }
    for dir in dirs {
        let inner: Vec<(Vec<&str>, &str)> = files
            .iter()
            .filter(|(p, _)| p.len() > 1 && p[0] == dir)
            .map(|(p, c)| (p[1..].to_vec(), *c))
            .collect();
        let id = build_tree(repo, &inner)?;
        builder.insert(dir, id, 0o040000)?;
    }
    Ok(builder.write()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_workspace_holds_every_seed_file_and_a_valid_config() {
        let dir = tempfile::tempdir().unwrap();
        let ws = Workspace::create(&dir.path().join("ws")).unwrap();
        let repo = Repository::open_bare(&ws.gitops).unwrap();
        let tree = repo
            .revparse_single("main")
            .unwrap()
            .peel_to_tree()
            .unwrap();
        for (path, content) in SEED {
            let entry = tree.get_path(Path::new(path)).unwrap();
            let blob = repo.find_blob(entry.id()).unwrap();
            assert_eq!(blob.content(), content.as_bytes(), "{path}");
        }
        // Resolving is the validity check: every problem would be an error here.
        let config = crate::config::from_yaml(&ws.config_text(), &ws.config_path).unwrap();
        assert_eq!(
            config.gitops.repo_url.as_ref().map(|u| u.as_str()),
            Some(ws.repo_url().as_str())
        );
        let again = Workspace::create(&ws.root).err().unwrap().to_string();
        assert!(again.contains("not empty"), "{again}");
    }
}
