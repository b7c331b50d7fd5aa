//! The chrome every page shares: a skip link, the navigation, who is signed in with a
//! sign-out form, and the main landmark; plus the small pieces pages repeat (badges,
//! pagers, the CSRF field, definition lists).

use maud::{DOCTYPE, Markup, html};

/// The sections of the navigation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    Overview,
    Experiments,
    Models,
    Datasets,
    Deployments,
    Audit,
    None,
}

const SECTIONS: [(Nav, &str, &str); 6] = [
    (Nav::Overview, "/", "Overview"),
    (Nav::Experiments, "/ui/experiments", "Experiments"),
    (Nav::Models, "/ui/models", "Models"),
    (Nav::Datasets, "/ui/datasets", "Datasets"),
    (Nav::Deployments, "/ui/deployments", "Deployments"),
    (Nav::Audit, "/ui/audit", "Audit"),
];

/// Who is looking, as the chrome shows it.
#[derive(Debug, Clone)]
pub struct Chrome {
    pub user: String,
    pub role: String,
    /// The form token of this session ("" when the caller sent an API token: its requests
    /// cannot be forged by another site, so forms need none).
    pub csrf: String,
    /// Whether the caller may read the audit log (the Audit section is hidden otherwise).
    pub can_audit: bool,
    /// Signed in through the login page (so there is a session to end).
    pub session: bool,
}

/// A page: title, section, breadcrumbs, and whether it reloads itself.
pub struct Page<'a> {
    pub title: &'a str,
    pub nav: Nav,
    pub crumbs: Vec<(String, String)>,
    /// Seconds between reloads (live views), if any.
    pub refresh: Option<u32>,
}

impl<'a> Page<'a> {
    pub fn new(title: &'a str, nav: Nav) -> Self {
        Self {
            title,
            nav,
            crumbs: Vec::new(),
            refresh: None,
        }
    }

    pub fn crumb(mut self, label: impl Into<String>, href: impl Into<String>) -> Self {
        self.crumbs.push((label.into(), href.into()));
        self
    }

    pub fn refresh(mut self, seconds: u32) -> Self {
        self.refresh = Some(seconds);
        self
    }

    pub fn render(&self, c: &Chrome, body: Markup) -> Markup {
        html! {
            (DOCTYPE)
            html lang="en" {
                (head(self.title))
                body {
                    a.skip href="#main" { "Skip to content" }
                    header.top {
                        a.brand href="/" { "Bastion" }
                        nav aria-label="Sections" {
                            ul {
                                @for (nav, href, label) in SECTIONS {
                                    @if nav != Nav::Audit || c.can_audit {
                                        li {
                                            @if nav == self.nav {
                                                a href=(href) aria-current="page" { (label) }
                                            } @else {
                                                a href=(href) { (label) }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                        div.who {
                            span { (c.user) " · " (c.role) }
                            @if c.session {
                                form.inline method="post" action="/logout" {
                                    (csrf_field(c))
                                    button type="submit" { "Sign out" }
                                }
                            }
                        }
                    }
                    main #main tabindex="-1" data-refresh=[self.refresh] {
                        @if !self.crumbs.is_empty() {
                            nav.crumbs aria-label="Breadcrumb" {
                                @for (i, (label, href)) in self.crumbs.iter().enumerate() {
                                    @if i > 0 { " › " }
                                    a href=(href) { (label) }
                                }
                            }
                        }
                        h1 { (self.title) }
                        (body)
                    }
                }
            }
        }
    }
}

fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) " · Bastion" }
            // No favicon request (an empty icon is allowed by the CSP's img-src data:).
            link rel="icon" href="data:,";
            link rel="stylesheet" href="/ui/assets/app.css";
            script src="/ui/assets/app.js" defer {}
        }
    }
}

/// A page outside the signed-in chrome (the login page, errors before sign-in).
pub fn bare(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body { main #main { (body) } }
        }
    }
}

/// The hidden field every state-changing form carries.
pub fn csrf_field(c: &Chrome) -> Markup {
    html! { input type="hidden" name="csrf" value=(c.csrf); }
}

/// How good or bad a status is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    Ok,
    Warn,
    Bad,
    Muted,
}

impl Tone {
    pub fn class(self) -> &'static str {
        match self {
            Tone::Ok => "ok",
            Tone::Warn => "warn",
            Tone::Bad => "bad",
            Tone::Muted => "muted",
        }
    }
}

pub fn badge(tone: Tone, text: &str) -> Markup {
    html! { span class={"badge " (tone.class())} { (text) } }
}

/// Previous / next links (absent when there is no such page).
pub fn pager(prev: Option<&str>, next: Option<&str>) -> Markup {
    html! {
        @if prev.is_some() || next.is_some() {
            nav.pager aria-label="Pages" {
                @if let Some(p) = prev { a rel="prev" href=(p) { "← Newer" } }
                @if let Some(n) = next { a rel="next" href=(n) { "Next page →" } }
            }
        }
    }
}

/// Pairs as a definition list.
pub fn facts<'a>(pairs: impl IntoIterator<Item = (&'a str, Markup)>) -> Markup {
    html! {
        dl.kv {
            @for (k, v) in pairs {
                dt { (k) }
                dd { (v) }
            }
        }
    }
}

/// A query string from pairs, each value percent-encoded (empty values left out).
pub fn query(pairs: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (k, v) in pairs {
        if v.is_empty() {
            continue;
        }
        out.push(if out.is_empty() { '?' } else { '&' });
        out.push_str(k);
        out.push('=');
        out.push_str(&encode(v));
    }
    out
}

/// `s` percent-encoded for a URL query value or path segment.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chrome() -> Chrome {
        Chrome {
            user: "<ada>".into(),
            role: "viewer".into(),
            csrf: "t0k".into(),
            can_audit: false,
            session: true,
        }
    }

    #[test]
    fn chrome_escapes_and_hides_what_the_caller_cannot_use() {
        let html = Page::new("Runs & <things>", Nav::Experiments)
            .crumb("Experiments", "/ui/experiments")
            .render(&chrome(), html! { p { "x" } })
            .into_string();
        assert!(html.contains("&lt;ada&gt;"), "{html}");
        assert!(html.contains("Runs &amp; &lt;things&gt;"));
        assert!(!html.contains("/ui/audit"), "viewers have no audit link");
        assert!(html.contains(r#"name="csrf" value="t0k""#));
        assert!(html.contains(r#"aria-current="page">Experiments"#));
        assert!(
            !html.contains("<style") && !html.contains("style="),
            "CSP: no inline styles"
        );
    }

    #[test]
    fn queries_are_encoded() {
        assert_eq!(
            query(&[("filter", "metrics.auc > 0.9"), ("empty", ""), ("n", "a&b")]),
            "?filter=metrics.auc%20%3E%200.9&n=a%26b"
        );
    }
}
