//! `up`, `status` and `--dry-run` over the stack's graph: what each node does, and what
//! it hands its children.

use crate::config::Front;
use crate::errors::{Error, Result};
use crate::graph::{self, Node};
use crate::plan::{self, AuthorizerSettings, MethodSettings};
use crate::resources::{
    app_client, authorizer, domain, function, http_api, http_stage, integration, jwt_authorizer,
    log_group, methods, permission, resource_server, rest_api, retire, role, route, secret, stage,
    user_pool, Ctx, Handle,
};

/// What a node hands its children.
#[derive(Debug, Clone)]
enum Out {
    Done,
    Role(role::Role),
    Function(function::Function),
    Pool(user_pool::Pool),
    Client(app_client::Client),
    Api(rest_api::Api),
    Authorizer(Handle, AuthorizerSettings),
    /// The id of an API resource (a path).
    Path(String),
    /// A method's key in the API definition and its settings.
    Method(String, MethodSettings),
    /// The HTTP API, its JWT authorizer, its integration.
    HttpApi(Handle),
    JwtAuthorizer(Handle),
    Integration(Handle),
}

/// The ids `up` learns, for the outputs.
pub struct Converged {
    pub pool_id: String,
    pub api_id: String,
    /// Configured client name → id, in the configuration's order.
    pub clients: Vec<(String, String)>,
}

/// The whole stack: each node once its parents are done, independent branches at the
/// same time (up to `limit` nodes in flight).
pub async fn converge(ctx: &Ctx<'_>, limit: usize) -> Result<Converged> {
    let g = graph::stack(ctx.desired);
    let (results, ()) = tokio::join!(
        graph::run(&g, limit, |i, inputs| step(ctx, &g.nodes[i], inputs)),
        crate::resources::prefetch(ctx)
    );
    let results = results?;
    let mut converged = Converged {
        pool_id: String::new(),
        api_id: String::new(),
        clients: Vec::new(),
    };
    for (node, out) in g.nodes.iter().zip(results) {
        match (node, out) {
            (Node::Pool, Out::Pool(p)) => converged.pool_id = p.handle.id,
            (Node::Api, Out::Api(a)) => converged.api_id = a.handle.id,
            (Node::HttpApi, Out::HttpApi(a)) => converged.api_id = a.id,
            (Node::Client(name), Out::Client(c)) => {
                converged.clients.push((name.clone(), c.handle.id))
            }
            _ => {}
        }
    }
    Ok(converged)
}

/// A parent's result, by node.
struct Inputs(Vec<(Node, Out)>);

impl Inputs {
    fn get(&self, node: &Node) -> Result<&Out> {
        self.0
            .iter()
            .find(|(n, _)| n == node)
            .map(|(_, o)| o)
            .ok_or_else(|| Error::Http(format!("internal error: {node:?} is not a parent")))
    }
    fn role(&self) -> Result<role::Role> {
        match self.get(&Node::Role)? {
            Out::Role(r) => Ok(r.clone()),
            other => Err(mismatch("role", other)),
        }
    }
    fn function(&self) -> Result<&function::Function> {
        match self.get(&Node::Function)? {
            Out::Function(f) => Ok(f),
            other => Err(mismatch("function", other)),
        }
    }
    fn pool(&self) -> Result<&user_pool::Pool> {
        match self.get(&Node::Pool)? {
            Out::Pool(p) => Ok(p),
            other => Err(mismatch("pool", other)),
        }
    }
    fn api(&self) -> Result<&rest_api::Api> {
        match self.get(&Node::Api)? {
            Out::Api(a) => Ok(a),
            other => Err(mismatch("api", other)),
        }
    }
    fn http_api(&self) -> Result<&Handle> {
        match self.get(&Node::HttpApi)? {
            Out::HttpApi(a) => Ok(a),
            other => Err(mismatch("HTTP API", other)),
        }
    }
    fn jwt_authorizer(&self) -> Result<&Handle> {
        match self.get(&Node::JwtAuthorizer)? {
            Out::JwtAuthorizer(a) => Ok(a),
            other => Err(mismatch("JWT authorizer", other)),
        }
    }
    fn integration(&self) -> Result<&Handle> {
        match self.get(&Node::Integration)? {
            Out::Integration(i) => Ok(i),
            other => Err(mismatch("integration", other)),
        }
    }
    /// The ids of every client among the parents, in the configuration's order.
    fn client_ids(&self) -> Vec<String> {
        self.0
            .iter()
            .filter_map(|(_, o)| match o {
                Out::Client(c) => Some(c.handle.id.clone()),
                _ => None,
            })
            .collect()
    }
    fn authorizer(&self) -> Result<(&Handle, &AuthorizerSettings)> {
        match self.get(&Node::Authorizer)? {
            Out::Authorizer(h, s) => Ok((h, s)),
            other => Err(mismatch("authorizer", other)),
        }
    }
    fn client(&self, name: &str) -> Result<&app_client::Client> {
        match self.get(&Node::Client(name.to_string()))? {
            Out::Client(c) => Ok(c),
            other => Err(mismatch("client", other)),
        }
    }
    fn path(&self) -> Result<&str> {
        match self.get(&Node::ProxyPath)? {
            Out::Path(id) => Ok(id),
            other => Err(mismatch("path", other)),
        }
    }
    fn methods(&self) -> Vec<(&str, &MethodSettings)> {
        self.0
            .iter()
            .filter_map(|(_, o)| match o {
                Out::Method(key, m) => Some((key.as_str(), m)),
                _ => None,
            })
            .collect()
    }
}

fn mismatch(wanted: &str, got: &Out) -> Error {
    Error::Http(format!("internal error: wanted a {wanted}, got {got:?}"))
}

async fn step(ctx: &Ctx<'_>, node: &Node, inputs: Vec<(Node, Out)>) -> Result<Out> {
    let inputs = Inputs(inputs);
    let label = format!("{} {}", node.kind(), node.name());
    let label = label.trim();
    Ok(match node {
        Node::Role => Out::Role(ctx.track(label, role::ensure(ctx)).await?),
        Node::LogGroup => {
            let made = ctx.track(label, log_group::ensure(ctx)).await;
            // Whatever happened, a function waiting for the group hears of it.
            ctx.log_group_made.set(made.is_ok());
            made?;
            Out::Done
        }
        Node::Function => {
            let role = inputs.role()?;
            Out::Function(
                ctx.track(label, function::ensure(ctx, async { Ok(role) }))
                    .await?,
            )
        }
        Node::Pool => Out::Pool(ctx.track(label, user_pool::ensure(ctx)).await?),
        Node::Domain => {
            let pool = inputs.pool()?;
            ctx.track(
                label,
                domain::ensure(ctx, &pool.handle, pool.domain.as_deref()),
            )
            .await?;
            Out::Done
        }
        Node::ResourceServer => {
            let pool = inputs.pool()?;
            ctx.track(label, resource_server::ensure(ctx, &pool.handle))
                .await?;
            Out::Done
        }
        Node::Client(name) => {
            let pool = inputs.pool()?;
            let spec = ctx.desired.client(name).expect("a configured client");
            Out::Client(
                ctx.track(label, app_client::ensure(ctx, &pool.handle, spec))
                    .await?,
            )
        }
        Node::OtherClients => {
            let pool = inputs.pool()?;
            ctx.track(label, app_client::sweep(ctx, &pool.handle))
                .await?;
            Out::Done
        }
        Node::Secret(name) => {
            let pool = inputs.pool()?;
            let client = inputs.client(name)?;
            let spec = ctx.desired.client(name).expect("a configured client");
            ctx.track(label, secret::ensure(ctx, &pool.handle.id, client, spec))
                .await?;
            Out::Done
        }
        Node::OtherSecrets => {
            ctx.track(label, secret::sweep(ctx, false)).await?;
            Out::Done
        }
        Node::Api => Out::Api(ctx.track(label, rest_api::ensure(ctx)).await?),
        Node::Authorizer => {
            let (api, pool) = (inputs.api()?, inputs.pool()?);
            let handle = ctx
                .track(label, authorizer::ensure(ctx, &api.handle, &pool.handle))
                .await?;
            Out::Authorizer(handle, authorizer::desired(&pool.handle.arn))
        }
        Node::ProxyPath => {
            let api = inputs.api()?;
            Out::Path(
                ctx.track(label, methods::ensure_proxy_path(ctx, api))
                    .await?,
            )
        }
        Node::Method(verb, path) => {
            let api = inputs.api()?;
            let (authorizer, _) = inputs.authorizer()?;
            let function = inputs.function()?;
            let resource_id = if *path == methods::PROXY {
                inputs.path()?.to_string()
            } else {
                methods::root_id(ctx, api).await?
            };
            let spec = ctx
                .desired
                .methods
                .iter()
                .find(|m| &m.verb == verb)
                .expect("a configured method");
            let settings = ctx
                .track(
                    label,
                    methods::ensure(
                        ctx,
                        api,
                        &resource_id,
                        path,
                        spec,
                        authorizer,
                        &function.handle,
                    ),
                )
                .await?;
            // `ANY` keeps the key it had before methods had verbs: an unchanged
            // stack keeps its definition hash, and is not redeployed.
            let key = if verb == "ANY" {
                path.to_string()
            } else {
                format!("{verb} {path}")
            };
            Out::Method(key, settings)
        }
        Node::OtherMethods => {
            let api = inputs.api()?;
            ctx.track(label, methods::sweep(ctx, api)).await?;
            Out::Done
        }
        Node::Permission => {
            let function = inputs.function()?;
            // The API of the configured front: moving the permission is half a switch.
            let api = match ctx.desired.front {
                Front::Rest => &inputs.api()?.handle,
                Front::Http => inputs.http_api()?,
            };
            let grant = permission::ensure(ctx, &function.handle, api);
            let waiting = "waiting for lambda_function to be ready";
            if function.settling && function.handle.fresh {
                // A function being created takes a permission (only invoking it
                // waits; a "busy" answer is sent again), so the grant does not wait
                // for it. `up` still ends only once the function can run.
                let (granted, ready) = ctx
                    .both(
                        ctx.track(label, grant),
                        ctx.track(waiting, function::wait_settled(ctx)),
                    )
                    .await;
                granted?;
                ready?;
            } else {
                if function.settling {
                    // An update in progress refuses a permission change.
                    ctx.track(waiting, function::wait_settled(ctx)).await?;
                }
                ctx.track(label, grant).await?;
            }
            Out::Done
        }
        Node::Stage => {
            let api = inputs.api()?;
            let (_, authorizer) = inputs.authorizer()?;
            let definition = plan::definition_hash(authorizer, &inputs.methods());
            ctx.track(label, stage::ensure(ctx, &api.handle, &definition))
                .await?;
            Out::Done
        }
        Node::HttpApi => Out::HttpApi(ctx.track(label, http_api::ensure(ctx)).await?),
        Node::JwtAuthorizer => {
            let (api, pool) = (inputs.http_api()?, inputs.pool()?);
            let clients = inputs.client_ids();
            Out::JwtAuthorizer(
                ctx.track(
                    label,
                    jwt_authorizer::ensure(ctx, api, &pool.handle, &clients),
                )
                .await?,
            )
        }
        Node::Integration => {
            let (api, function) = (inputs.http_api()?, inputs.function()?);
            Out::Integration(
                ctx.track(label, integration::ensure(ctx, api, &function.handle))
                    .await?,
            )
        }
        Node::Route(verb, path) => {
            let api = inputs.http_api()?;
            let (authorizer, integration) = (inputs.jwt_authorizer()?, inputs.integration()?);
            let spec = ctx
                .desired
                .methods
                .iter()
                .find(|m| &m.verb == verb)
                .expect("a configured method");
            ctx.track(
                label,
                route::ensure(ctx, api, path, spec, authorizer, integration),
            )
            .await?;
            Out::Done
        }
        Node::OtherRoutes => {
            let api = inputs.http_api()?;
            ctx.track(label, route::sweep(ctx, api)).await?;
            Out::Done
        }
        Node::HttpStage => {
            let api = inputs.http_api()?;
            ctx.track(label, http_stage::ensure(ctx, api)).await?;
            Out::Done
        }
        Node::Retired(old) => {
            ctx.track(label, retire::retire(ctx, *old)).await?;
            Out::Done
        }
    })
}
