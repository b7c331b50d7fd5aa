//! The dashboard end to end over HTTP: signing in and out, the session cookie's reach, form
//! tokens, security headers, permission refusals as pages, and the pages' content on data
//! made here (runs with metric histories, a registered model, an incident).

mod common;

use bastion_auth::Role;
use bastion_store::meta::{AlertDraft, STATUS_ACKNOWLEDGED};
use common::{Backend, TestServer};
use reqwest::header::{CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE};
use serde_json::json;

/// A browser-like client that shows redirects instead of following them.
fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn cookie_value(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| {
            v.strip_prefix(&format!("{name}="))
                .map(|r| r.split(';').next().unwrap_or("").to_owned())
        })
}

struct Session {
    cookie: String,
    csrf: String,
}

async fn sign_in(
    s: &TestServer,
    user: &str,
    password: &str,
    next: &str,
) -> Result<(Session, String), (u16, String)> {
    let c = browser();
    let page = c.get(s.url("/login")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let login_token = cookie_value(&page, "bastion_login").expect("login cookie");
    let r = c
        .post(s.url("/login"))
        .header(COOKIE, format!("bastion_login={login_token}"))
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(format!(
            "user={user}&password={}&csrf={login_token}&next={}",
            urlencode(password),
            urlencode(next)
        ))
        .send()
        .await
        .unwrap();
    if r.status() != 303 {
        return Err((r.status().as_u16(), r.text().await.unwrap_or_default()));
    }
    let to = r.headers()[LOCATION].to_str().unwrap().to_owned();
    let cookie = cookie_value(&r, "bastion_session").expect("session cookie");
    // The form token is on every page the session is served.
    let home = c
        .get(s.url("/"))
        .header(COOKIE, format!("bastion_session={cookie}"))
        .send()
        .await
        .unwrap();
    assert_eq!(home.status(), 200);
    let html = home.text().await.unwrap();
    let csrf = html
        .split(r#"name="csrf" value=""#)
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("a form token on the page")
        .to_owned();
    Ok((Session { cookie, csrf }, to))
}

fn urlencode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

async fn page(
    s: &TestServer,
    session: &Session,
    path: &str,
) -> (u16, String, reqwest::header::HeaderMap) {
    let r = browser()
        .get(s.url(path))
        .header(COOKIE, format!("bastion_session={}", session.cookie))
        .send()
        .await
        .unwrap();
    let (st, h) = (r.status().as_u16(), r.headers().clone());
    (st, r.text().await.unwrap(), h)
}

async fn form(s: &TestServer, session: &Session, path: &str, body: &str) -> reqwest::Response {
    browser()
        .post(s.url(path))
        .header(COOKIE, format!("bastion_session={}", session.cookie))
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
}

async fn user(s: &TestServer, name: &str, role: Role) {
    let hash = bastion_store::meta::hash_password("pw-for-tests".into())
        .await
        .unwrap();
    s.meta.create_user(name, role, Some(&hash)).await.unwrap();
}

async fn sign_in_signs_out_and_keeps_the_cookie_to_its_place(b: Backend) {
    let s = TestServer::start_secure(b, |_| {}, None).await;
    user(&s, "ada", Role::Admin).await;

    // Without credentials a page sends the browser to sign in, and comes back after.
    let r = browser()
        .get(s.url("/ui/models?filter=x"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(
        r.headers()[LOCATION],
        "/login?next=%2Fui%2Fmodels%3Ffilter%3Dx"
    );

    // A wrong password is a page saying so, and is audited; nothing is set.
    let Err((st, body)) = sign_in(&s, "ada", "wrong", "/").await else {
        panic!("signed in with a wrong password")
    };
    assert_eq!(st, 401);
    assert!(body.contains("Wrong user name or password"), "{body}");
    // A form without the login cookie's token is refused (login CSRF).
    let r = browser()
        .post(s.url("/login"))
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body("user=ada&password=pw-for-tests&csrf=guess")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    // Signing in goes back where the browser was going, never to another site.
    let (sess, to) = sign_in(&s, "ada", "pw-for-tests", "/ui/models")
        .await
        .unwrap();
    assert_eq!(to, "/ui/models");
    let (_, to) = sign_in(&s, "ada", "pw-for-tests", "//evil.example/x")
        .await
        .unwrap();
    assert_eq!(to, "/");

    let (st, html, h) = page(&s, &sess, "/").await;
    assert_eq!(st, 200);
    assert!(html.contains("ada") && html.contains("Security posture"));
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("default-src 'none'")
            && csp.contains("script-src 'self'")
            && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert_eq!(h["x-frame-options"], "DENY");
    assert_eq!(h["cache-control"], "no-store");
    assert!(
        !html.contains("<style") && !html.contains(" style=") && !html.contains("<script>"),
        "inline code would break the CSP"
    );

    // The cookie reads the API too (downloads), but never writes through it.
    let r = browser()
        .post(s.url("/api/2.0/mlflow/experiments/create"))
        .header(COOKIE, format!("bastion_session={}", sess.cookie))
        .json(&json!({"name": "via-cookie"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        401,
        "a session cookie must not authorize API writes"
    );
    let r = browser()
        .get(s.url("/api/2.0/mlflow/experiments/search?max_results=5"))
        .header(COOKIE, format!("bastion_session={}", sess.cookie))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // A dashboard form without the session's form token is refused and audited.
    let r = form(&s, &sess, "/logout", "csrf=not-the-token").await;
    assert_eq!(r.status(), 403);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("token is missing or wrong"),
        "the refusal says why"
    );
    let entries = s.audit_entries().await;
    assert!(
        entries.iter().any(|e| e.action == "security.csrf"),
        "CSRF refusals are audited"
    );
    assert!(entries.iter().any(|e| e.action == "session.login"));
    assert!(entries.iter().any(|e| e.action == "security.auth-failed"));

    // Signing out revokes the session: the cookie no longer works.
    let r = form(&s, &sess, "/logout", &format!("csrf={}", sess.csrf)).await;
    assert_eq!(r.status(), 303);
    let (st, _, h) = page(&s, &sess, "/ui/experiments").await;
    assert_eq!(st, 303);
    assert!(h[LOCATION].to_str().unwrap().starts_with("/login"));
}

async fn viewers_see_no_actions_and_are_refused_them(b: Backend) {
    let s = TestServer::start_secure(b, |_| {}, None).await;
    user(&s, "vic", Role::Viewer).await;
    s.meta
        .create_registered_model("fraud", &[], None)
        .await
        .unwrap();
    let (sess, _) = sign_in(&s, "vic", "pw-for-tests", "/").await.unwrap();

    let (st, html, _) = page(&s, &sess, "/").await;
    assert_eq!(st, 200);
    assert!(
        !html.contains("/ui/audit\""),
        "viewers have no audit link: {html}"
    );
    let (st, html, _) = page(&s, &sess, "/ui/audit").await;
    assert_eq!(st, 403);
    assert!(
        html.contains("Permission denied") && html.contains("vic"),
        "{html}"
    );
    let (st, html, _) = page(&s, &sess, "/ui/deployments/fraud").await;
    assert_eq!(st, 200);
    assert!(
        !html.contains("Roll back") && !html.contains("/change"),
        "no actions for a viewer"
    );
    let (st, _, _) = page(&s, &sess, "/ui/deployments/fraud/confirm?action=rollback").await;
    assert_eq!(st, 403);
    let r = form(
        &s,
        &sess,
        "/ui/deployments/fraud/change",
        &format!("csrf={}&action=rollback", sess.csrf),
    )
    .await;
    assert_eq!(r.status(), 403);
    let entries = s.audit_entries().await;
    assert!(
        entries
            .iter()
            .any(|e| e.action == "security.permission-denied"
                && e.resource.contains("ui.deployment-change"))
    );
}

async fn pages_show_runs_models_and_incidents(b: Backend) {
    let s = TestServer::start_secure(b, |_| {}, None).await;
    user(&s, "ada", Role::Admin).await;
    let (admin_token, _) = s.meta.issue_token("ada", "setup", None).await.unwrap();
    let api = |path: &str, body: serde_json::Value| {
        let c = s.client.clone();
        let url = s.url(path);
        let t = admin_token.clone();
        async move {
            let r = c
                .post(&url)
                .bearer_auth(t)
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "{url}");
            r.json::<serde_json::Value>().await.unwrap()
        }
    };
    let exp = api(
        "/api/2.0/mlflow/experiments/create",
        json!({"name": "<b>tuning</b>"}),
    )
    .await["experiment_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut runs = Vec::new();
    for i in 0..3 {
        let run = api(
            "/api/2.0/mlflow/runs/create",
            json!({"experiment_id": exp, "run_name": format!("run-{i}")}),
        )
        .await["run"]["info"]["run_id"]
            .as_str()
            .unwrap()
            .to_owned();
        let metrics: Vec<_> = (0..5).map(|step| json!({"key": "loss", "value": 1.0 / (step as f64 + 1.0 + i as f64), "timestamp": 1, "step": step})).collect();
        api("/api/2.0/mlflow/runs/log-batch", json!({"run_id": run, "metrics": metrics, "params": [{"key": "lr", "value": format!("0.{i}")}]})).await;
        runs.push(run);
    }
    api(
        "/api/2.0/mlflow/registered-models/create",
        json!({"name": "fraud"}),
    )
    .await;
    s.meta
        .commit_monitor(
            "test",
            0,
            0,
            &json!({}),
            &[AlertDraft {
                key: "k1".into(),
                rule: "feature_drift".into(),
                severity: "high".into(),
                model_name: "fraud".into(),
                version: "1".into(),
                actor: String::new(),
                time_ms: bastion_core::time::now_ms(),
                evidence: json!({"alert": {"value": 0.9}}),
                responses: vec![],
            }],
            &[bastion_store::meta::WindowRecord {
                kind: "window".into(),
                model_name: "fraud".into(),
                version: "1".into(),
                start_ms: 1,
                end_ms: bastion_core::time::now_ms(),
                report: json!({"features": {"amount": {"score": 0.4, "threshold": 0.1, "drift": true}}, "requests": 10}),
            }],
        )
        .await
        .unwrap();
    let (sess, _) = sign_in(&s, "ada", "pw-for-tests", "/").await.unwrap();

    // Runs: filtered with the API's syntax, sorted, paginated; names escaped.
    let (st, html, _) = page(
        &s,
        &sess,
        &format!(
            "/ui/runs?experiment_id={exp}&filter={}&per_page=10",
            urlencode("params.lr != '0.0'")
        ),
    )
    .await;
    assert_eq!(st, 200, "{html}");
    assert!(
        html.contains("run-1") && html.contains("run-2") && !html.contains(">run-0<"),
        "{html}"
    );
    assert!(html.contains("&lt;b&gt;tuning&lt;/b&gt;") && !html.contains("<b>tuning"));
    let (st, html, _) = page(
        &s,
        &sess,
        &format!(
            "/ui/runs?experiment_id={exp}&per_page=10&order_by={}",
            urlencode("attributes.run_name ASC")
        ),
    )
    .await;
    assert_eq!(st, 200);
    let (a, b) = (html.find(">run-0<").unwrap(), html.find(">run-2<").unwrap());
    assert!(a < b, "sorted by name");
    let (st, html, _) = page(
        &s,
        &sess,
        &format!(
            "/ui/runs?experiment_id={exp}&filter={}",
            urlencode("metrics.loss >")
        ),
    )
    .await;
    assert_eq!(st, 400, "a malformed filter is a page saying so");
    assert!(
        html.contains("filter") || html.contains("Invalid"),
        "{html}"
    );

    // A run: its metric history as a chart; the comparison overlays the runs.
    let (st, html, _) = page(&s, &sess, &format!("/ui/run?run_id={}", runs[0])).await;
    assert_eq!(st, 200);
    assert!(
        html.contains("<svg") && html.contains("polyline") && html.contains("lr"),
        "{html}"
    );
    let (st, html, _) = page(
        &s,
        &sess,
        &format!(
            "/ui/compare?run_id={}&run_id={}&run_id={}",
            runs[0], runs[1], runs[2]
        ),
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(html.matches("<polyline").count(), 3, "one line per run");
    let (st, _, _) = page(&s, &sess, &format!("/ui/compare?run_id={}", runs[0])).await;
    assert_eq!(st, 400);

    // The overview and the model's deployment page show the incident; it can be acknowledged.
    let (st, html, _) = page(&s, &sess, "/").await;
    assert_eq!(st, 200);
    assert!(
        html.contains("feature_drift") && html.contains("fraud"),
        "{html}"
    );
    let (st, html, _) = page(&s, &sess, "/ui/deployments/fraud").await;
    assert_eq!(st, 200);
    assert!(
        html.contains("amount (v1)"),
        "drift per feature is charted: {html}"
    );
    let id = s.meta.list_incidents(&Default::default()).await.unwrap()[0].id;
    let r = form(
        &s,
        &sess,
        &format!("/ui/deployments/fraud/incidents/{id}/acknowledge"),
        &format!("csrf={}&note=looking", sess.csrf),
    )
    .await;
    assert_eq!(r.status(), 303);
    let (i, _) = s.meta.get_incident(id).await.unwrap();
    assert_eq!(i.status, STATUS_ACKNOWLEDGED);
    assert!(i.updated_by.contains("web session"), "{}", i.updated_by);

    // Every section answers (empty lists included), assets are served, unknown ones are not.
    for path in [
        "/ui/experiments",
        "/ui/models",
        "/ui/model?name=fraud",
        "/ui/datasets",
        "/ui/deployments",
        "/ui/audit",
        "/ui/audit?seq=1",
        "/ui/audit?verify=1",
        "/ui/assets/app.css",
        "/ui/assets/app.js",
    ] {
        let (st, html, _) = page(&s, &sess, path).await;
        assert_eq!(st, 200, "{path}: {html}");
    }
    let (st, _, _) = page(&s, &sess, "/ui/assets/../../etc/passwd").await;
    assert_eq!(st, 404);
    let (st, html, _) = page(&s, &sess, "/ui/model?name=missing").await;
    assert_eq!(st, 404);
    assert!(html.contains("missing"));
}

backend_tests!(
    sign_in_signs_out_and_keeps_the_cookie_to_its_place,
    viewers_see_no_actions_and_are_refused_them,
    pages_show_runs_models_and_incidents,
);
