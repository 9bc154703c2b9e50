//! HTTP-level behaviour of the API against the demo tree, without a socket:
//! status codes, error bodies, negotiation, compression, auth, paging.

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use serde_json::Value;
use tiled_server::{AuthConfig, ServerConfig, router};

mod common;
use common::{Reply, get, send};

fn app_with(allow_anonymous: bool, limit: usize) -> Router {
    router(
        tiled_demo::demo_tree(),
        ServerConfig {
            auth: AuthConfig {
                api_key: "secret".into(),
                allow_anonymous,
                multi_user: None,
            },
            response_bytesize_limit: limit,
            data_memory_budget: tiled_server::DEFAULT_DATA_MEMORY_BUDGET,
            tree_blocks: false,
            allow_origins: Vec::new(),
        },
    )
}

fn app() -> Router {
    app_with(true, tiled_server::DEFAULT_RESPONSE_BYTESIZE_LIMIT)
}

fn assert_error(r: &Reply, status: u16, needle: &str) {
    assert_eq!(
        r.status.as_u16(),
        status,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(r.header("content-type"), Some("application/json"));
    let detail = r.json()["detail"].to_string();
    assert!(detail.contains(needle), "{detail:?} lacks {needle:?}");
}

#[tokio::test]
async fn about_lists_formats_from_the_registry_and_needs_no_key() {
    let r = get(&app_with(false, 1000), "/api/v1/").await;
    assert_eq!(r.status, 200);
    let about = r.json();
    assert_eq!(about["library_version"], "0.2.20");
    assert_eq!(about["authentication"]["required"], true);
    assert_eq!(about["links"]["self"], "http://test/api/v1");
    assert!(
        about["formats"]["array"]
            .as_array()
            .unwrap()
            .contains(&Value::from("application/octet-stream"))
    );
    assert!(
        about["queries"]
            .as_array()
            .unwrap()
            .contains(&Value::from("access_tags_filter"))
    );
    let redirect = get(&app(), "/api/v1").await;
    assert_eq!(redirect.status, 307);
    assert_eq!(redirect.header("location"), Some("/api/v1/"));
    assert_eq!(get(&app(), "/healthz").await.json()["status"], "ready");
}

#[tokio::test]
async fn metadata_shapes_and_odd_paths() {
    let a = app();
    for uri in [
        "/api/v1/metadata/nested/images/tiny_image",
        "/api/v1/metadata//nested//images/tiny_image/",
        "/api/v1/metadata/nested/images/tiny_image//",
        // An encoded slash separates segments too (as upstream; Swagger UI
        // sends paths that way).
        "/api/v1/metadata/nested%2Fimages%2Ftiny_image",
        "/api/v1/metadata/nested%2fimages/tiny_image",
    ] {
        let r = get(&a, uri).await;
        assert_eq!(r.status, 200, "{uri}");
        let d = &r.json()["data"];
        assert_eq!(d["id"], "tiny_image");
        assert_eq!(
            d["attributes"]["ancestors"],
            serde_json::json!(["nested", "images"])
        );
        assert_eq!(d["attributes"]["access_tags"], serde_json::json!([]));
        assert_eq!(
            d["attributes"]["structure"]["shape"],
            serde_json::json!([50, 50])
        );
        assert_eq!(d["attributes"]["structure"]["resizable"], false);
        assert_eq!(
            d["links"]["block"],
            "http://test/api/v1/array/block/nested/images/tiny_image?block={0},{1}"
        );
    }
    let root = get(&a, "/api/v1/metadata/").await.json();
    assert_eq!(root["data"]["id"], "");
    assert_eq!(root["data"]["attributes"]["structure"]["count"], 6);
    let scalar = get(&a, "/api/v1/metadata/scalars/pi").await.json();
    assert_eq!(
        scalar["data"]["links"]["block"],
        "http://test/api/v1/array/block/scalars/pi?block="
    );
    assert_error(
        &get(&a, "/api/v1/metadata/nope").await,
        404,
        "No such entry",
    );
    assert_error(
        &get(&a, "/api/v1/metadata/scalars/pi/deeper").await,
        404,
        "No such entry",
    );
    let column = get(&a, "/api/v1/metadata/tables/short_table/x")
        .await
        .json();
    assert_eq!(column["data"]["attributes"]["structure_family"], "array");
}

#[tokio::test]
async fn metadata_as_msgpack_with_etag_and_304() {
    let a = app();
    let r = send(
        &a,
        Request::get("/api/v1/metadata/many")
            .header(header::ACCEPT, "application/x-msgpack")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(r.header("content-type"), Some("application/x-msgpack"));
    let v: Value = rmp_serde::from_slice(&r.body).unwrap();
    assert_eq!(v["data"]["id"], "many");
    let etag = r.header("etag").unwrap().to_string();
    let again = send(
        &a,
        Request::get("/api/v1/metadata/many")
            .header(header::ACCEPT, "application/x-msgpack")
            .header(header::IF_NONE_MATCH, &etag)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(again.status, 304);
    assert!(again.body.is_empty());
}

#[tokio::test]
async fn select_metadata_and_fields() {
    let a = app();
    let r = get(
        &a,
        "/api/v1/metadata/many/item_0007?select_metadata=nested.x",
    )
    .await;
    assert_eq!(
        r.json()["data"]["attributes"]["metadata"],
        serde_json::json!({"selected": 0})
    );
    assert_error(
        &get(&a, "/api/v1/metadata/many?select_metadata=%5B%5B").await,
        400,
        "select_metadata",
    );
    let keys = get(&a, "/api/v1/search/many?fields=&page%5Blimit%5D=2")
        .await
        .json();
    let item = &keys["data"][0];
    assert_eq!(item["attributes"]["metadata"], Value::Null);
    assert_eq!(item["links"].as_object().unwrap().len(), 1);
    let count = get(&a, "/api/v1/search/many?fields=count").await.json();
    assert_eq!(count["data"], serde_json::json!([]));
    assert_eq!(count["meta"]["count"], 1000);
}

#[tokio::test]
async fn search_paging_links_and_clamping() {
    let a = app();
    let first = get(&a, "/api/v1/search/many?page%5Blimit%5D=1000").await;
    assert_eq!(first.status, 200);
    let body = first.json();
    assert_eq!(
        body["data"].as_array().unwrap().len(),
        300,
        "limit clamped to 300"
    );
    assert_eq!(
        body["links"]["next"],
        "http://test/api/v1/search/many?page[offset]=300&page[limit]=300"
    );
    let last = get(
        &a,
        "/api/v1/search/many?page%5Boffset%5D=900&page%5Blimit%5D=300",
    )
    .await
    .json();
    assert_eq!(last["data"].as_array().unwrap().len(), 100);
    assert_eq!(last["links"]["next"], Value::Null);
    assert_eq!(last["data"][99]["id"], "item_0999");
    let reversed = get(&a, "/api/v1/search/many?sort=-&page%5Blimit%5D=1&fields=")
        .await
        .json();
    assert_eq!(reversed["data"][0]["id"], "item_0999");
    let by_score = get(
        &a,
        "/api/v1/search/many?sort=-score&page%5Blimit%5D=2&fields=",
    )
    .await
    .json();
    assert_eq!(by_score["data"][1]["id"], "item_0998");
    assert_error(&get(&a, "/api/v1/search/many?sort=a;b").await, 422, "sort");
    assert_error(
        &get(&a, "/api/v1/search/many?sort=a&sort=a").await,
        400,
        "more than once",
    );
    assert_error(&get(&a, "/api/v1/search/many?sort=-,a").await, 400, "last");
    assert_error(
        &get(&a, "/api/v1/search/many?page%5Boffset%5D=-1").await,
        422,
        "page[offset]",
    );
    assert_error(
        &get(&a, "/api/v1/search/scalars/pi").await,
        404,
        "not a container",
    );
}

#[tokio::test]
async fn filters_and_their_errors() {
    let a = app();
    let r = get(
        &a,
        "/api/v1/search/many?fields=&filter%5Beq%5D%5Bcondition%5D%5Bkey%5D=color&filter%5Beq%5D%5Bcondition%5D%5Bvalue%5D=%22red%22&filter%5Bcomparison%5D%5Bcondition%5D%5Boperator%5D=lt&filter%5Bcomparison%5D%5Bcondition%5D%5Bkey%5D=score&filter%5Bcomparison%5D%5Bcondition%5D%5Bvalue%5D=2",
    )
    .await
    .json();
    let ids: Vec<&str> = r["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["item_0000", "item_0003", "item_0006"]);
    assert_error(
        &get(
            &a,
            "/api/v1/search/many?filter%5Beq%5D%5Bcondition%5D%5Bkey%5D=color",
        )
        .await,
        400,
        "missing 'value'",
    );
    assert_error(
        &get(&a, "/api/v1/search/many?filter%5Bregex%5D%5Bcondition%5D%5Bkey%5D=name&filter%5Bregex%5D%5Bcondition%5D%5Bpattern%5D=(").await,
        400,
        "regex",
    );
    let distinct = get(
        &a,
        "/api/v1/distinct/many?metadata=group&structure_families=true&counts=true",
    )
    .await
    .json();
    assert_eq!(distinct["metadata"]["group"].as_array().unwrap().len(), 10);
    assert_eq!(distinct["structure_families"][0]["count"], 500);
    assert_eq!(distinct["specs"], Value::Null);
}

#[tokio::test]
async fn array_reads_blocks_slices_and_errors() {
    let a = app();
    let r = get(
        &a,
        "/api/v1/array/full/dtypes/int64_2d?slice=1:3,::-10&expected_shape=2,3",
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), 2 * 3 * 8);
    let json = get(
        &a,
        "/api/v1/array/full/dtypes/int64_2d?slice=1:3,::-10&format=json",
    )
    .await
    .json();
    let first = i64::from_le_bytes(r.body[..8].try_into().unwrap());
    assert_eq!(json[0][0], first);
    assert_eq!(json[0][0], tiled_demo::mix(59, 30) as i64);
    let block = get(
        &a,
        "/api/v1/array/block/dtypes/int64_2d?block=2,2&expected_shape=6,8",
    )
    .await;
    assert_eq!(block.status, 200);
    assert_eq!(block.body.len(), 6 * 8 * 8);
    let scalar = get(
        &a,
        "/api/v1/array/block/scalars/answer?block=&expected_shape=scalar",
    )
    .await;
    assert_eq!(scalar.body, 42i64.to_le_bytes());
    assert_error(
        &get(&a, "/api/v1/array/block/dtypes/int64_2d?block=3,0").await,
        422,
        "out of range",
    );
    assert_error(
        &get(&a, "/api/v1/array/block/dtypes/int64_2d?block=0").await,
        422,
        "indices",
    );
    assert_error(
        &get(&a, "/api/v1/array/block/dtypes/int64_2d?block=a").await,
        422,
        "block",
    );
    assert_error(
        &get(&a, "/api/v1/array/block/dtypes/int64_2d").await,
        422,
        "block",
    );
    assert_error(
        &get(&a, "/api/v1/array/full/dtypes/int64_2d?slice=a:b").await,
        422,
        "slice",
    );
    assert_error(
        &get(&a, "/api/v1/array/full/dtypes/int64_2d?slice=...").await,
        422,
        "slice",
    );
    assert_error(
        &get(&a, "/api/v1/array/full/dtypes/int64_2d?slice=0,0,0").await,
        422,
        "too many",
    );
    assert_error(
        &get(&a, "/api/v1/array/full/dtypes/int64_2d?slice=20").await,
        422,
        "out of bounds",
    );
    assert_error(
        &get(&a, "/api/v1/array/full/dtypes/int64_2d?expected_shape=3,3").await,
        422,
        "expected_shape",
    );
    assert_error(
        &get(
            &a,
            "/api/v1/array/full/dtypes/int64_2d?format=application/x-nope",
        )
        .await,
        406,
        "application/octet-stream",
    );
    assert_error(
        &get(&a, "/api/v1/array/full/tables/short_table").await,
        404,
        "not an array",
    );
}

#[tokio::test]
async fn size_limit_is_checked_before_reading() {
    let small = app_with(true, 1000);
    assert_error(
        &get(&small, "/api/v1/array/full/nested/images/big_image").await,
        400,
        "slice",
    );
    assert_eq!(
        get(
            &small,
            "/api/v1/array/full/nested/images/big_image?slice=0:10,0:10"
        )
        .await
        .status,
        200
    );
    assert_error(
        &get(&small, "/api/v1/table/full/tables/long_table").await,
        400,
        "column",
    );
}

#[tokio::test]
async fn tables_partitions_and_columns() {
    let a = app();
    let r = get(
        &a,
        "/api/v1/table/partition/tables/long_table?partition=4&column=x&column=i",
    )
    .await;
    assert_eq!(r.status, 200);
    let reader =
        arrow_ipc::reader::FileReader::try_new(std::io::Cursor::new(r.body.clone()), None).unwrap();
    let batches: Vec<_> = reader.map(|b| b.unwrap()).collect();
    assert_eq!(batches[0].num_rows(), 20_000);
    assert_eq!(batches[0].schema().field(0).name(), "x");
    let post = send(
        &a,
        Request::post("/api/v1/table/partition/tables/long_table?partition=4")
            .body(Body::from(r#"["x", "i"]"#))
            .unwrap(),
    )
    .await;
    assert_eq!(post.body, r.body);
    let json = get(
        &a,
        "/api/v1/table/full/tables/short_table?format=json&column=label",
    )
    .await
    .json();
    assert_eq!(json["label"][3], "s3");
    assert_error(
        &get(&a, "/api/v1/table/partition/tables/long_table?partition=5").await,
        400,
        "Partition out of range",
    );
    assert_error(
        &get(&a, "/api/v1/table/partition/tables/long_table").await,
        400,
        "partition",
    );
    assert_error(
        &get(
            &a,
            "/api/v1/table/partition/tables/long_table?partition=0&column=nope",
        )
        .await,
        400,
        "No such field",
    );
    assert_error(
        &get(
            &a,
            "/api/v1/table/partition/tables/long_table?partition=0&column=x&field=i",
        )
        .await,
        400,
        "not both",
    );
}

#[tokio::test]
async fn compression_is_negotiated() {
    let a = app();
    for enc in ["gzip", "zstd"] {
        let r = send(
            &a,
            Request::get("/api/v1/search/many")
                .header(header::ACCEPT_ENCODING, enc)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(r.header("content-encoding"), Some(enc));
    }
    let small = send(
        &a,
        Request::get("/api/v1/array/full/scalars/pi")
            .header(header::ACCEPT_ENCODING, "gzip")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(
        small.header("content-encoding"),
        None,
        "tiny bodies stay plain"
    );
    let none = send(
        &a,
        Request::get("/api/v1/search/many")
            .header(header::ACCEPT_ENCODING, "lz4")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(none.header("content-encoding"), None);
}

#[tokio::test]
async fn api_key_required_when_private() {
    let a = app_with(false, 1000);
    let r = get(&a, "/api/v1/metadata/").await;
    assert_error(&r, 401, "Not enough permissions");
    assert!(r.header("www-authenticate").is_some());
    assert_error(
        &get(&a, "/api/v1/metadata/?api_key=wrong").await,
        401,
        "Invalid API key",
    );
    assert_eq!(
        get(&a, "/api/v1/metadata/?api_key=secret").await.status,
        200
    );
    let header_auth = send(
        &a,
        Request::get("/api/v1/metadata/")
            .header(header::AUTHORIZATION, "Apikey secret")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(header_auth.status, 200);
}

#[tokio::test]
async fn unknown_routes_and_methods() {
    let a = app();
    assert_error(&get(&a, "/api/v1/nope/x").await, 404, "Not Found");
    // Writes need the key's scopes first; with them, an in-memory tree is
    // read-only.
    let del = send(
        &a,
        Request::delete("/api/v1/metadata/many")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_error(&del, 401, "delete:node");
    let del = send(
        &a,
        Request::delete("/api/v1/metadata/many")
            .header("Authorization", "Apikey secret")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_error(&del, 405, "read-only");
    let put = send(
        &a,
        Request::put("/api/v1/array/full/dtypes/uint8_2d")
            .header("Authorization", "Apikey secret")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    // Array writes are routed, but this tree cannot store them.
    assert_error(&put, 405, "read-only");
}

#[tokio::test]
async fn a_tiny_memory_budget_serializes_but_never_deadlocks() {
    let tiny = router(
        tiled_demo::demo_tree(),
        ServerConfig {
            auth: AuthConfig {
                api_key: "secret".into(),
                allow_anonymous: true,
                multi_user: None,
            },
            response_bytesize_limit: tiled_server::DEFAULT_RESPONSE_BYTESIZE_LIMIT,
            data_memory_budget: 4096,
            tree_blocks: false,
            allow_origins: Vec::new(),
        },
    );
    let uri = "/api/v1/array/block/nested/images/big_image?block=1,1";
    let reference = get(&app(), uri).await;
    assert_eq!(reference.body.len(), 1024 * 1024 * 8);
    let replies = futures::future::join_all((0..4).map(|_| get(&tiny, uri))).await;
    for r in replies {
        assert_eq!(r.status, 200);
        assert_eq!(
            r.body, reference.body,
            "chunked body equals the whole block"
        );
    }
}

#[tokio::test]
async fn seed_url_style_matches_the_api_routes() {
    let a = app();
    for (seed, api) in [
        (
            "/array/full/dtypes/int64_2d?slice=:5,3:9",
            "/api/v1/array/full/dtypes/int64_2d?slice=:5,3:9",
        ),
        (
            "/array/block/dtypes/int64_2d?block=1,0&format=json",
            "/api/v1/array/block/dtypes/int64_2d?block=1,0&format=json",
        ),
        (
            "/dataframe/full/tables/short_table?format=json&column=x&column=label",
            "/api/v1/table/full/tables/short_table?format=json&column=x&column=label",
        ),
        (
            "/dataframe/partition/tables/long_table?partition=2&column=i",
            "/api/v1/table/partition/tables/long_table?partition=2&column=i",
        ),
        ("/metadata/nested/images", "/api/v1/metadata/nested/images"),
        ("/search/many?fields=", "/api/v1/search/many?fields="),
    ] {
        let (s, t) = (get(&a, seed).await, get(&a, api).await);
        assert_eq!(s.status, 200, "{seed}");
        assert_eq!(s.body, t.body, "{seed} vs {api}");
    }
    assert_error(&get(&a, "/arrayx/full/x").await, 404, "Not Found");
}

#[tokio::test]
async fn container_export_json_and_arrow_fields() {
    let a = app();
    let doc = get(&a, "/api/v1/container/full/scalars?format=json")
        .await
        .json();
    assert_eq!(doc["contents"]["answer"]["data"], 42);
    assert_eq!(doc["contents"].as_object().unwrap().len(), 5);
    let r = get(
        &a,
        "/api/v1/container/full/xarray?format=arrow&field=pressure&field=time",
    )
    .await;
    assert_eq!(r.status, 200);
    let reader =
        arrow_ipc::reader::FileReader::try_new(std::io::Cursor::new(r.body), None).unwrap();
    let batch = reader.into_iter().next().unwrap().unwrap();
    assert_eq!(batch.num_rows(), 100);
    assert_eq!(batch.schema().field(1).name(), "time");
    assert_error(
        &get(&a, "/api/v1/container/full/xarray?format=arrow&field=nope").await,
        400,
        "No such field",
    );
    assert_error(
        &get(&a, "/api/v1/container/full/xarray?format=arrow&field=image").await,
        406,
        "1-d",
    );
    assert_error(
        &get(&a, "/api/v1/container/full/scalars/pi").await,
        404,
        "not a container",
    );
}

async fn get_with(app: &Router, uri: &str, name: header::HeaderName, value: &str) -> Reply {
    send(
        app,
        Request::get(uri)
            .header(header::HOST, "test")
            .header(name, value)
            .body(Body::empty())
            .unwrap(),
    )
    .await
}

#[tokio::test]
async fn blosc2_and_lz4_when_listed_with_caching_headers() {
    let a = app();
    let uri = "/api/v1/table/partition/tables/long_table?partition=0";
    let plain = get(&a, uri).await;
    assert_eq!(plain.status, StatusCode::OK);
    assert_eq!(
        plain.header("cache-control"),
        Some("public, max-age=86400, immutable")
    );
    let b2 = get_with(
        &a,
        uri,
        header::ACCEPT_ENCODING,
        "gzip, deflate, zstd, blosc2",
    )
    .await;
    assert_eq!(b2.header("content-encoding"), Some("blosc2"));
    assert!(b2.body.len() < plain.body.len());
    let mut back = vec![0u8; plain.body.len()];
    // The client decodes frame after frame; one frame at this size.
    assert_eq!(
        blusc::blosc2_decompress(&b2.body, &mut back),
        plain.body.len() as i32
    );
    assert_eq!(back, plain.body);
    let etag = b2.header("etag").expect("etag").to_string();
    assert_ne!(Some(etag.as_str()), plain.header("etag"));
    let again = send(
        &a,
        Request::get(uri)
            .header(header::ACCEPT_ENCODING, "blosc2")
            .header(header::IF_NONE_MATCH, &etag)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(again.status, StatusCode::NOT_MODIFIED);

    let lz4 = get_with(&a, uri, header::ACCEPT_ENCODING, "lz4").await;
    assert_eq!(lz4.header("content-encoding"), Some("lz4"));
    assert_eq!(
        lz4_flex::block::decompress_size_prepended(&lz4.body).unwrap(),
        plain.body
    );

    // Images and Parquet are compressed already; private servers keep
    // caches private.
    let png = get_with(
        &a,
        "/api/v1/array/full/nested/images/medium_image?format=png",
        header::ACCEPT_ENCODING,
        "gzip, lz4",
    )
    .await;
    assert_eq!(png.header("content-type"), Some("image/png"));
    assert_eq!(png.header("content-encoding"), None);
    let pq = get_with(
        &a,
        "/api/v1/table/partition/tables/long_table?partition=0&format=parquet",
        header::ACCEPT_ENCODING,
        "gzip",
    )
    .await;
    assert_eq!(pq.header("content-encoding"), None);
    let private = app_with(false, tiled_server::DEFAULT_RESPONSE_BYTESIZE_LIMIT);
    let r = get_with(
        &private,
        "/api/v1/array/full/scalars/pi",
        header::AUTHORIZATION,
        "Apikey secret",
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.header("cache-control"),
        Some("private, max-age=86400, immutable")
    );
}

#[tokio::test]
async fn export_formats_answer_with_their_media_types() {
    let a = app();
    for (uri, media_type, magic) in [
        (
            "/api/v1/container/full/nested/cubes",
            "application/x-hdf5",
            &b"\x89HDF"[..],
        ),
        (
            "/api/v1/array/full/dtypes/int64_2d?format=npy",
            "application/x-npy",
            b"\x93NUMPY",
        ),
        (
            "/api/v1/array/full/dtypes/uint8_2d?format=png",
            "image/png",
            b"\x89PNG",
        ),
        (
            "/api/v1/array/full/nested/cubes/tiny_cube?format=tif",
            "image/tiff",
            b"II*\0",
        ),
        (
            "/api/v1/array/full/dtypes/uint8_2d?format=jpg",
            "image/jpeg",
            b"\xff\xd8",
        ),
        (
            "/api/v1/table/full/tables/short_table?format=parquet",
            "application/x-parquet",
            b"PAR1",
        ),
        (
            "/array/full/nested/images/tiny_image?format=png&slice=:50,10:40",
            "image/png",
            b"\x89PNG",
        ),
        (
            "/dataframe/full/tables/short_table?format=xslx",
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            b"PK",
        ),
    ] {
        let r = get(&a, uri).await;
        assert_eq!(
            r.status,
            StatusCode::OK,
            "{uri}: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert_eq!(r.header("content-type"), Some(media_type), "{uri}");
        assert!(r.body.starts_with(magic), "{uri}");
    }
    let csv = get(
        &a,
        "/api/v1/array/full/dtypes/int32_big_endian?format=csv&slice=0:3",
    )
    .await;
    assert_eq!(csv.header("content-type"), Some("text/csv"));
    let lines: Vec<&str> = std::str::from_utf8(&csv.body).unwrap().lines().collect();
    assert_eq!(lines.len(), 3);
    let cube = get(&a, "/api/v1/array/full/nested/cubes/tiny_cube?format=csv").await;
    assert_error(&cube, 406, "at most 2 dimensions");
    let line_png = get(&a, "/api/v1/array/full/dtypes/float64?format=png").await;
    assert_error(&line_png, 406, "2-d");
    let seq = get(
        &a,
        "/api/v1/table/full/tables/short_table?format=json-seq&column=i",
    )
    .await;
    let records: Vec<Value> = seq
        .body
        .split(|&b| b == 0x1E)
        .skip(1)
        .map(|r| serde_json::from_slice(r).unwrap())
        .collect();
    assert_eq!(records.len(), 10);
    assert_eq!(records[3], serde_json::json!({"i": 3}));
}

#[tokio::test]
async fn an_oversized_body_is_a_json_413() {
    let a = app();
    let body = vec![0u8; (256 << 20) + 1];
    let put = send(
        &a,
        Request::put("/api/v1/array/full/dtypes/uint8_2d")
            .header("Authorization", "Apikey secret")
            .body(Body::from(body))
            .unwrap(),
    )
    .await;
    assert_error(&put, 413, "larger than");
}

/// CORS is off by default; with allowed origins, those (and only those)
/// get the CORS headers, preflights included.
#[tokio::test]
async fn cors_only_for_allowed_origins() {
    let get = |origin: &str| {
        Request::get("/api/v1/metadata/")
            .header(header::ORIGIN, origin)
            .body(Body::empty())
            .unwrap()
    };
    let off = send(&app(), get("https://example.org")).await;
    assert_eq!(off.status, StatusCode::OK);
    assert!(off.header("access-control-allow-origin").is_none());
    let a = router(
        tiled_demo::demo_tree(),
        ServerConfig {
            auth: AuthConfig {
                api_key: "secret".into(),
                allow_anonymous: true,
                multi_user: None,
            },
            response_bytesize_limit: tiled_server::DEFAULT_RESPONSE_BYTESIZE_LIMIT,
            data_memory_budget: tiled_server::DEFAULT_DATA_MEMORY_BUDGET,
            tree_blocks: false,
            allow_origins: vec!["https://example.org".into()],
        },
    );
    let ok = send(&a, get("https://example.org")).await;
    assert_eq!(
        ok.header("access-control-allow-origin"),
        Some("https://example.org")
    );
    assert_eq!(ok.header("access-control-allow-credentials"), Some("true"));
    let other = send(&a, get("https://evil.example")).await;
    assert!(other.header("access-control-allow-origin").is_none());
    let preflight = send(
        &a,
        Request::options("/api/v1/array/full/x")
            .header(header::ORIGIN, "https://example.org")
            .header("access-control-request-method", "PUT")
            .header(
                "access-control-request-headers",
                "content-type,authorization",
            )
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(preflight.status, StatusCode::OK);
    assert_eq!(
        preflight.header("access-control-allow-methods"),
        Some("PUT")
    );
}
