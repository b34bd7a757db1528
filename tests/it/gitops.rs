//! The GitOps writer against real git: bare remotes in temp dirs (file:// and smart HTTP through
//! `git http-backend`), races, hooks, tokens, reverts, and PR mode against a fake GitHub API.

mod fixture;

use std::sync::Arc;
use std::sync::atomic::AtomicU32;

use deploybot::adapters::github::GithubRest;
use deploybot::adapters::gitops::GitopsError;
use deploybot::adapters::gitops::pull_request::{
    Proposal, ProposeRequest, bot_branch, propose, step_branch,
};
use deploybot::adapters::gitops::repo::GitAuth;
use deploybot::adapters::gitops::writer::{BranchLocks, WriteOutcome};
use deploybot::config::PushRetry;
use deploybot_core::duration::PromDuration;
use deploybot_core::github::{GitopsPullRequests, Merge, MergeMethod, RepoName};
use deploybot_core::gitops::edit::FileEdit;
use deploybot_core::secret::Secret;

use crate::support::fake_github::{BareRepo, FakeGithub};
use crate::support::git_http::GitHttp;
use fixture::*;

const TOKEN: &str = "ghs_test_installation_token_123";

fn committed(o: &WriteOutcome) -> (&str, u32) {
    match o {
        WriteOutcome::Committed {
            commit, attempts, ..
        } => (commit, *attempts),
        other => panic!("expected a commit, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_commits_the_edit_with_trailers_as_the_bot_and_keeps_the_rest_of_the_line() {
    let fx = GitFixture::new();
    let before = fx.head("main");
    let w = fx.writer("a", &fx.file_url(), GitAuth::None);
    let out = w
        .write(
            "main",
            SetTag::service("web", "2.0.0").boxed(),
            info("web", "ship web 2.0.0"),
        )
        .await
        .unwrap();
    let (sha, attempts) = committed(&out);
    assert_eq!(attempts, 1);
    assert_eq!(fx.head("main"), sha);
    assert_eq!(
        fx.remote_git(&["rev-parse", &format!("{sha}^")]).trim(),
        before
    );
    let text = fx.show("main", "apps/web/deployment.yaml");
    assert!(
        text.contains("image: ghcr.io/acme/web:2.0.0 # pinned by deploybot\n"),
        "{text}"
    );
    assert_eq!(
        text.replace("web:2.0.0", "web:1.0.0"),
        deployment("web", "1.0.0"),
        "only the tag changed"
    );
    // Other files are the same blobs.
    assert_eq!(
        fx.remote_git(&["rev-parse", &format!("{before}:apps/api")]),
        fx.remote_git(&["rev-parse", "main:apps/api"])
    );
    let msg = fx.remote_git(&["log", "-1", "--format=%an <%ae>%n%cn <%ce>%n%B", "main"]);
    assert!(
        msg.starts_with(&format!(
            "deploybot <{BOT_EMAIL}>\ndeploybot <{BOT_EMAIL}>\n"
        )),
        "{msg}"
    );
    assert!(msg.contains("deploy(web/staging): ship web 2.0.0"), "{msg}");
    let trailers = fx.remote_git(&["log", "-1", "--format=%(trailers:only,unfold)", "main"]);
    for t in [
        "Deploy-Id: d-web-1",
        "Service: web",
        "Environment: staging",
        "Step: promote",
        "Image: ghcr.io/acme/web:2.0.0",
        "Risk-Score: 12",
        "Source-PR: acme/web#7",
    ] {
        assert!(trailers.contains(t), "{t} missing in {trailers}");
    }
    // The local clone is bare: no working tree was ever written.
    let clone = w.clone_path();
    assert!(clone.join("HEAD").exists() && !clone.join("apps").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_at_the_target_values_makes_no_commit_and_returns_the_head() {
    let fx = GitFixture::new();
    let head = fx.head("main");
    let w = fx.writer("a", &fx.file_url(), GitAuth::None);
    let out = w
        .write(
            "main",
            SetTag::service("web", "1.0.0").boxed(),
            info("web", "noop"),
        )
        .await
        .unwrap();
    assert_eq!(out, WriteOutcome::Unchanged { head: head.clone() });
    assert_eq!(fx.head("main"), head);

    // Same after a real write: writing it twice is one commit.
    let first = w
        .write(
            "main",
            SetTag::service("api", "3.1.0").boxed(),
            info("api", "x"),
        )
        .await
        .unwrap();
    let again = w
        .write(
            "main",
            SetTag::service("api", "3.1.0").boxed(),
            info("api", "x"),
        )
        .await
        .unwrap();
    assert_eq!(
        again,
        WriteOutcome::Unchanged {
            head: first.head().to_string()
        }
    );
    assert_eq!(fx.commit_count("main"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_edits_fail_clearly_and_commit_nothing() {
    let fx = GitFixture::new();
    let head = fx.head("main");
    let w = fx.writer("a", &fx.file_url(), GitAuth::None);
    let missing = SetTag {
        path: "apps/nope/deployment.yaml".into(),
        image: "x".into(),
        tag: "1".into(),
    };
    let e = w
        .write("main", missing.boxed(), info("web", "x"))
        .await
        .unwrap_err();
    assert!(matches!(e, GitopsError::FileMissing { .. }), "{e}");
    assert!(e.to_string().contains("apps/nope/deployment.yaml"), "{e}");

    let wrong_image = SetTag {
        path: "apps/web/deployment.yaml".into(),
        image: "ghcr.io/acme/other".into(),
        tag: "1".into(),
    };
    let e = w
        .write("main", wrong_image.boxed(), info("web", "x"))
        .await
        .unwrap_err();
    assert!(matches!(e, GitopsError::Edit { .. }), "{e}");
    assert!(e.to_string().contains("no image ghcr.io/acme/other"), "{e}");

    let e = w
        .write(
            "release",
            SetTag::service("web", "2").boxed(),
            info("web", "x"),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, GitopsError::BranchMissing { .. }), "{e}");
    assert_eq!(fx.head("main"), head);
}

/// `w` sets web's tag to 2.0.0 on main while someone else commits before each of our first
/// `times` attempts: `commit(fx, attempt)` is what they commit.
async fn write_web_while_racing(
    w: &deploybot::adapters::gitops::Writer,
    fx: &Arc<GitFixture>,
    times: u32,
    commit: impl Fn(&GitFixture, u32) + Send + Sync + 'static,
) -> Result<WriteOutcome, GitopsError> {
    let fx2 = fx.clone();
    let edit = Interfere {
        inner: SetTag::service("web", "2.0.0"),
        times,
        calls: AtomicU32::new(0),
        before: Box::new(move |n| commit(&fx2, n)),
    };
    w.write(
        "main",
        vec![Arc::new(edit) as Arc<dyn FileEdit>],
        info("web", "ship"),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_race_is_retried_on_the_new_tip_without_losing_the_other_commit() {
    let fx = Arc::new(GitFixture::new());
    let w = fx.writer("a", &fx.file_url(), GitAuth::None);
    // Between our fetch and our push, someone else changes another service.
    let out = write_web_while_racing(&w, &fx, 1, |fx, _| {
        fx.human_commit(
            "main",
            "apps/api/deployment.yaml",
            &deployment("api", "9.9.9"),
            "hotfix api",
        );
    })
    .await
    .unwrap();
    let (sha, attempts) = committed(&out);
    assert_eq!(attempts, 2, "first push must have been rejected");
    assert_eq!(fx.head("main"), sha);
    assert!(
        fx.show("main", "apps/web/deployment.yaml")
            .contains("web:2.0.0")
    );
    assert!(
        fx.show("main", "apps/api/deployment.yaml")
            .contains("api:9.9.9"),
        "human commit lost"
    );
    // Linear history: ours sits on top of the human commit (no force, no merge).
    let subjects = fx.remote_git(&["log", "--format=%s", "main"]);
    assert_eq!(
        subjects.lines().collect::<Vec<_>>(),
        vec!["deploy(web/staging): ship", "hotfix api", "seed"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_old_value_upstream_is_a_conflict_not_an_overwrite() {
    let fx = Arc::new(GitFixture::new());
    let w = fx.writer("a", &fx.file_url(), GitAuth::None);
    let e = write_web_while_racing(&w, &fx, 1, |fx, _| {
        fx.human_commit(
            "main",
            "apps/web/deployment.yaml",
            &deployment("web", "1.5.0"),
            "manual web",
        );
    })
    .await
    .unwrap_err();
    match &e {
        GitopsError::Conflict {
            path,
            expected,
            found,
            ..
        } => {
            assert_eq!(path, "apps/web/deployment.yaml");
            assert_eq!(expected, "1.0.0");
            assert_eq!(found, "1.5.0");
        }
        other => panic!("expected a conflict, got {other}"),
    }
    assert!(
        fx.show("main", "apps/web/deployment.yaml")
            .contains("web:1.5.0")
    );
    assert_eq!(
        fx.remote_git(&["log", "-1", "--format=%s", "main"]).trim(),
        "manual web"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_are_bounded() {
    let fx = Arc::new(GitFixture::new());
    let retry = PushRetry {
        max_attempts: 3,
        initial_backoff: PromDuration::from_millis(1),
        multiplier: 2.0,
        max_backoff: PromDuration::from_millis(5),
    };
    let w = writer_with(
        &fx.data_dir("a"),
        &fx.file_url(),
        GitAuth::None,
        BranchLocks::default(),
        retry,
    );
    let e = write_web_while_racing(&w, &fx, u32::MAX, |fx, n| {
        fx.human_commit("main", "README.md", &format!("busy {n}\n"), "busy");
    })
    .await
    .unwrap_err();
    assert!(
        matches!(e, GitopsError::RetriesExhausted { attempts: 3, .. }),
        "{e}"
    );
    assert!(
        fx.show("main", "apps/web/deployment.yaml")
            .contains("web:1.0.0")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_to_one_branch_in_one_process_are_serialized() {
    let fx = GitFixture::new();
    let w = fx.writer("a", &fx.file_url(), GitAuth::None);
    let mut tasks = Vec::new();
    for s in SERVICES {
        let w = w.clone();
        tasks.push(tokio::spawn(async move {
            w.write("main", SetTag::service(s, "5.0.0").boxed(), info(s, "ship"))
                .await
        }));
    }
    for t in tasks {
        let out = t.await.unwrap().unwrap();
        // Serialized: nobody ever lost a race against a writer of the same process.
        assert_eq!(committed(&out).1, 1);
    }
    assert_eq!(fx.commit_count("main"), 1 + SERVICES.len());
    for s in SERVICES {
        assert!(
            fx.show("main", &format!("apps/{s}/deployment.yaml"))
                .contains(":5.0.0")
        );
    }
}

/// Two writers with their own clones and locks (two deploybot processes) each ship half of the
/// services to `main` at the same time. Every write must land, none may be overwritten.
async fn race(fx: &GitFixture, url: &str, auth: GitAuth) {
    let a = fx.writer("a", url, auth.clone());
    let b = fx.writer("b", url, auth);
    let (left, right) = SERVICES.split_at(SERVICES.len() / 2);
    let run = |w: deploybot::adapters::gitops::Writer, services: &'static [&'static str]| {
        tokio::spawn(async move {
            let mut attempts = 0;
            let mut shas = Vec::new();
            for s in services {
                let out = w
                    .write("main", SetTag::service(s, "7.0.0").boxed(), info(s, "ship"))
                    .await
                    .unwrap();
                attempts += committed(&out).1;
                shas.push(out.head().to_string());
            }
            (attempts, shas)
        })
    };
    let (ra, rb) = tokio::join!(run(a, left), run(b, right));
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    eprintln!("{} writes took {} attempts", SERVICES.len(), ra.0 + rb.0);
    assert_eq!(
        fx.commit_count("main"),
        1 + SERVICES.len(),
        "a write was lost"
    );
    for s in SERVICES {
        assert!(
            fx.show("main", &format!("apps/{s}/deployment.yaml"))
                .contains(":7.0.0"),
            "{s}"
        );
    }
    let merges = fx.remote_git(&["rev-list", "--merges", "--count", "main"]);
    assert_eq!(merges.trim(), "0");
    // Every commit a writer reported as pushed is still on main: nothing was overwritten.
    for sha in ra.1.iter().chain(&rb.1) {
        fx.remote_git(&["merge-base", "--is-ancestor", sha, "main"]);
    }
    fx.remote_git(&["fsck", "--no-progress", "--connectivity-only"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_writers_racing_over_smart_http_both_land_without_force() {
    let fx = GitFixture::new();
    let server = GitHttp::start(fx.dir.path().to_path_buf(), TOKEN).await;
    race(
        &fx,
        &server.url("remote.git"),
        GitAuth::Token(Secret::new(TOKEN)),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_writers_racing_over_file_urls_both_land_without_force() {
    let fx = GitFixture::new();
    race(&fx, &fx.file_url(), GitAuth::None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pre_receive_hook_rejection_surfaces_with_its_message() {
    let fx = GitFixture::new();
    let hook = fx.remote_path().join("hooks/pre-receive");
    std::fs::write(
        &hook,
        "#!/bin/sh\necho 'policy: main is frozen for the release' >&2\nexit 1\n",
    )
    .unwrap();
    std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let head = fx.head("main");
    let server = GitHttp::start(fx.dir.path().to_path_buf(), TOKEN).await;
    let w = fx.writer(
        "a",
        &server.url("remote.git"),
        GitAuth::Token(Secret::new(TOKEN)),
    );
    let e = w
        .write(
            "main",
            SetTag::service("web", "2.0.0").boxed(),
            info("web", "ship"),
        )
        .await
        .unwrap_err();
    match &e {
        GitopsError::HookRejected {
            message, status, ..
        } => {
            assert!(
                message.contains("policy: main is frozen for the release"),
                "{e}"
            );
            assert!(status.contains("pre-receive"), "{e}");
        }
        other => panic!("expected a hook rejection, got {other}"),
    }
    assert_eq!(fx.head("main"), head);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_or_missing_token_is_a_clear_auth_error_that_never_shows_the_token() {
    let fx = GitFixture::new();
    let server = GitHttp::start(fx.dir.path().to_path_buf(), TOKEN).await;
    let url = server.url("remote.git");
    let w = fx.writer(
        "a",
        &url,
        GitAuth::Token(Secret::new("ghs_wrong_token_456")),
    );
    let e = w
        .write(
            "main",
            SetTag::service("web", "2.0.0").boxed(),
            info("web", "ship"),
        )
        .await
        .unwrap_err();
    let m = e.to_string();
    assert!(matches!(e, GitopsError::Auth { .. }), "{m}");
    assert!(
        m.contains("rejected the credentials") && m.contains(&url),
        "{m}"
    );
    assert!(
        !m.contains("ghs_wrong_token_456") && !format!("{e:?}").contains("ghs_wrong"),
        "{m}"
    );

    let w = fx.writer("b", &url, GitAuth::None);
    let e = w
        .write(
            "main",
            SetTag::service("web", "2.0.0").boxed(),
            info("web", "ship"),
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("none usable are configured"), "{e}");

    // And the right token works over the same server.
    let w = fx.writer("c", &url, GitAuth::Token(Secret::new(TOKEN)));
    let out = w
        .write(
            "main",
            SetTag::service("web", "2.0.0").boxed(),
            info("web", "ship"),
        )
        .await
        .unwrap();
    assert_eq!(fx.head("main"), out.head());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revert_restores_the_old_values_and_keeps_unrelated_commits_on_top() {
    let fx = GitFixture::new();
    let w = fx.writer("a", &fx.file_url(), GitAuth::None);
    let out = w
        .write(
            "main",
            SetTag::service("web", "2.0.0").boxed(),
            info("web", "ship web 2.0.0"),
        )
        .await
        .unwrap();
    let bad = committed(&out).0.to_string();
    fx.human_commit(
        "main",
        "apps/api/deployment.yaml",
        &deployment("api", "1.1.0"),
        "api 1.1.0",
    );
    fx.human_commit("main", "README.md", "GitOps repo, now with docs\n", "docs");

    let reason = "Canary failed: 5xx rate 4.1% vs 0.3% (Mann-Whitney U p=0.002, window 10m).";
    let rev = w.revert("main", &bad, reason).await.unwrap();
    let (rsha, _) = committed(&rev);
    assert_eq!(fx.head("main"), rsha);
    assert_eq!(
        fx.show("main", "apps/web/deployment.yaml"),
        deployment("web", "1.0.0")
    );
    assert!(
        fx.show("main", "apps/api/deployment.yaml")
            .contains("api:1.1.0")
    );
    assert_eq!(fx.show("main", "README.md"), "GitOps repo, now with docs\n");
    let msg = fx.remote_git(&["log", "-1", "--format=%B", "main"]);
    assert!(
        msg.starts_with("Revert \"deploy(web/staging): ship web 2.0.0\"\n\n"),
        "{msg}"
    );
    assert!(
        msg.contains(&format!("This reverts commit {bad}.")),
        "{msg}"
    );
    assert!(msg.contains(reason), "{msg}");
    assert!(
        msg.contains("Deploy-Id: d-web-1") && msg.contains("Step: revert"),
        "{msg}"
    );

    // Reverting again: the values are already restored.
    let again = w.revert("main", &bad, reason).await.unwrap();
    assert_eq!(
        again,
        WriteOutcome::Unchanged {
            head: rsha.to_string()
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revert_is_refused_when_a_later_commit_changed_the_same_lines() {
    let fx = GitFixture::new();
    let w = fx.writer("a", &fx.file_url(), GitAuth::None);
    let out = w
        .write(
            "main",
            SetTag::service("web", "2.0.0").boxed(),
            info("web", "ship"),
        )
        .await
        .unwrap();
    let bad = committed(&out).0.to_string();
    fx.human_commit(
        "main",
        "apps/web/deployment.yaml",
        &deployment("web", "2.0.1"),
        "web hotfix",
    );
    let head = fx.head("main");
    let e = w.revert("main", &bad, "canary failed").await.unwrap_err();
    let m = e.to_string();
    assert!(matches!(e, GitopsError::RevertRefused { .. }), "{m}");
    assert!(
        m.contains("apps/web/deployment.yaml") && m.contains("web hotfix"),
        "{m}"
    );
    assert_eq!(fx.head("main"), head);

    // And a commit that is not the bot's is never reverted.
    let human = fx.human_commit("main", "README.md", "x\n", "readme");
    let e = w.revert("main", &human, "nope").await.unwrap_err();
    assert!(e.to_string().contains("not by the bot"), "{e}");
}

/// The GitOps repository on the fake GitHub.
fn gitops_repo() -> RepoName {
    "acme/gitops".parse().unwrap()
}

fn pr_request(base: &str, branch: &str, tag: &str) -> ProposeRequest {
    ProposeRequest {
        repo: gitops_repo(),
        base: base.into(),
        branch: branch.into(),
        edits: SetTag::service("web", tag).boxed(),
        info: info("web", &format!("ship web {tag}")),
        labels: vec!["deploybot".into(), "risk/low".into()],
        human_edited_label: "deploybot/human-edited".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pr_mode_opens_one_pr_reuses_it_and_leaves_human_edited_branches_alone() {
    let fx = GitFixture::new();
    let gh = FakeGithub::start().await;
    gh.require_token(TOKEN);
    let prs = GithubRest::new(&gh.url(), Some(&Secret::new(TOKEN))).unwrap();
    let w = fx.writer("a", &fx.file_url(), GitAuth::None);
    let branch = bot_branch("deploybot", "web", "staging", "d-web-1");
    let main_before = fx.head("main");

    let p = propose(&w, &prs, pr_request("main", &branch, "2.0.0"))
        .await
        .unwrap();
    let Proposal::Opened { pr, write } = p else {
        panic!("{p:?}")
    };
    assert_eq!(pr.number, 1);
    assert_eq!(pr.url, "https://github.com/acme/gitops/pull/1");
    assert_eq!(
        (pr.head.as_str(), pr.base.as_str()),
        (branch.as_str(), "main")
    );
    assert_eq!(fx.head(&branch), write.head());
    assert_eq!(
        fx.head("main"),
        main_before,
        "PR mode must not touch the base branch"
    );
    assert!(
        fx.show(&branch, "apps/web/deployment.yaml")
            .contains("web:2.0.0")
    );
    let opened = gh.open_prs();
    assert_eq!(opened.len(), 1);
    assert_eq!(opened[0]["title"], "deploy(web/staging): ship web 2.0.0");
    let body = opened[0]["body"].as_str().unwrap();
    assert!(
        body.contains("apps/web/deployment.yaml:") && body.contains("1.0.0 -> 2.0.0"),
        "{body}"
    );
    assert_eq!(
        gh.label_calls(),
        vec![(1, vec!["deploybot".to_string(), "risk/low".to_string()])]
    );

    // The same step again, with a newer tag: same PR, one more commit on the branch.
    let p = propose(&w, &prs, pr_request("main", &branch, "2.0.1"))
        .await
        .unwrap();
    let Proposal::Reused { pr, write } = p else {
        panic!("{p:?}")
    };
    assert_eq!(pr.number, 1);
    assert!(matches!(write, WriteOutcome::Committed { .. }));
    assert_eq!(gh.open_prs().len(), 1, "a duplicate PR was opened");
    assert!(
        gh.requests().iter().any(|r| r
            == &format!(
                "GET /repos/acme/gitops/pulls?base=main&head=acme:{branch}&per_page=100&state=open"
            )),
        "{:?}",
        gh.requests()
    );

    // Nothing new: no commit, still the same PR.
    let p = propose(&w, &prs, pr_request("main", &branch, "2.0.1"))
        .await
        .unwrap();
    assert!(
        matches!(
            p,
            Proposal::Reused {
                write: WriteOutcome::Unchanged { .. },
                ..
            }
        ),
        "{p:?}"
    );

    // A human pushes to the bot branch: label, stop, never force.
    let human = fx.human_commit(
        &branch,
        "apps/web/deployment.yaml",
        &deployment("web", "2.0.1-fix"),
        "tweak",
    );
    let p = propose(&w, &prs, pr_request("main", &branch, "2.0.2"))
        .await
        .unwrap();
    let Proposal::HumanEdited { pr, who, .. } = p else {
        panic!("{p:?}")
    };
    assert_eq!(pr.map(|p| p.number), Some(1));
    assert!(who.contains("alice@example.test"), "{who}");
    assert_eq!(
        fx.head(&branch),
        human,
        "the human's commit must stay the tip"
    );
    assert_eq!(
        gh.label_calls().last().unwrap(),
        &(1, vec!["deploybot/human-edited".to_string()])
    );
    assert_eq!(gh.open_prs().len(), 1);
}

/// `gitops.merge_method` against a repository that allows one method: GitHub's 405 (its own
/// words) for the others, and the allowed one lands as GitHub makes it, the merged commit being
/// what the merge answers and what a restart finds again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_squash_only_repository_refuses_merge_commits_and_takes_the_configured_squash() {
    for (allowed, refused) in [
        ("squash", MergeMethod::Merge),
        ("rebase", MergeMethod::Squash),
    ] {
        let fx = GitFixture::new();
        let gh = FakeGithub::start().await;
        gh.require_token(TOKEN);
        gh.back_with_git(BareRepo(fx.remote_path()));
        gh.allow_merge_methods(&[allowed]);
        let prs = GithubRest::new(&gh.url(), Some(&Secret::new(TOKEN))).unwrap();
        let w = fx.writer("a", &fx.file_url(), GitAuth::None);
        let branch = step_branch("deploybot", "web", "staging", "d-web-1", 25);
        let p = propose(&w, &prs, pr_request("main", &branch, "2.0.0"))
            .await
            .unwrap();
        let Proposal::Opened { pr, write } = p else {
            panic!("{p:?}")
        };
        let main_before = fx.head("main");

        let m = prs
            .merge_pull_request(&gitops_repo(), pr.number, write.head(), refused)
            .await
            .unwrap();
        let Merge::NotMergeable(why) = &m else {
            panic!("{m:?}")
        };
        let words = match refused {
            MergeMethod::Merge => "Merge commits are not allowed on this repository.",
            _ => "Squash merges are not allowed on this repository.",
        };
        assert_eq!(why, words);
        assert_eq!(
            fx.head("main"),
            main_before,
            "a refused merge changes nothing"
        );

        let method = match allowed {
            "squash" => MergeMethod::Squash,
            _ => MergeMethod::Rebase,
        };
        let m = prs
            .merge_pull_request(&gitops_repo(), pr.number, write.head(), method)
            .await
            .unwrap();
        let Merge::Merged(sha) = m else {
            panic!("{m:?}")
        };
        assert_eq!(
            fx.head("main"),
            sha,
            "the answer is the commit now on the base"
        );
        assert_ne!(sha, write.head(), "{allowed}: not the bot's own commit");
        let parents = fx.remote_git(&["rev-list", "--parents", "-n", "1", &sha]);
        assert_eq!(
            parents.split_whitespace().count(),
            2,
            "{allowed}: one parent: {parents}"
        );
        assert_eq!(
            fx.remote_git(&["log", "-1", "--format=%ae|%ce", &sha])
                .trim(),
            "deploybot@example.test|noreply@github.com",
            "{allowed}: the bot's authorship is kept"
        );
        let message = fx.remote_git(&["log", "-1", "--format=%B", &sha]);
        assert!(message.contains("Deploy-Id: "), "{message}");
        assert!(
            fx.show("main", "apps/web/deployment.yaml")
                .contains("web:2.0.0"),
            "{allowed}"
        );
        assert_eq!(
            gh.merges(),
            vec![(pr.number, allowed.to_string(), sha.clone())]
        );
        // A restart finds the merge by the branch, whatever the method made of it.
        assert_eq!(
            prs.merged_pull_request(&gitops_repo(), &branch, "main")
                .await
                .unwrap(),
            Some(sha)
        );
        assert_eq!(
            prs.merged_pull_request(&gitops_repo(), "deploybot/other", "main")
                .await
                .unwrap(),
            None
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pr_mode_with_nothing_to_change_opens_nothing_and_bad_tokens_fail_clearly() {
    let fx = GitFixture::new();
    let gh = FakeGithub::start().await;
    gh.require_token(TOKEN);
    let w = fx.writer("a", &fx.file_url(), GitAuth::None);
    let good = GithubRest::new(&gh.url(), Some(&Secret::new(TOKEN))).unwrap();
    let p = propose(
        &w,
        &good,
        pr_request("main", "deploybot/web/staging/d0", "1.0.0"),
    )
    .await
    .unwrap();
    assert!(matches!(p, Proposal::NothingToPropose { .. }), "{p:?}");
    assert!(gh.requests().is_empty(), "{:?}", gh.requests());

    let bad = GithubRest::new(&gh.url(), Some(&Secret::new("ghs_bad"))).unwrap();
    let e = bad
        .find_open_pull_request(&gitops_repo(), "deploybot/x", "main")
        .await
        .unwrap_err();
    let m = e.to_string();
    assert!(
        m.contains("listing open pull requests")
            && m.contains("401")
            && m.contains("Bad credentials"),
        "{m}"
    );
    assert!(!m.contains("ghs_bad"), "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incremental_fetch_keeps_the_clone_complete_across_merges_and_many_commits() {
    let fx = GitFixture::new();
    let w = fx.writer("a", &fx.file_url(), GitAuth::None);
    w.write(
        "main",
        SetTag::service("web", "2.0.0").boxed(),
        info("web", "one"),
    )
    .await
    .unwrap();
    // Upstream moves on: a feature branch merged with --no-ff, and a run of plain commits.
    let work = fx.dir.path().join("merge-work");
    git(
        fx.dir.path(),
        &[
            "clone",
            "-q",
            fx.remote_path().to_str().unwrap(),
            work.to_str().unwrap(),
        ],
    );
    git(&work, &["checkout", "-q", "-b", "feature"]);
    std::fs::write(
        work.join("apps/api/deployment.yaml"),
        deployment("api", "4.0.0"),
    )
    .unwrap();
    std::fs::create_dir_all(work.join("apps/new/deep/er")).unwrap();
    std::fs::write(work.join("apps/new/deep/er/x.yaml"), "a: 1\n").unwrap();
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-q", "-m", "feature"]);
    git(&work, &["checkout", "-q", "main"]);
    std::fs::write(work.join("README.md"), "main moved\n").unwrap();
    git(&work, &["commit", "-q", "-a", "-m", "main moved"]);
    git(
        &work,
        &["merge", "-q", "--no-ff", "-m", "merge feature", "feature"],
    );
    for i in 0..30 {
        std::fs::write(work.join("apps/cart/notes.txt"), format!("{i}\n")).unwrap();
        git(&work, &["add", "-A"]);
        git(&work, &["commit", "-q", "-m", &format!("note {i}")]);
    }
    git(&work, &["push", "-q", "origin", "main"]);

    let out = w
        .write(
            "main",
            SetTag::service("worker", "3.0.0").boxed(),
            info("worker", "two"),
        )
        .await
        .unwrap();
    assert_eq!(fx.head("main"), out.head());
    assert_eq!(fx.show("main", "apps/new/deep/er/x.yaml"), "a: 1\n");
    assert!(
        fx.show("main", "apps/api/deployment.yaml")
            .contains("api:4.0.0")
    );
    // The bare clone has every object of the history it now tracks.
    git(
        w.clone_path(),
        &[
            "fsck",
            "--no-progress",
            "--connectivity-only",
            "refs/remotes/origin/main",
        ],
    );
    let in_clone = git(
        w.clone_path(),
        &["rev-list", "--objects", "refs/remotes/origin/main"],
    );
    let in_remote = fx.remote_git(&["rev-list", "--objects", "main"]);
    assert_eq!(in_clone.lines().count(), in_remote.lines().count());
    fx.remote_git(&["fsck", "--no-progress", "--connectivity-only"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clone_far_behind_catches_up_with_an_ordinary_fetch() {
    let fx = GitFixture::new();
    let w = fx.writer("a", &fx.file_url(), GitAuth::None);
    w.write(
        "main",
        SetTag::service("web", "2.0.0").boxed(),
        info("web", "one"),
    )
    .await
    .unwrap();
    // 600 upstream commits: more than the object-copy fetch takes on.
    let mut stream = String::new();
    for i in 0..600 {
        let msg = format!("note {i}");
        let body = format!("{i}\n");
        stream.push_str(&format!(
            "commit refs/heads/main\ncommitter Alice Human <alice@example.test> {} +0000\ndata {}\n{msg}\n",
            1_700_000_000 + i,
            msg.len()
        ));
        if i == 0 {
            stream.push_str(&format!("from {}\n", fx.head("main")));
        }
        stream.push_str(&format!(
            "M 100644 inline apps/cart/notes.txt\ndata {}\n{body}\n",
            body.len()
        ));
    }
    let mut child = std::process::Command::new("git")
        .args(["fast-import", "--quiet"])
        .env("GIT_DIR", fx.remote_path())
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), stream.as_bytes()).unwrap();
    drop(child.stdin.take());
    assert!(child.wait().unwrap().success());
    assert_eq!(fx.commit_count("main"), 2 + 600);

    let out = w
        .write(
            "main",
            SetTag::service("api", "3.0.0").boxed(),
            info("api", "two"),
        )
        .await
        .unwrap();
    assert_eq!(fx.head("main"), out.head());
    assert_eq!(fx.show("main", "apps/cart/notes.txt"), "599\n");
    git(
        w.clone_path(),
        &[
            "fsck",
            "--no-progress",
            "--connectivity-only",
            "refs/remotes/origin/main",
        ],
    );
}

/// The writer with the real manifest editor (not a test edit): a kustomize-style image change
/// lands byte for byte, and the same change again makes no commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_manifest_editor_through_the_writer() {
    use deploybot_core::gitops::ManifestEdit;
    use deploybot_core::manifest::{Change, EditOptions};

    let fx = GitFixture::new();
    let w = fx.writer("m", &fx.file_url(), GitAuth::None);
    let edit = || -> Vec<Arc<dyn FileEdit>> {
        vec![Arc::new(ManifestEdit {
            path: "apps/web/deployment.yaml".into(),
            change: Change::SetImage("ghcr.io/acme/web:3.1.0".parse().unwrap()),
            options: EditOptions::default(),
        })]
    };
    let out = w
        .write("main", edit(), info("web", "ship web 3.1.0"))
        .await
        .unwrap();
    committed(&out);
    let text = fx.show("main", "apps/web/deployment.yaml");
    assert_eq!(
        text,
        deployment("web", "1.0.0").replace("web:1.0.0", "web:3.1.0"),
        "only the tag changed; the trailing comment stays"
    );
    let again = w
        .write("main", edit(), info("web", "ship web 3.1.0"))
        .await
        .unwrap();
    assert!(matches!(again, WriteOutcome::Unchanged { .. }), "{again:?}");
}

/// The port's questions for a shared branch: whether a revision contains a commit (after
/// fetching the branch, since Argo CD reports commits the clone has not seen), and a file at a
/// revision (fetching a commit the clone lacks).
#[tokio::test]
async fn the_port_answers_ancestry_and_reads_files_at_revisions_it_fetched() {
    use deploybot_core::gitops::repo::GitopsRepo;
    let fx = GitFixture::new();
    let w = fx.writer("ancestry", &fx.file_url(), GitAuth::None);
    let seed = fx.head("main");
    let ours = fx.human_commit(
        "main",
        "apps/web/deployment.yaml",
        &deployment("web", "2.0.0"),
        "web 2.0.0",
    );
    let theirs = fx.human_commit(
        "main",
        "apps/api/deployment.yaml",
        &deployment("api", "9.9.9"),
        "api",
    );
    let port: &dyn GitopsRepo = &w;
    for (revision, commit, want) in [
        (theirs.as_str(), ours.as_str(), true),
        (ours.as_str(), ours.as_str(), true),
        (seed.as_str(), ours.as_str(), false),
        ("1.2.3", ours.as_str(), false),
        (
            "0123456789012345678901234567890123456789",
            ours.as_str(),
            false,
        ),
    ] {
        let got = port.contains("main", revision, commit).await.unwrap();
        assert_eq!(got, want, "does {revision} contain {commit}?");
    }
    // A commit pushed after the last fetch is fetched to be read.
    let later = fx.human_commit(
        "main",
        "apps/web/deployment.yaml",
        &deployment("web", "2.1.0"),
        "web 2.1.0",
    );
    let text = port
        .read_file("main", &later, "apps/web/deployment.yaml")
        .await
        .unwrap();
    assert!(text.unwrap().contains("2.1.0"));
    let text = port
        .read_file("main", &ours, "apps/web/deployment.yaml")
        .await
        .unwrap();
    assert!(text.unwrap().contains("2.0.0"));
    assert_eq!(
        port.read_file("main", &ours, "apps/nope.yaml")
            .await
            .unwrap(),
        None
    );
}

/// Git over smart HTTP as GitHub serves it to an App: only unexpired installation tokens the
/// (fake) GitHub issued may fetch and push. An expired token is refused; the writer asking the
/// App's token source pushes, and keeps pushing across several token lifetimes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn git_refuses_an_expired_installation_token_and_pushes_with_a_fresh_one() {
    use deploybot::adapters::gitops::repo::GitTokens;
    use deploybot_core::github::token::{Scope, TokenSource};

    let fx = GitFixture::new();
    let gh = FakeGithub::start().await;
    gh.require_app(
        crate::github_app::APP_ID,
        &std::fs::read(crate::github_app::key("test-app.pub.pem")).unwrap(),
        &[("acme", 31)],
        std::time::Duration::from_secs(2),
    );
    let state = gh.state.clone();
    let server = GitHttp::start_checked(
        fx.dir.path().to_path_buf(),
        Arc::new(move |t| {
            let st = state.lock().unwrap();
            st.app.as_ref().unwrap().valid_token(t, None).is_ok()
        }),
    )
    .await;
    let url = server.url("remote.git");
    let tokens: Arc<dyn TokenSource> = Arc::new(crate::github_app::app_tokens(
        &gh,
        "test-app.pem",
        Arc::new(deploybot::adapters::clock::SystemClock),
    ));
    let acme: RepoName = "acme/remote".parse().unwrap();
    let first = tokens.token(Scope::Repo(&acme)).await.unwrap().unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;

    // The token it was given an hour (here: two seconds) ago no longer pushes.
    let stale = fx.writer("stale", &url, GitAuth::Token(first.clone()));
    let e = stale
        .write(
            "main",
            SetTag::service("web", "2.0.0").boxed(),
            info("web", "ship"),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, GitopsError::Auth { .. }), "{e}");
    assert!(!e.to_string().contains(first.expose()), "{e}");

    // The writer asking the App for each fetch and push gets a fresh token every time.
    let w = fx.writer(
        "app",
        &url,
        GitAuth::Provided(GitTokens {
            source: tokens.clone(),
            repo: Some(acme.clone()),
            runtime: Some(tokio::runtime::Handle::current()),
        }),
    );
    for (i, tag) in ["2.0.0", "2.0.1", "2.0.2"].iter().enumerate() {
        if i > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
        }
        let out = w
            .write(
                "main",
                SetTag::service("web", tag).boxed(),
                info("web", "ship"),
            )
            .await
            .unwrap_or_else(|e| panic!("push {i}: {e}"));
        assert!(matches!(out, WriteOutcome::Committed { .. }), "{out:?}");
    }
    assert!(gh.minted() >= 4, "a token per lifetime: {}", gh.minted());

    // GitHub revokes the cached token: the remote's refusal makes the writer ask for a new one,
    // once, and the push goes through.
    let minted = gh.minted();
    gh.revoke_tokens();
    let out = w
        .write(
            "main",
            SetTag::service("web", "2.0.3").boxed(),
            info("web", "ship"),
        )
        .await
        .unwrap();
    assert!(matches!(out, WriteOutcome::Committed { .. }), "{out:?}");
    assert_eq!(
        gh.minted(),
        1,
        "{minted} before the revocation, one new since"
    );
}
