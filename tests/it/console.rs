//! The web console (issue 14) as the node serves it: the page at `/` and
//! its files under `/console/`, with their content types and the headers
//! that keep it strict (Content-Security-Policy, nosniff). What the console
//! does in a browser is tested by tests/browser (Node + Chromium).

use std::time::Duration;

use crate::support::node::TestNode;

async fn get(url: &str) -> (u16, Vec<(String, String)>, String) {
    let mut res = awc::Client::builder()
        .timeout(Duration::from_secs(30))
        .finish()
        .get(url)
        .send()
        .await
        .unwrap();
    let headers = res
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    let body = res.body().limit(1 << 20).await.unwrap();
    (
        res.status().as_u16(),
        headers,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

#[actix_rt::test]
async fn the_console_is_served_at_the_root_with_a_strict_policy() {
    let node = TestNode::serve().start();
    let base = node.url();

    let (status, headers, page) = get(&format!("{base}/")).await;
    assert_eq!(status, 200);
    assert_eq!(
        header(&headers, "content-type"),
        Some("text/html; charset=utf-8")
    );
    let csp = header(&headers, "content-security-policy").expect("a CSP");
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(directive), "{directive} in {csp}");
    }
    assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"));
    assert_eq!(header(&headers, "x-content-type-options"), Some("nosniff"));
    assert_eq!(header(&headers, "referrer-policy"), Some("no-referrer"));
    assert!(page.contains(r#"<script type="module" src="/console/js/app.js">"#));

    // Every file the page loads, with its type.
    for (path, ty) in [
        ("/console/js/app.js", "text/javascript; charset=utf-8"),
        ("/console/js/gql.js", "text/javascript; charset=utf-8"),
        ("/console/style.css", "text/css; charset=utf-8"),
    ] {
        let (status, headers, body) = get(&format!("{base}{path}")).await;
        assert_eq!(status, 200, "{path}");
        assert_eq!(header(&headers, "content-type"), Some(ty), "{path}");
        assert!(header(&headers, "content-security-policy").is_some());
        assert_eq!(header(&headers, "x-content-type-options"), Some("nosniff"));
        assert!(!body.is_empty());
    }
    // The console reaches the node only through the public API, and never
    // puts a token in a URL: the bearer goes in a header or connection_init.
    let (_, _, gql) = get(&format!("{base}/console/js/gql.js")).await;
    assert!(gql.contains("authorization: `Bearer ${token}`"));
    assert!(gql.contains("connection_init"));
    assert!(!gql.contains("?token="));

    let (status, headers, _) = get(&format!("{base}/console/nope.js")).await;
    assert_eq!(status, 404);
    assert_eq!(header(&headers, "x-content-type-options"), Some("nosniff"));
    let (status, _, _) = get(&format!("{base}/console/../Cargo.toml")).await;
    assert_eq!(status, 404);
    drop(node);
}
