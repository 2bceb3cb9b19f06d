//! The stack as a graph: each resource is a node with its parents, and one scheduler
//! runs any command over it, a node as soon as its parents are done, up to
//! `--max-concurrency` nodes at once.
//!
//! `up`, `status` and `--dry-run` walk it parents first; `down` walks the resources that
//! need a delete of their own children first, and what a parent's deletion removes
//! with it (a REST API's methods, a pool's clients, a function's permission) costs
//! nothing. Adding a resource kind is one module in `resources/` and one entry here.

use std::collections::VecDeque;

use futures_util::stream::{FuturesUnordered, StreamExt};
use serde_json::{json, Value};

use crate::config::{Desired, Front};

mod fronts;
use crate::errors::Result;
use crate::interrupt;
use crate::report;
use crate::resources::methods::PROXY;
use fronts::{http_front, rest_front};

/// One resource of the stack (or, for the `Other*` nodes, the sweep that deletes what
/// is the stack's but no longer configured).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Role,
    /// The function's log group, made before the function so Lambda writes into it.
    LogGroup,
    Function,
    Pool,
    Domain,
    ResourceServer,
    /// An app client, by its configured name.
    Client(String),
    /// The pool's clients named `<stack>-*` that the configuration no longer lists.
    OtherClients,
    /// The Secrets Manager secret of a client, by the client's name.
    Secret(String),
    /// The stack's secrets whose client is gone or no longer publishes one.
    OtherSecrets,
    Api,
    Authorizer,
    /// The `/{proxy+}` resource of the API.
    ProxyPath,
    /// An HTTP method on a path: (verb, path).
    Method(String, &'static str),
    /// Methods on the API that the configuration does not list.
    OtherMethods,
    Permission,
    Stage,
    /// The HTTP API (`front = "http"`) and what hangs off it.
    HttpApi,
    JwtAuthorizer,
    Integration,
    /// A route: (verb, path), as `Method` for the REST front.
    Route(String, &'static str),
    /// Routes on the HTTP API that the configuration does not list.
    OtherRoutes,
    HttpStage,
    /// The API of the other front, left by a switch (deleted once the new front and
    /// the permission are in place).
    Retired(Front),
}

impl Node {
    /// The resource kind, as reports name it.
    pub fn kind(&self) -> &'static str {
        match self {
            Node::Role => "iam_role",
            Node::LogGroup => "log_group",
            Node::Function => "lambda_function",
            Node::Pool => "user_pool",
            Node::Domain => "user_pool_domain",
            Node::ResourceServer => "resource_server",
            Node::Client(_) | Node::OtherClients => "app_client",
            Node::Secret(_) | Node::OtherSecrets => "secret",
            Node::Api => "rest_api",
            Node::Authorizer => "authorizer",
            Node::ProxyPath => "api_resource",
            Node::Method(..) | Node::OtherMethods => "method",
            Node::Permission => "lambda_permission",
            Node::Stage => "stage",
            Node::HttpApi | Node::Retired(Front::Http) => "http_api",
            Node::Retired(Front::Rest) => "rest_api",
            Node::JwtAuthorizer => "jwt_authorizer",
            Node::Integration => "integration",
            Node::Route(..) | Node::OtherRoutes => "route",
            Node::HttpStage => "http_stage",
        }
    }

    /// What the node stands for among its kind (a name, a path; ids come from state).
    pub fn name(&self) -> String {
        match self {
            Node::Client(n) | Node::Secret(n) => n.clone(),
            Node::Method(verb, path) | Node::Route(verb, path) => format!("{verb} {path}"),
            Node::ProxyPath => PROXY.to_string(),
            Node::OtherClients | Node::OtherSecrets | Node::OtherMethods | Node::OtherRoutes => {
                "(others)".into()
            }
            Node::Retired(_) => "(old front)".into(),
            _ => String::new(),
        }
    }
}

/// Nodes and, for each, the indices of its parents.
#[derive(Debug, Clone)]
pub struct Graph {
    pub nodes: Vec<Node>,
    pub parents: Vec<Vec<usize>>,
}

impl Graph {
    fn add(&mut self, node: Node, parents: &[usize]) -> usize {
        self.nodes.push(node);
        self.parents.push(parents.to_vec());
        self.nodes.len() - 1
    }

    #[cfg(test)]
    pub fn index(&self, node: &Node) -> Option<usize> {
        self.nodes.iter().position(|n| n == node)
    }
}

/// The stack `up` and `status` converge, from the desired configuration.
pub fn stack(desired: &Desired) -> Graph {
    let mut g = Graph {
        nodes: Vec::new(),
        parents: Vec::new(),
    };
    let role = g.add(Node::Role, &[]);
    let logs = g.add(Node::LogGroup, &[]);
    // The contract: the log group exists before the function does, so nothing (not even
    // a direct invocation) makes Lambda create an untagged group of its own. The function
    // waits for the group's creation only (`Ctx::log_group_made`), not its retention; the
    // permission (the first way in) waits for all of it.
    let function = g.add(Node::Function, &[role]);
    let pool = g.add(Node::Pool, &[]);
    g.add(Node::Domain, &[pool]);
    let server = g.add(Node::ResourceServer, &[pool]);
    let mut clients = Vec::new();
    for c in &desired.clients {
        let client = g.add(Node::Client(c.name.clone()), &[pool, server]);
        clients.push(client);
        if c.secret {
            g.add(Node::Secret(c.name.clone()), &[pool, client]);
        }
    }
    g.add(Node::OtherClients, &[pool]);
    g.add(Node::OtherSecrets, &[]);
    match desired.front {
        Front::Rest => rest_front(&mut g, desired, pool, function, logs),
        Front::Http => http_front(&mut g, desired, pool, &clients, function, logs),
    }
    g
}

/// The resources `down` deletes itself, and what must be gone before each: the rest
/// goes with a parent (see `cascades`).
pub fn teardown() -> Graph {
    let mut g = Graph {
        nodes: Vec::new(),
        parents: Vec::new(),
    };
    g.add(Node::Api, &[]);
    // Both fronts, whichever is configured: a switch interrupted half-way left both.
    g.add(Node::HttpApi, &[]);
    g.add(Node::OtherSecrets, &[]);
    g.add(Node::Pool, &[]);
    let function = g.add(Node::Function, &[]);
    // IAM deletes a role a function still names: the two go at once.
    g.add(Node::Role, &[]);
    // After the function: an invocation would make the group again.
    g.add(Node::LogGroup, &[function]);
    g
}

/// What deleting `node` removes with it (its domain excepted: a pool's domain must be
/// deleted first, and `down` does so).
pub fn cascades(node: &Node) -> &'static [&'static str] {
    match node {
        Node::Api => &["stage", "method", "authorizer"],
        Node::HttpApi => &["http_stage", "route", "integration", "jwt_authorizer"],
        Node::Pool => &["app_client", "resource_server"],
        Node::Function => &["lambda_permission"],
        _ => &[],
    }
}

/// Runs `step` for every node, each once its parents are done, at most `limit` at a
/// time; each gets its parents' results. On the first error nothing new starts, the
/// steps in flight finish (so nothing is left half-recorded), and that error is
/// returned (later ones are shown as warnings).
pub async fn run<'a, T, F, Fut>(graph: &Graph, limit: usize, step: F) -> Result<Vec<T>>
where
    T: Clone,
    F: Fn(usize, Vec<(Node, T)>) -> Fut,
    Fut: std::future::Future<Output = Result<T>> + 'a,
{
    let n = graph.nodes.len();
    crate::aws::CallLog::global().set_graph(
        (0..n)
            .map(|i| {
                let node = &graph.nodes[i];
                let label = format!("{} {}", node.kind(), node.name());
                (label.trim().to_string(), graph.parents[i].clone())
            })
            .collect(),
    );
    let mut children = vec![Vec::new(); n];
    let mut waiting: Vec<usize> = graph.parents.iter().map(Vec::len).collect();
    for (child, parents) in graph.parents.iter().enumerate() {
        for p in parents {
            children[*p].push(child);
        }
    }
    let mut ready: VecDeque<usize> = (0..n).filter(|i| waiting[*i] == 0).collect();
    let mut results: Vec<Option<T>> = vec![None; n];
    let mut running = FuturesUnordered::new();
    let mut failed = None;
    let mut deadline = None;
    loop {
        let stopping = interrupt::requested();
        while failed.is_none() && !stopping && running.len() < limit.max(1) {
            let Some(i) = ready.pop_front() else { break };
            let inputs = graph.parents[i]
                .iter()
                .map(|p| {
                    let out = results[*p].clone().expect("a parent is done first");
                    (graph.nodes[*p].clone(), out)
                })
                .collect();
            let fut = crate::aws::in_node(i, step(i, inputs));
            running.push(async move { (i, fut.await) });
        }
        if running.is_empty() {
            break;
        }
        let next = if stopping {
            // Interrupted: the steps in flight get a bounded time to finish.
            // A second signal drops them at once (what they did is found by the next
            // run: every create is looked up before it is sent again).
            let until =
                *deadline.get_or_insert_with(|| tokio::time::Instant::now() + interrupt::GRACE);
            tokio::select! {
                next = tokio::time::timeout_at(until, running.next()) => match next {
                    Ok(next) => next,
                    Err(_) => {
                        report::warn(&format!(
                            "{} step(s) did not finish within {} s of the interrupt: abandoned",
                            running.len(),
                            interrupt::GRACE.as_secs()
                        ));
                        break;
                    }
                },
                () = interrupt::wait_abandoned() => break,
            }
        } else {
            tokio::select! {
                next = running.next() => next,
                () = interrupt::wait() => continue,
            }
        };
        let Some((i, result)) = next else {
            break;
        };
        match result {
            Ok(out) => {
                results[i] = Some(out);
                for c in &children[i] {
                    waiting[*c] -= 1;
                    if waiting[*c] == 0 {
                        ready.push_back(*c);
                    }
                }
            }
            Err(e) if failed.is_none() => failed = Some(e),
            Err(e) => report::warn(&format!("also: {e}")),
        }
    }
    if let Some(e) = failed {
        return Err(e);
    }
    if interrupt::requested() {
        return Err(crate::errors::Error::Interrupted);
    }
    Ok(results
        .into_iter()
        .map(|r| r.expect("every node ran"))
        .collect())
}

/// The graph as `provision graph` prints it: `ids` gives a node's id where one is
/// known (from the state file), else its name.
pub fn dot(graph: &Graph, ids: &dyn Fn(&Node) -> String) -> String {
    let label = |i: usize| {
        let node = &graph.nodes[i];
        format!("{} {}", node.kind(), ids(node)).trim().to_string()
    };
    let mut out = String::from("digraph provision {\n  rankdir = \"LR\";\n");
    for i in 0..graph.nodes.len() {
        out.push_str(&format!("  \"{}\";\n", label(i).replace('"', "\\\"")));
    }
    for (child, parents) in graph.parents.iter().enumerate() {
        for p in parents {
            out.push_str(&format!(
                "  \"{}\" -> \"{}\";\n",
                label(*p).replace('"', "\\\""),
                label(child).replace('"', "\\\"")
            ));
        }
    }
    out.push_str("}\n");
    out
}

pub fn json(graph: &Graph, ids: &dyn Fn(&Node) -> String) -> Value {
    let id = |i: usize| ids(&graph.nodes[i]);
    let key = |i: usize| {
        format!("{} {}", graph.nodes[i].kind(), id(i))
            .trim()
            .to_string()
    };
    json!({
        "nodes": (0..graph.nodes.len())
            .map(|i| json!({"kind": graph.nodes[i].kind(), "id": id(i)}))
            .collect::<Vec<_>>(),
        "edges": graph.parents.iter().enumerate().flat_map(|(child, parents)| {
            parents.iter().map(move |p| (*p, child))
        }).map(|(p, c)| json!({"from": key(p), "to": key(c)})).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests;
