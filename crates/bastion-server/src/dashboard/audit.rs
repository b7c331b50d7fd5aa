//! The audit log: entries filtered by who, what resource and when, paginated by sequence
//! number (newest page first); the newest signed tree head, a full verification of the
//! chain and heads on request; and one entry's inclusion proof, checked here against the
//! server's key and downloadable for checking offline (`bastion audit check`).

use axum::http::HeaderMap;
use axum::response::Html;
use bastion_audit::proof::InclusionBundle;
use bastion_store::meta::AuditQuery;
use bastion_web::fmt::{clip, time};
use bastion_web::layout::{Nav, Page, Tone, badge, facts, query};
use bastion_web::{Markup, html};

use super::{chrome, page_html};
use crate::error::ApiResult;
use crate::params::Params;
use crate::state::Scoped;

fn since(p: &Params, key: &str) -> ApiResult<Option<i64>> {
    p.opt_i64(key).map_err(Into::into)
}

async fn proof_section(s: &Scoped, seq: u64) -> ApiResult<Markup> {
    // An entry newer than the newest signed head gets one signed now (the server signs
    // heads every minute anyway), so a proof is there when it is asked for.
    let (entry, head, proof) = match s.meta.audit_inclusion_proof(seq).await {
        Err(e) if seq < s.meta.audit_size().await? && s.audit_key.is_some() => {
            tracing::debug!(error = %e, "signing a tree head for an inclusion proof");
            if let Some(k) = &s.audit_key {
                s.state.meta.sign_audit_head(k).await?;
            }
            s.meta.audit_inclusion_proof(seq).await?
        }
        other => other?,
    };
    let bundle = InclusionBundle::new(entry, head, proof);
    let checked = s
        .audit_key
        .as_ref()
        .map(|k| bundle.verify(&k.verifying_key()));
    Ok(html! {
        div.card #proof {
            h2 { "Entry " (seq) " and its inclusion proof" }
            (facts([
                ("When", html! { (time(bundle.entry.time_ms)) }),
                ("Who", html! { (bundle.entry.actor) }),
                ("Action", html! { code { (bundle.entry.action) } }),
                ("Resource", html! { (bundle.entry.resource) }),
                ("Outcome", html! { (format!("{:?}", bundle.entry.outcome).to_lowercase()) }),
                ("Request", html! { code { (bundle.entry.request_id) } }),
                ("Signed tree head", html! { "size " (bundle.tree_head.head.size) ", root " code { (hex::encode(bundle.tree_head.head.root)) } ", " (time(bundle.tree_head.head.time_ms)) }),
                ("Proof", html! { (bundle.proof().count()) " hashes" details { summary { "show" } @for h in bundle.proof() { div { code { (hex::encode(h)) } } } } }),
                ("Verified here", html! { @match &checked {
                    Some(Ok(())) => (badge(Tone::Ok, "the entry is in the signed tree")),
                    Some(Err(e)) => (badge(Tone::Bad, &format!("does not verify: {e}"))),
                    None => (badge(Tone::Muted, "no audit key on this server")),
                } }),
            ]))
            p { a.button.secondary href={"/api/bastion/v1/audit/inclusion/" (seq)} download={"inclusion-" (seq) ".json"} { "Download the proof (JSON)" } }
            p.muted { "Check it offline: " code { "bastion audit check inclusion-" (seq) ".json --public-key audit-ed25519.pub" } }
        }
    })
}

/// GET /ui/audit?actor=&resource=&since_ms=&until_ms=&after=&seq=&verify=1
pub async fn page(s: Scoped, headers: HeaderMap, p: Params) -> ApiResult<Html<String>> {
    let per_page = super::page_size(&p)?;
    let actor = p.opt_str("actor")?.filter(|a| !a.is_empty());
    let resource = p.opt_str("resource")?.filter(|a| !a.is_empty());
    let since_ms = since(&p, "since_ms")?;
    let until_ms = since(&p, "until_ms")?;
    let filtered =
        actor.is_some() || resource.is_some() || since_ms.is_some() || until_ms.is_some();
    let size = s.meta.audit_size().await?;
    // Unfiltered, the first page is the newest; filtered, the oldest match first.
    let after = match p.opt_i64("after")? {
        Some(a) => u64::try_from(a).ok(),
        None if filtered => None,
        None => size.checked_sub(per_page as u64 + 1),
    };
    let entries = s
        .meta
        .audit_entries(&AuditQuery {
            actor: actor.clone(),
            resource: resource.clone(),
            since_ms,
            until_ms,
            after_seq: after,
            limit: per_page,
        })
        .await?;
    let heads = s.meta.audit_tree_heads().await?;
    let newest_head = heads.last();
    let verification = if p.opt_str("verify")?.as_deref() == Some("1") {
        match &s.audit_key {
            Some(k) => Some(match s.meta.verify_audit(&k.verifying_key()).await? {
                Ok(r) => Ok(format!(
                    "{} entries and {} signed tree heads verify; {} entries after the newest head",
                    r.entries, r.heads_verified, r.unsigned_tail
                )),
                Err(t) => Err(format!("entry {}: {t}", t.first_bad_seq())),
            }),
            None => Some(Err("this server holds no audit key".into())),
        }
    } else {
        None
    };
    let proof = match p.opt_i64("seq")? {
        Some(seq) => Some(proof_section(&s, u64::try_from(seq).unwrap_or(u64::MAX)).await?),
        None => None,
    };
    let (a, r) = (
        actor.clone().unwrap_or_default(),
        resource.clone().unwrap_or_default(),
    );
    let (si, un) = (
        since_ms.map(|v| v.to_string()).unwrap_or_default(),
        until_ms.map(|v| v.to_string()).unwrap_or_default(),
    );
    let per = per_page.to_string();
    let link = |after: u64| {
        format!(
            "/ui/audit{}",
            query(&[
                ("actor", &a),
                ("resource", &r),
                ("since_ms", &si),
                ("until_ms", &un),
                ("per_page", &per),
                ("after", &after.to_string())
            ])
        )
    };
    let first = entries.first().map(|e| e.seq);
    let last = entries.last().map(|e| e.seq);
    let older = first
        .filter(|f| *f > 0 && !filtered)
        .map(|f| link(f.saturating_sub(per_page as u64 + 1)));
    let newer = last.filter(|_| entries.len() as i64 == per_page).map(link);
    let body = html! {
        div.grid {
            div.card {
                h2 { "Chain" }
                (facts([
                    ("Entries", html! { (size) }),
                    ("Newest signed head", html! { @match newest_head {
                        Some(h) => { "size " (h.head.size) ", " (time(h.head.time_ms)) br; code { (hex::encode(h.head.root)) } },
                        None => "none yet",
                    } }),
                    ("Verification", html! { @match &verification {
                        Some(Ok(m)) => (badge(Tone::Ok, m)),
                        Some(Err(m)) => (badge(Tone::Bad, m)),
                        None => a.button.secondary href="/ui/audit?verify=1" { "Verify the whole chain now" },
                    } }),
                ]))
            }
            @if let Some(p) = &proof { (p) }
        }
        form.filter method="get" action="/ui/audit" role="search" {
            label { "Actor (exact)" input type="search" name="actor" value=(a) placeholder="user:ada (password)" data-search; }
            label { "Resource (exact)" input type="text" name="resource" value=(r) placeholder="registered_model:fraud"; }
            label { "Since (ms)" input type="number" name="since_ms" value=(si); }
            label { "Until (ms)" input type="number" name="until_ms" value=(un); }
            label { "Entry #" input type="number" name="seq" min="0"; }
            button type="submit" { "Search" }
        }
        div.wrap { table {
            thead { tr { th.n { "#" } th { "When" } th { "Who" } th { "Action" } th { "Resource" } th { "Outcome" } th { "Proof" } } }
            tbody {
                @for e in entries.iter().rev() {
                    tr {
                        td.n { (e.seq) }
                        td { (time(e.time_ms)) }
                        td { (clip(&e.actor, 60)) }
                        td { code { (e.action) } }
                        td { (clip(&e.resource, 80)) }
                        td { (format!("{:?}", e.outcome).to_lowercase()) }
                        td { a href={"/ui/audit?seq=" (e.seq) "#proof"} aria-label={"inclusion proof of entry " (e.seq)} { "prove" } }
                    }
                }
                @if entries.is_empty() { tr { td colspan="7" { "No entries match." } } }
            }
        } }
        nav.pager aria-label="Pages" {
            @if let Some(n) = &newer { a href=(n) { "← Newer" } }
            @if let Some(o) = &older { a href=(o) { "Older →" } }
        }
    };
    let c = chrome(&s, &headers);
    Ok(page_html(
        Page::new("Audit log", Nav::Audit).render(&c, body),
    ))
}
