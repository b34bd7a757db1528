//! The GitHub adapter's rollout roles (reviews, collaborator permission, team members,
//! reactions, merge at a SHA, check runs) against the fake GitHub: GitHub's shapes map onto the
//! domain types, lists are read across pages, and refusals are classified (404 permission is
//! `None`, a moved head is a refused merge, 5xx is transient).

use axum::http::Method;
use deploybot::adapters::github::GithubRest;
use deploybot_core::github::{
    Approvals, Checks, Comments, GitopsPullRequests, Merge, MergeMethod, Permission, PullRequests,
    Reaction, RepoName,
};
use deploybot_core::rollout::approval::{ApprovalOutcome, ReviewState, count_approvals};
use deploybot_core::rollout::trigger::{CheckRun, ChecksGate, required_checks};
use deploybot_core::secret::Secret;

use crate::support::fake_github::{BOT, FakeGithub, webhook};

const TOKEN: &str = "ghs_rollouttoken";

/// The fake serving the real `pull_request.opened` PR (#2 by Codertocat), and a client.
async fn setup() -> (FakeGithub, GithubRest, RepoName, String) {
    let opened = webhook("pull_request", "opened");
    let gh = FakeGithub::start_with_pr(&opened).await;
    gh.require_token(TOKEN);
    let client = GithubRest::new(&gh.url(), Some(&Secret::new(TOKEN))).unwrap();
    let repo: RepoName = opened["repository"]["full_name"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let head = opened["pull_request"]["head"]["sha"]
        .as_str()
        .unwrap()
        .to_string();
    (gh, client, repo, head)
}

#[tokio::test]
async fn reviews_are_read_across_pages_and_feed_the_approval_count() {
    let (gh, client, repo, head) = setup().await;
    let old = "0000000000000000000000000000000000000001";
    gh.add_review(2, "bob", "APPROVED", &head);
    gh.add_review(2, "carol", "COMMENTED", &head);
    gh.add_review(2, "dave", "APPROVED", old);
    gh.add_review(2, "Codertocat", "APPROVED", &head);
    gh.add_review(2, "erin", "CHANGES_REQUESTED", &head);
    gh.add_review(2, "erin", "DISMISSED", &head);
    gh.add_review(2, "frank", "PENDING", &head);
    // A deleted account's review: GitHub lists it with `"user": null`; it cannot count.
    gh.add_review(2, "ghost", "APPROVED", &head);
    gh.state.lock().unwrap().reviews.get_mut(&2).unwrap()[7]["user"] = serde_json::Value::Null;

    let reviews = client.pull_request_reviews(&repo, 2).await.unwrap();
    let got: Vec<(&str, ReviewState, &str)> = reviews
        .iter()
        .map(|r| (r.reviewer.as_str(), r.state, r.commit_sha.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("bob", ReviewState::Approved, head.as_str()),
            ("carol", ReviewState::Commented, head.as_str()),
            ("dave", ReviewState::Approved, old),
            ("Codertocat", ReviewState::Approved, head.as_str()),
            ("erin", ReviewState::ChangesRequested, head.as_str()),
            ("erin", ReviewState::Dismissed, head.as_str()),
            ("frank", ReviewState::Pending, head.as_str()),
        ]
    );
    assert!(reviews[0].submitted_at < reviews[1].submitted_at);
    let requests = gh.requests();
    assert!(
        requests.contains(
            &"GET /repos/Codertocat/Hello-World/pulls/2/reviews?page=4&per_page=100".to_string()
        ),
        "all four pages of two were read: {requests:?}"
    );

    // Through the pure count: bob counts; dave's approval is stale, the author's own is ignored,
    // erin's dismissed request no longer blocks.
    let outcome = count_approvals(&reviews, &head, "Codertocat", |_| true, 1);
    assert_eq!(
        outcome,
        ApprovalOutcome::Approved {
            by: vec!["bob".into()]
        }
    );
}

#[tokio::test]
async fn an_unknown_review_state_is_a_clear_error() {
    let (gh, client, repo, head) = setup().await;
    gh.add_review(2, "bob", "SUPERSEDED", &head);
    let e = client.pull_request_reviews(&repo, 2).await.unwrap_err();
    let m = e.to_string();
    assert!(
        m.contains("listing reviews of Codertocat/Hello-World#2")
            && m.contains("unknown review state \"SUPERSEDED\""),
        "{m}"
    );
    assert!(!e.is_transient());
}

#[tokio::test]
async fn permissions_come_from_the_role_and_a_non_collaborator_is_none() {
    let (gh, client, repo, _) = setup().await;
    for (login, role) in [
        ("ada", "admin"),
        ("max", "maintain"),
        ("wes", "write"),
        ("tia", "triage"),
        ("rex", "read"),
    ] {
        gh.set_permission(login, role);
    }
    // A custom role: its name means nothing to deploybot; its base permission does.
    gh.set_custom_role("cody", "deployer", "write");
    gh.set_custom_role("rita", "auditor", "read");
    let cases = [
        ("ada", Permission::Admin, true),
        ("max", Permission::Maintain, true),
        ("wes", Permission::Write, true),
        ("tia", Permission::Triage, false),
        ("rex", Permission::Read, false),
        ("cody", Permission::Write, true),
        ("rita", Permission::Read, false),
        ("mallory", Permission::None, false),
    ];
    for (login, want, write) in cases {
        let p = client.collaborator_permission(&repo, login).await.unwrap();
        assert_eq!((p, p.can_write()), (want, write), "{login}");
    }
    assert!(
        gh.requests()
            .contains(&"GET /repos/Codertocat/Hello-World/collaborators/mallory/permission".into())
    );

    gh.fail_next(Method::GET, "/permission", 500, "Server Error", None);
    let e = client
        .collaborator_permission(&repo, "ada")
        .await
        .unwrap_err();
    assert!(e.is_transient(), "a 500 is not a \"no access\": {e}");
    assert!(
        e.to_string()
            .contains("reading the permission of ada on Codertocat/Hello-World"),
        "{e}"
    );
}

#[tokio::test]
async fn team_members_are_read_across_pages() {
    let (gh, client, _, _) = setup().await;
    gh.set_team("acme", "deployers", &["ana", "ben", "cat", "dan", "eve"]);
    assert_eq!(
        client.team_members("acme", "deployers").await.unwrap(),
        ["ana", "ben", "cat", "dan", "eve"]
    );
    assert_eq!(
        gh.requests()
            .iter()
            .filter(|r| r.starts_with("GET /orgs/acme/teams/deployers/members"))
            .count(),
        3
    );
    let e = client.team_members("acme", "nobody").await.unwrap_err();
    assert!(e.cause.starts_with("HTTP 404"), "{e}");
    assert!(!e.is_transient());
    assert!(
        e.to_string()
            .contains("listing members of team acme/nobody"),
        "{e}"
    );
}

#[tokio::test]
async fn reactions_are_idempotent() {
    let (gh, client, repo, _) = setup().await;
    let id = gh.add_comment(2, "alice", "/deploy staging");
    client
        .add_reaction(&repo, id, Reaction::Eyes)
        .await
        .unwrap();
    // GitHub answers 200 with the existing reaction the second time.
    client
        .add_reaction(&repo, id, Reaction::Eyes)
        .await
        .unwrap();
    client
        .add_reaction(&repo, id, Reaction::PlusOne)
        .await
        .unwrap();
    assert_eq!(
        gh.reactions(),
        [
            (id, "eyes".to_string(), BOT.to_string()),
            (id, "+1".to_string(), BOT.to_string())
        ]
    );
    let e = client
        .add_reaction(&repo, 999_999, Reaction::Rocket)
        .await
        .unwrap_err();
    assert!(e.cause.starts_with("HTTP 404"), "{e}");
    assert!(
        e.to_string()
            .contains("reacting rocket to comment 999999 in Codertocat/Hello-World"),
        "{e}"
    );
}

#[tokio::test]
async fn merging_checks_the_head_and_reports_the_merge_commit() {
    let (gh, client, repo, head) = setup().await;
    let before = client.pull_request(&repo, 2).await.unwrap();
    assert!(!before.merged);

    // The head moved after the approval: a refusal naming the approved head, nothing merged.
    let approved = "1111111111111111111111111111111111111111";
    let m = client
        .merge_pull_request(&repo, 2, approved, MergeMethod::Merge)
        .await
        .unwrap();
    let Merge::HeadMoved(why) = &m else {
        panic!("{m:?}")
    };
    assert!(
        why.contains("the head moved past 1111111") && why.contains("Head branch was modified"),
        "{why}"
    );
    assert!(!client.pull_request(&repo, 2).await.unwrap().merged);

    gh.fail_next(Method::PUT, "/merge", 502, "Server Error", None);
    let e = client
        .merge_pull_request(&repo, 2, &head, MergeMethod::Merge)
        .await
        .unwrap_err();
    assert!(e.is_transient(), "{e}");
    assert!(
        e.to_string()
            .contains("merging Codertocat/Hello-World#2 at "),
        "{e}"
    );

    let Merge::Merged(sha) = client
        .merge_pull_request(&repo, 2, &head, MergeMethod::Merge)
        .await
        .unwrap()
    else {
        panic!("not merged")
    };
    assert_eq!(sha.len(), 40);
    let after = client.pull_request(&repo, 2).await.unwrap();
    assert!(after.merged);
    assert_eq!(after.merge_commit_sha.as_deref(), Some(sha.as_str()));
    assert_eq!(after.head_sha, head);

    // Merged already: GitHub's 405 with its reason, a refusal.
    let m = client
        .merge_pull_request(&repo, 2, &head, MergeMethod::Merge)
        .await
        .unwrap();
    assert!(
        matches!(&m, Merge::NotMergeable(why) if why.contains("Pull Request is not mergeable")),
        "{m:?}"
    );
    assert_eq!(
        gh.writes()
            .iter()
            .filter(|w| *w == "PUT /repos/Codertocat/Hello-World/pulls/2/merge")
            .count(),
        4
    );
}

#[tokio::test]
async fn a_human_merge_and_an_unmergeable_pr_are_visible() {
    let (gh, client, repo, head) = setup().await;
    gh.set_unmergeable(2);
    let m = client
        .merge_pull_request(&repo, 2, &head, MergeMethod::Merge)
        .await
        .unwrap();
    assert!(
        matches!(&m, Merge::NotMergeable(why) if why.contains("Pull Request is not mergeable")),
        "{m:?}"
    );

    let sha = gh.merge_by_human(2, "alice");
    let pr = client.pull_request(&repo, 2).await.unwrap();
    assert!(pr.merged);
    assert_eq!(pr.merge_commit_sha, Some(sha));
}

#[tokio::test]
async fn check_runs_and_commit_statuses_feed_the_checks_gate() {
    let (gh, client, repo, _) = setup().await;
    let sha = "4f2a9c81d3e7b6a5f0c1d2e3f4a5b6c7d8e9f0a1";
    let lint = gh.add_check_run(sha, "lint", "completed", Some("success"));
    let test = gh.add_check_run(sha, "test", "completed", Some("success"));
    let eval = gh.add_check_run(sha, "llm-eval", "in_progress", None);
    gh.add_check_run(
        "ffffffffffffffffffffffffffffffffffffffff",
        "lint",
        "completed",
        Some("failure"),
    );
    gh.add_status(sha, "sbom-cve-scan", "pending");
    gh.add_status(sha, "sbom-cve-scan", "success");
    gh.add_status(sha, "ci/legacy", "error");

    let runs = client.check_runs(&repo, sha).await.unwrap();
    let run = |id, name: &str, status: &str, conclusion: Option<&str>| CheckRun {
        id,
        name: name.into(),
        status: status.into(),
        conclusion: conclusion.map(Into::into),
    };
    assert_eq!(runs.len(), 5, "{runs:?}");
    assert_eq!(
        runs[..3],
        [
            run(lint, "lint", "completed", Some("success")),
            run(test, "test", "completed", Some("success")),
            run(eval, "llm-eval", "in_progress", None),
        ]
    );
    // The combined status keeps the latest per context.
    let statuses: Vec<(&str, &str, Option<&str>)> = runs[3..]
        .iter()
        .map(|r| (r.name.as_str(), r.status.as_str(), r.conclusion.as_deref()))
        .collect();
    assert_eq!(
        statuses,
        [
            ("ci/legacy", "completed", Some("error")),
            ("sbom-cve-scan", "completed", Some("success")),
        ]
    );
    assert!(
        gh.requests().iter().any(|r| r.starts_with(&format!(
            "GET /repos/Codertocat/Hello-World/commits/{sha}/check-runs?page=2"
        ))),
        "{:?}",
        gh.requests()
    );

    let required: Vec<String> = ["lint", "test", "llm-eval", "sbom-cve-scan"]
        .map(String::from)
        .to_vec();
    assert_eq!(
        required_checks(&required, &runs),
        ChecksGate::Waiting {
            pending: vec!["llm-eval (in_progress)".into()]
        }
    );

    gh.fail_next(Method::GET, "/status", 503, "Service Unavailable", None);
    let e = client.check_runs(&repo, sha).await.unwrap_err();
    assert!(e.is_transient(), "{e}");
    assert!(
        e.to_string().contains(&format!(
            "reading the commit status of Codertocat/Hello-World@{sha}"
        )),
        "{e}"
    );
}

/// The fake holds every request to GitHub's REST description: an operation GitHub does not have
/// or a body field its schema does not know is a violation, which fails the test (when the fake
/// is dropped) unless taken.
#[tokio::test]
async fn the_fake_github_refuses_what_githubs_description_does_not_allow() {
    let gh = FakeGithub::start().await;
    let http = reqwest::Client::new();
    let put = |path: &str, body: serde_json::Value| {
        http.put(format!("{}{path}", gh.url())).json(&body).send()
    };
    put(
        "/repos/o/r/pulls/1/merge",
        serde_json::json!({"sha": "abc", "merge_method": "squash"}),
    )
    .await
    .unwrap();
    assert_eq!(gh.take_violations(), Vec::<String>::new());
    // Answered as GitHub answers: 422 for a body it does not take, 404 for no such operation.
    let bad = put(
        "/repos/o/r/pulls/1/merge",
        serde_json::json!({"sha": "abc", "merge_method": "fast-forward"}),
    )
    .await
    .unwrap();
    assert_eq!(bad.status(), 422);
    let unknown = put("/repos/o/r/pulls/1/automerge", serde_json::json!({}))
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    let v = gh.take_violations();
    assert_eq!(v.len(), 2, "{v:#?}");
    assert!(
        v[0].contains("merge_method: \"fast-forward\" is not one of"),
        "{v:?}"
    );
    assert!(
        v[1].contains("PUT /repos/o/r/pulls/1/automerge: no such operation"),
        "{v:?}"
    );
    // Not taken: the test fails when the fake goes.
    put("/repos/o/r/pulls/1/automerge", serde_json::json!({}))
        .await
        .unwrap();
    let dropped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(gh)));
    assert!(
        dropped.is_err(),
        "a violation left in the fake must fail the test"
    );
}
