//! `cardio tree`: a node's supervision tree, or (`--cluster`) the
//! membership and every live node's tree, fetched from the nodes' `/debug`
//! views and drawn as indented branches.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use super::fail;
use crate::supervisors::TreeView;

async fn fetch(endpoint: &str) -> Result<actix_web::web::Bytes, String> {
    let mut request = awc::Client::new().get(endpoint);
    // An ops or admin token, where the node requires one for /debug/*.
    if let Ok(token) = std::env::var("CARDIO_TOKEN") {
        request = request.insert_header(("authorization", format!("Bearer {}", token.trim())));
    }
    let mut response = request
        .send()
        .await
        .map_err(|e| format!("cannot reach {endpoint}: {e}"))?;
    if !response.status().is_success() {
        return Err(format!("{endpoint} answered {}", response.status()));
    }
    response
        .body()
        .limit(256 * 1024 * 1024)
        .await
        .map_err(|e| format!("reading {endpoint}: {e}"))
}

/// `cardio tree --cluster`: the membership as one node sees it, then the tree
/// of every node that is up (fetched from its own address).
pub(super) fn cluster(url: &str, raw: bool) -> ExitCode {
    let endpoint = format!("{}/debug/cluster", url.trim_end_matches('/'));
    let colour = colour_wanted();
    let out = actix_rt::System::new().block_on(async {
        let body = fetch(&endpoint).await?;
        let view: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| format!("{endpoint} did not return a cluster view: {e}"))?;
        let nodes = view["nodes"].as_array().cloned().unwrap_or_default();
        let mut trees = Vec::new();
        for n in &nodes {
            let (id, addr, status) = (
                n["id"].as_str().unwrap_or("?"),
                n["addr"].as_str().unwrap_or(""),
                n["status"].as_str().unwrap_or("?"),
            );
            let tree = if status == "up" || status == "joining" || status == "leaving" {
                fetch(&format!("http://{addr}/debug/tree"))
                    .await
                    .and_then(|b| {
                        serde_json::from_slice::<serde_json::Value>(&b).map_err(|e| e.to_string())
                    })
            } else {
                Err(format!("not running ({status})"))
            };
            trees.push((
                id.to_owned(),
                addr.to_owned(),
                status.to_owned(),
                n["shards"].clone(),
                tree,
            ));
        }
        if raw {
            let all: Vec<serde_json::Value> = trees
                .into_iter()
                .map(|(id, addr, status, shards, tree)| {
                    serde_json::json!({"id": id, "addr": addr, "status": status, "shards": shards,
                        "tree": tree.unwrap_or_else(|e| serde_json::json!({"error": e}))})
                })
                .collect();
            return Ok(format!(
                "{}\n",
                serde_json::json!({"cluster": view, "nodes": all})
            ));
        }
        let (bold, dim, reset) = if colour {
            ("\x1b[1m", "\x1b[2m", "\x1b[0m")
        } else {
            ("", "", "")
        };
        let mut text = format!(
            "{bold}cluster{reset} seen from {} · {} nodes · {} shards\n",
            view["node"].as_str().unwrap_or("?"),
            nodes.len(),
            view["shards"].as_array().map_or(0, Vec::len)
        );
        for (id, addr, status, shards, tree) in trees {
            let status = node_status(&status, colour);
            text.push_str(&format!(
                "\n{bold}node {id}{reset} {addr} {status} · owns {shards} shards\n"
            ));
            match tree
                .and_then(|t| serde_json::from_value::<TreeView>(t).map_err(|e| e.to_string()))
            {
                Ok(tree) => text.push_str(&render_tree(&tree, colour)),
                Err(e) => text.push_str(&format!("{dim}  (no tree: {e}){reset}\n")),
            }
        }
        Ok::<_, String>(text)
    });
    match out {
        Ok(text) => {
            let _ = write!(std::io::stdout().lock(), "{text}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e),
    }
}

pub(super) fn tree(url: &str, raw: bool) -> ExitCode {
    let endpoint = format!("{}/debug/tree", url.trim_end_matches('/'));
    let fetched = actix_rt::System::new().block_on(fetch(&endpoint));
    let body = match fetched {
        Ok(b) => b,
        Err(e) => return fail(&e),
    };
    if raw {
        println!("{}", String::from_utf8_lossy(&body));
        return ExitCode::SUCCESS;
    }
    let view: TreeView = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return fail(&format!("{endpoint} did not return a tree: {e}")),
    };
    let colour = colour_wanted();
    let mut out = std::io::stdout().lock();
    let _ = write!(out, "{}", render_tree(&view, colour));
    ExitCode::SUCCESS
}

/// Renders a tree as indented lines: name, kind, status, restarts, uptime,
/// mailbox depth and last failure.
/// Colour on a terminal unless `NO_COLOR` is set; `CLICOLOR_FORCE` forces it
/// (for pagers such as `less -R`).
fn colour_wanted() -> bool {
    // no-color.org: any non-empty NO_COLOR turns colour off.
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|x| !x.is_empty());
    let forced = std::env::var_os("CLICOLOR_FORCE").is_some_and(|x| !x.is_empty() && x != "0");
    !no_color && (forced || std::io::stdout().is_terminal())
}

/// `text` in SGR colour `code` when `colour`.
fn paint(text: &str, code: &str, colour: bool) -> String {
    if colour {
        format!("\x1b[{code}m{text}\x1b[0m")
    } else {
        text.to_owned()
    }
}

/// A node's membership status: green up, yellow on its way in or out or cut
/// off from the broker, red down or gone.
fn node_status(status: &str, colour: bool) -> String {
    let code = match status {
        "up" => "32",
        "joining" | "leaving" | "degraded" => "33",
        _ => "31",
    };
    paint(status, code, colour)
}

pub fn render_tree(root: &TreeView, colour: bool) -> String {
    let mut out = String::new();
    line(&mut out, root, "", "", colour, true);
    out
}

fn line(out: &mut String, n: &TreeView, lead: &str, branch: &str, colour: bool, is_root: bool) {
    let name = if is_root {
        n.path.as_str()
    } else {
        n.id.as_str()
    };
    let kind = match &n.strategy {
        Some(s) => format!("supervisor {s}"),
        None => n.kind.clone(),
    };
    let code = match n.status.as_str() {
        "running" => "32",
        "restarting" | "starting" | "stopping" => "33",
        _ => "31",
    };
    let status = paint(&n.status, code, colour);
    let restarts = format!("restarts={}", n.restarts);
    let restarts = if n.restarts > 0 {
        paint(&restarts, "33", colour)
    } else {
        restarts
    };
    out.push_str(&format!(
        "{lead}{branch}{name}  [{kind}]  {status}  {restarts}"
    ));
    if n.uptime_ms > 0 {
        out.push_str(&format!(
            "  up {}",
            humantime::format_duration(std::time::Duration::from_secs(n.uptime_ms / 1000))
        ));
    }
    if n.strategy.is_none() && n.mailbox_depth > 0 {
        out.push_str(&format!("  mailbox={}", n.mailbox_depth));
    }
    if let Some(f) = &n.last_failure {
        out.push_str(&paint(&format!("  last failure: {f}"), "31", colour));
    }
    out.push('\n');
    let child_lead = if is_root {
        String::new()
    } else if branch.starts_with('└') {
        format!("{lead}    ")
    } else {
        format!("{lead}│   ")
    };
    for (i, c) in n.children.iter().enumerate() {
        let last = i + 1 == n.children.len();
        line(
            out,
            c,
            &child_lead,
            if last { "└── " } else { "├── " },
            colour,
            false,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(path: &str, id: &str, strategy: Option<&str>, children: Vec<TreeView>) -> TreeView {
        TreeView {
            path: path.into(),
            kind: if strategy.is_some() {
                "supervisor".into()
            } else {
                "consult".into()
            },
            strategy: strategy.map(str::to_owned),
            id: id.into(),
            status: "running".into(),
            restarts: 0,
            last_failure: None,
            uptime_ms: 0,
            mailbox_depth: 0,
            children,
        }
    }

    #[test]
    fn trees_render_as_indented_branches() {
        let mut crashed = node("/cardio/entities/consult/c-2", "c-2", None, vec![]);
        crashed.restarts = 2;
        crashed.last_failure = Some("panicked: boom".into());
        let tree = node(
            "/cardio",
            "cardio",
            Some("one_for_one"),
            vec![node(
                "/cardio/entities",
                "entities",
                Some("one_for_one"),
                vec![
                    node("/cardio/entities/consult/c-1", "c-1", None, vec![]),
                    crashed,
                ],
            )],
        );
        let text = render_tree(&tree, false);
        assert_eq!(
            text,
            "/cardio  [supervisor one_for_one]  running  restarts=0\n\
             └── entities  [supervisor one_for_one]  running  restarts=0\n\
             \x20   ├── c-1  [consult]  running  restarts=0\n\
             \x20   └── c-2  [consult]  running  restarts=2  last failure: panicked: boom\n"
        );
        // On a terminal: status by colour, restarts and failures stand out.
        let painted = render_tree(&tree, true);
        assert!(painted.contains("\x1b[32mrunning\x1b[0m"), "{painted}");
        assert!(painted.contains("\x1b[33mrestarts=2\x1b[0m"), "{painted}");
        assert!(painted.contains("\x1b[31m  last failure: panicked: boom\x1b[0m"));
        assert!(!painted.contains("\x1b[33mrestarts=0"), "{painted}");
        assert_eq!(node_status("up", true), "\x1b[32mup\x1b[0m");
        assert_eq!(node_status("down", true), "\x1b[31mdown\x1b[0m");
        assert_eq!(node_status("degraded", false), "degraded");
    }
}
