//! Property tests: random comments, blank lines, spacing, quoting, indentation and line endings
//! around the target survive byte for byte, and the result parses to the same document except
//! the target.

use deploybot_core::manifest::{self, Change, EditError, EditOptions, ImageChange};
use proptest::prelude::*;
use yaml_serde::Value;

/// A comment line's text, including non-ASCII.
fn comment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "[a-zA-Z0-9 :#'\"{}\\[\\],.-]{0,30}",
        Just("café ☕ — 日本語 — image: fake:tag".to_string()),
        Just("weight: 100".to_string()),
    ]
}

/// Blank and comment lines at an indentation.
fn filler(indent: usize) -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(
        prop_oneof![
            Just(String::new()),
            comment().prop_map(move |c| format!("{}# {c}", " ".repeat(indent))),
        ],
        0..3,
    )
}

#[derive(Debug, Clone, Copy)]
enum Quote {
    Plain,
    Single,
    Double,
}

fn quoted(v: &str, q: Quote) -> String {
    match q {
        Quote::Plain => v.to_string(),
        Quote::Single => format!("'{v}'"),
        Quote::Double => format!("\"{v}\""),
    }
}

#[derive(Debug, Clone)]
struct Layout {
    eol: &'static str,
    step: usize,
    before: Vec<String>,
    after: Vec<String>,
    gap: usize,
    trailing: Option<String>,
    quote: Quote,
    leading_doc: bool,
}

fn layout() -> impl Strategy<Value = Layout> {
    (
        prop_oneof![Just("\n"), Just("\r\n")],
        2usize..=4,
        filler(0),
        filler(0),
        1usize..4,
        prop::option::of(comment()),
        prop_oneof![Just(Quote::Plain), Just(Quote::Single), Just(Quote::Double)],
        any::<bool>(),
    )
        .prop_map(
            |(eol, step, before, after, gap, trailing, quote, leading_doc)| Layout {
                eol,
                step,
                before,
                after,
                gap,
                trailing,
                quote,
                leading_doc,
            },
        )
}

/// A Deployment whose single image value sits between `prefix` and `suffix`.
fn deployment(l: &Layout, image_src: &str) -> (String, String) {
    // Level 4 is the keys of a container, which sit after "- " of level 3.
    let i = |n: usize| " ".repeat(if n == 4 { 3 * l.step + 2 } else { n * l.step });
    let indent_comments = |lines: &[String], n: usize| -> Vec<String> {
        lines
            .iter()
            .map(|c| {
                if c.is_empty() {
                    c.clone()
                } else {
                    format!("{}{}", i(n), c.trim_start())
                }
            })
            .collect()
    };
    let mut head = Vec::new();
    if l.leading_doc {
        head.push("# a ConfigMap first".to_string());
        head.push("kind: ConfigMap".to_string());
        head.push("data: {image: 'not:this'}".to_string());
        head.push("---".to_string());
    }
    head.extend([
        "apiVersion: apps/v1".into(),
        "kind: Deployment".into(),
        "metadata:".into(),
        format!("{}name: shop", i(1)),
        "spec:".into(),
        format!("{}template:", i(1)),
        format!("{}spec:", i(2)),
        format!("{}containers:", i(3)),
        format!("{}- name: app", i(3)),
    ]);
    head.extend(indent_comments(&l.before, 4));
    let image_line_start = format!("{}image:{}", i(4), " ".repeat(l.gap));
    let mut tail = String::new();
    if let Some(c) = &l.trailing {
        tail.push_str(&format!("  # {c}"));
    }
    tail.push_str(l.eol);
    let mut rest: Vec<String> = indent_comments(&l.after, 4);
    rest.push(format!("{}ports: [{{containerPort: 8080}}]", i(4)));
    rest.push(format!("{}- name: proxy", i(3)));
    rest.push(format!("{}image: ghcr.io/acme/proxy:v9", i(4)));
    for r in rest {
        tail.push_str(&r);
        tail.push_str(l.eol);
    }
    let mut prefix = head.join(l.eol);
    prefix.push_str(l.eol);
    prefix.push_str(&image_line_start);
    let _ = image_src;
    (prefix, tail)
}

/// Replaces the image of `containers[0]` of the last document in a parsed file.
fn with_image(docs: &mut [Value], image: &str) {
    let doc = docs.last_mut().unwrap();
    doc["spec"]["template"]["spec"]["containers"][0]["image"] = Value::String(image.into());
}

fn parse_all(text: &str) -> Vec<Value> {
    yaml_serde::Deserializer::from_str(text)
        .map(|d| serde::Deserialize::deserialize(d).expect("each document parses"))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 192, ..ProptestConfig::default() })]

    #[test]
    fn image_edits_keep_every_other_byte(l in layout(), tag in "[a-z0-9][a-z0-9._-]{0,12}") {
        let old = "ghcr.io/acme/shop:v1";
        let (prefix, suffix) = deployment(&l, old);
        let text = format!("{prefix}{}{suffix}", quoted(old, l.quote));
        let change = Change::SetImage(format!("ghcr.io/acme/shop:{tag}").parse::<ImageChange>().unwrap());
        let new = format!("ghcr.io/acme/shop:{tag}");
        match manifest::apply("deploy.yaml", &text, &change, &EditOptions::default()) {
            Ok(edited) => {
                prop_assert_eq!(&edited.text, &format!("{prefix}{}{suffix}", quoted(&new, l.quote)));
                prop_assert_eq!(edited.changes.len(), usize::from(tag != "v1"));
                let mut want = parse_all(&text);
                with_image(&mut want, &new);
                prop_assert_eq!(parse_all(&edited.text), want);
            }
            // The image is always a string with ':' so it never changes type.
            Err(e) => prop_assert!(false, "{}", e),
        }
    }

    #[test]
    fn tags_that_would_change_type_are_refused_or_stay_strings(
        l in layout(),
        tag in prop_oneof!["[0-9]{1,3}(\\.[0-9]{1,3})?", "[a-z0-9.]{1,6}", Just("yes".to_string()), Just("on".to_string())],
        quote_ambiguous in any::<bool>(),
    ) {
        // A Helm values tag is a bare scalar, where `1.20` would become a float.
        let eol = l.eol;
        let prefix = format!("# values{eol}image:{eol}  repository: ghcr.io/acme/shop{eol}  tag:{}", " ".repeat(l.gap));
        let suffix = format!("{}{eol}", l.trailing.as_ref().map(|c| format!(" # {c}")).unwrap_or_default());
        let text = format!("{prefix}{}{suffix}", quoted("v1", l.quote));
        let change = Change::SetImage(ImageChange {
            name: "ghcr.io/acme/shop".into(), new_name: None, tag: Some(tag.clone()), digest: None,
        });
        let options = EditOptions { quote_ambiguous, ..EditOptions::default() };
        match manifest::apply("values.yaml", &text, &change, &options) {
            Ok(edited) => {
                let doc: Value = yaml_serde::from_str(&edited.text).unwrap();
                prop_assert_eq!(&doc["image"]["tag"], &Value::String(tag.clone()));
                prop_assert!(edited.text.starts_with(&prefix) && edited.text.ends_with(&suffix));
            }
            Err(EditError::WouldChangeType { .. }) => {
                prop_assert!(matches!(l.quote, Quote::Plain) && !quote_ambiguous);
            }
            Err(e) => prop_assert!(false, "{}", e),
        }
    }

    #[test]
    fn weight_edits_keep_every_other_byte(
        eol in prop_oneof![Just("\n"), Just("\r\n")],
        c1 in filler(4), c2 in filler(6),
        trailing in prop::option::of(comment()),
        stable_w in 0u8..=100, w in 0u8..=100,
    ) {
        let mut lines = vec![
            "kind: HTTPRoute".to_string(), "apiVersion: gateway.networking.k8s.io/v1".into(),
            "metadata: {name: r}".into(), "spec:".into(), "  rules:".into(), "  - backendRefs:".into(),
            "    - name: stable".into(),
        ];
        lines.extend(c1.iter().map(|c| if c.is_empty() { c.clone() } else { format!("      {}", c.trim_start()) }));
        lines.push(format!("      weight: {stable_w}{}", trailing.as_ref().map(|c| format!(" # {c}")).unwrap_or_default()));
        lines.push("    - name: canary".into());
        lines.extend(c2.iter().map(|c| if c.is_empty() { c.clone() } else { format!("      {}", c.trim_start()) }));
        lines.push(format!("      weight: {}", 100 - stable_w));
        let text = lines.join(eol) + eol;
        let change = Change::SetWeight { canary: "canary".into(), weight: w, stable: None };
        let edited = manifest::apply("r.yaml", &text, &change, &EditOptions::default()).unwrap();
        let mut want: Value = yaml_serde::from_str(&text).unwrap();
        want["spec"]["rules"][0]["backendRefs"][0]["weight"] = Value::from(100 - u64::from(w));
        want["spec"]["rules"][0]["backendRefs"][1]["weight"] = Value::from(u64::from(w));
        let got: Value = yaml_serde::from_str(&edited.text).unwrap();
        prop_assert_eq!(got, want);
        prop_assert_eq!(edited.text.lines().count(), text.lines().count());
        for (a, b) in text.split(eol).zip(edited.text.split(eol)) {
            if a != b {
                prop_assert!(a.trim_start().starts_with("weight:") && b.trim_start().starts_with("weight:"), "{} -> {}", a, b);
                prop_assert_eq!(a.split_once('#').map(|x| x.1), b.split_once('#').map(|x| x.1));
            }
        }
    }
}

/// A multi-document file of `n` Deployments whose containers use `image:<tag>`, some with
/// filler lines between the documents, some with no newline at the end.
fn deployments() -> impl Strategy<Value = (String, Vec<bool>)> {
    (
        prop::collection::vec((any::<bool>(), filler(0)), 1..12),
        any::<bool>(),
    )
        .prop_map(|(docs, final_newline)| {
            let mut text = String::new();
            let mut ours = Vec::new();
            for (i, (mine, filler)) in docs.iter().enumerate() {
                if i > 0 {
                    text.push_str("---\n");
                }
                for l in filler {
                    text.push_str(l);
                    text.push('\n');
                }
                let image = if *mine { "ghcr.io/acme/shop" } else { "nginx" };
                text.push_str(&format!(
                    "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: d{i}\nspec:\n  \
                     template:\n    spec:\n      containers:\n        - name: c\n          \
                     image: {image}:v1\n"
                ));
                ours.push(*mine);
            }
            if !final_newline {
                text.pop();
            }
            (text, ours)
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, .. ProptestConfig::default() })]

    /// The diff printed from an edit's splices (linear) is the diff a general line diff finds.
    #[test]
    fn the_diff_from_splices_is_the_line_diff((text, _) in deployments()) {
        let change = Change::SetImage("ghcr.io/acme/shop:v2".parse::<ImageChange>().unwrap());
        let edited = match manifest::apply("f.yaml", &text, &change, &EditOptions::default()) {
            Ok(e) => e,
            Err(EditError::NotFound { .. }) => return Ok(()),
            Err(e) => panic!("{e}"),
        };
        let ours = manifest::patch::unified("f.yaml", &text, &edited.splices, &edited.text);
        let general = similar::TextDiff::from_lines(text.as_str(), edited.text.as_str())
            .unified_diff()
            .context_radius(3)
            .header("a/f.yaml", "b/f.yaml")
            .to_string();
        prop_assert_eq!(ours, general);
    }
}
