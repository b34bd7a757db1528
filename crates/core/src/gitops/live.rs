//! Whether a step deploybot committed is live, from what Argo CD reports and what the GitOps
//! repository holds at the reported revision.
//!
//! A GitOps branch is shared by many services and people, so the Application is usually synced
//! to a later commit than deploybot's. That commit carries deploybot's step when it *contains*
//! deploybot's commit (ancestry in the GitOps repository) *and* the files the step wrote still
//! hold the step's values there: someone may have reverted or overwritten them since, and then
//! what runs is someone else's version, which the judge must not be asked about. The shell
//! gathers the facts (the Application through Argo CD, the ancestry and the files through the
//! git port) and [`liveness`] decides; it does no I/O.

use crate::manifest::ValueChange;

/// What deploybot reads from an Argo CD Application's status.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AppStatus {
    /// `Synced`, `OutOfSync` or `Unknown`.
    pub sync_status: String,
    /// The revision(s) the Application is synced to (several for multi-source apps).
    pub revisions: Vec<String>,
    /// `Healthy`, `Progressing`, `Degraded`, `Suspended`, `Missing` or `Unknown`.
    pub health: String,
    pub health_message: Option<String>,
    /// The last operation's phase (`Running`, `Succeeded`, `Failed`, `Error`, ...), its message
    /// and the revision it synced.
    pub operation_phase: Option<String>,
    pub operation_message: Option<String>,
    pub operation_revision: Option<String>,
}

/// What the GitOps repository says of one revision Argo CD reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lineage {
    pub revision: String,
    /// The revision is deploybot's commit or a later commit containing it. False for a
    /// revision the repository does not have (a Helm chart version of a multi-source app).
    pub contains_ours: bool,
}

/// A file the step wrote, as it reads at the revision that contains deploybot's commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileAtRevision {
    pub path: String,
    /// The step's edit applied again to the file there: the values that differ from the step's
    /// (`old` is what the file holds, `new` what the step wrote; none when it still carries
    /// them), or why the edit no longer applies (the file or the key is gone).
    pub differs: Result<Vec<ValueChange>, String>,
}

/// Where deploybot's step stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Liveness {
    /// `revision` (deploybot's commit or a later one containing it, still with the step's
    /// values) is synced and healthy: the analysis window may open.
    Live { revision: String },
    /// Not yet; says what it is waiting for.
    Waiting(String),
    /// The sync of a revision with the step failed, or the app is degraded on it.
    Failed(String),
    /// The synced revision contains deploybot's commit, but a later commit changed a value the
    /// step wrote: what runs is not the step's version.
    Overwritten {
        revision: String,
        path: String,
        /// The value, where, what the file holds and what the step wrote.
        detail: String,
    },
}

/// The revision the Application reports that contains `ours`, if any (the first, as Argo CD
/// lists them). The shell reads the step's files at this revision.
pub fn deployed<'a>(app: &'a AppStatus, ours: &str, lineage: &[Lineage]) -> Option<&'a str> {
    app.revisions
        .iter()
        .map(String::as_str)
        .find(|r| contains_ours(r, ours, lineage))
}

fn contains_ours(revision: &str, ours: &str, lineage: &[Lineage]) -> bool {
    revision == ours
        || lineage
            .iter()
            .any(|l| l.revision == revision && l.contains_ours)
}

/// Decides whether deploybot's commit `ours` is live according to `app`, the ancestry of the
/// revisions it reports (`lineage`; `ours` itself needs no entry) and the step's files at the
/// [`deployed`] revision (`files`).
pub fn liveness(
    app: &AppStatus,
    ours: &str,
    lineage: &[Lineage],
    files: &[FileAtRevision],
) -> Liveness {
    let operation_has_ours = app
        .operation_revision
        .as_deref()
        .is_some_and(|r| contains_ours(r, ours, lineage));
    if operation_has_ours && matches!(app.operation_phase.as_deref(), Some("Failed" | "Error")) {
        return Liveness::Failed(format!(
            "sync of {} {}: {}",
            app.operation_revision.as_deref().unwrap_or_default(),
            app.operation_phase
                .as_deref()
                .unwrap_or_default()
                .to_lowercase(),
            app.operation_message.as_deref().unwrap_or("no message")
        ));
    }
    let Some(revision) = deployed(app, ours, lineage) else {
        return Liveness::Waiting(format!(
            "application is at {} ({}), which does not contain {ours} yet",
            app.revisions
                .first()
                .map(String::as_str)
                .unwrap_or("no revision"),
            app.sync_status
        ));
    };
    let at = if revision == ours {
        ours.to_string()
    } else {
        format!("{revision} (containing {ours})")
    };
    if app.sync_status != "Synced" {
        return Liveness::Waiting(format!("{at} is {}", app.sync_status));
    }
    match app.health.as_str() {
        "Healthy" => {}
        "Degraded" | "Missing" => {
            return Liveness::Failed(format!(
                "{} on {at}: {}",
                app.health,
                app.health_message.as_deref().unwrap_or("no message")
            ));
        }
        other => return Liveness::Waiting(format!("{at} is synced but {other}")),
    }
    for file in files {
        let detail = match &file.differs {
            Ok(changes) => match changes.first() {
                None => continue,
                Some(c) => format!("{} is {:?}, deploybot wrote {:?}", c.location, c.old, c.new),
            },
            Err(why) => format!("the step's value is gone: {why}"),
        };
        return Liveness::Overwritten {
            revision: revision.to_string(),
            path: file.path.clone(),
            detail,
        };
    }
    Liveness::Live {
        revision: revision.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OURS: &str = "1111111111111111111111111111111111111111";
    const LATER: &str = "2222222222222222222222222222222222222222";
    const OTHER: &str = "3333333333333333333333333333333333333333";

    fn app(revision: &str) -> AppStatus {
        AppStatus {
            sync_status: "Synced".into(),
            revisions: vec![revision.into()],
            health: "Healthy".into(),
            health_message: None,
            operation_phase: Some("Succeeded".into()),
            operation_message: None,
            operation_revision: Some(revision.into()),
        }
    }

    fn lineage(revision: &str, contains_ours: bool) -> Vec<Lineage> {
        vec![Lineage {
            revision: revision.into(),
            contains_ours,
        }]
    }

    fn same(path: &str) -> FileAtRevision {
        FileAtRevision {
            path: path.into(),
            differs: Ok(vec![]),
        }
    }

    fn changed(path: &str, old: &str, new: &str) -> FileAtRevision {
        FileAtRevision {
            path: path.into(),
            differs: Ok(vec![ValueChange {
                location: "images[checkout].newTag".into(),
                line: 7,
                old: old.into(),
                new: new.into(),
            }]),
        }
    }

    fn name(l: &Liveness) -> String {
        match l {
            Liveness::Live { revision } => format!("live at {revision}"),
            Liveness::Waiting(_) => "waiting".into(),
            Liveness::Failed(_) => "failed".into(),
            Liveness::Overwritten { path, .. } => format!("overwritten in {path}"),
        }
    }

    /// One row: the name, the Application, the lineage, the files, the verdict's [`name`].
    fn check(row: &str, app: AppStatus, lineage: &[Lineage], files: &[FileAtRevision], want: &str) {
        let got = liveness(&app, OURS, lineage, files);
        assert_eq!(name(&got), want, "row {row:?}: {got:?}");
    }

    #[test]
    fn ancestry_and_overwrite_table() {
        let with = |revision: &str, f: &dyn Fn(&mut AppStatus)| {
            let mut a = app(revision);
            f(&mut a);
            a
        };
        let files = [same("apps/checkout/production/kustomization.yaml")];
        // The ancestry rule.
        check(
            "our own commit",
            app(OURS),
            &[],
            &files,
            &format!("live at {OURS}"),
        );
        check(
            "a later commit containing ours (a third writer's)",
            app(LATER),
            &lineage(LATER, true),
            &files,
            &format!("live at {LATER}"),
        );
        check(
            "a commit that does not contain ours (Argo CD not there yet)",
            app(OTHER),
            &lineage(OTHER, false),
            &files,
            "waiting",
        );
        check(
            "a revision the repository does not know",
            app(OTHER),
            &[],
            &files,
            "waiting",
        );
        check(
            "multi-source: a chart version and a commit containing ours",
            with(LATER, &|a| a.revisions = vec!["1.2.3".into(), LATER.into()]),
            &lineage(LATER, true),
            &files,
            &format!("live at {LATER}"),
        );
        check(
            "containing ours but out of sync",
            with(LATER, &|a| a.sync_status = "OutOfSync".into()),
            &lineage(LATER, true),
            &files,
            "waiting",
        );
        check(
            "containing ours but progressing",
            with(LATER, &|a| a.health = "Progressing".into()),
            &lineage(LATER, true),
            &files,
            "waiting",
        );
        check(
            "containing ours and degraded",
            with(LATER, &|a| a.health = "Degraded".into()),
            &lineage(LATER, true),
            &files,
            "failed",
        );
        check(
            "degraded on a revision without ours is not ours to fail",
            with(OTHER, &|a| a.health = "Degraded".into()),
            &lineage(OTHER, false),
            &files,
            "waiting",
        );
        check(
            "a failed sync of a later commit containing ours",
            with(OTHER, &|a| {
                a.operation_phase = Some("Failed".into());
                a.operation_revision = Some(LATER.into());
            }),
            &[
                Lineage {
                    revision: OTHER.into(),
                    contains_ours: false,
                },
                Lineage {
                    revision: LATER.into(),
                    contains_ours: true,
                },
            ],
            &files,
            "failed",
        );
        check(
            "an old failed sync does not fail our step",
            with(OTHER, &|a| a.operation_phase = Some("Error".into())),
            &lineage(OTHER, false),
            &files,
            "waiting",
        );
        // The overwrite rule.
        check(
            "a later commit put another tag in our file",
            app(LATER),
            &lineage(LATER, true),
            &[
                same("apps/checkout/production/rollout.yaml"),
                changed(
                    "apps/checkout/production/kustomization.yaml",
                    "1.4.0",
                    "1.5.0",
                ),
            ],
            "overwritten in apps/checkout/production/kustomization.yaml",
        );
        check(
            "a later commit deleted the key",
            app(LATER),
            &lineage(LATER, true),
            &[FileAtRevision {
                path: "apps/checkout/production/rollout.yaml".into(),
                differs: Err("no weight for backend checkout-canary".into()),
            }],
            "overwritten in apps/checkout/production/rollout.yaml",
        );
        check(
            "an overwrite is not judged before the sync is healthy",
            with(LATER, &|a| a.health = "Progressing".into()),
            &lineage(LATER, true),
            &[changed("k.yaml", "1.4.0", "1.5.0")],
            "waiting",
        );
    }

    #[test]
    fn the_overwrite_names_the_file_the_value_and_both_versions() {
        let got = liveness(
            &app(LATER),
            OURS,
            &lineage(LATER, true),
            &[changed(
                "apps/checkout/production/kustomization.yaml",
                "1.4.0",
                "1.5.0",
            )],
        );
        assert_eq!(
            got,
            Liveness::Overwritten {
                revision: LATER.into(),
                path: "apps/checkout/production/kustomization.yaml".into(),
                detail: "images[checkout].newTag is \"1.4.0\", deploybot wrote \"1.5.0\"".into(),
            }
        );
        let Liveness::Waiting(why) = liveness(&app(OTHER), OURS, &lineage(OTHER, false), &[])
        else {
            panic!("waiting expected");
        };
        assert!(why.contains("does not contain"), "{why}");
    }
}
