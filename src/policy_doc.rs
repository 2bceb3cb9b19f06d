//! IAM policy documents as documents: IAM hands them back URL-encoded and in whatever
//! spelling they were written in; provision compares what they grant, not their text.

use serde_json::Value;

/// A policy document in a form that compares as a document: one statement list, each
/// statement's value lists sorted, single values as one-element lists, no empty Sid.
pub fn normalized(text: &str) -> Value {
    fn norm(v: &Value, key: Option<&str>) -> Value {
        match v {
            Value::Object(map) => Value::Object(
                map.iter()
                    .filter(|(k, v)| !(k.as_str() == "Sid" && v.as_str() == Some("")))
                    .map(|(k, v)| (k.clone(), norm(v, Some(k))))
                    .collect(),
            ),
            Value::Array(items) => {
                let mut items: Vec<Value> = items.iter().map(|i| norm(i, None)).collect();
                items.sort_by_key(|i| i.to_string());
                items.dedup();
                Value::Array(items)
            }
            // Values that AWS lets be one string or a list of strings.
            Value::String(_)
                if matches!(
                    key,
                    Some(
                        "Action"
                            | "NotAction"
                            | "Resource"
                            | "NotResource"
                            | "Service"
                            | "AWS"
                            | "Federated"
                    )
                ) =>
            {
                Value::Array(vec![v.clone()])
            }
            other => other.clone(),
        }
    }
    match serde_json::from_str::<Value>(text) {
        Ok(mut doc) => {
            if let Some(s) = doc.get_mut("Statement") {
                if !s.is_array() {
                    *s = Value::Array(vec![s.take()]);
                }
            }
            norm(&doc, None)
        }
        // Unreadable: kept as text, so it differs from ours and is repaired.
        Err(_) => Value::String(text.to_string()),
    }
}

/// IAM returns policy documents URL-encoded.
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRUST: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;

    #[test]
    fn decodes_iam_policy_documents() {
        assert_eq!(
            percent_decode("%7B%22Service%22%3A%22lambda.amazonaws.com%22%7D"),
            r#"{"Service":"lambda.amazonaws.com"}"#
        );
        assert_eq!(percent_decode(r#"{"a":1}"#), r#"{"a":1}"#);
        assert_eq!(percent_decode("100%"), "100%");
    }

    #[test]
    fn trust_policies_compare_as_documents() {
        let ours = normalized(TRUST);
        // The same document in another spelling: a list for one value, a single
        // statement, keys in another order, whitespace.
        let same = normalized(
            r#"{ "Statement": {"Action":["sts:AssumeRole"], "Principal":{"Service":["lambda.amazonaws.com"]}, "Effect":"Allow"}, "Version":"2012-10-17"}"#,
        );
        assert_eq!(ours, same);
        let extra_principal = normalized(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com","AWS":"arn:aws:iam::123456789012:root"},"Action":"sts:AssumeRole"}]}"#,
        );
        assert_ne!(ours, extra_principal);
        let extra_statement = normalized(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"},{"Effect":"Allow","Principal":{"AWS":"*"},"Action":"sts:AssumeRole"}]}"#,
        );
        assert_ne!(ours, extra_statement);
        assert_ne!(ours, normalized("not json"));
    }
}
