//! An app client's secrets. Cognito keeps at most two live secrets per client
//! (`AddUserPoolClientSecret`, `ListUserPoolClientSecrets`, `DeleteUserPoolClientSecret`):
//! a generated secret's value comes back once, in Add's answer, and never again (List
//! gives ids and creation dates only); the last secret cannot be deleted.
//!
//! Because a value is seen only once, Add is never sent blindly twice: an Add whose
//! answer is lost may have made a secret nobody holds. It is found by listing (a
//! secret that was not there before), deleted again, and only then is Add sent again.

use aws_sdk_cognitoidentityprovider::types::ClientSecretDescriptorType;
use aws_smithy_types::DateTime;

use crate::aws::{Aws, SdkFailure, SdkResultExt};
use crate::errors::{Error, Result};
use crate::report;

/// Attempts of Add while its answer is in doubt (each one's secret is found and
/// deleted before the next is sent).
const ADD_ATTEMPTS: u32 = 3;

/// One live secret of a client, without its value.
#[derive(Debug, Clone, PartialEq)]
pub struct Info {
    pub id: String,
    pub created: Option<DateTime>,
}

/// A secret just added, with its value: delivered once, then dropped.
#[derive(Debug)]
pub struct Added {
    pub info: Info,
    pub value: Value,
}

/// A new secret's value in memory: never shown by `{:?}`.
pub struct Value(pub String);

impl std::fmt::Debug for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Value(..)")
    }
}

fn info(d: &ClientSecretDescriptorType) -> Option<Info> {
    Some(Info {
        id: d.client_secret_id()?.to_string(),
        created: d.client_secret_create_date().copied(),
    })
}

/// Oldest first: by creation date, then by id (`<client-id>--<epoch>` sorts by age).
fn by_age(secrets: &mut [Info]) {
    secrets.sort_by(|a, b| {
        let at = |i: &Info| i.created.map(|d| (d.secs(), d.subsec_nanos()));
        at(a).cmp(&at(b)).then_with(|| a.id.cmp(&b.id))
    });
}

/// The client's live secrets, oldest first, as AWS answers (for callers that decide
/// what an error means themselves).
pub async fn list_sdk(
    aws: &Aws,
    pool_id: &str,
    client_id: &str,
) -> std::result::Result<Vec<Info>, SdkFailure> {
    let mut token: Option<String> = None;
    let mut found = Vec::new();
    loop {
        let out = aws
            .cognito
            .list_user_pool_client_secrets()
            .user_pool_id(pool_id)
            .client_id(client_id)
            .set_next_token(token.clone())
            .send()
            .await
            .sdk()?;
        found.extend(out.client_secrets().iter().filter_map(info));
        token = out
            .next_token()
            .filter(|t| !t.is_empty())
            .map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    by_age(&mut found);
    Ok(found)
}

/// The client's live secrets, oldest first.
pub async fn list(aws: &Aws, pool_id: &str, client_id: &str) -> Result<Vec<Info>> {
    list_sdk(aws, pool_id, client_id).await.map_err(|e| {
        e.fail(
            format!("listing the secrets of app client {client_id}"),
            "ListUserPoolClientSecrets",
        )
    })
}

/// Adds a generated secret to a client that has `before` (as just listed). Exactly
/// once: see the module's comment.
pub async fn add(aws: &Aws, pool_id: &str, client_id: &str, before: &[Info]) -> Result<Added> {
    let doing = format!("adding a secret to app client {client_id}");
    let mut refusals = crate::quota::Refusals::new();
    let mut attempt = 1;
    loop {
        let e = match aws
            .once
            .cognito
            .add_user_pool_client_secret()
            .user_pool_id(pool_id)
            .client_id(client_id)
            .send()
            .await
            .sdk()
        {
            Ok(out) => {
                let d = out.client_secret_descriptor();
                let made = d.and_then(info);
                let value = d.and_then(|d| d.client_secret_value());
                return match (made, value) {
                    (Some(info), Some(v)) => Ok(Added {
                        info,
                        value: Value(v.to_string()),
                    }),
                    _ => Err(Error::Http(format!(
                        "{doing}: AddUserPoolClientSecret answered without the new secret's id or value; run `provision rotate --client ... --finish` to remove a secret nobody has, then rotate again"
                    ))),
                };
            }
            Err(e) => e,
        };
        if e.throttled() {
            // Refused for rate: nothing was done.
            if let Err(stop) = refusals
                .wait_out("AddUserPoolClientSecret", &doing, e)
                .await
            {
                return Err(stop.fail(doing, "AddUserPoolClientSecret"));
            }
            continue;
        }
        if e.is("LimitExceededException") {
            return Err(Error::usage(format!(
                "{doing}: Cognito refused a third secret (LimitExceededException: {}); the client has two already: run `provision rotate --client NAME --finish` first",
                e.message
            )));
        }
        if !e.in_doubt || attempt >= ADD_ATTEMPTS {
            return Err(e.fail(doing, "AddUserPoolClientSecret"));
        }
        report::info(&format!(
            "{doing}: AddUserPoolClientSecret got no clear answer ({}); listing the client's secrets before sending it again",
            e.message
        ));
        for orphan in list(aws, pool_id, client_id)
            .await?
            .into_iter()
            .filter(|s| !before.iter().any(|b| b.id == s.id))
        {
            // Its value was in the answer that never arrived: nobody can use it.
            report::warn(&format!(
                "app client {client_id}: secret {} was added but its value never reached us; deleting it again",
                orphan.id
            ));
            delete(aws, pool_id, client_id, &orphan.id).await?;
        }
        attempt += 1;
    }
}

/// Deletes one secret; one already gone is fine.
pub async fn delete(aws: &Aws, pool_id: &str, client_id: &str, secret_id: &str) -> Result<()> {
    match aws
        .cognito
        .delete_user_pool_client_secret()
        .user_pool_id(pool_id)
        .client_id(client_id)
        .client_secret_id(secret_id)
        .send()
        .await
        .sdk()
    {
        Ok(_) => Ok(()),
        Err(e) if e.is_not_found() => Ok(()),
        // AWS documents that the last secret cannot be deleted; the refusal is an
        // invalid parameter. Only a concurrent change can get us here.
        Err(e) if e.is("InvalidParameterException") => Err(Error::usage(format!(
            "deleting secret {secret_id} of app client {client_id}: Cognito refused ({}); it never deletes a client's last secret. Another run may have changed the client's secrets: run `provision status` to see them",
            e.message
        ))),
        Err(e) => Err(e.fail(
            format!("deleting secret {secret_id} of app client {client_id}"),
            "DeleteUserPoolClientSecret",
        )),
    }
}

/// The endpoint does not implement the rotation operations: MiniStack 1.5.33 answers
/// `InvalidAction` (AWS never does for an operation it has).
pub fn unimplemented(e: &SdkFailure) -> bool {
    e.is("InvalidAction") || e.is("UnknownOperationException")
}

/// Does the client have a live secret? DescribeUserPoolClient may not say: it need not
/// return a secret that was added by rotation (see the README, "Rotating credentials").
/// An endpoint without the operation: no.
pub async fn any(aws: &Aws, pool_id: &str, client_id: &str) -> Result<bool> {
    match list_sdk(aws, pool_id, client_id).await {
        Ok(s) => Ok(!s.is_empty()),
        Err(e) if unimplemented(&e) => Ok(false),
        Err(e) => Err(e.fail(
            format!("listing the secrets of app client {client_id}"),
            "ListUserPoolClientSecrets",
        )),
    }
}

/// Whole days since `created` (None: unknown).
pub fn age_days(created: Option<DateTime>, now: std::time::SystemTime) -> Option<u64> {
    let created = created?;
    let now = now.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs() as i64;
    Some(((now - created.secs()).max(0) / 86_400) as u64)
}

#[cfg(test)]
mod tests {
    use aws_smithy_types::DateTime;

    use super::*;

    #[test]
    fn secrets_are_ordered_oldest_first_and_aged_in_whole_days() {
        let mut s = vec![
            Info {
                id: "c--200".into(),
                created: Some(DateTime::from_secs(200)),
            },
            Info {
                id: "c1--100".into(),
                created: Some(DateTime::from_secs(100)),
            },
        ];
        by_age(&mut s);
        assert_eq!(s[0].id, "c1--100");
        let now = std::time::UNIX_EPOCH + std::time::Duration::from_secs(100 + 3 * 86_400 + 5);
        assert_eq!(age_days(s[0].created, now), Some(3));
        assert_eq!(age_days(None, now), None);
    }
}
