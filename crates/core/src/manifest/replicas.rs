//! Replica-ratio canaries (two Deployments behind one Service, no mesh): `spec.replicas` of the
//! canary and stable Deployments so the canary holds W % of `total` pods.
//!
//! The two Deployments may live in one file or in two; each file gets the half it holds. It does
//! not touch HorizontalPodAutoscalers (a Deployment under an HPA has no fixed replica count).

use super::yaml::{Doc, Kind};
use super::{EditError, Plan};

/// Canary pods for weight W of `total`: rounded, but at least one pod while W > 0 and at least
/// one stable pod while W < 100, because a share with no pod behind it gets no traffic at all.
pub fn canary_replicas(weight: u8, total: u32) -> u32 {
    let w = u64::from(weight.min(100));
    let exact = (u64::from(total) * w + 50) / 100;
    let mut n = u32::try_from(exact).unwrap_or(total);
    if weight > 0 && weight < 100 && total >= 2 {
        n = n.clamp(1, total - 1);
    }
    n
}

pub(crate) fn set_replicas(
    plan: &mut Plan<'_>,
    docs: &[Doc],
    canary: &str,
    stable: &str,
    weight: u8,
    total: u32,
) -> Result<(), EditError> {
    if weight > 100 {
        return Err(plan.invalid(format!("weight {weight} is over 100")));
    }
    if canary == stable {
        return Err(plan.invalid(format!(
            "canary and stable are the same Deployment {canary:?}"
        )));
    }
    let c = canary_replicas(weight, total);
    let mut found = Vec::new();
    let mut edited = 0;
    for (name, replicas) in [(canary, c), (stable, total - c)] {
        let hits: Vec<&Doc> = docs
            .iter()
            .filter(|d| d.kind() == Some("Deployment") && d.name() == Some(name))
            .collect();
        let doc = match hits[..] {
            [] => continue,
            [one] => one,
            _ => {
                return Err(plan.ambiguous(
                    format!("Deployment {name:?}"),
                    hits.iter().map(|d| d.describe()).collect(),
                ));
            }
        };
        let location = format!("{} spec.replicas", doc.describe());
        let Some(spec) = doc.root.get("spec") else {
            return Err(plan.unsupported(&doc.root, &location, "has no spec"));
        };
        let value = replicas.to_string();
        match spec.get("replicas") {
            Some(node) => {
                if node.as_str().and_then(|s| s.parse::<u32>().ok()).is_none() {
                    return Err(plan.unsupported(node, &location, "is not an integer"));
                }
                if node.as_str() != Some(value.as_str()) {
                    plan.set(node, &value, Kind::Int, location)?;
                }
            }
            None => plan.insert(spec, "replicas", &value, Kind::Int, location)?,
        }
        edited += 1;
    }
    if edited == 0 {
        found.extend(
            docs.iter()
                .filter(|d| d.kind() == Some("Deployment"))
                .map(Doc::describe),
        );
        return Err(plan.not_found(format!("Deployment {canary:?} or {stable:?}"), found));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::canary_replicas;

    #[test]
    fn canary_gets_a_pod_whenever_it_gets_weight() {
        assert_eq!(canary_replicas(0, 10), 0);
        assert_eq!(canary_replicas(1, 10), 1);
        assert_eq!(canary_replicas(25, 10), 3);
        assert_eq!(canary_replicas(50, 4), 2);
        assert_eq!(canary_replicas(99, 10), 9);
        assert_eq!(canary_replicas(100, 10), 10);
        assert_eq!(canary_replicas(50, 1), 1);
    }
}
