//! Load N nodes with Bluesky-like run metadata (~2 KB each: nested
//! `start`/`stop` documents as a RunEngine writes them) under one container
//! of a catalog, for the catalog benchmark (`bench/catalog.sh`).
//!
//!     cargo run --release -p tiled-catalog --example bench_load -- URI N [CONTAINER]
//!
//! Prints one JSON line: {"nodes": N, "seconds": s, "rate": nodes_per_s}.
//! The values are deterministic (a splitmix generator), so both dialects
//! and upstream get the same data.

use std::time::Instant;

use serde_json::{Value, json};
use tiled_catalog::sql::ValueType;
use tiled_catalog::{Catalog, CatalogUri, NewNode};
use tiled_model::{Spec, StructureFamily};

fn mix(i: u64, seed: u64) -> u64 {
    let mut z = i.wrapping_add(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

const BEAMLINES: [&str; 28] = [
    "ISS", "CHX", "CSX", "HXN", "IOS", "SRX", "XPD", "PDF", "SMI", "LIX", "AMX", "FMX", "NYX",
    "ESM", "SIX", "TES", "BMM", "QAS", "FXI", "ISR", "HEX", "CMS", "OPLS", "XFP", "QAS2", "SST1",
    "SST2", "TST",
];
const PLANS: [&str; 8] = [
    "count",
    "scan",
    "rel_scan",
    "grid_scan",
    "list_scan",
    "fly",
    "tune_centroid",
    "adaptive_scan",
];
const WORDS: [&str; 16] = [
    "silicon",
    "graphene",
    "perovskite",
    "zeolite",
    "catalyst",
    "protein",
    "lysozyme",
    "battery",
    "cathode",
    "anode",
    "thin",
    "film",
    "nanoparticle",
    "polymer",
    "alloy",
    "oxide",
];

/// The metadata of run `i`.
pub fn run_metadata(i: u64) -> Value {
    let r = |s| mix(i, s);
    let beamline = BEAMLINES[(r(1) % BEAMLINES.len() as u64) as usize];
    let plan = PLANS[(r(2) % PLANS.len() as u64) as usize];
    let t0 = 1_500_000_000.0 + i as f64 * 30.0 + (r(3) % 1000) as f64 / 100.0;
    let sample = format!(
        "{} {} {}",
        WORDS[(r(4) % 16) as usize],
        WORDS[(r(5) % 16) as usize],
        r(6) % 1000
    );
    let detectors: Vec<String> = (0..(1 + r(7) % 4))
        .map(|k| format!("{}_det{}", beamline.to_lowercase(), k))
        .collect();
    let motors: Vec<String> = (0..(1 + r(8) % 3)).map(|k| format!("motor{k}")).collect();
    let num_points = 1 + r(9) % 500;
    json!({
        "start": {
            "uid": format!("{:016x}-{:016x}", r(10), r(11)),
            "time": t0,
            "scan_id": i,
            "beamline_id": beamline,
            "plan_name": plan,
            "plan_type": "generator",
            "num_points": num_points,
            "num_intervals": num_points - 1,
            "detectors": detectors,
            "motors": motors,
            "owner": format!("user{}", r(12) % 200),
            "group": "facility",
            "proposal": {"proposal_id": format!("3{:05}", r(13) % 100_000), "title": format!("Study of {sample}"), "type": "General User"},
            "cycle": format!("{}-{}", 2017 + i / 200_000, 1 + r(14) % 3),
            "sample": {"name": sample, "composition": WORDS[(r(15) % 16) as usize], "holder": format!("slot {}", r(16) % 24), "temperature_K": 290.0 + (r(17) % 100) as f64 / 10.0},
            "plan_args": {"detectors": detectors, "num": num_points, "start": -1.0, "stop": 1.0, "per_step": "None", "md": {"operator": format!("op{}", r(18) % 10)}},
            "hints": {"dimensions": [[motors, "primary"]]},
            "versions": {"bluesky": "1.13.0", "ophyd": "1.9.0", "databroker": "2.0.0"},
            "scan_description": format!("{plan} of {sample} on {beamline} with {} detectors", detectors.len()),
            "comments": "x".repeat((200 + r(19) % 400) as usize),
        },
        "stop": {
            "uid": format!("{:016x}", r(20)),
            "time": t0 + num_points as f64 * 0.5,
            "exit_status": if r(21) % 50 == 0 { "fail" } else { "success" },
            "reason": "",
            "num_events": {"primary": num_points, "baseline": 2},
        },
        "summary": {"duration": num_points as f64 * 0.5, "plan_name": plan, "scan_id": i, "stream_names": ["primary", "baseline"]},
    })
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let uri = args.get(1).ok_or("usage: bench_load URI N [CONTAINER]")?;
    let n: u64 = args
        .get(2)
        .ok_or("usage: bench_load URI N [CONTAINER]")?
        .parse()?;
    let container = args.get(3).cloned().unwrap_or_else(|| "runs".into());
    let catalog = Catalog::open(&CatalogUri::parse(uri)?, true)?;
    if catalog.node_id(std::slice::from_ref(&container))?.is_none() {
        catalog.create_node(
            &[],
            &NewNode {
                key: container.clone(),
                structure_family: StructureFamily::Container,
                structure: None,
                metadata: serde_json::Map::new(),
                specs: vec![],
                access_blob: json!({}),
                data_sources: vec![],
            },
        )?;
    }
    let parent = vec![container];
    let start = Instant::now();
    let batch = 5_000u64;
    let mut done = 0u64;
    while done < n {
        let nodes: Vec<NewNode> = (done..(done + batch).min(n))
            .map(|i| NewNode {
                key: format!("run_{i:08}"),
                structure_family: StructureFamily::Container,
                structure: None,
                metadata: run_metadata(i).as_object().cloned().unwrap_or_default(),
                specs: vec![Spec::new("BlueskyRun")],
                access_blob: json!({}),
                data_sources: vec![],
            })
            .collect();
        catalog.create_nodes(&parent, &nodes)?;
        done += nodes.len() as u64;
        if done.is_multiple_of(100_000) {
            eprintln!(
                "{done} nodes, {:.0} nodes/s",
                done as f64 / start.elapsed().as_secs_f64()
            );
        }
    }
    catalog.vacuum()?;
    let load_secs = start.elapsed().as_secs_f64();
    // The indexes the benchmark's filters and sorts use.
    let t = Instant::now();
    catalog.create_metadata_index("start.time", ValueType::Number, None)?;
    catalog.create_metadata_index("start.scan_id", ValueType::Number, None)?;
    catalog.create_metadata_index("start.beamline_id", ValueType::Text, Some("start.time"))?;
    let index_secs = t.elapsed().as_secs_f64();
    println!(
        "{}",
        json!({"nodes": n, "seconds": load_secs, "rate": n as f64 / load_secs, "index_seconds": index_secs})
    );
    Ok(())
}
