//! The web dashboard at `/dashboard`: server-rendered pages for the people
//! who approve calls and watch what agents do (overview, approvals,
//! sessions, policy), working without JavaScript (plain forms,
//! POST-redirect-GET).
//!
//! Access: with admin keys configured, an operator logs in with an admin
//! key and gets a random session cookie (see [`login`]); agent keys are
//! refused. Without keys the dashboard is open on loopback and says so.
//! Approving or rejecting goes through the API's own path
//! ([`crate::service::decide_approval`]), so the audit log records who and why
//! alike. The pages are HTML, not API: they are not in the OpenAPI
//! document.

mod login;
mod views;

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use axum::Router;
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{any, get, post};
use base64::Engine;
use jiff::Timestamp;
use sha2::{Digest, Sha256};
use tame_store::{Approval, ApprovalState, LogPage, SessionQuery, Store, VerifyReport};

use login::{LoginForm, Logins, Viewer};
use views::{Chrome, Flash, Nav, PageError};

use crate::AppState;
use crate::api::blocking;

/// Sessions listed per page unless `page_size` says otherwise.
const SESSIONS_PAGE: u64 = 25;
/// Decisions on the overview.
const RECENT: u64 = 15;
/// Decided approvals listed under the pending ones.
const DECIDED: u64 = 20;
/// Longest reason kept from the approve/reject form (characters).
const MAX_REASON: usize = 2000;

/// How long the overview reuses an audit chain check (it reads the whole log).
const CHAIN_CHECK_TTL: std::time::Duration = std::time::Duration::from_secs(60);

/// The dashboard's share of the server state.
#[derive(Debug, Default)]
pub struct Dashboard {
    pub(crate) logins: Logins,
    /// The last audit chain check; one check runs at a time.
    chain: tokio::sync::Mutex<Option<(VerifyReport, Timestamp)>>,
}

/// The audit chain check and when it ran: reused for [`CHAIN_CHECK_TTL`]
/// unless `fresh`.
async fn chain_check(state: &AppState, fresh: bool) -> Result<(VerifyReport, Timestamp), PageError> {
    let mut cached = state.dashboard().chain.lock().await;
    let now = Timestamp::now();
    if let Some((report, at)) = cached.as_ref()
        && !fresh
        && now.duration_since(*at).unsigned_abs() < CHAIN_CHECK_TTL
    {
        return Ok((report.clone(), *at));
    }
    let store = store(state);
    let report = blocking(move || store.verify()).await?;
    *cached = Some((report.clone(), now));
    Ok((report, now))
}

/// The dashboard's routes, with their security headers. `/` redirects here.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/dashboard") }))
        .route("/dashboard", get(overview))
        .route("/dashboard/", get(|| async { Redirect::to("/dashboard") }))
        .route("/dashboard/login", get(login_form).post(login_submit))
        .route("/dashboard/logout", post(logout))
        .route("/dashboard/approvals", get(approvals))
        .route("/dashboard/approvals/{approval_id}/{verdict}", post(verdict))
        .route("/dashboard/sessions", get(sessions))
        .route("/dashboard/sessions/{session_id}", get(session))
        .route("/dashboard/policy", get(policy))
        .route("/dashboard/{*rest}", any(not_found))
        .layer(axum::middleware::map_response(security_headers))
}

fn csp_hash(text: &str) -> String {
    format!(
        "'sha256-{}'",
        base64::engine::general_purpose::STANDARD.encode(Sha256::digest(text.as_bytes()))
    )
}

/// Only the inlined stylesheet and script run; nothing loads from
/// elsewhere; forms post only here; no framing.
static CSP: LazyLock<HeaderValue> = LazyLock::new(|| {
    let policy = format!(
        "default-src 'none'; style-src {}; script-src {}; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        csp_hash(views::CSS),
        csp_hash(views::REFRESH_JS)
    );
    HeaderValue::from_str(&policy).unwrap_or(HeaderValue::from_static("default-src 'none'"))
});

async fn security_headers(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, CSP.clone());
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

async fn not_found(_viewer: Viewer) -> PageError {
    PageError::new(StatusCode::NOT_FOUND, "no such dashboard page")
}

/// The store, for a blocking read.
fn store(state: &AppState) -> Arc<dyn Store> {
    state.store().clone()
}

async fn pending(state: &AppState) -> Result<Vec<Approval>, PageError> {
    let store = store(state);
    Ok(blocking(move || store.approvals(Some(ApprovalState::Pending), Timestamp::now())).await?)
}

// ------------------------------------------------------------ login

async fn login_form(viewer: Option<Viewer>, Query(q): Query<HashMap<String, String>>) -> Response {
    let next = login::safe_next(q.get("next").map(String::as_str).unwrap_or("/dashboard"));
    match viewer {
        Some(v) if v.open => Redirect::to("/dashboard").into_response(),
        Some(_) => Redirect::to(&next).into_response(),
        None => views::login_page(None, &next, "").into_response(),
    }
}

async fn login_submit(
    State(state): State<AppState>,
    crate::ratelimit::Client(client): crate::ratelimit::Client,
    headers: HeaderMap,
    uri: Uri,
    form: Result<Form<LoginForm>, FormRejection>,
) -> Response {
    match form {
        Ok(Form(form)) => login::login(&state, &headers, &uri, &form, client),
        Err(e) => PageError::new(StatusCode::BAD_REQUEST, format!("unreadable login form: {e}")).into_response(),
    }
}

/// The fields of the forms that only carry the CSRF token (and a reason).
#[derive(Debug, serde::Deserialize, Default)]
struct ActionForm {
    csrf: Option<String>,
    reason: Option<String>,
}

fn read_form(form: Result<Form<ActionForm>, FormRejection>) -> Result<ActionForm, PageError> {
    form.map(|Form(f)| f)
        .map_err(|e| PageError::new(StatusCode::BAD_REQUEST, format!("unreadable form: {e}")))
}

async fn logout(
    State(state): State<AppState>,
    viewer: Viewer,
    headers: HeaderMap,
    uri: Uri,
    form: Result<Form<ActionForm>, FormRejection>,
) -> Response {
    match read_form(form) {
        Ok(f) => login::logout(&viewer, &headers, &uri, f.csrf.as_deref(), &state),
        Err(e) => e.into_response(),
    }
}

// ------------------------------------------------------------ overview

async fn overview(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, PageError> {
    let (verify, verified_at) = chain_check(&state, q.get("verify").is_some_and(|v| v == "now")).await?;
    let store = store(&state);
    let (pending, counts, recent) = blocking(move || {
        let pending = store.approvals(Some(ApprovalState::Pending), Timestamp::now())?.len();
        Ok((pending, store.decision_totals()?, store.recent_decisions(RECENT)?))
    })
    .await?;
    let loaded = state.policy();
    let chrome = Chrome {
        viewer: &viewer,
        pending,
        nav: Nav::Overview,
    };
    let page = views::overview(
        &chrome,
        &views::Overview {
            info: loaded.policy.info(),
            origin: &loaded.origin,
            loaded_at: views::fmt_time(&tame_store::format_timestamp(loaded.loaded_at)),
            warnings: loaded.policy.lints().len(),
            counts,
            recent,
            verify,
            verified_at,
        },
    );
    Ok(page.into_response())
}

// ------------------------------------------------------------ approvals

fn flash(q: &HashMap<String, String>, known: &[Approval]) -> Option<Flash> {
    let id = q.get("id").map(String::as_str).unwrap_or_default();
    let what = known
        .iter()
        .find(|a| a.approval_id == id)
        .map(|a| format!("{} ({id})", a.tool_name))
        .unwrap_or_else(|| format!("approval {id}"));
    let (ok, text) = match q.get("flash").map(String::as_str)? {
        "approved" => (true, format!("Approved {what}. The agent may now run the call.")),
        "rejected" => (true, format!("Rejected {what}. The call is denied.")),
        "conflict" => (
            false,
            format!("{what} was already decided or has expired; nothing changed."),
        ),
        "missing" => (false, format!("There is no {what}.")),
        _ => return None,
    };
    Some(Flash { ok, text })
}

async fn approvals(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, PageError> {
    let store = store(&state);
    let now = Timestamp::now();
    let (pending, decided) = blocking(move || {
        // The call that expires first is the one to look at first.
        let mut pending = store.approvals(Some(ApprovalState::Pending), now)?;
        pending.sort_by(|a, b| a.expires_at.cmp(&b.expires_at));
        let decided = store.decided_approvals(DECIDED, now)?;
        Ok((pending, decided))
    })
    .await?;
    let flash = flash(&q, &decided);
    let chrome = Chrome {
        viewer: &viewer,
        pending: pending.len(),
        nav: Nav::Approvals,
    };
    Ok(views::approvals(&chrome, flash.as_ref(), &pending, &decided, now).into_response())
}

/// `POST /dashboard/approvals/{id}/approve` and `.../reject`.
async fn verdict(
    State(state): State<AppState>,
    viewer: Viewer,
    headers: HeaderMap,
    uri: Uri,
    Path((id, verdict)): Path<(String, String)>,
    form: Result<Form<ActionForm>, FormRejection>,
) -> Result<Response, PageError> {
    let approve = match verdict.as_str() {
        "approve" => true,
        "reject" => false,
        _ => return Err(not_found(viewer).await),
    };
    let form = read_form(form)?;
    viewer.check_post(&headers, &uri, form.csrf.as_deref())?;
    let reason = form
        .reason
        .map(|r| r.trim().chars().take(MAX_REASON).collect::<String>())
        .filter(|r| !r.is_empty());
    let outcome = crate::service::decide_approval(&state, id.clone(), approve, viewer.audit_name(), reason)
        .await
        .map_err(crate::error::AppError::from);
    let code = match outcome {
        Ok(_) if approve => "approved",
        Ok(_) => "rejected",
        Err(e) if e.status == StatusCode::CONFLICT => "conflict",
        Err(e) if e.status == StatusCode::NOT_FOUND => "missing",
        Err(e) => return Err(e.into()),
    };
    let target = format!("/dashboard/approvals?flash={code}&id={}", views::query_value(&id));
    Ok(Redirect::to(&target).into_response())
}

// ------------------------------------------------------------ sessions

fn page_param(q: &HashMap<String, String>, name: &str, default: u64, max: u64) -> u64 {
    q.get(name)
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|n| (1..=max).contains(n))
        .unwrap_or(default)
}

fn text_param(q: &HashMap<String, String>, name: &str) -> String {
    q.get(name).map(|v| v.trim().to_owned()).unwrap_or_default()
}

async fn sessions(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, PageError> {
    let filter = views::SessionFilter {
        agent_id: text_param(&q, "agent_id"),
        user_id: text_param(&q, "user_id"),
        page: page_param(&q, "page", 1, u64::from(u32::MAX)),
        page_size: page_param(&q, "page_size", SESSIONS_PAGE, 200),
    };
    let query = SessionQuery {
        page: filter.page,
        page_size: filter.page_size,
        agent_id: Some(filter.agent_id.clone()).filter(|s| !s.is_empty()),
        user_id: Some(filter.user_id.clone()).filter(|s| !s.is_empty()),
    };
    let store = store(&state);
    let list = blocking(move || store.sessions(&query)).await?;
    let pending = pending(&state).await?.len();
    let chrome = Chrome {
        viewer: &viewer,
        pending,
        nav: Nav::Sessions,
    };
    Ok(views::sessions(&chrome, &filter, &list.sessions, list.total_count).into_response())
}

async fn session(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, PageError> {
    let page = page_param(&q, "page", 1, u64::from(u32::MAX));
    let offset = page.saturating_sub(1).saturating_mul(views::LOG_PAGE);
    let store = store(&state);
    let sid = id.clone();
    // Only the page's entries are read, and the log's length.
    let found = blocking(move || {
        Ok((
            store.session_summary(&sid)?,
            store.session_log_page(&sid, offset, views::LOG_PAGE)?,
        ))
    })
    .await?;
    let (Some(summary), log) = found else {
        return Err(PageError::new(
            StatusCode::NOT_FOUND,
            format!("session `{id}` not found"),
        ));
    };
    let log = log.unwrap_or(LogPage {
        entries: Vec::new(),
        total: 0,
    });
    let pending = pending(&state).await?.len();
    let chrome = Chrome {
        viewer: &viewer,
        pending,
        nav: Nav::Sessions,
    };
    Ok(views::session(&chrome, &summary, &log.entries, page, log.total).into_response())
}

// ------------------------------------------------------------ policy

async fn policy(State(state): State<AppState>, viewer: Viewer) -> Result<Response, PageError> {
    let store = store(&state);
    let versions = blocking(move || store.policy_versions()).await?;
    let pending = pending(&state).await?.len();
    let loaded = state.policy();
    let chrome = Chrome {
        viewer: &viewer,
        pending,
        nav: Nav::Policy,
    };
    let loaded_at = views::fmt_time(&tame_store::format_timestamp(loaded.loaded_at));
    Ok(views::policy(
        &chrome,
        loaded.policy.info(),
        &loaded.origin,
        &loaded_at,
        loaded.policy.lints(),
        &loaded.source,
        &versions,
    )
    .into_response())
}
