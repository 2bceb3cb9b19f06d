//! `graph`: the stack's resource graph as the scheduler sees it, from the configuration
//! and the state file (no AWS call): Graphviz DOT, or JSON with `-o json`.

use super::{open, Open};
use crate::cli::Format;
use crate::config::{Desired, Target};
use crate::errors::{exit, Result};
use crate::graph::{self, Node};
use crate::report;
use crate::resources::{http_stage, log_group, permission, role, stage};

pub async fn graph(target: &Target, desired: &Desired, format: Format) -> Result<i32> {
    // No lock, no account: with local state, no AWS call at all.
    let session = open(
        target,
        Open {
            lock: false,
            account: false,
        },
    )
    .await?;
    let recorded = session.existing;
    // The region as far as it is known without asking anyone.
    let region = target
        .region
        .clone()
        .or_else(|| recorded.as_ref().map(|s| s.region.clone()))
        .or_else(|| {
            target
                .is_local()
                .then(|| crate::config::LOCAL_DEFAULT_REGION.to_string())
        })
        .or_else(|| std::env::var("AWS_REGION").ok())
        .unwrap_or_else(|| "<region>".into());
    let known = |key: &str| {
        recorded
            .as_ref()
            .and_then(|s| s.get(key))
            .map(str::to_string)
    };
    let stack = &target.stack;
    // A node's id where the state file knows it, else the name it will have.
    let ids = |node: &Node| -> String {
        let or = |key: &str, default: String| known(key).unwrap_or(default);
        match node {
            Node::Role => or(role::KIND, role::regional_name(stack, &region)),
            Node::Function => or(node.kind(), format!("{stack}-handler")),
            Node::LogGroup => log_group::name(&format!("{stack}-handler")),
            Node::Pool => or(node.kind(), format!("{stack}-pool")),
            Node::Domain => or(
                node.kind(),
                desired
                    .domain_prefix
                    .clone()
                    .unwrap_or_else(|| format!("{stack}-<hash>")),
            ),
            Node::ResourceServer => desired.resource_server().to_string(),
            Node::Api => or(node.kind(), format!("{stack}-api")),
            Node::Authorizer => or(node.kind(), format!("{stack}-authorizer")),
            Node::Permission => permission::STATEMENT_ID.to_string(),
            Node::Stage => stage::STAGE.to_string(),
            Node::HttpApi => or(node.kind(), format!("{stack}-api")),
            Node::JwtAuthorizer => or(node.kind(), format!("{stack}-authorizer")),
            Node::Integration => or(node.kind(), "lambda".into()),
            Node::HttpStage => http_stage::STAGE.to_string(),
            _ => node.name(),
        }
    };
    let g = graph::stack(desired);
    match format {
        Format::Json => report::emit_json(&graph::json(&g, &ids)),
        Format::Human => report::emit_text(&graph::dot(&g, &ids)),
    }
    Ok(exit::OK)
}
