//! Which API fronts the function (`front = "rest" | "http"`), and the HTTP API's hard
//! limits, checked with the rest of the configuration.

use crate::consumers::{ClientSpec, MethodSpec};
use crate::errors::{Error, Result};

/// The front door: a REST API (API Gateway v1) or an HTTP API (v2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Front {
    #[default]
    Rest,
    Http,
}

/// An HTTP API's JWT authorizer takes at most this many audiences (a hard limit: one
/// per app client here), and a route at most this many scopes.
pub const MAX_JWT_AUDIENCES: usize = 50;
pub const MAX_ROUTE_SCOPES: usize = 10;

impl Front {
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "rest" => Ok(Front::Rest),
            "http" => Ok(Front::Http),
            other => Err(Error::usage(format!(
                "front: `{other}` is not one provision builds; use `rest` (REST API) or `http` (HTTP API)"
            ))),
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Front::Rest => "rest",
            Front::Http => "http",
        }
    }
}

/// The HTTP API's hard limits, checked before anything is sent: AWS would refuse the
/// authorizer or a route halfway through an `up`.
pub(super) fn check_http_limits(clients: &[ClientSpec], methods: &[MethodSpec]) -> Result<()> {
    if clients.len() > MAX_JWT_AUDIENCES {
        return Err(Error::usage(format!(
            "front = \"http\": {} clients, but an HTTP API's JWT authorizer takes at most {MAX_JWT_AUDIENCES} audiences (one per client); use fewer clients or front = \"rest\"",
            clients.len()
        )));
    }
    if let Some(m) = methods.iter().find(|m| m.scopes.len() > MAX_ROUTE_SCOPES) {
        return Err(Error::usage(format!(
            "front = \"http\": method {} needs {} scopes, but an HTTP API route takes at most {MAX_ROUTE_SCOPES}; use fewer scopes or front = \"rest\"",
            m.verb,
            m.scopes.len()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Scope;

    fn spec(verb: &str, scopes: usize) -> MethodSpec {
        MethodSpec {
            verb: verb.into(),
            scopes: (0..scopes)
                .map(|i| Scope::parse(&format!("users/s{i}")).unwrap())
                .collect(),
        }
    }

    fn client(i: usize) -> ClientSpec {
        ClientSpec {
            name: format!("c{i}"),
            scopes: vec![],
            secret: false,
            readers: vec![],
        }
    }

    #[test]
    fn fronts_parse_and_nothing_else_does() {
        assert_eq!(Front::parse("rest").unwrap(), Front::Rest);
        assert_eq!(Front::parse("http").unwrap(), Front::Http);
        for bad in ["", "REST", "HTTP", "websocket", "http "] {
            let e = Front::parse(bad).unwrap_err().to_string();
            assert!(e.contains("`rest`") && e.contains("`http`"), "{bad}: {e}");
        }
        assert_eq!(Front::default(), Front::Rest);
        assert_eq!(Front::Http.as_str(), "http");
    }

    #[test]
    fn the_http_apis_limits_hold_at_their_edges() {
        let fifty: Vec<ClientSpec> = (0..50).map(client).collect();
        assert!(check_http_limits(&fifty, &[spec("ANY", 10)]).is_ok());
        let fifty_one: Vec<ClientSpec> = (0..51).map(client).collect();
        let e = check_http_limits(&fifty_one, &[spec("ANY", 1)]).unwrap_err();
        assert!(e.to_string().contains("51 clients"), "{e}");
        let e = check_http_limits(&fifty, &[spec("GET", 1), spec("POST", 11)]).unwrap_err();
        assert!(e.to_string().contains("method POST needs 11 scopes"), "{e}");
    }
}
