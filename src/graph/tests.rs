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
                    tokio::time::sleep(std::time::Duration::from_millis(1 + (i % 3) as u64)).await;
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
