//! Local and hosted models alike: the prompt fits the context a llama.cpp or Ollama server says it
//! has, Azure OpenAI gets its `api-key` header, and a small model's degenerate reply (one factor
//! twenty times) reaches the comment once.

use std::future::Future;
use std::pin::Pin;

use deploybot::adapters::llm::LlmClient;
use deploybot::config::{ModelAuth, ModelSpec};
use deploybot::shell::assess::assess_change;
use deploybot_core::risk::model::{DEGENERATE_MARK, LlmError, ModelVerdict, RiskModel};
use deploybot_core::risk::{
    Assessment, AssessmentSource, Change, FactorKind, FactorSource, Policy, Thresholds, comment,
};
use deploybot_core::secret::Secret;

use super::fake_openai::{FakeOpenAi, Flavor, Reply, prompt_tokens, verdict};

/// A service change of about 60 KB over 40 files: far more than a 4k context holds.
fn large_change() -> Change {
    let mut diff = String::new();
    for f in 0..40 {
        diff.push_str(&format!(
            "diff --git a/src/handlers/h{f}.rs b/src/handlers/h{f}.rs\n--- a/src/handlers/h{f}.rs\n+++ b/src/handlers/h{f}.rs\n"
        ));
        for h in 0..3 {
            diff.push_str(&format!("@@ -{0},0 +{0},12 @@\n", h * 40 + 1));
            for l in 0..12 {
                diff.push_str(&format!(
                    "+    let total_{f}_{h}_{l} = order.lines.iter().map(|l| l.price * l.qty).sum::<u64>();\n"
                ));
            }
        }
    }
    deploybot_core::risk::diff::parse_unified_diff(&diff)
        .unwrap()
        .into_change()
}

fn small_model_verdict() -> String {
    verdict(
        0.45,
        "canary_10",
        false,
        &["many handlers change how an order total is computed"],
        "Broad but mechanical change to totals.",
    )
}

fn client(server: &FakeOpenAi, auth: ModelAuth, key: Option<&str>) -> LlmClient {
    let spec = ModelSpec {
        auth,
        ..ModelSpec::new(server.base_url().parse().unwrap(), "fake-model")
    };
    LlmClient::new(&spec, key.map(Secret::new)).unwrap()
}

async fn assess(model: &dyn RiskModel, change: &Change) -> Assessment {
    assess_change(
        &Policy::default(),
        &Thresholds::default(),
        change,
        Some(model),
        12_000,
    )
    .await
}

fn model_failure(a: &Assessment) -> Option<&str> {
    a.risk_factors
        .iter()
        .find(|f| f.category == FactorKind::ModelUnavailable)
        .map(|f| f.summary.as_str())
}

/// The client as it was before it asked the server: the configured budget as it is.
struct Unfitted<'a>(&'a LlmClient);

impl RiskModel for Unfitted<'_> {
    fn model(&self) -> &str {
        self.0.model()
    }
    fn assess<'a>(
        &'a self,
        system: &'a str,
        user: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<ModelVerdict, LlmError>> + Send + 'a>> {
        self.0.assess(system, user)
    }
}

#[tokio::test]
async fn a_4k_llama_cpp_model_gets_a_prompt_that_fits_and_answers() {
    let server = FakeOpenAi::start_as(Flavor::LlamaCpp { n_ctx: 4096 }, vec![]).await;
    server.always(Reply::Content(small_model_verdict()));
    let client = client(&server, ModelAuth::Bearer, None);
    let change = large_change();

    // What the issue saw: the default 12,000-token budget overflows the 4k context and the
    // model's answer is lost, so the change falls back to the policy with approval.
    let unfitted = assess(&Unfitted(&client), &change).await;
    let failure = model_failure(&unfitted).expect("the unfitted prompt overflows");
    assert!(failure.contains("context size"), "{failure}");
    assert!(unfitted.requires_manual_approval);
    let overflowing = prompt_tokens(&server.seen()[0].body);
    assert!(overflowing > 4096, "{overflowing}");

    let fitted = assess(&client, &change).await;
    assert_eq!(model_failure(&fitted), None, "{fitted:#?}");
    assert_ne!(
        fitted.source,
        AssessmentSource::Policy,
        "the model's answer counts"
    );
    let seen = server.seen();
    let sent = prompt_tokens(&seen.last().unwrap().body);
    assert!(
        sent + 800 <= 4096,
        "prompt {sent} tokens + 800 for the reply"
    );
    assert!(
        seen.last()
            .unwrap()
            .user_prompt()
            .contains("hunks are left out"),
        "the diff was summarised to fit"
    );
    assert_eq!(client.context_tokens().await, Some(4096));

    assess(&client, &change).await;
    assert_eq!(server.probes(), ["GET /props"], "asked once per process");
}

#[tokio::test]
async fn ollama_says_the_modelfiles_context_or_its_default() {
    for (num_ctx, trained, want) in [
        (Some(8192), 32_768, 8192),
        (None, 32_768, 2048),
        (Some(65_536), 32_768, 32_768),
    ] {
        let server = FakeOpenAi::start_as(Flavor::Ollama { num_ctx, trained }, vec![]).await;
        server.always(Reply::Content(small_model_verdict()));
        let client = client(&server, ModelAuth::Bearer, None);
        let a = assess(&client, &large_change()).await;
        assert_eq!(model_failure(&a), None, "num_ctx {num_ctx:?}: {a:#?}");
        assert_eq!(
            client.context_tokens().await,
            Some(want),
            "num_ctx {num_ctx:?}"
        );
        let probes = server.probes();
        assert_eq!(probes.len(), 1, "{probes:?}");
        assert!(
            probes[0].starts_with("POST /api/show")
                && probes[0].contains(r#""model":"fake-model""#),
            "{probes:?}"
        );
        let sent = prompt_tokens(&server.seen()[0].body);
        assert!(
            sent + 800 <= want,
            "prompt {sent} tokens in a {want} context"
        );
    }
}

#[tokio::test]
async fn a_hosted_model_keeps_the_configured_budget() {
    let server = FakeOpenAi::start(vec![]).await;
    server.always(Reply::Content(small_model_verdict()));
    let client = client(&server, ModelAuth::Bearer, Some("sk-hosted"));
    let a = assess(&client, &large_change()).await;
    assert_eq!(model_failure(&a), None);
    assert_eq!(
        client.context_tokens().await,
        None,
        "an unknown hosted model"
    );
    let sent = prompt_tokens(&server.seen()[0].body);
    assert!(sent > 4096, "the whole configured budget is used: {sent}");
}

#[tokio::test]
async fn azure_openai_gets_its_api_key_header() {
    let key = "azure-key-0123456789";
    let server = FakeOpenAi::start_as(Flavor::Azure { key: key.into() }, vec![]).await;
    server.always(Reply::Content(small_model_verdict()));

    let bearer = assess(
        &client(&server, ModelAuth::Bearer, Some(key)),
        &large_change(),
    )
    .await;
    let failure = model_failure(&bearer).expect("Azure refuses a bearer key");
    assert!(failure.contains("401"), "{failure}");

    let a = assess(
        &client(&server, ModelAuth::ApiKey, Some(key)),
        &large_change(),
    )
    .await;
    assert_eq!(model_failure(&a), None, "{a:#?}");
    let last = server.seen().pop().unwrap();
    assert_eq!(last.api_key.as_deref(), Some(key));
    assert_eq!(
        last.authorization, None,
        "the key is not also sent as a bearer token"
    );
}

#[tokio::test]
async fn a_factor_repeated_twenty_times_is_posted_once() {
    let server = FakeOpenAi::start_as(Flavor::LlamaCpp { n_ctx: 4096 }, vec![]).await;
    let twenty = vec!["Changes how order totals are computed"; 20];
    let mut factors = twenty.clone();
    factors.push(" ");
    server.always(Reply::Content(verdict(
        0.5,
        "canary_10",
        false,
        &factors,
        "r",
    )));
    let client = client(&server, ModelAuth::Bearer, None);
    let a = assess(&client, &large_change()).await;
    assert_ne!(a.source, AssessmentSource::Policy, "{a:#?}");
    let from_model: Vec<&str> = a
        .risk_factors
        .iter()
        .filter(|f| f.source == FactorSource::Llm)
        .map(|f| f.summary.as_str())
        .collect();
    assert_eq!(from_model.len(), 2, "{from_model:?}");
    let body = comment::render(
        &a,
        "example-org/checkout",
        7,
        "0123456789abcdef",
        "`checkout`",
    );
    assert_eq!(
        body.matches("Changes how order totals are computed")
            .count(),
        1,
        "{body}"
    );
    let marked = body
        .lines()
        .find(|l| l.contains(DEGENERATE_MARK))
        .unwrap_or_else(|| panic!("no marked factor in {body}"));
    assert!(
        marked.contains("repeated 19 and left 1 empty of its 21 factors"),
        "{marked}"
    );
}
