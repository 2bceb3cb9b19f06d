//! With a state file, the reads of an unchanged stack do not depend on one another:
//! every id they need is recorded. `prefetch` sends them all at once, while the graph
//! runs; each step then finds its first read done (see `read_once`) instead of reading
//! only after its parents, one level of the graph after another.

use std::future::Future;
use std::pin::Pin;

use super::{
    app_client, authorizer, function, http_api, http_stage, integration, jwt_authorizer, log_group,
    methods, permission, resource_server, rest_api, role, role_region, route, stage, user_pool,
    Ctx,
};

type Read<'c> = Pin<Box<dyn Future<Output = ()> + 'c>>;

/// A read whose failure is left to its step, which reads again and reports it.
fn read<'c, T>(fut: impl Future<Output = crate::errors::Result<T>> + 'c) -> Read<'c> {
    Box::pin(async move {
        let _ = fut.await;
    })
}

/// The first read of every resource whose id the state file records, at once. Sends
/// nothing without a state file, or without concurrency (the one-step-at-a-time
/// baseline).
pub async fn prefetch(ctx: &Ctx<'_>) {
    if !ctx.concurrent || ctx.rec.is_empty() {
        return;
    }
    let rec = ctx.rec;
    let mut reads: Vec<Read<'_>> = Vec::new();
    if let Some(name) = rec.get(role::KIND) {
        reads.push(Box::pin(async move {
            let (attached, inline) = role::first_policies(ctx, &name);
            let _ = tokio::join!(role_region::first_find(ctx, &name), attached, inline);
        }));
    }
    if rec.get(function::KIND).is_some() || rec.get(role::KIND).is_some() {
        reads.push(read(
            async move { function::observed(ctx).await.map(|_| ()) },
        ));
    }
    if rec.get(function::KIND).is_some() {
        reads.push(read(permission::first_find(ctx)));
    }
    if rec.get(log_group::KIND).is_some() {
        reads.push(read(log_group::first_find(ctx)));
    }
    if let Some(pool) = rec.get(user_pool::KIND) {
        let identifier = ctx.desired.resource_server().to_string();
        let clients: Vec<String> = ctx
            .desired
            .clients
            .iter()
            .filter_map(|c| rec.get(&app_client::state_key(&c.name)))
            .collect();
        reads.push(Box::pin(async move {
            let pool = pool.as_str();
            let mut all: Vec<Read<'_>> = vec![
                read(user_pool::first_describe(ctx, pool)),
                read(resource_server::first_find(ctx, pool, &identifier)),
                read(app_client::first_list(ctx, pool)),
            ];
            for id in &clients {
                all.push(read(app_client::first_describe(ctx, pool, id)));
            }
            futures_util::future::join_all(all).await;
        }));
    }
    if let Some(api) = rec.get(http_api::KIND) {
        reads.push(Box::pin(async move {
            let api = api.as_str();
            futures_util::future::join_all([
                read(http_api::first_get(ctx, api)),
                read(jwt_authorizer::first_find(ctx, api)),
                read(integration::first_read(ctx, api)),
                read(route::first_read(ctx, api)),
                read(http_stage::first_observe(ctx, api)),
            ])
            .await;
        }));
    }
    if let Some(api) = rec.get(rest_api::KIND) {
        reads.push(Box::pin(async move {
            let api = api.as_str();
            futures_util::future::join_all([
                read(rest_api::first_get(ctx, api)),
                read(authorizer::first_find(ctx, api)),
                read(methods::first_read(ctx, api)),
                read(stage::first_observe(ctx, api)),
            ])
            .await;
        }));
    }
    futures_util::future::join_all(reads).await;
}
