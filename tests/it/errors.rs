//! Error chains as a person reads them (`{:#}`, what `deploybot` prints on failure): each cause
//! once. A wrapper either is `#[error(transparent)]` or carries its cause in its own message and
//! does not also return it as `source()`, which would print the same text twice. Every chain here
//! starts from a real failure: a missing table, a missing file, a git error.

use std::path::Path;

use deploybot::adapters::gitops::GitopsError;
use deploybot::adapters::store::Store;
use deploybot::adapters::store::assessments::{AssessmentKey, AssessmentStore};
use deploybot::shell::driver::DriverError;
use deploybot::shell::pipeline::PipelineError;
use deploybot_core::failure::Failure;
use deploybot_core::rollout::store::RolloutStore;

/// `{:#}` of `e`, after checking that no message in its chain contains the next one's and that
/// the root cause, which must contain `root`, appears exactly once.
fn rendered_once(e: anyhow::Error, root: &str) -> String {
    let text = format!("{e:#}");
    let chain: Vec<String> = e.chain().map(ToString::to_string).collect();
    for pair in chain.windows(2) {
        assert!(
            !pair[0].contains(&pair[1]),
            "{:?} also prints its source {:?}: {text}",
            pair[0],
            pair[1]
        );
    }
    let last = chain.last().unwrap();
    assert!(last.contains(root), "root cause {last:?} lacks {root:?}");
    assert_eq!(text.matches(last.as_str()).count(), 1, "{text}");
    text
}

/// A store whose `table` is gone, so reading it fails for real.
fn store_without(table: &str) -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("db.sqlite3")).unwrap();
    store
        .with_conn(|c| c.execute_batch(&format!("DROP TABLE {table}")))
        .unwrap();
    (dir, store)
}

#[test]
fn a_pipeline_error_from_the_store_prints_the_database_error_once() {
    let (_dir, store) = store_without("rollouts");
    let e = RolloutStore::get(&store, "d-1").unwrap_err();
    let e = PipelineError::from(DriverError::from(e));
    let text = rendered_once(
        anyhow::Error::new(e).context("ticking the rollouts"),
        "no such table: rollouts",
    );
    assert!(text.starts_with("ticking the rollouts: "), "{text}");

    let (_dir, store) = store_without("rollouts");
    let e = PipelineError::from(RolloutStore::live(&store).unwrap_err());
    rendered_once(anyhow::Error::new(e), "no such table: rollouts");
}

#[test]
fn a_risk_error_from_the_store_says_what_it_was_doing_once() {
    let (_dir, store) = store_without("assessments");
    let key = AssessmentKey {
        repository: "acme/checkout".into(),
        pr_number: 1,
        head_sha: "a".repeat(40),
        inputs_digest: "d".into(),
    };
    // As the assessment reports it (`shell::assess`): the store's failure, in its context.
    let e = Failure::from(store.find(&key).unwrap_err()).context("storing the assessment");
    let text = rendered_once(anyhow::Error::new(e), "no such table: assessments");
    assert!(text.starts_with("storing the assessment: "), "{text}");
}

#[test]
fn a_config_read_error_names_the_file_and_the_cause_once() {
    let e = deploybot::config::load(Path::new("/nonexistent/deploybot.yaml")).unwrap_err();
    let text = rendered_once(
        anyhow::Error::new(e).context("starting serve"),
        "No such file or directory",
    );
    assert!(
        text.contains("reading config file /nonexistent/deploybot.yaml"),
        "{text}"
    );
}

#[test]
fn git_and_scenario_errors_print_their_cause_once() {
    let Err(cause) = git2::Repository::open("/nonexistent/repo.git") else {
        panic!("a repository at /nonexistent/repo.git");
    };
    let root = cause.message().to_string();
    let e = GitopsError::Git {
        doing: "opening the clone of acme/gitops".into(),
        cause,
    };
    rendered_once(anyhow::Error::new(e), &root);

    let e = deploybot::adapters::scenario::load(Path::new("/nonexistent/s.json")).unwrap_err();
    rendered_once(
        anyhow::Error::new(e).context("replaying"),
        "No such file or directory",
    );
}
