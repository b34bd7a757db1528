//! Manifest edits: golden files for every target kind, property tests of byte preservation,
//! every shared real-world manifest edited and diffed, kustomize renders, and the CLI.

mod cli;
mod golden;
mod properties;
mod real_manifests;

use deploybot_core::manifest::{Change, EditOptions, HelmImagePaths};

/// Parses the `change:` / `options:` lines of a golden case (CLI-like words).
pub fn parse_change(change: &str, options: &str) -> (Change, EditOptions) {
    let mut words = change.split_whitespace();
    let verb = words.next().expect("a verb");
    let arg = words.next().expect("an argument");
    let rest: Vec<(&str, &str)> = words
        .map(|w| {
            w.split_once('=')
                .unwrap_or_else(|| panic!("{w}: expected key=value"))
        })
        .collect();
    let get = |k: &str| {
        rest.iter()
            .find(|(key, _)| *key == k)
            .map(|(_, v)| v.to_string())
    };
    let canary = || {
        let (name, w) = arg.rsplit_once('=').expect("NAME=WEIGHT");
        (name.to_string(), w.parse::<u8>().expect("weight"))
    };
    let change = match verb {
        "set-image" => Change::SetImage(arg.parse().unwrap_or_else(|e| panic!("{e}"))),
        "set-weight" => {
            let (canary, weight) = canary();
            Change::SetWeight {
                canary,
                weight,
                stable: get("stable"),
            }
        }
        "set-replicas" => {
            let (canary, weight) = canary();
            Change::SetReplicas {
                canary,
                weight,
                stable: get("stable").expect("stable="),
                total: get("total").expect("total=").parse().expect("total"),
            }
        }
        other => panic!("unknown verb {other}"),
    };
    let mut opts = EditOptions::default();
    for o in options.split_whitespace() {
        let helm = opts.helm_values.get_or_insert_with(HelmImagePaths::default);
        match o.split_once('=') {
            None if o == "add" => opts.add_missing_kustomize_image = true,
            None if o == "quote" => opts.quote_ambiguous = true,
            Some(("helm-repository", v)) => helm.repository = Some(v.into()),
            Some(("helm-tag", v)) => helm.tag = v.into(),
            Some(("helm-digest", v)) => helm.digest = Some(v.into()),
            _ => panic!("unknown option {o}"),
        }
        if !o.starts_with("helm-") {
            // get_or_insert above must not turn a plain option into a Helm file.
            if opts.helm_values.as_ref() == Some(&HelmImagePaths::default()) {
                opts.helm_values = None;
            }
        }
    }
    (change, opts)
}
