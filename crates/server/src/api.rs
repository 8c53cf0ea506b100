//! The HTTP API: health, push webhooks, and the JSON API under `/api/v1/`.
//!
//! Every route but `/healthz` and the webhooks (which carry their own secret) needs a
//! bearer token whose role allows the call. Every call that changes something records
//! who did it (the token's subject and id) in the audit log.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use launchway_api::{
    self as api, ControlAnswer, DecideAnswer, DecideRequest, DecisionSummary, Health, IssuedToken, PublishRequest,
    ReconcileAnswer, ReconcileStatus, RevokedToken, RollbackRequest, RunDetail, SyncRequest, UnpinRequest,
    WebhookSkipped, WebhookStatus,
};
use launchway_store::{
    AuditKind, ControlAction, Decision as ApprovalDecision, EventBody, EventFilter, NewEvent, Published, Role,
    RunFilter, RunState, Token, now_ms,
};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::hooks::{self, Hook, Provider};
use crate::http::{ApiError, ApiResult, AppState, Authenticated, Caller, allow, authenticate, authorize, ok, too_many};
use crate::limits::{Audit, Failure, Standing};
use crate::reconciler::{Reconciler, Scope};
use crate::routes;
use launchway_engine::access::{self as auth, Permission, TokenRequest};

/// How long a webhook or publication waits for its reconcile before answering 202.
const ANSWER_WITHIN: Duration = Duration::from_secs(5);

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(health))
        .route("/hooks/github", post(github_hook))
        .route("/hooks/gitlab", post(gitlab_hook))
        .route("/hooks/slack/interactions", post(routes::slack::interactions))
        .route("/api/v1/runs", get(list_runs))
        .route("/api/v1/runs/{id}", get(show_run))
        .route("/api/v1/runs/{id}/events", get(routes::live::run_events))
        .route(
            "/api/v1/session",
            get(routes::sessions::current).post(routes::sessions::sign_in).delete(routes::sessions::sign_out),
        )
        .route("/api/v1/runs/{id}/approve", post(approve))
        .route("/api/v1/runs/{id}/reject", post(reject))
        .route("/api/v1/runs/{id}/promote", post(promote))
        .route("/api/v1/runs/{id}/abort", post(abort))
        .route("/api/v1/sync", post(sync))
        .route("/api/v1/rollback", post(rollback))
        .route("/api/v1/unpin", post(unpin))
        .route("/api/v1/releases", post(publish).get(list_published))
        .route("/api/v1/tasks/{app}/{env}/run", post(run_task))
        .route("/api/v1/status", get(status))
        .route("/api/v1/apps/{app}/{env}/logs", get(recent_logs))
        .route("/api/v1/audit", get(audit))
        .route("/api/v1/dora", get(dora))
        .route("/api/v1/tokens", get(list_tokens).post(create_token))
        .route("/api/v1/tokens/{id}", delete(revoke_token))
        .merge(crate::ui::routes())
        .layer(axum::middleware::from_fn_with_state(state.clone(), authenticated_before_body))
        .layer(axum::middleware::map_response(common_headers))
        .with_state(state)
}

/// On every answer: no page's address leaks to other sites through the Referer header,
/// and no answer is read as another type than it says.
async fn common_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(axum::http::header::REFERRER_POLICY, axum::http::HeaderValue::from_static("same-origin"));
    headers.insert(axum::http::header::X_CONTENT_TYPE_OPTIONS, axum::http::HeaderValue::from_static("nosniff"));
    response
}

/// "api approve by alice@example.com (token 3f9a1c2b4d5e)"
fn actor(action: &str, token: &Token) -> String {
    format!("api {action} by {} (token {})", token.subject, token.id)
}

async fn health() -> impl IntoResponse {
    axum::Json(Health { status: "ok".to_owned(), version: env!("CARGO_PKG_VERSION").to_owned() })
}

// ---- webhooks

async fn github_hook(State(state): State<AppState>, caller: Caller, body: Bytes) -> Response {
    webhook(state, Provider::GitHub, caller, body).await
}

async fn gitlab_hook(State(state): State<AppState>, caller: Caller, body: Bytes) -> Response {
    webhook(state, Provider::GitLab, caller, body).await
}

/// 401 for a webhook that does not verify: counted against its source, and audited one
/// by one only up to the limit (the rest is summarised).
async fn refuse_webhook(state: &AppState, provider: Provider, caller: &Caller, refusal: &hooks::Refusal) -> Response {
    // Only what does not verify is held back: a signed webhook always gets through.
    if let Standing::Limited { retry_after } = state.limiter.standing(Failure::Webhook, caller.source, Instant::now()) {
        crate::metrics::webhook(provider.as_str(), "limited");
        return too_many(Failure::Webhook, retry_after).into_response();
    }
    crate::metrics::webhook(provider.as_str(), "refused");
    if state.limiter.failed(Failure::Webhook, caller.source, Instant::now()) == Audit::Each {
        let message = format!("refused a {} webhook from {}: {refusal}", provider.as_str(), caller.source);
        let data = json!({"provider": provider.as_str(), "reason": refusal.to_string(), "source": caller.source});
        if let Err(error) =
            state.runtime.engine().record(NewEvent::audit(AuditKind::WebhookRefused, message, data)).await
        {
            tracing::warn!(%error, "could not record a webhook in the audit log");
        }
    }
    ApiError::new(StatusCode::UNAUTHORIZED, refusal.to_string()).into_response()
}

/// Who may send a body is known before a byte of it is read: an API call's token, a
/// webhook's signature header (GitLab's token whole), Slack's signature and timestamp.
/// A caller that cannot be let in is answered at once, its body never read; one that can
/// has its token handed on ([`Authenticated`]), checked once.
async fn authenticated_before_body(
    State(state): State<AppState>,
    caller: Caller,
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    use axum::http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
    let headers = request.headers();
    let has_body = headers.contains_key(TRANSFER_ENCODING)
        || headers.get(CONTENT_LENGTH).and_then(|length| length.to_str().ok()).is_some_and(|length| length != "0");
    if !has_body {
        return next.run(request).await;
    }
    let path = request.uri().path();
    match path {
        "/hooks/github" | "/hooks/gitlab" => {
            let provider = if path == "/hooks/github" { Provider::GitHub } else { Provider::GitLab };
            if let Err(refusal) = hooks::precheck(provider, state.webhook_secret.as_deref(), &caller.headers) {
                return refuse_webhook(&state, provider, &caller, &refusal).await;
            }
        }
        "/hooks/slack/interactions" => {
            if let Err(refusal) = crate::slack::precheck(&caller.headers, crate::slack::now_secs()) {
                return (StatusCode::UNAUTHORIZED, refusal.to_string()).into_response();
            }
        }
        // Signing in: the body is the token (bounded by the edge's body timeout).
        "/api/v1/session" => {}
        path if path.starts_with("/api/") => match authenticate(&state, &caller).await {
            Ok(token) => {
                request.extensions_mut().insert(Authenticated(token));
            }
            Err(error) => return error.into_response(),
        },
        _ => {}
    }
    next.run(request).await
}

/// A token the edge of the router already checked for this request.
async fn webhook(state: AppState, provider: Provider, caller: Caller, body: Bytes) -> Response {
    let engine = state.runtime.engine().clone();
    let audit = |kind: AuditKind, message: String, data: Value| {
        let engine = engine.clone();
        let event = NewEvent::audit(kind, message, data);
        async move {
            if let Err(error) = engine.record(event).await {
                tracing::warn!(%error, "could not record a webhook in the audit log");
            }
        }
    };
    let hook = match hooks::read(provider, state.webhook_secret.as_deref(), &caller.headers, &body) {
        Ok(hook) => hook,
        Err(refusal) => return refuse_webhook(&state, provider, &caller, &refusal).await,
    };
    let (git_ref, commit, delivery) = match hook {
        Hook::Push { git_ref, commit, delivery } => (git_ref, commit, delivery),
        Hook::PullRequest(pull) => return plan_pull_request(state, provider, pull).await,
        Hook::Other { event, .. } => {
            crate::metrics::webhook(provider.as_str(), "ignored");
            let skipped = WebhookSkipped { status: WebhookStatus::Ignored, event: Some(event), delivery: None };
            return axum::Json(skipped).into_response();
        }
    };
    let about = json!({"provider": provider.as_str(), "delivery": delivery, "ref": git_ref});
    if let Some(answer) = redelivered(&engine, provider, delivery.as_deref(), about).await {
        return answer;
    }
    crate::metrics::webhook(provider.as_str(), "accepted");
    audit(
        AuditKind::WebhookAccepted,
        format!(
            "{} push to {git_ref}{}",
            provider.as_str(),
            commit.as_deref().map(|c| format!(" ({c})")).unwrap_or_default()
        ),
        json!({"provider": provider.as_str(), "delivery": delivery, "ref": git_ref, "commit": commit}),
    )
    .await;
    let scope = Scope { pushed_refs: Some(vec![git_ref.clone()]), ..Scope::default() };
    let trigger = format!("{} push to {git_ref}", provider.as_str());
    reconcile_answer(&state.reconciler, scope, trigger).await
}

/// The answer to a delivery already received (GitHub and GitLab redeliver): it is
/// audited (`about` says what it was about) and does nothing else. `None` for a first
/// delivery, or one without an id.
async fn redelivered(
    engine: &launchway_engine::Engine,
    provider: Provider,
    delivery: Option<&str>,
    about: Value,
) -> Option<Response> {
    let delivery = delivery?;
    match engine.store().record_delivery(provider.as_str(), delivery).await {
        Ok(true) => None,
        Ok(false) => {
            crate::metrics::webhook(provider.as_str(), "duplicate");
            let message = format!("ignored a redelivery of {} webhook {delivery}", provider.as_str());
            if let Err(error) = engine.record(NewEvent::audit(AuditKind::WebhookDuplicate, message, about)).await {
                tracing::warn!(%error, "could not record a webhook in the audit log");
            }
            let skipped =
                WebhookSkipped { status: WebhookStatus::Duplicate, event: None, delivery: Some(delivery.to_owned()) };
            Some(axum::Json(skipped).into_response())
        }
        Err(error) => Some(ApiError::from(error).into_response()),
    }
}

/// A pull request opened or pushed to: its plan goes on it, in the background (202); the
/// audit log says what was posted.
async fn plan_pull_request(state: AppState, provider: Provider, pull: hooks::PullRequest) -> Response {
    let engine = state.runtime.engine().clone();
    let about = json!({"provider": provider.as_str(), "delivery": pull.delivery, "request": pull.number});
    if let Some(answer) = redelivered(&engine, provider, pull.delivery.as_deref(), about).await {
        return answer;
    }
    crate::metrics::webhook(provider.as_str(), "accepted");
    let (reconciler, pulls) = (state.reconciler.clone(), state.pulls.clone());
    let number = pull.number;
    state.runtime.spawn(async move {
        let (message, outcome) = match pulls.plan(&reconciler, provider, &pull).await {
            Ok(done) => (done, "planned"),
            Err(error) => (format!("could not plan request {}: {error:#}", pull.number), "failed"),
        };
        let data =
            json!({"provider": provider.as_str(), "request": pull.number, "head": pull.head, "outcome": outcome});
        if let Err(error) = engine.record(NewEvent::audit(AuditKind::WebhookAccepted, message, data)).await {
            tracing::warn!(%error, "could not record a pull request's plan in the audit log");
        }
    });
    (StatusCode::ACCEPTED, axum::Json(json!({"status": "planning", "request": number}))).into_response()
}

/// Reconciles, answering with what it did, or 202 when it takes longer than a webhook
/// sender waits (it carries on regardless).
async fn reconcile_answer(reconciler: &Arc<Reconciler>, scope: Scope, trigger: String) -> Response {
    match reconcile_within(reconciler, scope, trigger).await {
        Ok((status, answer)) => (status, axum::Json(answer)).into_response(),
        Err(error) => error.into_response(),
    }
}

/// The reconcile's decisions (200) when it finishes in time, else 202 while it goes on.
async fn reconcile_within(
    reconciler: &Arc<Reconciler>,
    scope: Scope,
    trigger: String,
) -> Result<(StatusCode, ReconcileAnswer), ApiError> {
    let deadline = Instant::now() + ANSWER_WITHIN;
    let engine = reconciler.engine().clone();
    let reconciler = reconciler.clone();
    let work = tokio::spawn(async move { reconciler.reconcile(&scope, &trigger).await });
    let answer = |status, runs| ReconcileAnswer { status, runs, unpinned: None };
    match tokio::time::timeout(ANSWER_WITHIN, work).await {
        Ok(Ok(Ok(decisions))) => {
            let mut runs: Vec<DecisionSummary> = decisions.iter().map(DecisionSummary::from).collect();
            settle_started(&engine, &mut runs, deadline).await?;
            Ok((StatusCode::OK, answer(ReconcileStatus::Reconciled, runs)))
        }
        Ok(Ok(Err(error))) => Err(error.into()),
        Ok(Err(join)) => Err(ApiError::internal(&join.to_string())),
        Err(_) => Ok((StatusCode::ACCEPTED, answer(ReconcileStatus::Accepted, Vec::new()))),
    }
}

/// A run just started may park for approval once it has planned (a moment later): the
/// answer says which it did, rather than "started" for a run that waits. Runs still
/// planning at the deadline are answered as started.
async fn settle_started(
    engine: &launchway_engine::Engine,
    runs: &mut [DecisionSummary],
    deadline: Instant,
) -> Result<(), ApiError> {
    // The runs move in this process: each of their events wakes the wait (no polling).
    let mut events = engine.subscribe();
    for summary in runs.iter_mut().filter(|summary| summary.decision == api::DecisionKind::Started) {
        let Some(id) = summary.run else { continue };
        loop {
            let run = engine.store().run(id).await?;
            match run.state {
                RunState::AwaitingApproval => summary.decision = api::DecisionKind::WaitingForApproval,
                RunState::Pending | RunState::Validating | RunState::Building | RunState::Planning
                    if Instant::now() < deadline =>
                {
                    let moved = async {
                        loop {
                            match events.recv().await {
                                Ok(event) if event.run_id == Some(id) => return,
                                Ok(_) => {}
                                // Missed events may include this run's: look again.
                                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => return,
                                Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                                    std::future::pending::<()>().await
                                }
                            }
                        }
                    };
                    let _ = tokio::time::timeout_at(deadline.into(), moved).await;
                    continue;
                }
                _ => {}
            }
            break;
        }
    }
    Ok(())
}

// ---- runs

#[derive(Debug, Deserialize)]
struct RunsQuery {
    app: Option<String>,
    env: Option<String>,
    state: Option<String>,
    /// The next page: runs older than this one.
    before: Option<i64>,
    limit: Option<u32>,
}

async fn list_runs(State(state): State<AppState>, caller: Caller, Query(query): Query<RunsQuery>) -> ApiResult {
    authorize(&state, &caller, Permission::Read).await?;
    let run_state = match query.state.as_deref() {
        Some(text) => Some(
            RunState::parse(text)
                .ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, format!("unknown run state {text:?}")))?,
        ),
        None => None,
    };
    let filter = RunFilter {
        app: query.app,
        env: query.env,
        state: run_state,
        before_id: query.before,
        limit: Some(query.limit.unwrap_or(50).min(1000)),
        ..RunFilter::default()
    };
    ok(state.runtime.engine().store().runs(&filter).await?)
}

async fn show_run(State(state): State<AppState>, caller: Caller, Path(id): Path<i64>) -> ApiResult {
    authorize(&state, &caller, Permission::Read).await?;
    let store = state.runtime.engine().store();
    let run = store.run(id).await?;
    let release = store.release(run.release_id).await?;
    let steps = store.steps(id).await?;
    let approval = store.approval(id).await?;
    let events = store.events(&EventFilter { run_id: Some(id), ..EventFilter::default() }).await?;
    ok(RunDetail::new(run, release, approval, steps, events))
}

async fn approve(state: State<AppState>, caller: Caller, id: Path<i64>, body: Bytes) -> ApiResult {
    decide(state, caller, id, body, ApprovalDecision::Approved).await
}

async fn reject(state: State<AppState>, caller: Caller, id: Path<i64>, body: Bytes) -> ApiResult {
    decide(state, caller, id, body, ApprovalDecision::Rejected).await
}

async fn decide(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<i64>,
    body: Bytes,
    decision: ApprovalDecision,
) -> ApiResult {
    let token = authorize(&state, &caller, Permission::Approve).await?;
    let body: DecideRequest = parse_optional_body(&body)?;
    let engine = state.runtime.engine();
    let comment = body.comment.filter(|comment| !comment.trim().is_empty());
    let approval = engine.decide(id, decision, &token.subject, comment).await?;
    state.runtime.drive(id);
    ok(DecideAnswer { approval, token: token.id })
}

async fn promote(state: State<AppState>, caller: Caller, id: Path<i64>) -> ApiResult {
    control(state, caller, id, ControlAction::Promote).await
}

async fn abort(state: State<AppState>, caller: Caller, id: Path<i64>) -> ApiResult {
    control(state, caller, id, ControlAction::Abort).await
}

/// Moves a progressing run on now, or sends it back now: a deployer's call, as a deploy is.
async fn control(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<i64>,
    action: ControlAction,
) -> ApiResult {
    let token = authorize(&state, &caller, Permission::Deploy).await?;
    let event = state.runtime.engine().control(id, action, &token.subject).await?;
    ok(ControlAnswer { event, token: token.id })
}

fn parse_optional_body<T: for<'de> Deserialize<'de> + Default>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body)
        .map_err(|error| ApiError::new(StatusCode::BAD_REQUEST, format!("invalid JSON body: {error}")))
}

// ---- deploys, rollbacks, tasks

async fn sync(State(state): State<AppState>, caller: Caller, body: Bytes) -> ApiResult {
    let token = authorize(&state, &caller, Permission::Deploy).await?;
    let body: SyncRequest = parse_optional_body(&body)?;
    let scope = Scope { env: body.env, apps: body.apps, retry: body.retry, ..Scope::default() };
    Ok(reconcile_answer(&state.reconciler, scope, actor("sync", &token)).await)
}

/// Rolls back to a verified release and pins the app there: the reconciler leaves it
/// until `POST /api/v1/unpin`.
async fn rollback(State(state): State<AppState>, caller: Caller, body: Bytes) -> ApiResult {
    let token = authorize(&state, &caller, Permission::Deploy).await?;
    let body: RollbackRequest = serde_json::from_slice(&body).map_err(|error| {
        ApiError::new(StatusCode::BAD_REQUEST, format!("expected {{app, env, to?, from?, reason?}}: {error}"))
    })?;
    let engine = state.runtime.engine();
    let trigger = actor("rollback", &token);
    let run = engine
        .prepare_rollback(launchway_engine::RollbackRequest {
            app: &body.app,
            env: &body.env,
            to: body.to,
            from: body.from,
            by: &token.subject,
            trigger: &trigger,
            reason: body.reason.as_deref(),
        })
        .await?;
    state.runtime.drive(run.id);
    Ok((StatusCode::ACCEPTED, axum::Json(run)).into_response())
}

/// Lifts a rollback's pin and deploys the repo's desired state there again.
async fn unpin(State(state): State<AppState>, caller: Caller, body: Bytes) -> ApiResult {
    let token = authorize(&state, &caller, Permission::Deploy).await?;
    let body: UnpinRequest = serde_json::from_slice(&body)
        .map_err(|error| ApiError::new(StatusCode::BAD_REQUEST, format!("expected {{app, env}}: {error}")))?;
    let pin = state.runtime.engine().unpin(&body.app, &body.env, &actor("unpin", &token)).await?;
    let scope = Scope { env: Some(body.env.clone()), apps: vec![body.app.clone()], ..Scope::default() };
    // The reconcile's answer, plus what was lifted.
    let (status, mut answer) = reconcile_within(&state.reconciler, scope, actor("unpin", &token)).await?;
    if status == StatusCode::OK {
        answer.unpinned = Some(pin);
    }
    Ok((status, axum::Json(answer)).into_response())
}

async fn run_task(
    State(state): State<AppState>,
    caller: Caller,
    Path((app, env)): Path<(String, String)>,
) -> ApiResult {
    let token = authorize(&state, &caller, Permission::Deploy).await?;
    let run = state.runtime.engine().start_scheduled(&app, &env, &actor("task run", &token)).await?;
    state.runtime.drive(run.id);
    Ok((StatusCode::ACCEPTED, axum::Json(run)).into_response())
}

// ---- releases published by CI

async fn publish(State(state): State<AppState>, caller: Caller, body: Bytes) -> ApiResult {
    // Who first: the body is read only for a caller with a token.
    let token = authenticate(&state, &caller).await?;
    let body: PublishRequest = serde_json::from_slice(&body).map_err(|error| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("expected {{app, env, file}} with the image file's JSON: {error}"),
        )
    })?;
    allow(&state, &token, &Permission::Publish { app: body.app.clone(), env: body.env.clone() }).await?;
    let reconciler = &state.reconciler;
    let Some(snapshot) = reconciler.latest() else {
        return Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the config repo has not been read yet"));
    };
    let manifest = &snapshot.manifest;
    let environment = manifest.environments.get(&body.env).ok_or_else(|| {
        ApiError::new(StatusCode::NOT_FOUND, format!("environment {} is not declared in the manifest", body.env))
    })?;
    if let launchway_manifest::EnvSource::Promotion { from } = &environment.source {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("{} only takes releases promoted from {from}; publish to {from}", body.env),
        ));
    }
    let spec = manifest.apps.get(&body.app).and_then(|app| app.specs.get(&body.env)).ok_or_else(|| {
        ApiError::new(StatusCode::NOT_FOUND, format!("app {} is not declared in {}", body.app, body.env))
    })?;
    let bytes = serde_json::to_vec(&body.file).expect("JSON values serialize");
    let images = launchway_manifest::published_images_for(&bytes, &body.app, spec)
        .map_err(|message| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, message))?;
    let store = reconciler.engine().store();
    store
        .publish_images(Published {
            app: body.app.clone(),
            env: body.env.clone(),
            images: images.clone(),
            published_by: token.subject.clone(),
            published_at: now_ms(),
            commit: body.commit.clone(),
            author: body.author.clone(),
        })
        .await?;
    reconciler
        .engine()
        .record(NewEvent::for_app(
            &body.app,
            &body.env,
            EventBody::Audit {
                kind: AuditKind::ReleasePublished,
                data: json!({
                    "images": images,
                    "by": token.subject,
                    "token": token.id,
                    "commit": body.commit,
                    "author": body.author,
                    "retry": body.retry,
                }),
            },
            format!(
                "{} published {} for {} in {}",
                token.subject,
                images.iter().map(|(container, image)| format!("{container}={image}")).collect::<Vec<_>>().join(", "),
                body.app,
                body.env
            ),
        ))
        .await?;
    let scope =
        Scope { env: Some(body.env.clone()), apps: vec![body.app.clone()], retry: body.retry, ..Scope::default() };
    Ok(reconcile_answer(reconciler, scope, actor("publish", &token)).await)
}

async fn list_published(State(state): State<AppState>, caller: Caller) -> ApiResult {
    authorize(&state, &caller, Permission::Read).await?;
    ok(state.runtime.engine().store().published_images().await?)
}

// ---- reading

#[derive(Debug, Deserialize)]
struct StatusQuery {
    app: Option<String>,
    env: Option<String>,
    /// What the board needs only ([`api::StatusBrief`]).
    #[serde(default)]
    brief: bool,
}

async fn status(State(state): State<AppState>, caller: Caller, Query(query): Query<StatusQuery>) -> ApiResult {
    authorize(&state, &caller, Permission::Read).await?;
    let crate::reconciler::DesiredSnapshots { latest, by_env } = state.reconciler.desired_snapshots();
    let sources = launchway_engine::DesiredSources {
        manifest: latest.as_ref().map(|snapshot| &snapshot.manifest),
        by_env: by_env.iter().map(|(env, snapshot)| (env.clone(), snapshot.as_ref().map(|s| &s.manifest))).collect(),
        unreadable: latest
            .is_none()
            .then(|| "the server has not read a valid manifest from the config repo yet".to_owned()),
    };
    let selection = launchway_engine::Selection { env: query.env, apps: query.app.into_iter().collect() };
    let statuses = state.runtime.engine().status(&sources, &selection).await?;
    if query.brief {
        return ok(statuses.iter().map(api::StatusBrief::from).collect::<Vec<_>>());
    }
    ok(statuses)
}

#[derive(Debug, Deserialize)]
struct LogsQuery {
    lines: Option<usize>,
}

/// The last lines each container of an app wrote where it runs (100, at most 1,000).
async fn recent_logs(
    State(state): State<AppState>,
    caller: Caller,
    Path((app, env)): Path<(String, String)>,
    Query(query): Query<LogsQuery>,
) -> ApiResult {
    authorize(&state, &caller, Permission::Read).await?;
    let latest = state.reconciler.latest();
    let manifest = latest.as_ref().map(|snapshot| &snapshot.manifest);
    let lines = query.lines.unwrap_or(100).clamp(1, 1000);
    ok(state.runtime.engine().recent_logs(manifest, &app, &env, lines).await?)
}

#[derive(Debug, Deserialize)]
struct AuditQuery {
    app: Option<String>,
    env: Option<String>,
    run: Option<i64>,
    after: Option<i64>,
    limit: Option<u32>,
}

async fn audit(State(state): State<AppState>, caller: Caller, Query(query): Query<AuditQuery>) -> ApiResult {
    authorize(&state, &caller, Permission::Read).await?;
    let filter = EventFilter {
        run_id: query.run,
        app: query.app,
        env: query.env,
        after_id: query.after,
        // Following (`after`) pages forward; otherwise the most recent entries.
        limit: query.after.map(|_| query.limit.unwrap_or(200).min(10_000)),
        last: query.after.is_none().then(|| query.limit.unwrap_or(200).min(10_000)),
    };
    ok(state.runtime.engine().store().events(&filter).await?)
}

#[derive(Debug, Deserialize)]
struct DoraQuery {
    app: Option<String>,
    env: Option<String>,
    days: Option<u32>,
}

async fn dora(State(state): State<AppState>, caller: Caller, Query(query): Query<DoraQuery>) -> ApiResult {
    authorize(&state, &caller, Permission::Read).await?;
    let days = query.days.unwrap_or(crate::metrics::DORA_WINDOW_DAYS).clamp(1, 3650);
    ok(state.runtime.engine().dora(query.app.as_deref(), query.env.as_deref(), days).await?)
}

// ---- tokens

async fn create_token(State(state): State<AppState>, caller: Caller, body: Bytes) -> ApiResult {
    let admin = authorize(&state, &caller, Permission::Admin).await?;
    let body: api::TokenRequest = serde_json::from_slice(&body).map_err(|error| {
        ApiError::new(StatusCode::BAD_REQUEST, format!("expected {{name, subject, role}}: {error}"))
    })?;
    let role = Role::parse(&body.role).ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("unknown role {:?} (viewer, deployer, approver, admin, ci-publisher)", body.role),
        )
    })?;
    let request = TokenRequest { name: body.name, subject: body.subject, role, apps: body.apps, envs: body.envs };
    let engine = state.runtime.engine();
    let issued = auth::issue(engine.store().as_ref(), request).await.map_err(|error| match error {
        auth::TokenError::Invalid(message) => ApiError::new(StatusCode::BAD_REQUEST, message),
        auth::TokenError::Store(store) => store.into(),
    })?;
    engine.record(auth::token_event(AuditKind::TokenCreated, &issued.token, &admin.subject, "api")).await?;
    let issued = IssuedToken { token: issued.token, secret: issued.presented };
    Ok((StatusCode::CREATED, axum::Json(issued)).into_response())
}

async fn list_tokens(State(state): State<AppState>, caller: Caller) -> ApiResult {
    authorize(&state, &caller, Permission::Admin).await?;
    ok(state.runtime.engine().store().tokens().await?)
}

async fn revoke_token(State(state): State<AppState>, caller: Caller, Path(id): Path<String>) -> ApiResult {
    let admin = authorize(&state, &caller, Permission::Admin).await?;
    let store = state.runtime.engine().store();
    let Some(token) = store.token(&id).await? else {
        return Err(ApiError::new(StatusCode::NOT_FOUND, format!("no token {id}")));
    };
    let revoked = store.revoke_token(&id).await?;
    if revoked {
        state
            .runtime
            .engine()
            .record(auth::token_event(AuditKind::TokenRevoked, &token, &admin.subject, "api"))
            .await?;
    }
    ok(RevokedToken { id, revoked })
}

#[cfg(test)]
mod source_tests {
    use std::net::IpAddr;

    use axum::http::{HeaderMap, HeaderValue};

    use crate::http::source_of;

    /// Issue 22, item 7: behind the reverse proxy SECURITY.md recommends, every client
    /// had the proxy's address. From a trusted proxy, the source is the address it saw.
    #[test]
    fn the_source_is_what_a_trusted_proxy_saw_and_nothing_else_believes_the_header() {
        let ip = |text: &str| text.parse::<IpAddr>().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", HeaderValue::from_static("10.9.9.9, 198.51.100.7"));
        let trusted = [ip("127.0.0.1")];
        assert_eq!(source_of(ip("127.0.0.1"), &headers, &trusted), ip("198.51.100.7"), "what the proxy saw");
        assert_eq!(source_of(ip("203.0.113.5"), &headers, &trusted), ip("203.0.113.5"), "not a proxy: ignored");
        let chain = [ip("127.0.0.1"), ip("198.51.100.7")];
        assert_eq!(source_of(ip("127.0.0.1"), &headers, &chain), ip("10.9.9.9"), "through two proxies");
        assert_eq!(source_of(ip("127.0.0.1"), &HeaderMap::new(), &trusted), ip("127.0.0.1"), "no header: the peer");
    }
}
