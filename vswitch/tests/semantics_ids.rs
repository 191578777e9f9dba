//! Every Docker behaviour the project cites (`BR-3`, `V6-2`, `BUG-9` …) in
//! code, tests, scenarios, benches, fuzz targets and the README is stated in
//! `docs/docker-semantics.md`, so a reader can look each one up in the
//! repository.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

const PREFIXES: &[&str] = &[
    "BR", "PUB", "DNS", "MV", "IV", "OV", "NH", "IPAM", "V6", "SVC", "BUG",
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Statement ids in `text`: PREFIX-N not preceded by a letter or digit.
fn ids(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let b = text.as_bytes();
    for p in PREFIXES {
        let pat = format!("{p}-");
        let mut from = 0;
        while let Some(i) = text[from..].find(&pat) {
            let at = from + i;
            from = at + pat.len();
            if at > 0 && b[at - 1].is_ascii_alphanumeric() {
                continue;
            }
            let digits: String = text[from..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            if !digits.is_empty() {
                found.insert(format!("{p}-{digits}"));
            }
        }
    }
    found
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if p.is_dir() {
            if name != "target" && !name.starts_with('.') {
                walk(&p, out);
            }
        } else if p
            .extension()
            .is_some_and(|x| x == "rs" || x == "toml" || x == "sh" || x == "md")
        {
            out.push(p);
        }
    }
}

#[test]
fn every_cited_statement_is_defined_in_docs() {
    let root = root();
    let doc = std::fs::read_to_string(root.join("docs/docker-semantics.md"))
        .expect("docs/docker-semantics.md exists");
    let defined: BTreeSet<String> = doc
        .lines()
        .filter_map(|l| l.strip_prefix("**"))
        .filter_map(|l| l.split("**").next())
        // `**BR-3**` or `**BUG-11 Host cannot reach …**`.
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect();
    assert!(
        defined.contains("BR-3") && defined.contains("V6-2"),
        "{defined:?}"
    );
    let mut files = Vec::new();
    for d in ["vswitch", "scenarios", "benches", "fuzz/fuzz_targets", "ci"] {
        walk(&root.join(d), &mut files);
    }
    files.push(root.join("README.md"));
    let mut missing = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap_or_default();
        for id in ids(&text) {
            if !defined.contains(&id) {
                missing.push(format!("{id} ({})", f.display()));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "cited but not stated in docs/docker-semantics.md: {missing:?}"
    );
}

#[test]
fn ids_are_found_as_written() {
    let got = ids("BR-3, (V6-2) and BUG-13; not XBR-4 nor DNS- alone");
    let want: BTreeSet<String> = ["BR-3", "V6-2", "BUG-13"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(got, want);
}
