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
mod tests {
    use super::*;
    use crate::config::{Arch, Scope};
    use crate::consumers::{ClientSpec, MethodSpec};

    fn desired(clients: &[(&str, bool)], verbs: &[&str]) -> Desired {
        let scopes = vec![Scope::parse("users/read").unwrap()];
        Desired {
            domain_prefix: None,
            scopes: scopes.clone(),
            handler: "h".into(),
            handler_given: true,
            memory_mb: 128,
            timeout_s: 10,
            architecture: Arch::X86_64,
            token_validity_min: 60,
            log_retention_days: 30,
            clients: clients
                .iter()
                .map(|(n, secret)| ClientSpec {
                    name: n.to_string(),
                    scopes: scopes.clone(),
                    secret: *secret,
                    readers: vec![],
                })
                .collect(),
            methods: verbs
                .iter()
                .map(|v| MethodSpec {
                    verb: v.to_string(),
                    scopes: scopes.clone(),
                })
                .collect(),
            front: Default::default(),
        }
    }

    #[test]
    fn clients_are_nodes_and_secrets_hang_off_their_client() {
        let g = stack(&desired(
            &[("a", false), ("b", true), ("c", false)],
            &["ANY"],
        ));
        let clients: Vec<_> = g
            .nodes
            .iter()
            .filter(|n| matches!(n, Node::Client(_)))
            .collect();
        assert_eq!(clients.len(), 3);
        let secret = g.index(&Node::Secret("b".into())).unwrap();
        assert!(g.parents[secret].contains(&g.index(&Node::Client("b".into())).unwrap()));
        assert!(g.index(&Node::Secret("a".into())).is_none());
        // Two methods per verb (/ and /{proxy+}); the stage waits for all of them.
        let g = stack(&desired(&[("a", false)], &["ANY", "GET"]));
        let stage = g.index(&Node::Stage).unwrap();
        let methods = g
            .nodes
            .iter()
            .filter(|n| matches!(n, Node::Method(..)))
            .count();
        assert_eq!(methods, 4);
        assert_eq!(
            g.parents[stage].len(),
            4 + 3,
            "the methods, the sweep, the API, the authorizer"
        );
    }

    #[test]
    fn each_front_is_its_own_nodes_and_the_other_fronts_api_goes_last() {
        let mut d = desired(&[("a", false), ("b", false)], &["GET", "POST"]);
        d.front = Front::Http;
        let g = stack(&d);
        for rest_only in [Node::Api, Node::Authorizer, Node::ProxyPath, Node::Stage] {
            assert!(g.index(&rest_only).is_none(), "{rest_only:?}");
        }
        let routes = g
            .nodes
            .iter()
            .filter(|n| matches!(n, Node::Route(..)))
            .count();
        assert_eq!(routes, 4, "two verbs on two paths");
        // The audience is every client: the authorizer waits for each.
        let authorizer = g.index(&Node::JwtAuthorizer).unwrap();
        for c in ["a", "b"] {
            let client = g.index(&Node::Client(c.into())).unwrap();
            assert!(g.parents[authorizer].contains(&client), "{c}");
        }
        // The permission names the HTTP API; the REST API a switch left goes only once
        // the permission has moved and the new stage serves.
        let api = g.index(&Node::HttpApi).unwrap();
        let permission = g.index(&Node::Permission).unwrap();
        assert!(g.parents[permission].contains(&api));
        let retired = g.index(&Node::Retired(Front::Rest)).unwrap();
        let stage = g.index(&Node::HttpStage).unwrap();
        assert_eq!(g.parents[retired], [permission, stage]);
        assert_eq!(g.nodes[retired].kind(), "rest_api");

        d.front = Front::Rest;
        let g = stack(&d);
        assert!(g.index(&Node::HttpApi).is_none());
        let retired = g.index(&Node::Retired(Front::Http)).unwrap();
        assert_eq!(g.nodes[retired].kind(), "http_api");
        assert_eq!(
            g.parents[retired],
            [
                g.index(&Node::Permission).unwrap(),
                g.index(&Node::Stage).unwrap()
            ]
        );
        // `down` deletes both fronts' APIs, whatever is configured.
        let t = teardown();
        assert!(t.index(&Node::Api).is_some() && t.index(&Node::HttpApi).is_some());
    }

    #[test]
    fn the_scheduler_runs_parents_first_and_all_nodes_once() {
        let g = stack(&desired(&[("a", false), ("b", true)], &["ANY"]));
        for limit in [1, 3, 64] {
            let order = std::sync::Mutex::new(Vec::new());
            // Steps in flight now, and the most there ever were at once.
            let in_flight = std::sync::atomic::AtomicUsize::new(0);
            let most = std::sync::atomic::AtomicUsize::new(0);
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .unwrap();
            let results = rt
                .block_on(run(&g, limit, |i, inputs: Vec<(Node, usize)>| {
                    let order = &order;
                    let g = &g;
                    let (in_flight, most) = (&in_flight, &most);
                    async move {
                        use std::sync::atomic::Ordering::SeqCst;
                        let now = in_flight.fetch_add(1, SeqCst) + 1;
                        most.fetch_max(now, SeqCst);
                        // Every parent's result is there, and it is the parent's index.
                        assert_eq!(inputs.len(), g.parents[i].len());
                        for (node, v) in &inputs {
                            assert_eq!(&g.nodes[*v], node);
                        }
                        // Every step yields, so the scheduler could start more while it waits.
                        tokio::time::sleep(std::time::Duration::from_millis(1 + (i % 3) as u64))
                            .await;
                        order.lock().unwrap().push(i);
                        in_flight.fetch_sub(1, SeqCst);
                        Ok(i)
                    }
                }))
                .unwrap();
            assert_eq!(results, (0..g.nodes.len()).collect::<Vec<_>>());
            // `--max-concurrency` holds, and is used: the graph has more roots (role, log
            // group, pool, secrets sweep, API) than 3, so 1 and 3 are reached exactly.
            let most = most.into_inner();
            assert!(
                most <= limit,
                "{most} steps at once with a limit of {limit}"
            );
            if limit <= 3 {
                assert_eq!(most, limit, "limit {limit}");
            } else {
                assert!(most > 3, "{most} at once with no real limit");
            }
            let order = order.into_inner().unwrap();
            assert_eq!(order.len(), g.nodes.len());
            for (child, parents) in g.parents.iter().enumerate() {
                let at = |x: usize| order.iter().position(|o| *o == x).unwrap();
                for p in parents {
                    assert!(
                        at(*p) < at(child),
                        "{:?} before {:?}",
                        g.nodes[*p],
                        g.nodes[child]
                    );
                }
            }
        }
    }

    #[test]
    fn a_failure_starts_nothing_new_and_is_returned() {
        let g = stack(&desired(&[("a", false)], &["ANY"]));
        let started = std::sync::atomic::AtomicUsize::new(0);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let role = g.index(&Node::Role).unwrap();
        let err = rt
            .block_on(run(&g, 1, |i, _inputs: Vec<(Node, ())>| {
                let started = &started;
                async move {
                    started.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    if i == role {
                        Err(crate::errors::Error::usage("role failed"))
                    } else {
                        Ok(())
                    }
                }
            }))
            .unwrap_err();
        assert!(err.to_string().contains("role failed"));
        assert_eq!(
            started.into_inner(),
            1,
            "the role is first; nothing after it"
        );
    }

    #[test]
    fn a_first_signal_starts_nothing_new_and_lets_the_running_step_finish() {
        let g = stack(&desired(&[("a", false)], &["ANY"]));
        let started = std::sync::atomic::AtomicUsize::new(0);
        let finished = std::sync::atomic::AtomicUsize::new(0);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        let err = rt
            .block_on(run(&g, 1, |_i, _inputs: Vec<(Node, ())>| {
                let (started, finished) = (&started, &finished);
                async move {
                    if started.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                        interrupt::raise_on_this_thread();
                        // A request in flight: it may finish within the grace.
                        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    }
                    finished.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    Ok(())
                }
            }))
            .unwrap_err();
        assert!(matches!(err, crate::errors::Error::Interrupted), "{err}");
        assert_eq!(started.into_inner(), 1, "nothing new after the signal");
        assert_eq!(finished.into_inner(), 1, "the step in flight finished");
    }

    #[test]
    fn a_wait_ends_at_the_first_signal() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(async {
            let t = tokio::time::Instant::now();
            let (waited, ()) = tokio::join!(
                interrupt::sleep(std::time::Duration::from_secs(300)),
                async {
                    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
                    interrupt::raise_on_this_thread();
                }
            );
            assert!(matches!(waited, Err(crate::errors::Error::Interrupted)));
            assert!(
                t.elapsed() < std::time::Duration::from_secs(300),
                "cut short"
            );
        });
    }

    #[test]
    fn dot_and_json_name_every_node_and_edge() {
        let g = stack(&desired(&[("billing", true)], &["ANY"]));
        let ids = |n: &Node| n.name();
        let dot = dot(&g, &ids);
        assert!(dot.starts_with("digraph provision {"));
        assert!(dot.contains("\"app_client billing\" -> \"secret billing\";"));
        let v = json(&g, &ids);
        assert_eq!(v["nodes"].as_array().unwrap().len(), g.nodes.len());
        let edges: usize = g.parents.iter().map(Vec::len).sum();
        assert_eq!(v["edges"].as_array().unwrap().len(), edges);
    }
}
