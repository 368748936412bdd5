//! API errors as the real server reports them: a `metav1.Status` body with the
//! reason, code and details clients (kube-rs, kubectl) key on.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Status, StatusCause, StatusDetails};

use super::validation::FieldError;

#[derive(Debug, Clone)]
pub(crate) struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    /// Boxed: errors travel in every Result, and most have no details.
    pub details: Option<Box<StatusDetails>>,
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    fn with_details(mut self, name: &str, kind: &str) -> ApiError {
        self.details = Some(Box::new(StatusDetails {
            name: (!name.is_empty()).then(|| name.to_string()),
            kind: Some(kind.to_string()),
            ..Default::default()
        }));
        self
    }

    /// `resource` is the plural ("pods"), as the real server puts it in details.kind.
    pub fn not_found(resource: &str, name: &str) -> ApiError {
        ApiError::new(404, "NotFound", format!("{resource} \"{name}\" not found"))
            .with_details(name, resource)
    }

    pub fn already_exists(resource: &str, name: &str) -> ApiError {
        ApiError::new(
            409,
            "AlreadyExists",
            format!("{resource} \"{name}\" already exists"),
        )
        .with_details(name, resource)
    }

    pub fn conflict(resource: &str, name: &str, why: &str) -> ApiError {
        ApiError::new(
            409,
            "Conflict",
            format!("Operation cannot be fulfilled on {resource} \"{name}\": {why}"),
        )
        .with_details(name, resource)
    }

    /// `kind` is the singular kind ("Pod"): Invalid errors name the kind, not the resource.
    pub fn invalid(kind: &str, name: &str, errors: &[FieldError]) -> ApiError {
        let list = match errors {
            [one] => one.to_string(),
            many => format!(
                "[{}]",
                many.iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        let mut e = ApiError::new(
            422,
            "Invalid",
            format!("{kind} \"{name}\" is invalid: {list}"),
        )
        .with_details(name, kind);
        if let Some(d) = e.details.as_mut() {
            d.causes = Some(
                errors
                    .iter()
                    .map(|f| StatusCause {
                        reason: Some(f.reason().to_string()),
                        message: Some(f.body()),
                        field: Some(f.field.clone()),
                    })
                    .collect(),
            );
        }
        e
    }

    /// ResourceQuota admission's refusal, in the API server's words.
    pub fn exceeded_quota(pod: &str, quota: &str, used: usize, limit: usize) -> ApiError {
        ApiError::new(
            403,
            "Forbidden",
            format!(
                "pods \"{pod}\" is forbidden: exceeded quota: {quota}, requested: count/pods=1, used: count/pods={used}, limited: count/pods={limit}"
            ),
        )
        .with_details(pod, "pods")
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "BadRequest", message)
    }

    /// RBAC's wording, so clients that parse it (and humans) see the familiar message.
    pub fn forbidden(resource: &str, name: Option<&str>, verb: &str, namespace: &str) -> ApiError {
        let (group_resource, sub) = match resource.split_once('/') {
            Some((r, s)) => (r, Some(s)),
            None => (resource, None),
        };
        let subject = match name {
            Some(n) => format!("{group_resource} \"{n}\""),
            None => group_resource.to_string(),
        };
        let what = match sub {
            Some(s) => format!("{group_resource}/{s}"),
            None => group_resource.to_string(),
        };
        let scope = if namespace.is_empty() {
            "at the cluster scope".to_string()
        } else {
            format!("in the namespace \"{namespace}\"")
        };
        ApiError::new(
            403,
            "Forbidden",
            format!("{subject} is forbidden: User \"fake\" cannot {verb} resource \"{what}\" in API group \"\" {scope}"),
        )
        .with_details(name.unwrap_or(""), group_resource)
    }

    pub fn method_not_allowed() -> ApiError {
        ApiError::new(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        )
    }

    pub fn unsupported_media_type(content_type: &str, accepted: &str) -> ApiError {
        ApiError::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format ({content_type:?}) - accepted media types include: {accepted}"
            ),
        )
    }

    pub fn route_not_found() -> ApiError {
        ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
    }

    pub fn gone(message: impl Into<String>) -> ApiError {
        ApiError::new(410, "Expired", message)
    }

    /// What `fail_next` answers: the reason and message the real server uses for that code.
    pub fn injected(code: u16) -> ApiError {
        let (reason, message) = match code {
            400 => (
                "BadRequest",
                "the server rejected our request for an unknown reason (injected by the fake API server)",
            ),
            401 => ("Unauthorized", "Unauthorized"),
            403 => ("Forbidden", "forbidden (injected by the fake API server)"),
            404 => (
                "NotFound",
                "the server could not find the requested resource",
            ),
            409 => (
                "Conflict",
                "the object has been modified; please apply your changes to the latest version and try again",
            ),
            410 => ("Expired", "too old resource version"),
            429 => (
                "TooManyRequests",
                "the server has received too many requests and has asked us to try again later",
            ),
            500 => (
                "InternalError",
                "Internal error occurred: injected by the fake API server",
            ),
            503 => (
                "ServiceUnavailable",
                "the server is currently unable to handle the request",
            ),
            504 => (
                "Timeout",
                "the server was unable to return a response in the time allotted, but may still be processing the request",
            ),
            _ => ("", "injected by the fake API server"),
        };
        let mut e = ApiError::new(code, reason, message);
        if code == 429 {
            e.details = Some(Box::new(StatusDetails {
                retry_after_seconds: Some(1),
                ..Default::default()
            }));
        }
        e
    }

    pub fn to_status(&self) -> Status {
        Status {
            code: Some(self.code.into()),
            details: self.details.as_deref().cloned(),
            message: Some(self.message.clone()),
            reason: (!self.reason.is_empty()).then(|| self.reason.to_string()),
            status: Some("Failure".into()),
            ..Default::default()
        }
    }
}

/// The body of a successful delete for resources that do not return the object.
pub(crate) fn success(name: &str, kind: &str, uid: Option<String>) -> Status {
    Status {
        status: Some("Success".into()),
        details: Some(StatusDetails {
            name: Some(name.into()),
            kind: Some(kind.into()),
            uid,
            ..Default::default()
        }),
        ..Default::default()
    }
}
