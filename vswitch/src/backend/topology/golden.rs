//! Golden files of the topology of every scenario in `scenarios/`:
//! `vswitch/tests/golden/topology/<scenario>.json`. `VSWITCH_BLESS=1`
//! writes them anew; otherwise any difference fails, naming the scenario.

use std::path::{Path, PathBuf};

use super::{Topology, with_gwbridge};

fn scenarios() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("scenarios/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    v.sort();
    v
}

#[test]
fn topology_of_every_scenario_matches_its_golden_file() {
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/topology");
    let bless = std::env::var("VSWITCH_BLESS").is_ok_and(|v| v == "1");
    if bless {
        std::fs::create_dir_all(&golden).unwrap();
    }
    let mut differ = Vec::new();
    let mut names = Vec::new();
    for path in scenarios() {
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let plan =
            crate::scenario::load_file(&path).unwrap_or_else(|e| panic!("scenario {name}: {e}"));
        let got = Topology::of(&with_gwbridge(&plan)).to_json();
        let file = golden.join(format!("{name}.json"));
        if bless {
            std::fs::write(&file, &got).unwrap();
        } else if std::fs::read_to_string(&file).ok().as_deref() != Some(got.as_str()) {
            differ.push(name.clone());
        }
        names.push(name);
    }
    assert!(!names.is_empty(), "no scenarios found");
    let stale: Vec<String> = std::fs::read_dir(&golden)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| {
                    let n = e.file_name().to_string_lossy().into_owned();
                    let stem = n.strip_suffix(".json")?.to_string();
                    (!names.contains(&stem)).then_some(stem)
                })
                .collect()
        })
        .unwrap_or_default();
    assert!(
        differ.is_empty() && stale.is_empty(),
        "topology differs from tests/golden/topology for scenarios {differ:?}; golden files \
         without a scenario: {stale:?} (VSWITCH_BLESS=1 writes them anew; review the diff)"
    );
}
