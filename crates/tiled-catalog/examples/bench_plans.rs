//! Print the query plans of the catalog benchmark's searches
//! (`bench/catalog_queries.py`) for docs/catalog.md.
//!
//!     cargo run --release -p tiled-catalog --example bench_plans -- URI [CONTAINER]

use std::sync::Arc;

use tiled_adapters::SortKey;
use tiled_catalog::{Catalog, CatalogContainer, CatalogUri};
use tiled_model::Query;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let uri = args.get(1).ok_or("usage: bench_plans URI [CONTAINER]")?;
    let container = args.get(2).cloned().unwrap_or_else(|| "runs".into());
    let catalog = Arc::new(Catalog::open(&CatalogUri::parse(uri)?, false)?);
    let runs = CatalogContainer::at(catalog, &[container])?;
    let q = |pairs: &[(&str, &str)]| Query::parse_params(pairs.iter().copied());
    let eq = [
        ("filter[eq][condition][key]", "start.beamline_id"),
        ("filter[eq][condition][value]", "\"CHX\""),
    ];
    let newest = [SortKey {
        key: "start.time".into(),
        descending: true,
    }];
    let cases: Vec<(&str, Vec<Query>, &[SortKey], usize)> = vec![
        ("first search page (100)", vec![], &[], 100),
        ("eq filter (page of 10)", q(&eq)?, &[], 10),
        (
            "range filter (comparison)",
            q(&[
                ("filter[comparison][condition][operator]", "gt"),
                ("filter[comparison][condition][key]", "start.scan_id"),
                ("filter[comparison][condition][value]", "999950"),
            ])?,
            &[],
            10,
        ),
        (
            "fulltext",
            q(&[("filter[fulltext][condition][text]", "perovskite 417")])?,
            &[],
            10,
        ),
        ("most recent of a beamline", q(&eq)?, &newest, 1),
    ];
    for (name, queries, sort, limit) in cases {
        println!("### {name}\n```");
        println!("{}", runs.explain_search(&queries, sort, 0, limit)?);
        println!("```");
    }
    Ok(())
}
