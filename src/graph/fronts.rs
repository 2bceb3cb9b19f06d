//! The two front doors' nodes: the REST API's or the HTTP API's, each followed by the
//! sweep of the other front's API (what a switch leaves behind).

use super::{Graph, Node};
use crate::config::{Desired, Front};
use crate::resources::methods::{PROXY, ROOT};

/// The REST API, its authorizer, methods and `prod` stage; then the HTTP API a switch
/// left, if any.
pub(super) fn rest_front(
    g: &mut Graph,
    desired: &Desired,
    pool: usize,
    function: usize,
    logs: usize,
) {
    let api = g.add(Node::Api, &[]);
    let authorizer = g.add(Node::Authorizer, &[api, pool]);
    let proxy = g.add(Node::ProxyPath, &[api]);
    let mut deployed = vec![api, authorizer];
    for m in &desired.methods {
        for (path, under) in [(ROOT, api), (PROXY, proxy)] {
            let parents = [under, authorizer, function];
            let parents = if under == api {
                &parents[..]
            } else {
                &[api, proxy, authorizer, function][..]
            };
            deployed.push(g.add(Node::Method(m.verb.clone(), path), parents));
        }
    }
    deployed.push(g.add(Node::OtherMethods, &[api]));
    let permission = g.add(Node::Permission, &[function, api, logs]);
    let stage = g.add(Node::Stage, &deployed);
    g.add(Node::Retired(Front::Http), &[permission, stage]);
}

/// The HTTP API, its JWT authorizer (whose audience is every client: each client is a
/// parent), integration, routes and `$default` stage; then the REST API a switch left.
pub(super) fn http_front(
    g: &mut Graph,
    desired: &Desired,
    pool: usize,
    clients: &[usize],
    function: usize,
    logs: usize,
) {
    let api = g.add(Node::HttpApi, &[]);
    let mut parents = vec![api, pool];
    parents.extend_from_slice(clients);
    let authorizer = g.add(Node::JwtAuthorizer, &parents);
    let integration = g.add(Node::Integration, &[api, function]);
    let mut live = vec![api, authorizer, integration];
    for m in &desired.methods {
        for path in [ROOT, PROXY] {
            live.push(g.add(
                Node::Route(m.verb.clone(), path),
                &[api, authorizer, integration],
            ));
        }
    }
    live.push(g.add(Node::OtherRoutes, &[api]));
    let permission = g.add(Node::Permission, &[function, api, logs]);
    let stage = g.add(Node::HttpStage, &live);
    g.add(Node::Retired(Front::Rest), &[permission, stage]);
}
