//! `GET /openapi.json`: the OpenAPI 3.1 document, generated from the route
//! table (every route, its path parameters, success status and credentials)
//! and from the code's request and error types (`utoipa::ToSchema`). Nothing
//! here is hand-written JSON, so the document cannot drift from the routes.

use utoipa::openapi::{
    ComponentsBuilder, ContentBuilder, HttpMethod, InfoBuilder, OpenApi, OpenApiBuilder, PathsBuilder, Ref,
    Required, ResponseBuilder,
    path::{OperationBuilder, ParameterBuilder, ParameterIn},
    request_body::RequestBodyBuilder,
    schema::{ObjectBuilder, Schema, Type},
    security::{ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityRequirement, SecurityScheme},
};

use super::router::{Route, Surface};

fn http_method(m: &http::Method) -> Option<HttpMethod> {
    Some(match *m {
        http::Method::GET => HttpMethod::Get,
        http::Method::POST => HttpMethod::Post,
        http::Method::PUT => HttpMethod::Put,
        http::Method::PATCH => HttpMethod::Patch,
        http::Method::DELETE => HttpMethod::Delete,
        _ => return None,
    })
}

fn string_schema() -> Schema {
    ObjectBuilder::new().schema_type(Type::String).into()
}

fn header(name: &str, required: bool, description: &str) -> utoipa::openapi::path::Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Header)
        .required(if required { Required::True } else { Required::False })
        .description(Some(description))
        .schema(Some(string_schema()))
        .build()
}

fn error_response(description: &str) -> utoipa::openapi::Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new().schema(Some(Ref::from_schema_name("Error"))).build(),
        )
        .build()
}

pub fn document(routes: &[Route]) -> OpenApi {
    let mut schemas = Vec::new();
    <super::errors::ErrorBody as utoipa::ToSchema>::schemas(&mut schemas);
    schemas.push(("Error".to_owned(), <super::errors::ErrorBody as utoipa::PartialSchema>::schema()));
    let mut paths = PathsBuilder::new();
    for route in routes {
        let Some(method) = http_method(&route.method) else { continue };
        let surface = Surface::of_path(route.pattern);
        let op = operation(route, surface);
        let op = with_credentials(op, route, surface);
        let op = with_request_body(op, route, &mut schemas);
        let op = with_responses(op, route);
        paths = paths.path(route.pattern, utoipa::openapi::PathItem::new(method, op));
    }
    OpenApiBuilder::new()
        .info(InfoBuilder::new().title("Pelago Card").version(env!("CARGO_PKG_VERSION")).build())
        .paths(paths.build())
        .components(Some(components(schemas)))
        .build()
}

/// The operation's id, summary, tag and path parameters.
fn operation(route: &Route, surface: Surface) -> OperationBuilder {
    let mut op = OperationBuilder::new()
        .operation_id(Some(format!("{} {}", route.method, route.pattern)))
        .summary(Some(format!("{} {}", route.method, route.pattern)))
        .tag(match surface {
            Surface::Merchant => "merchant",
            Surface::Operator if route.pattern.starts_with("/debug/") => "debug",
            Surface::Operator => "operator",
            Surface::Polyflow => "polyflow",
            Surface::Callback => "callbacks",
            Surface::Public => "service",
        });
    for segment in route.pattern.split('/') {
        if let Some(name) = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            op = op.parameter(
                ParameterBuilder::new()
                    .name(name)
                    .parameter_in(ParameterIn::Path)
                    .required(Required::True)
                    .schema(Some(string_schema())),
            );
        }
    }
    op
}

/// The credentials of the route's surface, and `Idempotency-Key` where it applies.
fn with_credentials(mut op: OperationBuilder, route: &Route, surface: Surface) -> OperationBuilder {
    match surface {
        Surface::Merchant => {
            op = op
                .parameter(header("X-Pelago-Key-Id", true, "API key id, key_..."))
                .parameter(header("X-Pelago-Timestamp", true, "Unix seconds; within 300 s of now"))
                .parameter(header("X-Pelago-Nonce", true, "16..64 of [A-Za-z0-9_-], new per request"))
                .parameter(header("X-Pelago-Signature", true, "v1= + hex HMAC-SHA256 of the string-to-sign"))
                .security(SecurityRequirement::new("pelagoSignature", Vec::<String>::new()));
        }
        Surface::Operator => {
            op = op.security(SecurityRequirement::new("adminToken", Vec::<String>::new()));
        }
        Surface::Polyflow => {
            op = op.security(SecurityRequirement::new("polyflowToken", Vec::<String>::new()));
        }
        Surface::Callback | Surface::Public => {}
    }
    let mutating = matches!(
        route.method,
        http::Method::POST | http::Method::PUT | http::Method::PATCH | http::Method::DELETE
    );
    if mutating
        && matches!(surface, Surface::Merchant | Surface::Operator)
        && !route.pattern.starts_with("/debug/")
    {
        op = op.parameter(header(
            "Idempotency-Key",
            false,
            "1..255 printable ASCII; replays the stored answer",
        ));
    }
    op
}

/// The JSON body's schema, or the raw body's media types.
fn with_request_body(
    mut op: OperationBuilder,
    route: &Route,
    schemas: &mut Vec<(String, utoipa::openapi::RefOr<Schema>)>,
) -> OperationBuilder {
    if let Some(body) = route.body {
        let name = body(schemas);
        op = op.request_body(Some(
            RequestBodyBuilder::new()
                .required(Some(Required::True))
                .content(
                    "application/json",
                    ContentBuilder::new().schema(Some(Ref::from_schema_name(name))).build(),
                )
                .build(),
        ));
    }
    if !route.raw_body.is_empty() {
        let mut raw = RequestBodyBuilder::new().required(Some(Required::True));
        for media_type in route.raw_body {
            let binary = ObjectBuilder::new()
                .schema_type(Type::String)
                .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
                    utoipa::openapi::KnownFormat::Binary,
                )))
                .build();
            raw = raw.content(*media_type, ContentBuilder::new().schema(Some(Schema::from(binary))).build());
        }
        op = op.request_body(Some(raw.build()));
    }
    op
}

/// The success statuses (202 where the upstream's outcome may be unknown) and API.md §1's errors.
fn with_responses(mut op: OperationBuilder, route: &Route) -> OperationBuilder {
    let too_large = super::errors::ApiError::too_large_for(route.max_body_bytes).message().to_owned();
    let success = if route.success == 204 {
        ResponseBuilder::new().description("done").build()
    } else if !route.produces.is_empty() {
        let file = || {
            let binary = ObjectBuilder::new().schema_type(utoipa::openapi::schema::Type::String).format(
                Some(utoipa::openapi::SchemaFormat::KnownFormat(utoipa::openapi::KnownFormat::Binary)),
            );
            ContentBuilder::new().schema(Some(Schema::from(binary))).build()
        };
        route
            .produces
            .iter()
            .fold(ResponseBuilder::new().description("the file"), |r, media| r.content(*media, file()))
            .build()
    } else {
        let content_type = if route.pattern == "/metrics" { "text/plain" } else { "application/json" };
        ResponseBuilder::new()
            .description("success")
            .content(
                content_type,
                ContentBuilder::new().schema(Some(Schema::from(ObjectBuilder::new()))).build(),
            )
            .build()
    };
    for status in route.also {
        let what = match status {
            202 => "accepted: the upstream's outcome is not known yet; the final state follows by webhook",
            // cancel-or-refund: 200 when it canceled, 201 when it created a refund.
            _ => "also a success (see the operation's description)",
        };
        op = op.response(status.to_string(), ResponseBuilder::new().description(what).build());
    }
    op = op.response(route.success.to_string(), success);
    for (status, what) in [
        ("400", "invalid request"),
        ("401", "authentication failed"),
        ("402", "insufficient funds"),
        ("404", "not found"),
        ("405", "method not allowed"),
        ("409", "invalid state or idempotency key in progress"),
        ("413", too_large.as_str()),
        ("422", "idempotency key reused with another request"),
        ("429", "rate limited"),
        ("503", "unavailable; retry with the same Idempotency-Key"),
    ] {
        op = op.response(status, error_response(what));
    }
    op
}

fn components(schemas: Vec<(String, utoipa::openapi::RefOr<Schema>)>) -> utoipa::openapi::Components {
    let mut components = ComponentsBuilder::new()
        .security_scheme(
            "pelagoSignature",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-Pelago-Signature",
                "HMAC-SHA256 request signature; see SECURITY.md (with X-Pelago-Key-Id, -Timestamp, -Nonce)",
            ))),
        )
        .security_scheme("adminToken", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)))
        .security_scheme("polyflowToken", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
    for (name, schema) in schemas {
        components = components.schema(name, schema);
    }
    components.build()
}
