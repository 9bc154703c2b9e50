//! One conformance suite, run on SQLite and on PostgreSQL alike: every
//! query type and sort compared with the in-memory reference semantics
//! (`tiled_adapters::search`), paging under concurrent inserts, counts,
//! distinct, revisions, conflicts and deletes.
//!
//! PostgreSQL runs when `TILED_TEST_POSTGRES_URI` is set (scripts/test
//! starts a throw-away cluster and sets it); each run gets its own schema.

use std::sync::Arc;

use serde_json::{Value, json};
use tiled_adapters::{ContainerAdapter, DistinctRequest, MemoryContainer, Node, NodeData, SortKey};
use tiled_catalog::load::{IN_MEMORY_MIMETYPE, InMemoryOpener, load_tree};
use tiled_catalog::sql::ValueType;
use tiled_catalog::{Catalog, CatalogContainer, CatalogError, CatalogUri, NewNode};
use tiled_model::{Query, Spec, StructureFamily};

/// The reference tree: the demo's `many` (1000 children with rich
/// metadata) plus a few nodes with awkward values.
fn reference() -> Node {
    let demo = tiled_demo::demo_tree();
    let NodeData::Container(root) = &demo.data else {
        panic!("demo root is a container")
    };
    let many = root.get("many").unwrap().unwrap();
    let NodeData::Container(m) = &many.data else {
        panic!()
    };
    let mut children: Vec<(String, Node)> = m.search(&[], &[], 0, usize::MAX).unwrap().entries;
    let odd = [
        (
            "odd_null",
            json!({"i": null, "color": "Red", "tags": [], "nested": {"x": "7"}}),
        ),
        (
            "odd_bool",
            json!({"i": true, "color": "rEd", "tags": ["x", 1], "score": "12"}),
        ),
        (
            "odd_float",
            json!({"i": 2.0, "score": -0.5, "tags": [[1, 2], {"a": 1}], "name": "Ünïcode wörds, mixed-Case"}),
        ),
        ("odd_empty", json!({})),
    ];
    for (k, md) in odd {
        children.push((
            k.to_string(),
            Node::container(MemoryContainer::default()).with_metadata(md),
        ));
    }
    Node::container(MemoryContainer::new(children))
}

fn q(pairs: &[(&str, &str)]) -> Vec<Query> {
    Query::parse_params(pairs.iter().copied()).unwrap()
}

fn keys(
    c: &dyn ContainerAdapter,
    queries: &[Query],
    sort: &[SortKey],
    offset: usize,
    limit: usize,
) -> (usize, Vec<String>) {
    let page = c.search(queries, sort, offset, limit).unwrap();
    (
        page.count,
        page.entries.into_iter().map(|(k, _)| k).collect(),
    )
}

fn cond(name: &str, fields: &[(&str, &str)]) -> Vec<(String, String)> {
    fields
        .iter()
        .map(|(f, v)| (format!("filter[{name}][condition][{f}]"), v.to_string()))
        .collect()
}

/// Every query the suite compares, as URL parameter lists.
fn battery() -> Vec<Vec<(String, String)>> {
    let mut all = vec![
        cond("eq", &[("key", "color"), ("value", "\"red\"")]),
        cond("eq", &[("key", "group"), ("value", "3")]),
        cond("eq", &[("key", "group"), ("value", "3.0")]),
        cond("eq", &[("key", "nested.x"), ("value", "2")]),
        cond("eq", &[("key", "nested.x"), ("value", "\"7\"")]),
        cond("eq", &[("key", "i"), ("value", "null")]),
        cond("eq", &[("key", "i"), ("value", "true")]),
        cond("eq", &[("key", "i"), ("value", "2")]),
        cond("eq", &[("key", "tags"), ("value", "[\"even\", \"fizz\"]")]),
        cond("eq", &[("key", "tags"), ("value", "[]")]),
        cond("eq", &[("key", "missing"), ("value", "1")]),
        cond("noteq", &[("key", "color"), ("value", "\"red\"")]),
        cond("noteq", &[("key", "i"), ("value", "5")]),
        cond(
            "comparison",
            &[("operator", "lt"), ("key", "score"), ("value", "10")],
        ),
        cond(
            "comparison",
            &[("operator", "ge"), ("key", "score"), ("value", "249.5")],
        ),
        cond(
            "comparison",
            &[("operator", "gt"), ("key", "i"), ("value", "990")],
        ),
        cond(
            "comparison",
            &[("operator", "le"), ("key", "i"), ("value", "1.5")],
        ),
        cond(
            "comparison",
            &[
                ("operator", "gt"),
                ("key", "name"),
                ("value", "\"item 995\""),
            ],
        ),
        cond(
            "comparison",
            &[("operator", "lt"), ("key", "color"), ("value", "\"green\"")],
        ),
        cond(
            "comparison",
            &[("operator", "gt"), ("key", "i"), ("value", "true")],
        ),
        cond("contains", &[("key", "tags"), ("value", "\"fizz\"")]),
        cond("contains", &[("key", "tags"), ("value", "1")]),
        cond("contains", &[("key", "color"), ("value", "\"red\"")]),
        cond("in", &[("key", "group"), ("value", "[1, 2, \"3\"]")]),
        cond("in", &[("key", "color"), ("value", "[]")]),
        cond(
            "notin",
            &[("key", "group"), ("value", "[0, 1, 2, 3, 4, 5, 6, 7]")],
        ),
        cond("notin", &[("key", "group"), ("value", "[]")]),
        cond("keypresent", &[("key", "optional"), ("exists", "true")]),
        cond("keypresent", &[("key", "optional"), ("exists", "false")]),
        cond("keypresent", &[("key", "nested.label"), ("exists", "true")]),
        cond("like", &[("key", "name"), ("pattern", "\"item 1_\"")]),
        cond("like", &[("key", "color"), ("pattern", "\"R%\"")]),
        cond(
            "like",
            &[("key", "description"), ("pattern", "\"%group 3\"")],
        ),
        cond(
            "regex",
            &[
                ("key", "name"),
                ("pattern", "^item 9[0-9]$"),
                ("case_sensitive", "true"),
            ],
        ),
        cond(
            "regex",
            &[
                ("key", "color"),
                ("pattern", "^red$"),
                ("case_sensitive", "false"),
            ],
        ),
        cond("fulltext", &[("text", "blue group")]),
        cond("fulltext", &[("text", "SAMPLE 7")]),
        cond("fulltext", &[("text", "mixed")]),
        cond("fulltext", &[("text", "nothing-like-this")]),
        cond(
            "specs",
            &[("include", "[\"quad\"]"), ("exclude", "[\"pent\"]")],
        ),
        cond("specs", &[("include", "[]"), ("exclude", "[\"quad\"]")]),
        cond("structure_family", &[("value", "array")]),
        cond(
            "keys_filter",
            &[("keys", "[\"item_0003\", \"odd_bool\", \"nope\"]")],
        ),
        cond("lookup", &[("key", "item_0042")]),
    ];
    // Two conditions at once.
    let mut both = cond("eq", &[("key", "color"), ("value", "\"blue\"")]);
    both.extend(cond(
        "comparison",
        &[("operator", "lt"), ("key", "i"), ("value", "100")],
    ));
    all.push(both);
    all
}

fn sorts() -> Vec<Vec<SortKey>> {
    let s = |k: &str, d: bool| SortKey {
        key: k.into(),
        descending: d,
    };
    vec![
        vec![],
        vec![s("", true)],
        vec![s("id", true)],
        vec![s("score", false)],
        vec![s("score", true)],
        vec![s("i", false)],
        vec![s("metadata.color", false), s("group", true)],
        vec![s("nested.label", true), s("id", false)],
        vec![s("missing", false)],
    ]
}

fn isolated_postgres(uri: &str) -> CatalogUri {
    // A schema of our own, named after the process and time.
    let schema = format!(
        "conformance_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let mut client =
        postgres::Client::connect(uri, postgres::NoTls).expect("connect to PostgreSQL");
    client
        .batch_execute(&format!("CREATE SCHEMA {schema}"))
        .expect("create schema");
    let sep = if uri.contains('?') { '&' } else { '?' };
    CatalogUri::Postgres(format!("{uri}{sep}options=-csearch_path%3D{schema}"))
}

fn catalogs() -> Vec<(&'static str, Catalog)> {
    let mut out = vec![(
        "sqlite",
        Catalog::temporary().expect("temporary SQLite catalog"),
    )];
    match std::env::var("TILED_TEST_POSTGRES_URI") {
        Ok(uri) if !uri.is_empty() => {
            let c = Catalog::open(&isolated_postgres(&uri), true).expect("PostgreSQL catalog");
            out.push(("postgresql", c));
        }
        _ => eprintln!("TILED_TEST_POSTGRES_URI unset: PostgreSQL part skipped"),
    }
    out
}

fn loaded(mut catalog: Catalog, tree: &Node) -> (Arc<Catalog>, Arc<dyn ContainerAdapter>) {
    let wrapper = Node::container(MemoryContainer::new([("t".to_string(), tree.clone())]));
    catalog.register_opener(
        IN_MEMORY_MIMETYPE,
        Arc::new(InMemoryOpener {
            tree: wrapper.clone(),
        }),
    );
    load_tree(&catalog, &[], &wrapper).unwrap();
    let catalog = Arc::new(catalog);
    let root = CatalogContainer::root(catalog.clone()).unwrap();
    let NodeData::Container(t) = root.get("t").unwrap().unwrap().data else {
        panic!("t is a container")
    };
    (catalog, t)
}

fn as_container(n: &Node) -> Arc<dyn ContainerAdapter> {
    match &n.data {
        NodeData::Container(c) => c.clone(),
        _ => panic!("not a container"),
    }
}

#[test]
fn queries_and_sorts_match_the_reference_semantics() {
    let tree = reference();
    let reference = as_container(&tree);
    for (name, catalog) in catalogs() {
        let (catalog, sql) = loaded(catalog, &tree);
        assert_eq!(
            sql.len().unwrap(),
            reference.len().unwrap(),
            "{name}: count"
        );
        compare_battery(name, &*reference, &*sql);
        // Indexes change plans, never results.
        for (key, t) in [
            ("score", ValueType::Number),
            ("i", ValueType::Number),
            ("color", ValueType::Text),
            ("name", ValueType::Text),
            ("nested.label", ValueType::Text),
        ] {
            catalog
                .create_metadata_index(key, t, Some("score"))
                .unwrap();
            // Idempotent.
            catalog.create_metadata_index(key, t, None).unwrap();
        }
        compare_battery(name, &*reference, &*sql);
    }
}

/// Every matching key, in pages of `limit` that each start after the
/// previous page's cursor (keyset pagination).
fn keys_by_cursor(
    c: &dyn ContainerAdapter,
    queries: &[Query],
    sort: &[SortKey],
    limit: usize,
) -> Vec<String> {
    let mut page = c.search(queries, sort, 0, limit).unwrap();
    let mut out = Vec::new();
    loop {
        assert!(page.entries.len() <= limit);
        out.extend(page.entries.drain(..).map(|(k, _)| k));
        match page.next_cursor {
            Some(cursor) => page = c.search_after(queries, sort, cursor, limit).unwrap(),
            None => return out,
        }
    }
}

/// Counts are exact, except beyond PostgreSQL's exact-count limit, where
/// they are the planner's estimate (never below the limit).
fn assert_count(name: &str, got: usize, want: usize, params: &[(String, String)]) {
    let limit = tiled_catalog::POSTGRES_EXACT_COUNT_LIMIT as usize;
    if name == "postgresql" && want > limit {
        assert!(got > limit, "{name}: {params:?} count {got} (true {want})");
    } else {
        assert_eq!(got, want, "{name}: {params:?} count");
    }
}

fn compare_battery(name: &str, reference: &dyn ContainerAdapter, sql: &dyn ContainerAdapter) {
    for params in battery() {
        let pairs: Vec<(&str, &str)> = params
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        let queries = q(&pairs);
        for sort in sorts() {
            let want = keys(reference, &queries, &sort, 0, usize::MAX);
            let got = keys(sql, &queries, &sort, 0, usize::MAX);
            assert_eq!(got.1, want.1, "{name}: {params:?} sorted by {sort:?}");
            assert_count(name, got.0, want.0, &params);
            let paged = keys_by_cursor(sql, &queries, &sort, 53);
            assert_eq!(
                paged, want.1,
                "{name}: {params:?} by cursor, sorted by {sort:?}"
            );
        }
        // A page from the middle.
        let want = keys(reference, &queries, &[], 3, 5);
        let got = keys(sql, &queries, &[], 3, 5);
        assert_eq!(got.1, want.1, "{name}: {params:?} page");
        assert_count(name, got.0, want.0, &params);
    }
}

#[test]
fn sqlite_metadata_indexes_match_the_generated_sql() {
    // On a small table the planner may rightly prefer a scan; `INDEXED BY`
    // fails outright if the index cannot serve the query, which is what
    // must hold: the index expressions are the ones the queries use.
    let tree = reference();
    let (catalog, _sql) = loaded(Catalog::temporary().unwrap(), &tree);
    let statements = catalog
        .create_metadata_index("score", ValueType::Number, None)
        .unwrap();
    let name = |suffix: &str| -> String {
        statements
            .iter()
            .filter_map(|s| s.split_whitespace().nth(5))
            .find(|n| n.ends_with(suffix))
            .unwrap()
            .to_string()
    };
    let (filter_index, sort_index) = (name("_num"), name("_sort"));
    let mut s = tiled_catalog::sql::Sql::new(tiled_catalog::db::Dialect::Sqlite);
    let parent = s.int(2);
    let cond = tiled_catalog::sql::condition(
        &mut s,
        &Query::Comparison {
            operator: tiled_model::CompareOp::Gt,
            key: "score".into(),
            value: json!(100),
        },
    )
    .unwrap();
    let plan = catalog
        .explain(
            &format!("SELECT n.id FROM nodes n INDEXED BY {filter_index} WHERE n.parent = {parent} AND {cond}"),
            &s.params,
        )
        .unwrap();
    assert!(
        plan.contains(&filter_index) && plan.contains("score"),
        "{plan}"
    );
    let order =
        tiled_catalog::sql::order_terms(tiled_catalog::db::Dialect::Sqlite, "score", true).unwrap();
    let mut s = tiled_catalog::sql::Sql::new(tiled_catalog::db::Dialect::Sqlite);
    let parent = s.int(2);
    let plan = catalog
        .explain(
            &format!(
                "SELECT n.id FROM nodes n INDEXED BY {sort_index} WHERE n.parent = {parent} ORDER BY {}, n.id LIMIT 1",
                order.join(", ")
            ),
            &s.params,
        )
        .unwrap();
    assert!(plan.contains(&sort_index), "{plan}");
    // Only the id tie-breaker is left to sort.
    assert!(!plan.contains("USE TEMP B-TREE FOR ORDER BY"), "{plan}");
    // Equality on one key, newest first by another: one index serves both.
    let statements = catalog
        .create_metadata_index("color", ValueType::Text, Some("score"))
        .unwrap();
    let compound = statements
        .iter()
        .filter_map(|s| s.split_whitespace().nth(5))
        .find(|n| n.contains("_by_"))
        .unwrap()
        .to_string();
    let mut s = tiled_catalog::sql::Sql::new(tiled_catalog::db::Dialect::Sqlite);
    let parent = s.int(2);
    let cond = tiled_catalog::sql::condition(
        &mut s,
        &Query::Eq {
            key: "color".into(),
            value: json!("red"),
        },
    )
    .unwrap();
    let plan = catalog
        .explain(
            &format!(
                "SELECT n.id FROM nodes n INDEXED BY {compound} WHERE n.parent = {parent} AND {cond} ORDER BY {}, n.id LIMIT 1",
                order.join(", ")
            ),
            &s.params,
        )
        .unwrap();
    assert!(plan.contains(&compound), "{plan}");
    assert!(!plan.contains("USE TEMP B-TREE FOR ORDER BY"), "{plan}");
}

#[test]
fn nodes_carry_metadata_specs_structure_and_data() {
    let tree = reference();
    for (name, catalog) in catalogs() {
        let (_catalog, sql) = loaded(catalog, &tree);
        let item = sql.get("item_0005").unwrap().unwrap();
        assert_eq!(item.metadata["color"], json!("blue"), "{name}");
        assert_eq!(item.specs, vec![Spec::new("pent")], "{name}");
        let NodeData::Array(a) = &item.data else {
            panic!("{name}: item_0005 is an array")
        };
        assert_eq!(a.structure().shape, vec![3]);
        let data = a.read_block(&[0]).unwrap();
        assert_eq!(
            data.bytes,
            [5i64, 6, 7]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect::<Vec<_>>()
        );
        let c = sql.get("item_0004").unwrap().unwrap();
        assert_eq!(as_container(&c).len().unwrap(), 0, "{name}");
        assert!(sql.get("nope").unwrap().is_none());
        assert_eq!(item.family(), StructureFamily::Array);
    }
}

#[test]
fn distinct_matches_the_reference() {
    let tree = reference();
    let reference = as_container(&tree);
    for (name, catalog) in catalogs() {
        let (_catalog, sql) = loaded(catalog, &tree);
        for queries in [
            vec![],
            q(&[
                ("filter[eq][condition][key]", "group"),
                ("filter[eq][condition][value]", "1"),
            ]),
        ] {
            let keys = vec![
                "color".to_string(),
                "nested.label".to_string(),
                "i".to_string(),
            ];
            let req = DistinctRequest {
                queries: &queries,
                metadata_keys: &keys,
                structure_families: true,
                specs: true,
                counts: true,
            };
            let want = reference.distinct(&req).unwrap();
            let got = sql.distinct(&req).unwrap();
            assert_eq!(got.structure_families, want.structure_families, "{name}");
            assert_eq!(got.specs, want.specs, "{name}");
            assert_eq!(got.metadata, want.metadata, "{name}");
        }
    }
}

#[test]
fn paging_is_stable_while_others_insert() {
    for (name, catalog) in catalogs() {
        let catalog = Arc::new(catalog);
        let node = |k: String, i: usize| NewNode {
            key: k,
            structure_family: StructureFamily::Container,
            structure: None,
            metadata: json!({"i": i}).as_object().cloned().unwrap(),
            specs: vec![],
            access_blob: json!({}),
            data_sources: vec![],
        };
        catalog.create_node(&[], &node("c".into(), 0)).unwrap();
        let before: Vec<NewNode> = (0..300).map(|i| node(format!("a{i:03}"), i)).collect();
        catalog.create_nodes(&["c".to_string()], &before).unwrap();
        let writer = {
            let catalog = catalog.clone();
            std::thread::spawn(move || {
                for i in 0..200 {
                    catalog
                        .create_node(&["c".to_string()], &node(format!("b{i:03}"), 1000 + i))
                        .unwrap();
                }
            })
        };
        let root = CatalogContainer::root(catalog.clone()).unwrap();
        let c = as_container(&root.get("c").unwrap().unwrap());
        let mut seen = Vec::new();
        let mut offset = 0;
        loop {
            let page = c.search(&[], &[], offset, 7).unwrap();
            if page.entries.is_empty() {
                break;
            }
            offset += page.entries.len();
            seen.extend(page.entries.into_iter().map(|(k, _)| k));
        }
        writer.join().unwrap();
        let first: Vec<String> = seen
            .iter()
            .filter(|k| k.starts_with('a'))
            .cloned()
            .collect();
        let want: Vec<String> = (0..300).map(|i| format!("a{i:03}")).collect();
        assert_eq!(first, want, "{name}: every earlier node once, in order");
        let mut dedup = seen.clone();
        dedup.sort();
        dedup.dedup();
        assert_eq!(dedup.len(), seen.len(), "{name}: no duplicates");
        // A node carries the count of when it was looked up: look again.
        let c = as_container(&root.get("c").unwrap().unwrap());
        assert_eq!(c.len().unwrap(), 500, "{name}");
    }
}

#[test]
fn cursor_pages_stay_correct_while_others_insert_into_a_sorted_order() {
    // Offsets shift when a node lands before the reader's position in a
    // metadata order; cursors do not: every node present from the start is
    // seen exactly once, and the pages together stay in order.
    for (name, catalog) in catalogs() {
        let catalog = Arc::new(catalog);
        let node = |k: String, t: i64| NewNode {
            key: k,
            structure_family: StructureFamily::Container,
            structure: None,
            metadata: json!({"t": t}).as_object().cloned().unwrap(),
            specs: vec![],
            access_blob: json!({}),
            data_sources: vec![],
        };
        catalog.create_node(&[], &node("k".into(), 0)).unwrap();
        let before: Vec<NewNode> = (0..300).map(|i| node(format!("a{i:03}"), 2 * i)).collect();
        catalog.create_nodes(&["k".to_string()], &before).unwrap();
        for descending in [false, true] {
            let tag = if descending { "d" } else { "u" };
            let writer = {
                let catalog = catalog.clone();
                let tag = tag.to_string();
                std::thread::spawn(move || {
                    // Odd values interleave with the even ones; every tenth
                    // ties with an existing value.
                    for j in 0..200i64 {
                        let t = if j % 10 == 0 {
                            2 * j
                        } else {
                            (j * 37 % 600) | 1
                        };
                        catalog
                            .create_node(&["k".to_string()], &node(format!("{tag}{j:03}"), t))
                            .unwrap();
                    }
                })
            };
            let root = CatalogContainer::root(catalog.clone()).unwrap();
            let c = as_container(&root.get("k").unwrap().unwrap());
            let sort = [SortKey {
                key: "t".into(),
                descending,
            }];
            let mut seen: Vec<(String, i64)> = Vec::new();
            let mut page = c.search(&[], &sort, 0, 7).unwrap();
            loop {
                for (k, n) in page.entries.drain(..) {
                    let t = n.metadata["t"].as_i64().unwrap();
                    seen.push((k, t));
                }
                // Let the writer get ahead between pages.
                std::thread::sleep(std::time::Duration::from_micros(200));
                match page.next_cursor {
                    Some(cursor) => page = c.search_after(&[], &sort, cursor, 7).unwrap(),
                    None => break,
                }
            }
            writer.join().unwrap();
            let mut firsts: Vec<&str> = seen
                .iter()
                .filter(|(k, _)| k.starts_with('a'))
                .map(|(k, _)| k.as_str())
                .collect();
            if descending {
                firsts.reverse();
            }
            let want: Vec<String> = (0..300).map(|i| format!("a{i:03}")).collect();
            assert_eq!(
                firsts, want,
                "{name} {tag}: every earlier node once, in order"
            );
            let mut dedup: Vec<&String> = seen.iter().map(|(k, _)| k).collect();
            dedup.sort();
            dedup.dedup();
            assert_eq!(dedup.len(), seen.len(), "{name} {tag}: no duplicates");
            let ordered = seen.windows(2).all(|w| {
                if descending {
                    w[0].1 >= w[1].1
                } else {
                    w[0].1 <= w[1].1
                }
            });
            assert!(ordered, "{name} {tag}: pages together in order");
        }
        // A cursor whose node was deleted cannot place a metadata-sorted
        // page: a clear error, not a wrong page. The default order needs
        // only the id, so it carries on.
        let root = CatalogContainer::root(catalog.clone()).unwrap();
        let c = as_container(&root.get("k").unwrap().unwrap());
        let sort = [SortKey {
            key: "t".into(),
            descending: false,
        }];
        let cursor = c.search(&[], &[], 0, 10).unwrap().next_cursor.unwrap();
        catalog
            .delete_node(&["k".to_string(), "a009".to_string()])
            .unwrap();
        assert!(
            matches!(
                c.search_after(&[], &sort, cursor, 5),
                Err(tiled_adapters::AdapterError::BadRequest(_))
            ),
            "{name}"
        );
        let next = c.search_after(&[], &[], cursor, 2).unwrap();
        let got: Vec<&str> = next.entries.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(got, ["a010", "a011"], "{name}");
    }
}

/// A catalog written by schema version 1: the root, a container and an
/// array with a data source and an asset, inserted as version 1 knew them.
fn v1_catalog(uri: &CatalogUri) {
    let pool = Catalog::connect(uri).unwrap();
    assert_eq!(tiled_catalog::schema::upgrade_to(&pool, 1).unwrap(), [1]);
    pool.transaction(|c| {
        let t = "'2026-01-02T03:04:05Z'";
        c.batch(&format!(
            "INSERT INTO nodes (parent, key, path, structure_family, metadata, specs, access_blob, time_created, time_updated, child_count) \
             VALUES (NULL, '', '', 'container', '{{}}', '[]', '{{}}', {t}, {t}, 1);
             INSERT INTO nodes (parent, key, path, structure_family, metadata, specs, access_blob, time_created, time_updated, child_count) \
             SELECT id, 'old', 'old', 'container', '{{\"beamline\": \"x\"}}', '[]', '{{}}', {t}, {t}, 1 FROM nodes WHERE path = '';
             INSERT INTO structures (id, structure) VALUES ('s1', '{structure}');
             INSERT INTO nodes (parent, key, path, structure_family, structure_id, metadata, specs, access_blob, time_created, time_updated) \
             SELECT id, 'a', 'old/a', 'array', 's1', '{{\"v\": 1}}', '[]', '{{}}', {t}, {t} FROM nodes WHERE path = 'old';
             INSERT INTO data_sources (node_id, structure_family, structure_id, mimetype, parameters, management) \
             SELECT id, 'array', 's1', 'application/x-hdf5', '{{\"dataset\": \"/d\"}}', 'external' FROM nodes WHERE path = 'old/a';
             INSERT INTO assets (data_uri, is_directory, time_created) VALUES ('file://localhost/data/a.h5', {f}, {t});
             INSERT INTO data_source_asset_association (data_source_id, asset_id, parameter, num) \
             SELECT d.id, a.id, 'data_uri', NULL FROM data_sources d, assets a;",
            f = if matches!(uri, CatalogUri::Sqlite(_)) { "0" } else { "false" },
            structure = json!({
                "data_type": {"endianness": "little", "kind": "i", "itemsize": 8, "dt_units": null},
                "chunks": [[3]], "shape": [3], "dims": null, "resizable": false,
            }),
        ))
    })
    .unwrap();
}

#[test]
fn a_version_1_catalog_upgrades_with_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let mut uris = vec![("sqlite", CatalogUri::Sqlite(dir.path().join("v1.db")))];
    if let Ok(uri) = std::env::var("TILED_TEST_POSTGRES_URI")
        && !uri.is_empty()
    {
        uris.push(("postgresql", isolated_postgres(&uri)));
    }
    for (name, uri) in uris {
        v1_catalog(&uri);
        // An old schema is refused until upgraded, with what was found.
        assert!(
            matches!(
                Catalog::open(&uri, false),
                Err(CatalogError::OldSchema { found: 1, .. })
            ),
            "{name}"
        );
        let latest = tiled_catalog::schema::LATEST;
        let (found, applied) = Catalog::migrate(&uri).unwrap();
        assert_eq!(found, 1, "{name}");
        assert_eq!(applied, (2..=latest).collect::<Vec<_>>(), "{name}");
        assert_eq!(Catalog::migrate(&uri).unwrap(), (latest, vec![]), "{name}");
        let catalog = Arc::new(Catalog::open(&uri, false).unwrap());
        // What version 1 stored is all there.
        let root = CatalogContainer::root(catalog.clone()).unwrap();
        let old = root.get("old").unwrap().unwrap();
        assert_eq!(old.metadata["beamline"], json!("x"), "{name}");
        let old = as_container(&old);
        assert_eq!(old.len().unwrap(), 1, "{name}");
        let a = old.get("a").unwrap().unwrap();
        assert_eq!(a.metadata["v"], json!(1), "{name}");
        let id = catalog
            .node_id(&["old".into(), "a".into()])
            .unwrap()
            .unwrap();
        let sources = catalog.data_sources(id).unwrap();
        assert_eq!(sources.len(), 1, "{name}");
        assert_eq!(sources[0].mimetype, "application/x-hdf5", "{name}");
        assert_eq!(sources[0].parameters, json!({"dataset": "/d"}), "{name}");
        assert_eq!(sources[0].properties, json!({}), "{name}: v2 default");
        assert_eq!(
            sources[0]
                .assets
                .iter()
                .map(|a| (
                    a.data_uri.as_str(),
                    a.parameter.as_deref(),
                    a.num,
                    a.is_directory
                ))
                .collect::<Vec<_>>(),
            [("file://localhost/data/a.h5", Some("data_uri"), None, false)],
            "{name}"
        );
        // And version 2's column takes new values.
        let new = NewNode {
            key: "b".into(),
            structure_family: StructureFamily::Container,
            structure: None,
            metadata: Default::default(),
            specs: vec![],
            access_blob: json!({}),
            data_sources: vec![tiled_catalog::NewDataSource {
                mimetype: "text/csv".into(),
                parameters: json!({}),
                properties: json!({"rows": 3}),
                management: "external".into(),
                assets: vec![],
            }],
        };
        let id = catalog.create_node(&["old".into()], &new).unwrap();
        assert_eq!(
            catalog.data_sources(id).unwrap()[0].properties,
            json!({"rows": 3}),
            "{name}"
        );
    }
}

#[test]
fn revisions_conflicts_and_deletes() {
    for (name, catalog) in catalogs() {
        let new = |k: &str, md: Value| NewNode {
            key: k.into(),
            structure_family: StructureFamily::Container,
            structure: None,
            metadata: md.as_object().cloned().unwrap(),
            specs: vec![],
            access_blob: json!({}),
            data_sources: vec![],
        };
        catalog
            .create_node(&[], &new("x", json!({"v": 1, "title": "first words"})))
            .unwrap();
        assert!(
            matches!(
                catalog.create_node(&[], &new("x", json!({}))),
                Err(CatalogError::Conflict(_))
            ),
            "{name}"
        );
        assert!(matches!(
            catalog.create_node(&["nope".into()], &new("y", json!({}))),
            Err(CatalogError::NotFound(_))
        ));
        assert!(matches!(
            catalog.create_node(&[], &new("a/b", json!({}))),
            Err(CatalogError::BadRequest(_))
        ));
        catalog
            .create_node(&["x".into()], &new("child", json!({})))
            .unwrap();
        let path = vec!["x".to_string()];
        let r1 = catalog
            .update_metadata(
                &path,
                json!({"v": 2, "title": "second"}).as_object().unwrap(),
                None,
                None,
            )
            .unwrap();
        let r2 = catalog
            .update_metadata(
                &path,
                json!({"v": 3}).as_object().unwrap(),
                Some(&[Spec::new("s")]),
                None,
            )
            .unwrap();
        assert_eq!((r1, r2), (1, 2), "{name}");
        let (total, revs) = catalog.revisions(&path, 0, 10).unwrap();
        assert_eq!(total, 2);
        assert_eq!(revs[0].metadata, json!({"v": 1, "title": "first words"}));
        assert_eq!(revs[1].metadata, json!({"v": 2, "title": "second"}));
        // Full text follows the current metadata only.
        let catalog = Arc::new(catalog);
        let root = CatalogContainer::root(catalog.clone()).unwrap();
        let ft = |t: &str| q(&[("filter[fulltext][condition][text]", t)]);
        assert_eq!(
            keys(&root, &ft("first"), &[], 0, 10).1,
            Vec::<String>::new(),
            "{name}"
        );
        let x = root.get("x").unwrap().unwrap();
        assert_eq!(x.metadata["v"], json!(3));
        assert_eq!(x.specs, vec![Spec::new("s")]);
        catalog.delete_revision(&path, 1).unwrap();
        assert!(matches!(
            catalog.delete_revision(&path, 1),
            Err(CatalogError::NotFound(_))
        ));
        assert_eq!(catalog.revisions(&path, 0, 10).unwrap().0, 1);
        catalog.delete_node(&path).unwrap();
        assert!(root.get("x").unwrap().is_none());
        assert!(
            catalog
                .node_id(&["x".into(), "child".into()])
                .unwrap()
                .is_none(),
            "{name}: cascade"
        );
        assert!(matches!(
            catalog.delete_node(&path),
            Err(CatalogError::NotFound(_))
        ));
    }
}

#[test]
fn bad_keys_are_caller_errors() {
    for (name, catalog) in catalogs() {
        let catalog = Arc::new(catalog);
        let root = CatalogContainer::root(catalog).unwrap();
        let bad = vec![Query::Eq {
            key: "a'b".into(),
            value: json!(1),
        }];
        assert!(
            matches!(
                root.search(&bad, &[], 0, 10),
                Err(tiled_adapters::AdapterError::BadRequest(_))
            ),
            "{name}"
        );
        let sort = vec![SortKey {
            key: "x;drop".into(),
            descending: false,
        }];
        assert!(root.search(&[], &sort, 0, 10).is_err(), "{name}");
    }
}

/// Arrays through the writer: refused without storage; with it, a Zarr
/// store per node (writable data source), writes by whole and by block,
/// and a duplicate key that leaves no stray store behind.
#[test]
fn writer_creates_and_writes_zarr_arrays() {
    use tiled_adapters::{AdapterError, NewChild, TreeWriter};
    use tiled_catalog::writer::CatalogWriter;

    for (name, catalog) in catalogs() {
        let catalog = Arc::new(catalog);
        let storage = tempfile::tempdir().unwrap();
        let key = format!("arr_{name}");
        let child = NewChild {
            key: key.clone(),
            structure_family: StructureFamily::Array,
            metadata: serde_json::Map::new(),
            specs: Vec::new(),
            structure: Some(json!({
                "data_type": {"endianness": "little", "kind": "f", "itemsize": 8, "dt_units": null},
                "chunks": [[2, 1], [3]], "shape": [3, 3], "dims": ["y", "x"], "resizable": false,
            })),
            mimetype: None,
            access_tags: None,
        };
        let without = CatalogWriter::new(catalog.clone(), None);
        match without.create(&[], &child) {
            Err(AdapterError::BadRequest(m)) => assert!(m.contains("--writable-storage"), "{m}"),
            other => panic!("{name}: {other:?}"),
        }
        let writer = CatalogWriter::new(
            catalog.clone(),
            Some(tiled_storage::Storage::parse(storage.path().to_str().unwrap()).unwrap()),
        );
        writer.create(&[], &child).unwrap();
        let id = catalog
            .node_id(std::slice::from_ref(&key))
            .unwrap()
            .unwrap();
        let sources = catalog.data_sources(id).unwrap();
        assert_eq!(sources.len(), 1, "{name}");
        assert_eq!(sources[0].mimetype, "application/x-zarr");
        assert_eq!(sources[0].management, "writable");
        assert_eq!(sources[0].parameters, json!({"path": "/"}));
        let dir = tiled_catalog::path_of_uri(&sources[0].assets[0].data_uri).unwrap();
        assert!(dir.join("zarr.json").is_file(), "{name}: {}", dir.display());

        let path = [key.clone()];
        let whole: Vec<u8> = (0..9).flat_map(|v| f64::from(v).to_le_bytes()).collect();
        writer.write_array(&path, None, &whole).unwrap();
        writer
            .write_array(&path, Some(&[1, 0]), &whole[..24])
            .unwrap();
        assert!(writer.write_array(&path, Some(&[1, 0]), &whole).is_err());
        assert!(
            writer
                .write_array(&path, Some(&[2, 0]), &whole[..24])
                .is_err()
        );

        // A taken key: refused, and no second store is left behind.
        assert!(matches!(
            writer.create(&[], &child),
            Err(AdapterError::Conflict(_))
        ));
        assert_eq!(std::fs::read_dir(storage.path()).unwrap().count(), 1);
        // Nodes without writable storage cannot be written.
        let container = NewChild {
            key: format!("c_{name}"),
            structure_family: StructureFamily::Container,
            metadata: serde_json::Map::new(),
            specs: Vec::new(),
            structure: None,
            mimetype: None,
            access_tags: None,
        };
        writer.create(&[], &container).unwrap();
        assert!(matches!(
            writer.write_array(std::slice::from_ref(&container.key), None, &[]),
            Err(AdapterError::BadRequest(_))
        ));
    }
}

/// The access policy's filter (`Query::Visible`): a node is visible when it
/// carries one of the caller's tags or has none; counts agree with pages;
/// the SQL matches the in-memory semantics on every database.
#[test]
fn access_visibility_filter() {
    for (name, catalog) in catalogs() {
        let node = |k: &str, tags: Option<&[&str]>| NewNode {
            key: k.to_string(),
            structure_family: StructureFamily::Container,
            structure: None,
            metadata: serde_json::Map::new(),
            specs: vec![],
            access_blob: match tags {
                Some(t) => json!({ "tags": t }),
                None => json!({}),
            },
            data_sources: vec![],
        };
        catalog.create_node(&[], &node("v", None)).unwrap();
        let v = ["v".to_string()];
        let kids = [
            node("a", Some(&["beamline1"])),
            node("b", Some(&["shared", "beamline1"])),
            node("c", Some(&["public"])),
            node("d", None),
            node("e", Some(&[])),
            node("f", Some(&["user:bob"])),
        ];
        catalog.create_nodes(&v, &kids).unwrap();
        let catalog = Arc::new(catalog);
        let root = CatalogContainer::root(catalog.clone()).unwrap();
        let c = as_container(&root.get("v").unwrap().unwrap());
        let visible = |tags: &[&str]| {
            let q = [Query::Visible {
                tags: tags.iter().map(|t| t.to_string()).collect(),
            }];
            let (count, mut got) = keys(c.as_ref(), &q, &[], 0, 100);
            got.sort();
            assert_eq!(count, got.len(), "{name}: count agrees with the page");
            got
        };
        assert_eq!(
            visible(&["beamline1", "public"]),
            ["a", "b", "c", "d", "e"],
            "{name}"
        );
        assert_eq!(
            visible(&["shared", "user:bob"]),
            ["b", "d", "e", "f"],
            "{name}"
        );
        assert_eq!(visible(&[]), ["d", "e"], "{name}");
    }
}

/// Access tag definitions round-trip through the catalog, a replacement
/// drops what it does not list, and a grant naming an unlisted tag
/// changes nothing.
#[test]
fn access_tag_definitions_round_trip() {
    use tiled_catalog::AccessTagRows;
    for (name, catalog) in catalogs() {
        assert_eq!(
            catalog.access_tags().unwrap(),
            AccessTagRows::default(),
            "{name}"
        );
        let s = |v: &str| v.to_string();
        let rows = AccessTagRows {
            tags: vec![(s("open"), true), (s("p1"), false), (s("p2"), false)],
            grants: vec![
                (s("p1"), s("alice"), s("read:metadata")),
                (s("p1"), s("alice"), s("write:data")),
                (s("p2"), s("bob"), s("read:metadata")),
            ],
            owners: vec![(s("p1"), s("alice"))],
        };
        catalog.replace_access_tags(&rows).unwrap();
        let mut got = catalog.access_tags().unwrap();
        got.grants.sort();
        assert_eq!(got, rows, "{name}");
        let smaller = AccessTagRows {
            tags: vec![(s("p2"), true)],
            grants: vec![(s("p2"), s("carol"), s("read:data"))],
            owners: vec![],
        };
        catalog.replace_access_tags(&smaller).unwrap();
        assert_eq!(catalog.access_tags().unwrap(), smaller, "{name}");
        let bad = AccessTagRows {
            tags: vec![],
            grants: vec![(s("zzz"), s("carol"), s("read:data"))],
            owners: vec![],
        };
        assert!(catalog.replace_access_tags(&bad).is_err(), "{name}");
        assert_eq!(catalog.access_tags().unwrap(), smaller, "{name}");
    }
}
