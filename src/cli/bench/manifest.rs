//! `deploybot manifest bench`: the time of one image edit on a large generated multi-document
//! file, printed as ratios against a serializer round-trip (yaml_serde parse + serialize, what
//! re-serializing tools pay, and which loses comments) measured in the same run.
//!
//! A measurement for people, not a test: nothing here asserts a duration.

use std::time::{Duration, Instant};

use deploybot_core::manifest::{Change, EditOptions, ImageChange, apply};

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Deployments in the generated file (about 600 bytes each, with comments and non-ASCII).
    #[arg(long, default_value_t = 2000)]
    pub docs: usize,
    /// Timed runs per measurement; the median is printed.
    #[arg(long, default_value_t = 7)]
    pub runs: usize,
}

/// A multi-document file of `n` Deployments, each with comments, quoting and non-ASCII text.
pub fn generate(n: usize) -> String {
    let mut s = String::with_capacity(n * 640);
    for i in 0..n {
        s.push_str(&format!(
            "---\n# Service {i} — owned by équipe-{i} ☕\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: svc-{i}\n  labels: {{app: svc-{i}, tier: \"web\"}}\n  annotations:\n    description: \"Sérvice numéro {i}\"\nspec:\n  replicas: 3 # scaled by HPA\n  selector:\n    matchLabels:\n      app: svc-{i}\n  template:\n    metadata:\n      labels:\n        app: svc-{i}\n    spec:\n      containers:\n        - name: app\n          image: ghcr.io/acme/svc-{i}:v1.0.{i} # bumped by deploybot\n          ports:\n            - containerPort: 8080\n          env:\n            - name: MODE\n              value: 'production'\n"
        ));
    }
    s
}

fn median(mut runs: Vec<Duration>) -> Duration {
    runs.sort();
    runs[runs.len() / 2]
}

fn time<T>(runs: usize, mut f: impl FnMut() -> T) -> Duration {
    median(
        (0..runs.max(1))
            .map(|_| {
                let t = Instant::now();
                std::hint::black_box(f());
                t.elapsed()
            })
            .collect(),
    )
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    let text = generate(args.docs.max(1));
    let last = args.docs.max(1) - 1;
    let change = Change::SetImage(ImageChange {
        name: format!("ghcr.io/acme/svc-{last}"),
        new_name: None,
        tag: Some("v2.0.0".into()),
        digest: None,
    });
    let options = EditOptions::default();
    let edited = apply("bench.yaml", &text, &change, &options)?;
    anyhow::ensure!(
        edited.changes.len() == 1,
        "bench edit did not change exactly one value"
    );

    let edit = time(args.runs, || apply("bench.yaml", &text, &change, &options));
    let parse_only = time(args.runs, || deploybot_core::manifest::yaml::parse(&text));
    let round_trip = time(args.runs, || -> anyhow::Result<String> {
        let mut out = String::new();
        for doc in yaml_serde::Deserializer::from_str(&text) {
            let v: yaml_serde::Value = serde::Deserialize::deserialize(doc)?;
            out.push_str("---\n");
            out.push_str(&yaml_serde::to_string(&v)?);
        }
        Ok(out)
    });
    let ascii = text.replace(['—', '☕', 'é'], "-");
    let ascii_change = apply("bench.yaml", &ascii, &change, &options)?;
    anyhow::ensure!(
        ascii_change.changes.len() == 1,
        "ASCII bench edit did not change one value"
    );
    let edit_ascii = time(args.runs, || apply("bench.yaml", &ascii, &change, &options));

    let one = generate(1);
    let one_change = Change::SetImage(ImageChange {
        name: "ghcr.io/acme/svc-0".into(),
        new_name: None,
        tag: Some("v2.0.0".into()),
        digest: None,
    });
    let small = time(args.runs * 100, || {
        apply("one.yaml", &one, &one_change, &options)
    });
    let small_round_trip = time(args.runs * 100, || -> anyhow::Result<String> {
        let v: yaml_serde::Value = yaml_serde::from_str(&one)?;
        Ok(yaml_serde::to_string(&v)?)
    });

    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64().max(1e-12);
    println!(
        "manifest bench: {} Deployments, {:.1} MiB, median of {} runs",
        args.docs,
        text.len() as f64 / (1024.0 * 1024.0),
        args.runs
    );
    println!(
        "  baseline  yaml_serde parse+serialize (loses comments): {:>9.2} ms",
        ms(round_trip)
    );
    println!(
        "  span edit (parse with spans + splice + re-parse check): {:>9.2} ms  ({:.2}x baseline)",
        ms(edit),
        ratio(edit, round_trip)
    );
    println!(
        "  span edit, same file in ASCII (no char->byte table):  {:>9.2} ms  ({:.2}x baseline)",
        ms(edit_ascii),
        ratio(edit_ascii, round_trip)
    );
    println!(
        "  one Deployment ({} bytes): span edit {:.1} us, round-trip {:.1} us ({:.2}x baseline)",
        one.len(),
        small.as_secs_f64() * 1e6,
        small_round_trip.as_secs_f64() * 1e6,
        ratio(small, small_round_trip)
    );
    println!(
        "  of which one span parse:                               {:>9.2} ms  ({:.2}x baseline)",
        ms(parse_only),
        ratio(parse_only, round_trip)
    );
    Ok(())
}
