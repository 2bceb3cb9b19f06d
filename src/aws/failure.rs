//! An SDK error reduced to what provision decides on (throttled, in doubt, exists, not
//! found) and the user-facing error it becomes.

use std::time::Duration;

use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use crate::errors::{AwsFailure, Error};

/// An SDK error reduced to what we decide on and report.
#[derive(Debug, Clone)]
pub struct SdkFailure {
    pub code: Option<String>,
    pub message: String,
    /// The HTTP status of AWS's answer, when there was one.
    pub status: Option<u16>,
    /// AWS may have carried the request out: a 5xx answer, a timeout, a connection that
    /// broke. A create in doubt must be looked up before it is sent again.
    pub in_doubt: bool,
    /// The request never got an answer (connection refused, timeout, no credentials...).
    pub transport: bool,
    pub credentials: bool,
    /// How long AWS asked us to wait before sending again (`Retry-After`, in seconds).
    pub retry_after: Option<Duration>,
}

/// Not AWS's answer: the run was interrupted while waiting to send (see `quota`).
const INTERRUPTED: &str = "provision:Interrupted";

impl SdkFailure {
    pub fn interrupted() -> SdkFailure {
        SdkFailure {
            code: Some(INTERRUPTED.into()),
            message: "interrupted before it was sent".into(),
            status: None,
            in_doubt: false,
            transport: false,
            credentials: false,
            retry_after: None,
        }
    }

    /// Not sent: the run lost its lock (see `fence`).
    pub fn fenced(&self) -> bool {
        self.is(crate::fence::FENCED)
    }

    pub fn is(&self, code: &str) -> bool {
        self.code.as_deref() == Some(code)
    }

    /// Refused for rate before anything was done: safe to send again after a pause.
    pub fn throttled(&self) -> bool {
        if self.is("LimitExceededException") {
            // A quota, unless it speaks of rate (see `is_quota_error`).
            return self.message.to_ascii_lowercase().contains("rate");
        }
        self.status == Some(429)
            || matches!(
                self.code.as_deref(),
                Some(
                    "Throttling"
                        | "ThrottlingException"
                        | "TooManyRequestsException"
                        | "RequestLimitExceeded"
                        | "ThrottledException"
                )
            )
    }

    /// The resource to be created is there already (perhaps made by our own earlier
    /// attempt whose answer was lost).
    pub fn already_exists(&self) -> bool {
        matches!(
            self.code.as_deref(),
            Some("EntityAlreadyExists" | "ResourceConflictException" | "ConflictException")
        ) || self.message.to_ascii_lowercase().contains("already exist")
    }

    pub fn access_denied(&self) -> bool {
        matches!(
            self.code.as_deref(),
            Some("AccessDenied" | "AccessDeniedException" | "UnauthorizedOperation")
        )
    }

    pub fn is_not_found(&self) -> bool {
        matches!(
            self.code.as_deref(),
            Some("NoSuchEntity" | "ResourceNotFoundException" | "NotFoundException")
        )
    }

    /// Converts into the user-facing error, naming what we were doing.
    pub fn fail(self, doing: impl Into<String>, operation: &'static str) -> Error {
        if self.is(INTERRUPTED) {
            return Error::Interrupted;
        }
        if self.fenced() {
            return Error::Locked(format!(
                "{} ({} not sent); this run sends nothing more and leaves the state as it was: the run holding the lock now records what it does. Run again once it is done",
                self.message,
                doing.into()
            ));
        }
        let hint = if self.credentials {
            Some("configure AWS credentials (environment, profile, SSO or role); for a local emulator any key works, e.g. AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test".to_string())
        } else if self.transport {
            Some("check the network and --endpoint-url (is the emulator running?)".to_string())
        } else {
            match self.code.as_deref() {
                Some("AccessDenied" | "AccessDeniedException" | "UnauthorizedOperation") => Some(
                    "the caller lacks a permission: see docs/iam-policy.json for the policy provision needs".into(),
                ),
                Some(
                    "UnrecognizedClientException"
                    | "InvalidClientTokenId"
                    | "ExpiredToken"
                    | "ExpiredTokenException"
                    | "SignatureDoesNotMatch",
                ) => Some("the credentials were rejected: refresh or fix them".into()),
                Some("LimitExceededException") => Some(
                    "an AWS quota is reached: delete unused resources or ask AWS for a higher limit".into(),
                ),
                _ => None,
            }
        };
        let failure = AwsFailure {
            doing: doing.into(),
            operation,
            code: self.code,
            message: self.message,
            hint,
        };
        if self.credentials {
            // Missing credentials are a set-up problem of the user's, like bad input.
            Error::Usage(failure.to_string())
        } else {
            Error::Aws(failure)
        }
    }
}

/// An error and its causes on one line, without the debug dump.
fn causes(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(err);
    while let Some(e) = next {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = e.source();
    }
    parts.join(": ")
}

/// `.sdk()` on any SDK call's result.
pub trait SdkResultExt<T> {
    fn sdk(self) -> std::result::Result<T, SdkFailure>;
}

impl<T, E> SdkResultExt<T> for std::result::Result<T, SdkError<E, HttpResponse>>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    fn sdk(self) -> std::result::Result<T, SdkFailure> {
        self.map_err(|err| {
            let chain = causes(&err);
            let credentials = chain.contains("credentials")
                && matches!(
                    err,
                    SdkError::DispatchFailure(_) | SdkError::ConstructionFailure(_)
                );
            if let Some(at) = chain.find(crate::fence::FENCED) {
                let why = chain[at + crate::fence::FENCED.len()..].trim_start_matches(": ");
                return SdkFailure {
                    code: Some(crate::fence::FENCED.into()),
                    message: why.to_string(),
                    status: None,
                    in_doubt: false,
                    transport: false,
                    credentials: false,
                    retry_after: None,
                };
            }
            match &err {
                SdkError::ServiceError(se) => {
                    let e = se.err();
                    let status = se.raw().status().as_u16();
                    SdkFailure {
                        code: e.code().map(str::to_string),
                        message: e
                            .message()
                            .map(str::to_string)
                            .unwrap_or_else(|| format!("HTTP {status}")),
                        status: Some(status),
                        in_doubt: status >= 500,
                        transport: false,
                        credentials: false,
                        retry_after: se
                            .raw()
                            .headers()
                            .get("retry-after")
                            .and_then(|v| v.trim().parse::<u64>().ok())
                            .map(Duration::from_secs),
                    }
                }
                _ if credentials => SdkFailure {
                    code: None,
                    message: "no AWS credentials found (looked in the environment, the profile files, web identity, the container and instance metadata)".into(),
                    status: None,
                    in_doubt: false,
                    transport: false,
                    credentials,
                    retry_after: None,
                },
                // The request may have reached AWS before the connection failed.
                SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => SdkFailure {
                    code: None,
                    message: chain,
                    status: None,
                    in_doubt: true,
                    transport: true,
                    credentials,
                    retry_after: None,
                },
                SdkError::ResponseError(r) => SdkFailure {
                    code: None,
                    message: chain.clone(),
                    status: Some(r.raw().status().as_u16()),
                    in_doubt: true,
                    transport: false,
                    credentials,
                    retry_after: None,
                },
                _ => SdkFailure {
                    code: None,
                    message: chain,
                    status: None,
                    in_doubt: false,
                    transport: false,
                    credentials,
                    retry_after: None,
                },
            }
        })
    }
}
