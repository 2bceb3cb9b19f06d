//! Whose a resource is: the stack tag, and the checks before adopting or deleting.

use std::collections::HashMap;

use crate::errors::{Error, Result};

/// The tag that marks a resource as belonging to a stack.
pub const STACK_TAG: &str = "provision:stack";

/// The one resource named for this stack among `found`, or an error naming them all
/// when a service that accepts duplicate names has several (`down` removes them all).
pub fn the_one<T>(
    mut found: Vec<T>,
    kinds: &str,
    name: &str,
    id: impl Fn(&T) -> &str,
) -> Result<Option<T>> {
    if found.len() > 1 {
        return Err(Error::usage(format!(
            "found {} {kinds} named {name} tagged for this stack ({}); `provision down` removes them all, or delete the extra ones, then run again",
            found.len(),
            found.iter().map(&id).collect::<Vec<_>>().join(", ")
        )));
    }
    Ok(found.pop())
}

/// Refuses to adopt or delete a resource that is not tagged for this stack.
pub fn check_owner(tags: Option<&HashMap<String, String>>, stack: &str, what: &str) -> Result<()> {
    check_owner_value(
        tags.and_then(|t| t.get(STACK_TAG)).map(String::as_str),
        stack,
        what,
    )
}

pub fn check_owner_value(tag: Option<&str>, stack: &str, what: &str) -> Result<()> {
    match tag {
        Some(v) if v == stack => Ok(()),
        Some(other) => Err(Error::usage(format!(
            "{what} exists but belongs to stack `{other}` (tag {STACK_TAG}={other}); provision will not touch it: choose another --stack"
        ))),
        None => Err(Error::usage(format!(
            "{what} exists but is not tagged {STACK_TAG}={stack}: it was not made by provision for this stack, so provision will not adopt or delete it; delete or rename it, or choose another --stack"
        ))),
    }
}

/// What `down` did with one resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removal {
    Deleted,
    /// Not there (gone already, or never made).
    Absent,
    /// There, but not this stack's (any more): left alone, and why.
    Kept(String),
}

/// `down`'s owner check: None when the tags say the resource is this stack's, else why
/// it is left alone (a stale state file may name what is someone else's now).
pub fn not_ours(tags: Option<&HashMap<String, String>>, stack: &str, what: &str) -> Option<String> {
    match tags.and_then(|t| t.get(STACK_TAG)).map(String::as_str) {
        Some(v) if v == stack => None,
        Some(other) => Some(format!(
            "{what} belongs to stack `{other}` (tag {STACK_TAG}={other}): not deleted"
        )),
        None => Some(format!(
            "{what} is not tagged {STACK_TAG}={stack}: someone else's now, not deleted"
        )),
    }
}
