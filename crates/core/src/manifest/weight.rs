//! Set a canary weight in the traffic resources that carry one: Gateway API `HTTPRoute` /
//! `GRPCRoute` (`spec.rules[].backendRefs[].weight`, relative shares) and Istio
//! `VirtualService` (`spec.http[].route[].weight`, which must sum to 100).
//!
//! The canary gets W and the stable backend 100-W in every rule that routes to the canary, so W
//! is a percentage under both semantics. It never removes a backend, and refuses a rule with no
//! stable backend or with a third backend that still takes traffic (W % would not hold).

use super::yaml::{Doc, Kind, Node};
use super::{EditError, Plan};

/// One weighted backend of a rule, as the user names it.
struct Backend<'a> {
    /// The names it answers to: a backendRef name; a destination host, subset and host/subset.
    names: Vec<String>,
    /// For people: `foo-v1` or `reviews/v2`.
    label: String,
    entry: &'a Node,
    location: String,
}

impl Backend<'_> {
    fn is(&self, name: &str) -> bool {
        self.names.iter().any(|n| n == name)
    }

    /// The weight as the resource reads it when the key is absent: 1 for Gateway API; for Istio,
    /// 100 when it is the only destination and otherwise 0.
    fn weight(&self, implied: i64) -> Option<i64> {
        match self.entry.get("weight") {
            None => Some(implied),
            Some(w) => w.as_str().and_then(|s| s.parse().ok()),
        }
    }
}

pub(crate) fn set_weight(
    plan: &mut Plan<'_>,
    docs: &[Doc],
    canary: &str,
    weight: u8,
    stable: Option<&str>,
) -> Result<(), EditError> {
    if weight > 100 {
        return Err(plan.invalid(format!("weight {weight} is over 100")));
    }
    if stable == Some(canary) {
        return Err(plan.invalid(format!("canary and stable are the same backend {canary:?}")));
    }
    let mut found = Vec::new();
    let mut edited_rules = 0;
    for doc in docs {
        let rules: Vec<(String, Vec<Backend<'_>>, i64)> = match doc.kind() {
            Some("HTTPRoute" | "GRPCRoute") => gateway_rules(doc),
            Some("VirtualService") => istio_rules(doc),
            _ => continue,
        };
        for (rule, backends, implied) in rules {
            found.extend(backends.iter().map(|b| format!("{} at {rule}", b.label)));
            let canaries: Vec<&Backend<'_>> = backends.iter().filter(|b| b.is(canary)).collect();
            let canary_backend = match canaries[..] {
                [] => continue,
                [one] => one,
                _ => {
                    return Err(plan.ambiguous(
                        format!("canary backend {canary:?}"),
                        canaries.iter().map(|b| b.location.clone()).collect(),
                    ));
                }
            };
            let others: Vec<&Backend<'_>> = backends.iter().filter(|b| !b.is(canary)).collect();
            let stables: Vec<&Backend<'_>> = match stable {
                Some(s) => others.iter().copied().filter(|b| b.is(s)).collect(),
                None => others.clone(),
            };
            let stable_backend = match stables[..] {
                [one] => one,
                [] if others.is_empty() => {
                    return Err(plan.invalid(format!(
                        "{rule} routes only to canary {canary:?}; refusing: a route must keep a stable backend (add it to the rule first)"
                    )));
                }
                [] => {
                    return Err(plan.not_found(
                        format!(
                            "stable backend {} in {rule} (a route must keep a stable backend beside canary {canary:?})",
                            stable.map_or("(any other)".to_string(), |s| format!("{s:?}"))
                        ),
                        others.iter().map(|b| b.label.clone()).collect(),
                    ));
                }
                _ => {
                    return Err(plan.ambiguous(
                        format!("stable backend in {rule} (name it with --stable)"),
                        stables.iter().map(|b| b.location.clone()).collect(),
                    ));
                }
            };
            for third in &others {
                if std::ptr::eq(*third, stable_backend) {
                    continue;
                }
                if third.weight(implied) != Some(0) {
                    return Err(plan.invalid(format!(
                        "{} also sends traffic to {}; canary {canary:?} would not get {weight}%",
                        rule, third.label
                    )));
                }
            }
            set_one(plan, canary_backend, i64::from(weight))?;
            set_one(plan, stable_backend, 100 - i64::from(weight))?;
            edited_rules += 1;
        }
    }
    if edited_rules == 0 {
        return Err(plan.not_found(
            format!("canary backend {canary:?} in an HTTPRoute, GRPCRoute or VirtualService"),
            found,
        ));
    }
    Ok(())
}

fn set_one(plan: &mut Plan<'_>, backend: &Backend<'_>, weight: i64) -> Result<(), EditError> {
    let location = format!("{}.weight", backend.location);
    let value = weight.to_string();
    match backend.entry.get("weight") {
        Some(node) => {
            if node.as_str().and_then(|s| s.parse::<i64>().ok()).is_none() {
                return Err(plan.unsupported(node, &location, "is not an integer weight"));
            }
            if node.as_str().and_then(|s| s.parse::<i64>().ok()) == Some(weight) {
                return Ok(());
            }
            plan.set(node, &value, Kind::Int, location)
        }
        None => plan.insert(backend.entry, "weight", &value, Kind::Int, location),
    }
}

fn gateway_rules(doc: &Doc) -> Vec<(String, Vec<Backend<'_>>, i64)> {
    let Some(rules) = doc.root.path(&["spec", "rules"]) else {
        return Vec::new();
    };
    rules
        .items()
        .iter()
        .enumerate()
        .map(|(i, rule)| {
            let where_ = format!("{} spec.rules[{i}]", doc.describe());
            let backends = rule
                .get("backendRefs")
                .map(Node::items)
                .unwrap_or_default()
                .iter()
                .enumerate()
                .map(|(j, b)| {
                    let name = b
                        .get("name")
                        .and_then(Node::as_str)
                        .unwrap_or("?")
                        .to_string();
                    Backend {
                        names: vec![name.clone()],
                        label: name,
                        entry: b,
                        location: format!("{where_}.backendRefs[{j}]"),
                    }
                })
                .collect();
            (where_, backends, 1)
        })
        .collect()
}

fn istio_rules(doc: &Doc) -> Vec<(String, Vec<Backend<'_>>, i64)> {
    let Some(http) = doc.root.path(&["spec", "http"]) else {
        return Vec::new();
    };
    http.items()
        .iter()
        .enumerate()
        .map(|(i, rule)| {
            let where_ = format!("{} spec.http[{i}]", doc.describe());
            let routes = rule.get("route").map(Node::items).unwrap_or_default();
            let backends = routes
                .iter()
                .enumerate()
                .map(|(j, r)| {
                    let host = r
                        .path(&["destination", "host"])
                        .and_then(Node::as_str)
                        .unwrap_or("?");
                    let subset = r.path(&["destination", "subset"]).and_then(Node::as_str);
                    let mut names = vec![host.to_string()];
                    let label = match subset {
                        Some(s) => {
                            names.push(s.to_string());
                            names.push(format!("{host}/{s}"));
                            format!("{host}/{s}")
                        }
                        None => host.to_string(),
                    };
                    Backend {
                        names,
                        label,
                        entry: r,
                        location: format!("{where_}.route[{j}]"),
                    }
                })
                .collect();
            (where_, backends, if routes.len() == 1 { 100 } else { 0 })
        })
        .collect()
}
