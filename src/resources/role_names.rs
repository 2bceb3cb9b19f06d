//! The names and tags that say which IAM role is a stack's. A leaf: `role`, `role_region`
//! and everything outside `resources` name roles through it, and it names none of them.

/// The kind of the handler's role in reports and in the state file.
pub const KIND: &str = "iam_role";

/// The region whose stack a role belongs to.
pub const REGION_TAG: &str = "provision:region";

/// The role name of a stack in a region (at most 32 + 9 + 14 characters: within IAM's 64).
pub fn regional_name(stack: &str, region: &str) -> String {
    format!("{stack}-handler-{region}")
}

/// The name roles had before they were per region.
pub fn legacy_name(stack: &str) -> String {
    format!("{stack}-handler")
}

/// The role name in an IAM role ARN.
pub fn name_in_arn(arn: &str) -> Option<&str> {
    arn.rsplit_once(":role/")
        .map(|(_, path)| path.rsplit('/').next().unwrap_or(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_names_are_per_region_and_fit_iam() {
        let longest_stack = "a".repeat(32);
        let name = regional_name(&longest_stack, "ap-southeast-5");
        assert!(name.len() <= 64, "{name}");
        assert_eq!(regional_name("m2m", "eu-west-1"), "m2m-handler-eu-west-1");
        assert_eq!(
            name_in_arn("arn:aws:iam::1:role/m2m-handler"),
            Some("m2m-handler")
        );
        assert_eq!(name_in_arn("arn:aws:iam::1:role/service-role/x"), Some("x"));
    }
}
