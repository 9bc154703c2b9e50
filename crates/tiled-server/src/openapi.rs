//! The OpenAPI 3.1 document (`/openapi.json`, `/api/v1/openapi.json`) and
//! Swagger UI (`/docs/`, `/api/v1/docs/`).
//!
//! Routing is done by hand ([`crate::dispatch`]), so no handler carries an
//! annotation to generate the document from. Instead [`ROUTES`] is the one
//! table of every route (method, path template, summary, parameters, body,
//! responses, scopes), and [`document`] builds the document from it with
//! utoipa's builder types. Tests keep the table and the router together:
//! `tests/openapi.rs` sends a request for every row to the real app and
//! checks that it reaches a handler, and probes every method of every
//! route the dispatcher knows to check that each one answered is a row.
//!
//! Media types of data responses come from the serializer registry and the
//! filter parameters from one table checked against the query parser, so
//! neither is written twice.
//!
//! Swagger UI is `utoipa-swagger-ui` with its `vendored` feature: its
//! JavaScript and CSS are compiled into the binary and served by us, and
//! its validator badge (which would call an outside service) is off, so
//! the page loads with no request leaving the machine. The page fetches
//! the document by a relative URL (`../openapi.json`), so it works behind
//! a proxy that mounts the server under a prefix.
//!
//! Both the page and the document are public, as upstream's are, even on
//! a private server: they are routes of their own, outside the
//! authenticated dispatcher.

use std::sync::OnceLock;

use axum::Router;
use axum::http::{Method, header};
use axum::routing::get;
use serde_json::{Value, json};
use tiled_model::StructureFamily;
use utoipa::openapi::path::{
    HttpMethod, Operation, OperationBuilder, Parameter, ParameterBuilder, ParameterIn,
    ParameterStyle,
};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
};
use utoipa::openapi::tag::TagBuilder;
use utoipa::openapi::{
    ArrayBuilder, ComponentsBuilder, ContentBuilder, InfoBuilder, LicenseBuilder, ObjectBuilder,
    OpenApi, OpenApiBuilder, PathItem, PathsBuilder, Ref, Required, ResponseBuilder,
    ResponsesBuilder, Schema, Type,
};

/// An HTTP method of a documented route. `HEAD` is answered as `GET` is
/// (outside `/api/v1/auth`) and is not listed separately, as FastAPI does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum M {
    Get,
    Post,
    Put,
    Patch,
    Delete,
}

impl M {
    /// The method as axum knows it.
    #[must_use]
    pub fn method(self) -> Method {
        match self {
            M::Get => Method::GET,
            M::Post => Method::POST,
            M::Put => Method::PUT,
            M::Patch => Method::PATCH,
            M::Delete => Method::DELETE,
        }
    }

    /// The key of the operation in an OpenAPI path item.
    #[must_use]
    pub fn key(self) -> &'static str {
        match self {
            M::Get => "get",
            M::Post => "post",
            M::Put => "put",
            M::Patch => "patch",
            M::Delete => "delete",
        }
    }

    fn http(self) -> HttpMethod {
        match self {
            M::Get => HttpMethod::Get,
            M::Post => HttpMethod::Post,
            M::Put => HttpMethod::Put,
            M::Patch => HttpMethod::Patch,
            M::Delete => HttpMethod::Delete,
        }
    }
}

/// The JSON type of a parameter or body field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Str,
    Int,
    Num,
    Bool,
    /// A list of strings (repeatable as a query parameter).
    Strings,
    /// Any JSON object.
    Object,
    /// Any JSON list.
    List,
    /// Any JSON value.
    Any,
}

impl Kind {
    /// An example given as text, as a value of this kind.
    fn example(self, text: &str) -> Value {
        match self {
            Kind::Int => text
                .parse::<u64>()
                .map_or_else(|_| json!(text), |n| json!(n)),
            Kind::Bool => text
                .parse::<bool>()
                .map_or_else(|_| json!(text), |b| json!(b)),
            Kind::Strings => json!([text]),
            _ => json!(text),
        }
    }

    fn schema(self) -> Schema {
        let of = |t: Type| Schema::Object(ObjectBuilder::new().schema_type(t).build());
        match self {
            Kind::Str => of(Type::String),
            Kind::Int => Schema::Object(
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(0))
                    .build(),
            ),
            Kind::Num => of(Type::Number),
            Kind::Bool => of(Type::Boolean),
            Kind::Strings => Schema::Array(
                ArrayBuilder::new()
                    .items(ObjectBuilder::new().schema_type(Type::String))
                    .build(),
            ),
            Kind::Object => of(Type::Object),
            Kind::List => Schema::Array(ArrayBuilder::new().build()),
            Kind::Any => Schema::Object(ObjectBuilder::new().build()),
        }
    }
}

/// Where a parameter goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum In {
    Path,
    Query,
}

/// One path or query parameter.
#[derive(Clone, Copy, Debug)]
pub struct Param {
    pub name: &'static str,
    pub location: In,
    pub required: bool,
    pub kind: Kind,
    pub description: &'static str,
    /// A value that works on the demo tree (`tiled serve demo`), as text;
    /// the tests send it.
    pub example: Option<&'static str>,
}

const fn query(name: &'static str, kind: Kind, description: &'static str) -> Param {
    Param {
        name,
        location: In::Query,
        required: false,
        kind,
        description,
        example: None,
    }
}

const fn required(
    name: &'static str,
    kind: Kind,
    description: &'static str,
    example: &'static str,
) -> Param {
    Param {
        name,
        location: In::Query,
        required: true,
        kind,
        description,
        example: Some(example),
    }
}

const fn segment(name: &'static str, description: &'static str, example: &'static str) -> Param {
    Param {
        name,
        location: In::Path,
        required: true,
        kind: Kind::Str,
        description,
        example: Some(example),
    }
}

const NODE_PATH_DOC: &str = "The node's keys from the root, joined by `/` (so it may \
     contain `/`; empty for the root, as in `/api/v1/metadata/`). Empty segments and \
     a trailing `/` are ignored.";

/// The `{path}` of a node route, with a demo example.
const fn node(example: &'static str) -> Param {
    segment("path", NODE_PATH_DOC, example)
}

const FIELDS: Param = query(
    "fields",
    Kind::Strings,
    "Attributes to include (repeatable or comma-separated): `structure_family`, \
     `structure`, `count`, `metadata`, `specs`, `sorting`. Absent: all of them; \
     `fields=` alone: keys only; `fields=count` (search): the count only.",
);
const SELECT_METADATA: Param = query(
    "select_metadata",
    Kind::Str,
    "A JMESPath expression; the metadata returned is its result.",
);
const MAX_DEPTH: Param = query("max_depth", Kind::Int, "Nesting depth, 0 to 5.");
const OMIT_LINKS: Param = query(
    "omit_links",
    Kind::Bool,
    "Leave out `links` (default false).",
);
const INCLUDE_DATA_SOURCES: Param = query(
    "include_data_sources",
    Kind::Bool,
    "Include each node's data sources and assets (default false).",
);
const ROOT_PATH: Param = query("root_path", Kind::Str, "Echoed in `meta.root_path`.");
const PAGE_OFFSET: Param = query(
    "page[offset]",
    Kind::Int,
    "Index of the first item (default 0).",
);
const PAGE_LIMIT: Param = query(
    "page[limit]",
    Kind::Int,
    "Items per page (default 100; larger values are clamped to 300).",
);
const PAGE_CURSOR: Param = query(
    "page[cursor]",
    Kind::Int,
    "Keyset paging: the cursor from a previous page's `links.next` (not with `page[offset]`).",
);
const SORT: Param = query(
    "sort",
    Kind::Strings,
    "Metadata keys to sort by (repeatable or comma-separated), `-key` descending; a \
     bare `-`/`+` for the default order, last.",
);
const FORMAT: Param = query(
    "format",
    Kind::Str,
    "Media type or alias of the response (overrides `Accept`); comma-separated \
     alternatives in order of preference. See `formats` and `aliases` in `GET /api/v1/`.",
);
const FILENAME: Param = query(
    "filename",
    Kind::Str,
    "Answer with `Content-Disposition: attachment` and this file name.",
);
const SLICE: Param = query(
    "slice",
    Kind::Str,
    "NumPy-style slice, per dimension, comma-separated: `0:10,::2,5` (applied within \
     the block for block reads).",
);
const EXPECTED_SHAPE: Param = query(
    "expected_shape",
    Kind::Str,
    "Refuse (422) unless the result has this shape: `10,20`, or `scalar`.",
);
const COLUMN: Param = query("column", Kind::Strings, "Columns to read (repeatable).");
const FIELD_COLUMN: Param = query(
    "field",
    Kind::Strings,
    "Deprecated alias of `column` (not both).",
);
const FIELD_CHILD: Param = query(
    "field",
    Kind::Strings,
    "Children to export (repeatable); the Arrow format puts 1-d arrays as columns.",
);
const PERSIST: Param = query(
    "persist",
    Kind::Bool,
    "false: validate the body and drop it (default true).",
);
const DROP_REVISION: Param = query(
    "drop_revision",
    Kind::Bool,
    "Replace without keeping the old metadata as a revision (default false).",
);
const FIRST_EIGHT: Param = required(
    "first_eight",
    Kind::Str,
    "The first eight characters of the API key to revoke.",
    "abcdef12",
);
const PROVIDER: Param = segment("provider", "A login provider of this server.", "toy");
const PRINCIPAL: Param = segment(
    "uuid",
    "A principal's UUID.",
    "00000000-0000-4000-8000-000000000000",
);

/// The `filter[NAME][condition][FIELD]` query parameters of every query
/// type, with example values, as `tiled_model::Query::parse_params`
/// reads them. All fields are repeatable: the i-th values of a type's
/// fields make its i-th filter. The `structure_family` and
/// `access_tags_filter` types come last.
pub const FILTERS: &[(&str, &[(&str, &str)])] = &[
    ("fulltext", &[("text", "red")]),
    ("lookup", &[("key", "x1")]),
    ("keys_filter", &[("keys", "[\"x1\", \"x2\"]")]),
    (
        "regex",
        &[
            ("key", "color"),
            ("pattern", "^r"),
            ("case_sensitive", "true"),
        ],
    ),
    ("eq", &[("key", "color"), ("value", "\"red\"")]),
    ("noteq", &[("key", "color"), ("value", "\"red\"")]),
    (
        "comparison",
        &[("operator", "gt"), ("key", "i"), ("value", "5")],
    ),
    ("contains", &[("key", "tags"), ("value", "\"fizz\"")]),
    ("in", &[("key", "color"), ("value", "[\"red\", \"blue\"]")]),
    (
        "notin",
        &[("key", "color"), ("value", "[\"red\", \"blue\"]")],
    ),
    ("keypresent", &[("key", "optional"), ("exists", "true")]),
    ("like", &[("key", "name"), ("pattern", "item 1%")]),
    (
        "specs",
        &[("include", "[\"quad\"]"), ("exclude", "[\"pent\"]")],
    ),
    ("access_tags_filter", &[("tags", "[\"public\"]")]),
    ("structure_family", &[("value", "array")]),
];

/// What a route needs from the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Security {
    /// Nothing: public even on private servers.
    Public,
    /// Credentials, or none when the server allows anonymous reading.
    Optional,
    /// Credentials.
    Required,
}

/// A request body.
#[derive(Clone, Copy, Debug)]
pub struct Body {
    pub required: bool,
    pub description: &'static str,
    /// Media types accepted, with the shape of the body.
    pub content: &'static [(&'static str, Shape)],
}

/// A JSON or form field of a body.
#[derive(Clone, Copy, Debug)]
pub struct Field {
    pub name: &'static str,
    pub kind: Kind,
    pub required: bool,
    pub description: &'static str,
}

const fn field(name: &'static str, kind: Kind, description: &'static str) -> Field {
    Field {
        name,
        kind,
        required: false,
        description,
    }
}

const fn must(name: &'static str, kind: Kind, description: &'static str) -> Field {
    Field {
        name,
        kind,
        required: true,
        description,
    }
}

/// The shape of a body.
#[derive(Clone, Copy, Debug)]
pub enum Shape {
    /// Bytes (arrays, Arrow IPC).
    Binary,
    /// A JSON list of strings.
    Strings,
    /// An object (JSON or form) with these fields.
    Fields(&'static [Field]),
}

/// What a successful answer carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reply {
    /// A JSON document, or msgpack with `Accept: application/x-msgpack`.
    Document,
    /// JSON only.
    Json,
    /// Data of a structure family, in one of the registry's media types.
    Data(StructureFamily),
    /// An HTML page.
    Html,
    /// Text of this media type.
    Text(&'static str),
    /// Any file (Swagger UI's scripts, styles and images).
    File,
    /// `204 No Content`.
    NoContent,
    /// A redirect (status, where to).
    Redirect(u16, &'static str),
}

/// One documented route.
#[derive(Clone, Copy, Debug)]
pub struct Route {
    pub method: M,
    /// The OpenAPI path template.
    pub path: &'static str,
    /// Its `route` label in `/api/v1/metrics`.
    pub label: &'static str,
    pub tag: &'static str,
    pub summary: &'static str,
    pub description: &'static str,
    pub params: &'static [Param],
    /// Whether the `filter[...]` parameters apply.
    pub filters: bool,
    pub body: Option<Body>,
    pub reply: Reply,
    /// Error statuses worth knowing for this route.
    pub errors: &'static [u16],
    pub security: Security,
    /// Scopes a principal needs (multi-user servers).
    pub scopes: &'static [&'static str],
}

impl Route {
    /// The `operationId`: the method and the path, each character but
    /// letters and digits made `_` (braces dropped), as FastAPI derives
    /// them: `get_api_v1_metadata_path`, `get_docs_` for `/docs/`.
    #[must_use]
    pub fn operation_id(&self) -> String {
        let path: String = self
            .path
            .chars()
            .filter(|c| !matches!(c, '{' | '}'))
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        format!("{}_{}", self.method.key(), path.trim_start_matches('_'))
    }
}

/// A route with the fields most rows leave empty.
const R: Route = Route {
    method: M::Get,
    path: "",
    label: "",
    tag: "",
    summary: "",
    description: "",
    params: &[],
    filters: false,
    body: None,
    reply: Reply::Document,
    errors: &[],
    security: Security::Optional,
    scopes: &[],
};

const READ_ERRORS: &[u16] = &[400, 401, 403, 404, 422];
const DATA_ERRORS: &[u16] = &[400, 401, 403, 404, 406, 422];
const WRITE_ERRORS: &[u16] = &[400, 401, 403, 404, 405, 409, 413, 422];
const AUTH_ERRORS: &[u16] = &[401, 403, 404, 422];

const CREATE_FIELDS: &[Field] = &[
    must(
        "structure_family",
        Kind::Str,
        "`container`, `array`, `table`, `sparse`, ...",
    ),
    field("id", Kind::Str, "The new key (a random one if absent)."),
    field("metadata", Kind::Object, "The node's metadata."),
    field(
        "specs",
        Kind::List,
        "Specs: names or `{name, version}` objects.",
    ),
    field(
        "data_sources",
        Kind::List,
        "Exactly one for nodes with data (its `structure`, optional `mimetype`); none for containers.",
    ),
    field(
        "access_tags",
        Kind::Strings,
        "Access tags (multi-user servers with a policy).",
    ),
];
const REGISTER_FIELDS: &[Field] = &[
    must("structure_family", Kind::Str, "The family of the data."),
    field("id", Kind::Str, "The new key (a random one if absent)."),
    field("metadata", Kind::Object, "The node's metadata."),
    field(
        "specs",
        Kind::List,
        "Specs: names or `{name, version}` objects.",
    ),
    must(
        "data_sources",
        Kind::List,
        "One data source whose `assets` point at files under the server's readable storage.",
    ),
    field("access_tags", Kind::Strings, "Access tags."),
];
const PUT_METADATA_FIELDS: &[Field] = &[
    field(
        "metadata",
        Kind::Object,
        "The new metadata (absent: unchanged).",
    ),
    field("specs", Kind::List, "The new specs (absent: unchanged)."),
];
const PATCH_METADATA_FIELDS: &[Field] = &[
    field("metadata", Kind::Any, "A patch of the metadata."),
    field("specs", Kind::Any, "A patch of the specs."),
    must(
        "content_type",
        Kind::Str,
        "The patch format: `application/json-patch+json` (RFC 6902) or \
         `application/merge-patch+json` (RFC 7386).",
    ),
];
const API_KEY_FIELDS: &[Field] = &[
    field(
        "scopes",
        Kind::Strings,
        "Scopes of the key, within the principal's (absent: `inherit`).",
    ),
    field(
        "access_tags",
        Kind::Strings,
        "Restrict the key to these access tags.",
    ),
    field(
        "expires_in",
        Kind::Num,
        "Lifetime in seconds (absent: no expiry).",
    ),
    field("note", Kind::Str, "A note to tell keys apart."),
];
const PASSWORD_FIELDS: &[Field] = &[
    must("username", Kind::Str, "The user name."),
    must("password", Kind::Str, "The password."),
];
const DEVICE_POLL_FIELDS: &[Field] = &[
    must(
        "device_code",
        Kind::Str,
        "The `device_code` from `authorize`.",
    ),
    field(
        "grant_type",
        Kind::Str,
        "`urn:ietf:params:oauth:grant-type:device_code`.",
    ),
];
const DEVICE_APPROVE_FIELDS: &[Field] = &[
    must("user_code", Kind::Str, "The code shown on the terminal."),
    field("username", Kind::Str, "The user name (password providers)."),
    field("password", Kind::Str, "The password (password providers)."),
    field(
        "code",
        Kind::Str,
        "The OpenID Connect provider's authorization code (OIDC providers; also accepted \
         in the query).",
    ),
];
const REFRESH_FIELDS: &[Field] = &[must(
    "refresh_token",
    Kind::Str,
    "The session's refresh token.",
)];

const JSON: &str = "application/json";
const FORM: &str = "application/x-www-form-urlencoded";
const BYTES: &str = "application/octet-stream";
const ARROW: &str = tiled_formats::ARROW_FILE;

const COLUMNS_BODY: Option<Body> = Some(Body {
    required: false,
    description: "Columns to read, as a JSON list (added to `column=`).",
    content: &[(JSON, Shape::Strings)],
});
const ARRAY_BODY: Option<Body> = Some(Body {
    required: true,
    description: "C-order bytes of the array's data type.",
    content: &[(BYTES, Shape::Binary)],
});
const TABLE_BODY: Option<Body> = Some(Body {
    required: true,
    description: "The rows, as Arrow IPC with the table's columns.",
    content: &[(ARROW, Shape::Binary), (BYTES, Shape::Binary)],
});
const API_KEY_BODY: Option<Body> = Some(Body {
    required: false,
    description: "The new key's scopes, tags, lifetime and note.",
    content: &[(JSON, Shape::Fields(API_KEY_FIELDS))],
});
const REFRESH_BODY: Option<Body> = Some(Body {
    required: true,
    description: "The refresh token.",
    content: &[(JSON, Shape::Fields(REFRESH_FIELDS))],
});

const SEARCH_PARAMS: &[Param] = &[
    node("many"),
    PAGE_OFFSET,
    PAGE_LIMIT,
    PAGE_CURSOR,
    SORT,
    FIELDS,
    SELECT_METADATA,
    MAX_DEPTH,
    OMIT_LINKS,
    INCLUDE_DATA_SOURCES,
];
const ARRAY_PATH: Param = node("nested/images/tiny_image");
const TABLE_PATH: Param = node("tables/short_table");
const TABLE_FULL_PARAMS: &[Param] = &[TABLE_PATH, FORMAT, COLUMN, FIELD_COLUMN, FILENAME];
const TABLE_PARTITION_PARAMS: &[Param] = &[
    TABLE_PATH,
    required("partition", Kind::Int, "The partition's index.", "0"),
    FORMAT,
    COLUMN,
    FIELD_COLUMN,
    FILENAME,
];
const CONTAINER_FULL_PARAMS: &[Param] = &[node("scalars"), FORMAT, FIELD_CHILD, FILENAME];
const WRITE_PARTITION_PARAMS: &[Param] = &[
    TABLE_PATH,
    required("partition", Kind::Int, "The partition's index.", "0"),
    PERSIST,
];

/// Every route this server answers, but for `HEAD` (wherever `GET` is),
/// the redirect of `/api/v1` to `/api/v1/`, the deprecated aliases
/// `/api/v1/dataframe/...` of `/api/v1/table/...`, and the same API routes
/// without the `/api/v1` prefix (`/metadata/...`, `/array/full/...`: the
/// seed's URL style).
pub const ROUTES: &[Route] = &[
    // ---- about and operations ----
    Route {
        path: "/api/v1/",
        label: "about",
        tag: "about",
        summary: "What this server offers",
        description: "API version, formats and aliases per structure family, query types, \
                      authentication providers and links.",
        security: Security::Public,
        ..R
    },
    Route {
        path: "/healthz",
        label: "healthz",
        tag: "operations",
        summary: "Readiness probe",
        description: "`{\"status\": \"ready\"}` once the server answers.",
        reply: Reply::Json,
        security: Security::Public,
        ..R
    },
    Route {
        path: "/api/v1/metrics",
        label: "metrics",
        tag: "operations",
        summary: "Prometheus metrics",
        description: "Request counts, durations and bytes by route, in the text exposition \
                      format 0.0.4.",
        reply: Reply::Text(crate::metrics::CONTENT_TYPE),
        security: Security::Public,
        ..R
    },
    Route {
        path: "/openapi.json",
        label: "openapi",
        tag: "docs",
        summary: "This OpenAPI document",
        reply: Reply::Json,
        security: Security::Public,
        ..R
    },
    Route {
        path: "/api/v1/openapi.json",
        label: "openapi",
        tag: "docs",
        summary: "This OpenAPI document (under the API prefix)",
        reply: Reply::Json,
        security: Security::Public,
        ..R
    },
    Route {
        path: "/docs",
        label: "docs",
        tag: "docs",
        summary: "Redirect to the API documentation page",
        reply: Reply::Redirect(303, "To the same path with a trailing `/`."),
        security: Security::Public,
        ..R
    },
    Route {
        path: "/docs/",
        label: "docs",
        tag: "docs",
        summary: "API documentation page (Swagger UI)",
        reply: Reply::Html,
        security: Security::Public,
        ..R
    },
    Route {
        path: "/docs/{file}",
        label: "docs",
        tag: "docs",
        summary: "The documentation page's scripts, styles and images",
        params: &[segment("file", "A file of Swagger UI.", "swagger-ui.css")],
        reply: Reply::File,
        errors: &[404],
        security: Security::Public,
        ..R
    },
    Route {
        path: "/api/v1/docs",
        label: "docs",
        tag: "docs",
        summary: "Redirect to the API documentation page (the about document's link)",
        reply: Reply::Redirect(303, "To the same path with a trailing `/`."),
        security: Security::Public,
        ..R
    },
    Route {
        path: "/api/v1/docs/",
        label: "docs",
        tag: "docs",
        summary: "API documentation page (Swagger UI, under the API prefix)",
        reply: Reply::Html,
        security: Security::Public,
        ..R
    },
    Route {
        path: "/api/v1/docs/{file}",
        label: "docs",
        tag: "docs",
        summary: "The documentation page's scripts, styles and images (under the API prefix)",
        params: &[segment("file", "A file of Swagger UI.", "swagger-ui.css")],
        reply: Reply::File,
        errors: &[404],
        security: Security::Public,
        ..R
    },
    // ---- browsing ----
    Route {
        path: "/api/v1/metadata/{path}",
        label: "metadata",
        tag: "browse",
        summary: "A node's metadata and structure",
        params: &[
            node("nested/images/tiny_image"),
            FIELDS,
            SELECT_METADATA,
            MAX_DEPTH,
            OMIT_LINKS,
            INCLUDE_DATA_SOURCES,
            ROOT_PATH,
        ],
        errors: READ_ERRORS,
        scopes: &["read:metadata"],
        ..R
    },
    Route {
        path: "/api/v1/search/{path}",
        label: "search",
        tag: "browse",
        summary: "One page of a container's children matching the filters",
        params: SEARCH_PARAMS,
        filters: true,
        errors: READ_ERRORS,
        scopes: &["read:metadata"],
        ..R
    },
    Route {
        path: "/api/v1/distinct/{path}",
        label: "distinct",
        tag: "browse",
        summary: "Distinct metadata values, structure families and specs among the children",
        params: &[
            node("many"),
            query(
                "metadata",
                Kind::Strings,
                "Metadata keys whose distinct values to list (repeatable).",
            ),
            query(
                "structure_families",
                Kind::Bool,
                "List the distinct structure families.",
            ),
            query("specs", Kind::Bool, "List the distinct specs."),
            query(
                "counts",
                Kind::Bool,
                "Count the children having each value.",
            ),
        ],
        filters: true,
        errors: READ_ERRORS,
        scopes: &["read:metadata"],
        ..R
    },
    Route {
        path: "/api/v1/revisions/{path}",
        label: "revisions",
        tag: "write",
        summary: "One page of a node's metadata revisions",
        params: &[node("nested/images/tiny_image"), PAGE_OFFSET, PAGE_LIMIT],
        errors: &[401, 403, 404, 405],
        scopes: &["read:metadata"],
        ..R
    },
    // ---- data ----
    Route {
        path: "/api/v1/array/full/{path}",
        label: "array/full",
        tag: "data",
        summary: "An array, or a slice of it",
        params: &[ARRAY_PATH, FORMAT, SLICE, EXPECTED_SHAPE, FILENAME],
        reply: Reply::Data(StructureFamily::Array),
        errors: DATA_ERRORS,
        scopes: &["read:metadata", "read:data"],
        ..R
    },
    Route {
        path: "/api/v1/array/block/{path}",
        label: "array/block",
        tag: "data",
        summary: "One block (chunk) of an array, or a slice of it",
        params: &[
            ARRAY_PATH,
            required(
                "block",
                Kind::Str,
                "The block's index per dimension: `0,1`.",
                "0,0",
            ),
            FORMAT,
            SLICE,
            EXPECTED_SHAPE,
            FILENAME,
        ],
        reply: Reply::Data(StructureFamily::Array),
        errors: DATA_ERRORS,
        scopes: &["read:metadata", "read:data"],
        ..R
    },
    Route {
        path: "/api/v1/table/full/{path}",
        label: "table/full",
        tag: "data",
        summary: "A whole table, or some of its columns",
        params: TABLE_FULL_PARAMS,
        reply: Reply::Data(StructureFamily::Table),
        errors: DATA_ERRORS,
        scopes: &["read:metadata", "read:data"],
        ..R
    },
    Route {
        method: M::Post,
        path: "/api/v1/table/full/{path}",
        label: "table/full",
        tag: "data",
        summary: "A whole table, with the columns named in the body",
        params: TABLE_FULL_PARAMS,
        body: COLUMNS_BODY,
        reply: Reply::Data(StructureFamily::Table),
        errors: DATA_ERRORS,
        scopes: &["read:metadata", "read:data"],
        ..R
    },
    Route {
        path: "/api/v1/table/partition/{path}",
        label: "table/partition",
        tag: "data",
        summary: "One partition of a table",
        params: TABLE_PARTITION_PARAMS,
        reply: Reply::Data(StructureFamily::Table),
        errors: DATA_ERRORS,
        scopes: &["read:metadata", "read:data"],
        ..R
    },
    Route {
        method: M::Post,
        path: "/api/v1/table/partition/{path}",
        label: "table/partition",
        tag: "data",
        summary: "One partition of a table, with the columns named in the body",
        params: TABLE_PARTITION_PARAMS,
        body: COLUMNS_BODY,
        reply: Reply::Data(StructureFamily::Table),
        errors: DATA_ERRORS,
        scopes: &["read:metadata", "read:data"],
        ..R
    },
    Route {
        path: "/api/v1/node/full/{path}",
        label: "node/full",
        tag: "data",
        summary: "A whole table (upstream's generic name for `table/full`)",
        params: TABLE_FULL_PARAMS,
        reply: Reply::Data(StructureFamily::Table),
        errors: DATA_ERRORS,
        scopes: &["read:metadata", "read:data"],
        ..R
    },
    Route {
        method: M::Post,
        path: "/api/v1/node/full/{path}",
        label: "node/full",
        tag: "data",
        summary: "A whole table, with the columns named in the body",
        params: TABLE_FULL_PARAMS,
        body: COLUMNS_BODY,
        reply: Reply::Data(StructureFamily::Table),
        errors: DATA_ERRORS,
        scopes: &["read:metadata", "read:data"],
        ..R
    },
    Route {
        path: "/api/v1/container/full/{path}",
        label: "container/full",
        tag: "data",
        summary: "A container exported whole: JSON, HDF5, or its 1-d arrays as an Arrow table",
        params: CONTAINER_FULL_PARAMS,
        reply: Reply::Data(StructureFamily::Container),
        errors: DATA_ERRORS,
        scopes: &["read:metadata", "read:data"],
        ..R
    },
    Route {
        method: M::Post,
        path: "/api/v1/container/full/{path}",
        label: "container/full",
        tag: "data",
        summary: "A container exported whole, with the children named in the body",
        params: CONTAINER_FULL_PARAMS,
        body: Some(Body {
            required: false,
            description: "Children to export, as a JSON list (added to `field=`).",
            content: &[(JSON, Shape::Strings)],
        }),
        reply: Reply::Data(StructureFamily::Container),
        errors: DATA_ERRORS,
        scopes: &["read:metadata", "read:data"],
        ..R
    },
    // ---- writing (catalogs; in-memory trees answer 405) ----
    Route {
        method: M::Post,
        path: "/api/v1/metadata/{path}",
        label: "metadata",
        tag: "write",
        summary: "Create a child node (a container, or a node whose data is written next)",
        params: &[node("nested")],
        body: Some(Body {
            required: true,
            description: "The new node.",
            content: &[(JSON, Shape::Fields(CREATE_FIELDS))],
        }),
        errors: WRITE_ERRORS,
        security: Security::Required,
        scopes: &["write:metadata", "create:node"],
        ..R
    },
    Route {
        method: M::Put,
        path: "/api/v1/metadata/{path}",
        label: "metadata",
        tag: "write",
        summary: "Replace a node's metadata and specs",
        params: &[node("nested/images/tiny_image"), DROP_REVISION],
        body: Some(Body {
            required: true,
            description: "The new metadata and specs.",
            content: &[(JSON, Shape::Fields(PUT_METADATA_FIELDS))],
        }),
        errors: WRITE_ERRORS,
        security: Security::Required,
        scopes: &["write:metadata"],
        ..R
    },
    Route {
        method: M::Patch,
        path: "/api/v1/metadata/{path}",
        label: "metadata",
        tag: "write",
        summary: "Patch a node's metadata and specs (JSON Patch or JSON Merge Patch)",
        params: &[node("nested/images/tiny_image"), DROP_REVISION],
        body: Some(Body {
            required: true,
            description: "The patches and their format.",
            content: &[(JSON, Shape::Fields(PATCH_METADATA_FIELDS))],
        }),
        errors: &[400, 401, 403, 404, 405, 406, 409, 413, 422],
        security: Security::Required,
        scopes: &["write:metadata"],
        ..R
    },
    Route {
        method: M::Delete,
        path: "/api/v1/metadata/{path}",
        label: "metadata",
        tag: "write",
        summary: "Delete a node",
        params: &[
            node("nested/images/tiny_image"),
            query(
                "recursive",
                Kind::Bool,
                "Delete a container with everything below it (default false).",
            ),
            query(
                "external_only",
                Kind::Bool,
                "Refuse to delete data the server stores itself (default true).",
            ),
        ],
        errors: WRITE_ERRORS,
        security: Security::Required,
        scopes: &["delete:node", "delete:revision"],
        ..R
    },
    Route {
        method: M::Delete,
        path: "/api/v1/revisions/{path}",
        label: "revisions",
        tag: "write",
        summary: "Delete one revision of a node's metadata",
        params: &[
            node("nested/images/tiny_image"),
            required("number", Kind::Int, "The revision's number.", "1"),
        ],
        errors: WRITE_ERRORS,
        security: Security::Required,
        scopes: &["delete:revision"],
        ..R
    },
    Route {
        method: M::Post,
        path: "/api/v1/register/{path}",
        label: "register",
        tag: "write",
        summary: "Register external files as a child node",
        params: &[node("nested")],
        body: Some(Body {
            required: true,
            description: "The new node, with one data source whose assets exist.",
            content: &[(JSON, Shape::Fields(REGISTER_FIELDS))],
        }),
        errors: WRITE_ERRORS,
        security: Security::Required,
        scopes: &["write:metadata", "create:node", "register"],
        ..R
    },
    Route {
        method: M::Put,
        path: "/api/v1/array/full/{path}",
        label: "array/full",
        tag: "write",
        summary: "Write a whole array",
        params: &[ARRAY_PATH, PERSIST],
        body: ARRAY_BODY,
        errors: WRITE_ERRORS,
        security: Security::Required,
        scopes: &["write:data"],
        ..R
    },
    Route {
        method: M::Patch,
        path: "/api/v1/array/full/{path}",
        label: "array/full",
        tag: "write",
        summary: "Write a region of an array, growing it with `extend`",
        description: "Answers the array's new structure.",
        params: &[
            ARRAY_PATH,
            required("shape", Kind::Str, "The region's shape: `2,3`.", "1,1"),
            query(
                "offset",
                Kind::Str,
                "The region's start per dimension: `0,5` (default zeros).",
            ),
            query(
                "extend",
                Kind::Bool,
                "Grow the array to hold the region (default false).",
            ),
            PERSIST,
        ],
        body: ARRAY_BODY,
        errors: WRITE_ERRORS,
        security: Security::Required,
        scopes: &["write:data"],
        ..R
    },
    Route {
        method: M::Put,
        path: "/api/v1/array/block/{path}",
        label: "array/block",
        tag: "write",
        summary: "Write one block of an array",
        params: &[
            ARRAY_PATH,
            required(
                "block",
                Kind::Str,
                "The block's index per dimension: `0,1`.",
                "0,0",
            ),
            PERSIST,
        ],
        body: ARRAY_BODY,
        errors: WRITE_ERRORS,
        security: Security::Required,
        scopes: &["write:data"],
        ..R
    },
    Route {
        method: M::Put,
        path: "/api/v1/table/full/{path}",
        label: "table/full",
        tag: "write",
        summary: "Replace a one-partition table's rows",
        params: &[TABLE_PATH, PERSIST],
        body: TABLE_BODY,
        errors: WRITE_ERRORS,
        security: Security::Required,
        scopes: &["write:data"],
        ..R
    },
    Route {
        method: M::Put,
        path: "/api/v1/node/full/{path}",
        label: "node/full",
        tag: "write",
        summary: "Replace a one-partition table's rows (upstream's generic name)",
        params: &[TABLE_PATH, PERSIST],
        body: TABLE_BODY,
        errors: WRITE_ERRORS,
        security: Security::Required,
        scopes: &["write:data"],
        ..R
    },
    Route {
        method: M::Put,
        path: "/api/v1/table/partition/{path}",
        label: "table/partition",
        tag: "write",
        summary: "Replace one partition's rows",
        params: WRITE_PARTITION_PARAMS,
        body: TABLE_BODY,
        errors: WRITE_ERRORS,
        security: Security::Required,
        scopes: &["write:data"],
        ..R
    },
    Route {
        method: M::Patch,
        path: "/api/v1/table/partition/{path}",
        label: "table/partition",
        tag: "write",
        summary: "Append rows to one partition",
        params: WRITE_PARTITION_PARAMS,
        body: TABLE_BODY,
        errors: WRITE_ERRORS,
        security: Security::Required,
        scopes: &["write:data"],
        ..R
    },
    // ---- authentication (multi-user servers; single-user servers answer 404) ----
    Route {
        method: M::Post,
        path: "/api/v1/auth/provider/{provider}/token",
        label: "other",
        tag: "auth",
        summary: "Log in: the password grant (a form), or poll a device-code login (JSON)",
        description: "Answers access and refresh tokens; a pending device-code login answers \
                      400 `authorization_pending`.",
        params: &[PROVIDER],
        body: Some(Body {
            required: true,
            description: "The credentials, or the device code to poll.",
            content: &[
                (FORM, Shape::Fields(PASSWORD_FIELDS)),
                (JSON, Shape::Fields(DEVICE_POLL_FIELDS)),
            ],
        }),
        errors: &[400, 401, 404, 422, 429],
        security: Security::Public,
        ..R
    },
    Route {
        method: M::Post,
        path: "/api/v1/auth/provider/{provider}/authorize",
        label: "other",
        tag: "auth",
        summary: "Start a device-code login (terminals)",
        params: &[PROVIDER],
        errors: &[404, 502],
        security: Security::Public,
        ..R
    },
    Route {
        path: "/api/v1/auth/provider/{provider}/authorize",
        label: "other",
        tag: "auth",
        summary: "Log in through an OpenID Connect provider: redirect the browser to it",
        description: "OIDC providers only (404 for password providers).",
        params: &[
            PROVIDER,
            query(
                "state",
                Kind::Str,
                "Passed to the provider and back to `code`.",
            ),
        ],
        reply: Reply::Redirect(307, "To the OpenID Connect provider's login page."),
        errors: &[404, 502],
        security: Security::Public,
        ..R
    },
    Route {
        path: "/api/v1/auth/provider/{provider}/code",
        label: "other",
        tag: "auth",
        summary: "Where an OpenID Connect provider sends the browser back after a login",
        description: "OIDC providers only (404 for password providers). Answers access and \
                      refresh tokens, or redirects to the configured `redirect_on_success` \
                      (`redirect_on_failure`) with them.",
        params: &[
            PROVIDER,
            query("code", Kind::Str, "The provider's authorization code."),
            query("state", Kind::Str, "The `state` given to `authorize`."),
            query(
                "error",
                Kind::Str,
                "The provider's error, when the login failed.",
            ),
        ],
        errors: &[401, 404, 502],
        security: Security::Public,
        ..R
    },
    Route {
        path: "/api/v1/auth/provider/{provider}/device_code",
        label: "other",
        tag: "auth",
        summary: "The page where a user approves a device-code login",
        params: &[
            PROVIDER,
            query("code", Kind::Str, "The user code, filled in the form."),
        ],
        reply: Reply::Html,
        errors: &[404],
        security: Security::Public,
        ..R
    },
    Route {
        method: M::Post,
        path: "/api/v1/auth/provider/{provider}/device_code",
        label: "other",
        tag: "auth",
        summary: "Approve a device-code login (with a user name and password, or the \
                  OpenID Connect provider's code)",
        params: &[PROVIDER],
        body: Some(Body {
            required: true,
            description: "The user code and the credentials.",
            content: &[(FORM, Shape::Fields(DEVICE_APPROVE_FIELDS))],
        }),
        reply: Reply::Html,
        errors: &[401, 403, 404, 429, 502],
        security: Security::Public,
        ..R
    },
    Route {
        path: "/api/v1/auth/principal",
        label: "other",
        tag: "auth",
        summary: "List principals (admin)",
        params: &[
            PAGE_OFFSET,
            query(
                "page[limit]",
                Kind::Int,
                "Principals per page (default 100, at most 300).",
            ),
        ],
        errors: AUTH_ERRORS,
        security: Security::Required,
        scopes: &["read:principals"],
        ..R
    },
    Route {
        method: M::Post,
        path: "/api/v1/auth/principal",
        label: "other",
        tag: "auth",
        summary: "Create a service principal (admin)",
        params: &[required(
            "role",
            Kind::Str,
            "The principal's role: `user` or `admin`.",
            "user",
        )],
        errors: &[400, 401, 403, 422],
        security: Security::Required,
        scopes: &["write:principals"],
        ..R
    },
    Route {
        path: "/api/v1/auth/principal/{uuid}",
        label: "other",
        tag: "auth",
        summary: "One principal, with its identities, roles, API keys and sessions (admin)",
        params: &[PRINCIPAL],
        errors: AUTH_ERRORS,
        security: Security::Required,
        scopes: &["read:principals"],
        ..R
    },
    Route {
        method: M::Post,
        path: "/api/v1/auth/principal/{uuid}/apikey",
        label: "other",
        tag: "auth",
        summary: "Create an API key for a principal (admin)",
        params: &[PRINCIPAL],
        body: API_KEY_BODY,
        errors: AUTH_ERRORS,
        security: Security::Required,
        scopes: &["admin:apikeys"],
        ..R
    },
    Route {
        method: M::Delete,
        path: "/api/v1/auth/principal/{uuid}/apikey",
        label: "other",
        tag: "auth",
        summary: "Revoke a principal's API key (admin)",
        params: &[PRINCIPAL, FIRST_EIGHT],
        reply: Reply::NoContent,
        errors: AUTH_ERRORS,
        security: Security::Required,
        scopes: &["admin:apikeys"],
        ..R
    },
    Route {
        method: M::Post,
        path: "/api/v1/auth/session/refresh",
        label: "other",
        tag: "auth",
        summary: "New tokens for a refresh token",
        body: REFRESH_BODY,
        errors: &[401, 422],
        security: Security::Public,
        ..R
    },
    Route {
        method: M::Post,
        path: "/api/v1/auth/session/revoke",
        label: "other",
        tag: "auth",
        summary: "End the session of a refresh token",
        body: REFRESH_BODY,
        reply: Reply::NoContent,
        errors: &[401, 422],
        security: Security::Public,
        ..R
    },
    Route {
        method: M::Delete,
        path: "/api/v1/auth/session/revoke/{session_id}",
        label: "other",
        tag: "auth",
        summary: "End one of the caller's sessions",
        params: &[segment(
            "session_id",
            "The session's UUID.",
            "00000000-0000-4000-8000-000000000000",
        )],
        reply: Reply::NoContent,
        errors: &[401, 404],
        security: Security::Required,
        ..R
    },
    Route {
        path: "/api/v1/auth/whoami",
        label: "other",
        tag: "auth",
        summary: "The caller's principal (`null` when anonymous)",
        errors: &[401],
        ..R
    },
    Route {
        method: M::Post,
        path: "/api/v1/auth/logout",
        label: "other",
        tag: "auth",
        summary: "Log out (tokens are forgotten by the client; see `session/revoke`)",
        security: Security::Public,
        ..R
    },
    Route {
        method: M::Post,
        path: "/api/v1/auth/apikey",
        label: "other",
        tag: "auth",
        summary: "Create an API key for the caller",
        body: API_KEY_BODY,
        errors: AUTH_ERRORS,
        security: Security::Required,
        scopes: &["apikeys"],
        ..R
    },
    Route {
        path: "/api/v1/auth/apikey",
        label: "other",
        tag: "auth",
        summary: "The API key this request was made with",
        errors: &[401, 404],
        security: Security::Required,
        ..R
    },
    Route {
        method: M::Delete,
        path: "/api/v1/auth/apikey",
        label: "other",
        tag: "auth",
        summary: "Revoke one of the caller's API keys",
        params: &[FIRST_EIGHT],
        reply: Reply::NoContent,
        errors: &[401, 404, 422],
        security: Security::Required,
        ..R
    },
];

/// Tag names and descriptions, in the order the page shows them.
const TAGS: &[(&str, &str)] = &[
    ("about", "What the server offers."),
    ("browse", "Metadata, search and distinct values."),
    (
        "data",
        "Reading arrays, tables and containers, in any supported format.",
    ),
    (
        "write",
        "Creating, updating and deleting nodes and writing their data (catalogs; \
         in-memory trees answer 405). Revisions of metadata.",
    ),
    (
        "auth",
        "Logins, sessions, principals and API keys (multi-user servers; single-user \
         servers answer 404).",
    ),
    ("operations", "Health and metrics."),
    ("docs", "This document and the page showing it."),
];

const DESCRIPTION: &str = "The HTTP API of tiled-rs, a re-implementation of the Tiled data \
server that the Tiled Python client (`tiled[client]` 0.2.20) speaks to.\n\n\
Credentials, in the order they are looked for: the `api_key` query parameter, an \
`Authorization: Apikey <key>` header (type `Apikey <key>` in the header field of the \
Authorize dialog), the `tiled_api_key` cookie, or (multi-user servers) an \
`Authorization: Bearer <access token>` header. Reads need none on public servers.\n\n\
A node's `{path}` is its keys joined by `/`. The API routes also answer without the \
`/api/v1` prefix (`/metadata/...`), and `/api/v1/dataframe/...` is an alias of \
`/api/v1/table/...`; `HEAD` is answered as `GET` is, outside `/api/v1/auth`.";

const SECURITY_SCHEMES: [&str; 4] = ["apiKeyHeader", "apiKeyQuery", "apiKeyCookie", "bearerToken"];

fn schema_ref(name: &str) -> Ref {
    Ref::from_schema_name(name)
}

fn parameter(p: &Param) -> Parameter {
    let mut b = ParameterBuilder::new()
        .name(p.name)
        .parameter_in(match p.location {
            In::Path => ParameterIn::Path,
            In::Query => ParameterIn::Query,
        })
        .required(if p.required {
            Required::True
        } else {
            Required::False
        })
        .description(Some(p.description))
        .schema(Some(p.kind.schema()))
        .example(p.example.map(|e| p.kind.example(e)));
    if matches!(p.kind, Kind::Strings) && p.location == In::Query {
        b = b.style(Some(ParameterStyle::Form)).explode(Some(true));
    }
    b.build()
}

fn filter_parameters() -> Vec<Parameter> {
    let mut out = Vec::new();
    for (name, fields) in FILTERS {
        for (field, example) in *fields {
            out.push(
                ParameterBuilder::new()
                    .name(format!("filter[{name}][condition][{field}]"))
                    .parameter_in(ParameterIn::Query)
                    .required(Required::False)
                    .description(Some(format!(
                        "`{name}` query: its `{field}` (repeatable: the i-th values of this \
                         type's fields make its i-th filter; values are JSON, or text)."
                    )))
                    .schema(Some(Kind::Strings.schema()))
                    .style(Some(ParameterStyle::Form))
                    .explode(Some(true))
                    .example(Some(json!([example])))
                    .build(),
            );
        }
    }
    out
}

fn body_schema(shape: Shape) -> Option<Schema> {
    match shape {
        Shape::Binary => None,
        Shape::Strings => Some(Kind::Strings.schema()),
        Shape::Fields(fields) => {
            let mut o = ObjectBuilder::new().schema_type(Type::Object);
            for f in fields {
                let s = match f.kind.schema() {
                    Schema::Object(obj) => {
                        let mut obj = obj;
                        obj.description = Some(f.description.to_string());
                        Schema::Object(obj)
                    }
                    Schema::Array(mut arr) => {
                        arr.description = Some(f.description.to_string());
                        Schema::Array(arr)
                    }
                    other => other,
                };
                o = o.property(f.name, s);
                if f.required {
                    o = o.required(f.name);
                }
            }
            Some(Schema::Object(o.build()))
        }
    }
}

fn error_description(status: u16) -> &'static str {
    match status {
        400 => "Bad request: invalid parameters, or a response larger than the server's limit",
        401 => "Missing, wrong or expired credentials",
        403 => "The credentials lack a scope this route needs",
        404 => "No such node (or provider, principal, key), or the node is of another family",
        405 => "This tree is read-only (serve a catalog to write)",
        406 => "None of the requested media types is available for this node",
        409 => "Conflict: a taken key, a non-empty container, a region that does not fit",
        413 => "The request body is larger than the upload limit",
        422 => "Malformed parameter or body",
        429 => "Too many failed logins: wait and retry",
        502 => "The OpenID Connect provider could not be reached",
        _ => "Error",
    }
}

fn operation(route: &Route, registry: &tiled_formats::Registry) -> Operation {
    let mut params: Vec<Parameter> = route.params.iter().map(parameter).collect();
    if route.filters {
        params.extend(filter_parameters());
    }
    let mut description = route.description.to_string();
    if !route.scopes.is_empty() {
        if !description.is_empty() {
            description.push_str("\n\n");
        }
        let scopes: Vec<String> = route.scopes.iter().map(|s| format!("`{s}`")).collect();
        description.push_str(&format!(
            "Scopes needed on multi-user servers: {}.",
            scopes.join(", ")
        ));
    }
    let mut op = OperationBuilder::new()
        .tag(route.tag)
        .summary(Some(route.summary))
        .description((!description.is_empty()).then_some(description))
        .operation_id(Some(route.operation_id()))
        .parameters(Some(params));
    if let Some(body) = route.body {
        let mut b = RequestBodyBuilder::new()
            .description(Some(body.description))
            .required(Some(if body.required {
                Required::True
            } else {
                Required::False
            }));
        for (media_type, shape) in body.content {
            b = b.content(
                *media_type,
                ContentBuilder::new().schema(body_schema(*shape)).build(),
            );
        }
        op = op.request_body(Some(b.build()));
    }
    let ok = match route.reply {
        Reply::Document => ResponseBuilder::new()
            .description("OK")
            .content(
                JSON,
                ContentBuilder::new()
                    .schema(Some(Kind::Any.schema()))
                    .build(),
            )
            .content(
                crate::respond::MSGPACK,
                ContentBuilder::new().schema(None::<Schema>).build(),
            ),
        Reply::Json => ResponseBuilder::new().description("OK").content(
            JSON,
            ContentBuilder::new()
                .schema(Some(Kind::Object.schema()))
                .build(),
        ),
        Reply::Data(family) => {
            let mut r = ResponseBuilder::new().description(
                "The data, in the media type asked for by `format` or `Accept` (else the \
                 first listed). Arrays and tables may come blosc2- or lz4-encoded when \
                 `Accept-Encoding` lists them.",
            );
            for media_type in registry.formats(family) {
                r = r.content(
                    media_type,
                    ContentBuilder::new().schema(None::<Schema>).build(),
                );
            }
            r
        }
        Reply::Html => ResponseBuilder::new().description("An HTML page").content(
            "text/html",
            ContentBuilder::new().schema(None::<Schema>).build(),
        ),
        Reply::Text(media_type) => ResponseBuilder::new().description("OK").content(
            media_type,
            ContentBuilder::new().schema(None::<Schema>).build(),
        ),
        Reply::File => ResponseBuilder::new().description("The file, with its media type"),
        Reply::NoContent => ResponseBuilder::new().description("Done"),
        Reply::Redirect(_, to) => ResponseBuilder::new().description(to),
    };
    let ok_status = match route.reply {
        Reply::NoContent => 204,
        Reply::Redirect(status, _) => status,
        _ => 200,
    };
    let mut responses = ResponsesBuilder::new().response(ok_status.to_string(), ok.build());
    for status in route.errors {
        responses = responses.response(
            status.to_string(),
            ResponseBuilder::new()
                .description(error_description(*status))
                .content(
                    JSON,
                    ContentBuilder::new()
                        .schema(Some(schema_ref("Error")))
                        .build(),
                )
                .build(),
        );
    }
    op = op.responses(responses.build());
    let requirements: Vec<SecurityRequirement> = match route.security {
        Security::Public => Vec::new(),
        Security::Optional | Security::Required => {
            let mut r: Vec<SecurityRequirement> = SECURITY_SCHEMES
                .iter()
                .map(|s| SecurityRequirement::new(*s, Vec::<String>::new()))
                .collect();
            if route.security == Security::Optional {
                // `{}`: anonymous callers too, on public servers.
                r.push(SecurityRequirement::default());
            }
            r
        }
    };
    op.securities(Some(requirements)).build()
}

/// The OpenAPI document, built from [`ROUTES`].
#[must_use]
pub fn document() -> OpenApi {
    let registry = tiled_formats::Registry::default();
    let mut paths = PathsBuilder::new();
    for route in ROUTES {
        paths = paths.path(
            route.path,
            PathItem::new(route.method.http(), operation(route, &registry)),
        );
    }
    let key = |where_: &str, name: &str, description: &str| {
        let value = ApiKeyValue::with_description(name.to_string(), description.to_string());
        SecurityScheme::ApiKey(match where_ {
            "header" => ApiKey::Header(value),
            "query" => ApiKey::Query(value),
            _ => ApiKey::Cookie(value),
        })
    };
    let error = ObjectBuilder::new()
        .schema_type(Type::Object)
        .property(
            "detail",
            ObjectBuilder::new()
                .description(Some(
                    "What went wrong (a string, or an object for some auth errors).",
                ))
                .build(),
        )
        .required("detail")
        .build();
    let components = ComponentsBuilder::new()
        .schema("Error", error)
        .security_scheme(
            SECURITY_SCHEMES[0],
            key(
                "header",
                "Authorization",
                "An API key in the `Authorization` header: enter `Apikey <key>`.",
            ),
        )
        .security_scheme(
            SECURITY_SCHEMES[1],
            key(
                "query",
                "api_key",
                "An API key as the `api_key` query parameter.",
            ),
        )
        .security_scheme(
            SECURITY_SCHEMES[2],
            key(
                "cookie",
                "tiled_api_key",
                "An API key in the `tiled_api_key` cookie (requests that change data also \
                 need the `tiled_csrf` cookie's value in an `x-csrf` header).",
            ),
        )
        .security_scheme(
            SECURITY_SCHEMES[3],
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "An access token from `/api/v1/auth/provider/{provider}/token` \
                         (multi-user servers).",
                    ))
                    .build(),
            ),
        )
        .build();
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("tiled-rs")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(DESCRIPTION))
                .license(Some(
                    LicenseBuilder::new()
                        .name("BSD-3-Clause")
                        .identifier(Some("BSD-3-Clause"))
                        .build(),
                ))
                .build(),
        )
        .paths(paths.build())
        .components(Some(components))
        .tags(Some(TAGS.iter().map(|(name, description)| {
            TagBuilder::new()
                .name(*name)
                .description(Some(*description))
                .build()
        })))
        .build()
}

/// The document as JSON, built once.
///
/// # Panics
/// Never: the document is plain data with string keys, which
/// `serde_json` always serializes.
#[must_use]
pub fn document_json() -> bytes::Bytes {
    static JSON_DOC: OnceLock<bytes::Bytes> = OnceLock::new();
    JSON_DOC
        .get_or_init(|| {
            document()
                .to_json()
                .expect("the document serializes")
                .into()
        })
        .clone()
}

/// Swagger UI mounted at `path`, reading the document at `../openapi.json`
/// (so `/docs/` reads `/openapi.json` and `/api/v1/docs/` reads
/// `/api/v1/openapi.json`).
fn swagger<S: Clone + Send + Sync + 'static>(path: &'static str) -> Router<S> {
    let config = utoipa_swagger_ui::Config::new(["../openapi.json"])
        // The default shows a badge fetched from validator.swagger.io.
        .validator_url("none")
        .try_it_out_enabled(false);
    Router::from(utoipa_swagger_ui::SwaggerUi::new(path).config(config))
}

/// The routes of the document and the page, public on every server.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    let doc = || {
        get(|| async {
            (
                [(header::CONTENT_TYPE, "application/json")],
                document_json(),
            )
        })
    };
    Router::new()
        .route("/openapi.json", doc())
        .route("/api/v1/openapi.json", doc())
        .merge(swagger("/docs"))
        .merge(swagger("/api/v1/docs"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn filters_cover_every_query_type_and_parse() {
        let documented: BTreeSet<&str> = FILTERS.iter().map(|(n, _)| *n).collect();
        let known: BTreeSet<&str> = tiled_model::query::QUERY_NAMES.iter().copied().collect();
        assert_eq!(documented, known);
        // Every documented field is read: a filter made of exactly the
        // documented fields (with their examples) parses.
        for (name, fields) in FILTERS {
            let params: Vec<(String, String)> = fields
                .iter()
                .map(|(f, v)| (format!("filter[{name}][condition][{f}]"), (*v).to_string()))
                .collect();
            let parsed = tiled_model::Query::parse_params(
                params.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            )
            .unwrap_or_else(|e| panic!("filter[{name}]: {e}"));
            assert_eq!(parsed.len(), 1, "filter[{name}]");
        }
    }

    #[test]
    fn documented_write_scopes_are_the_enforced_ones() {
        for r in ROUTES {
            let name = r.label;
            if crate::write::is_write(name, &r.method.method()) {
                assert_eq!(
                    r.scopes,
                    crate::write::required_scopes(name, &r.method.method()),
                    "{} {}",
                    r.method.key(),
                    r.path
                );
                assert_eq!(r.security, Security::Required, "{}", r.path);
            }
        }
    }

    #[test]
    fn path_templates_name_their_path_parameters() {
        for r in ROUTES {
            let in_template: BTreeSet<&str> = r
                .path
                .split('{')
                .skip(1)
                .filter_map(|s| s.split_once('}').map(|(n, _)| n))
                .collect();
            let declared: BTreeSet<&str> = r
                .params
                .iter()
                .filter(|p| p.location == In::Path)
                .map(|p| p.name)
                .collect();
            assert_eq!(in_template, declared, "{}", r.path);
        }
    }

    #[test]
    fn operation_ids_are_unique() {
        let mut seen = BTreeSet::new();
        for r in ROUTES {
            assert!(seen.insert(r.operation_id()), "{}", r.operation_id());
        }
    }
}
