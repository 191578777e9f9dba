//! The import rules of the library (issue 19), read from the source so they
//! cannot silently regress: no circle between files of different folders;
//! the engine imports nothing from the IO side (scenario, backend, probe,
//! run, world, netns, sys); no backend folder (kernel, userspace, docker,
//! sim) imports another; one wire module; no function over 150 lines.
//!
//! Only non-test code counts: items under `#[cfg(test)]` and every file a
//! `#[cfg(test)] mod` declares are left out. An import is a `use` path, or
//! a path in the code that starts with `crate`, `super`, `self` or a child
//! module's name; it points at the file of the longest module prefix it
//! names (`crate::backend::topology::lan_mac` → `backend/topology/mod.rs`).
//! Pure Rust, no root.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Longest a non-test function may be, in lines (signature to closing brace).
const MAX_FN_LINES: usize = 150;

/// Functions allowed to be longer: generated listings (the embedded DNS's
/// BPF program is written out instruction by instruction).
const LONG_FN_ALLOWED: &[(&str, &str)] = &[("dns/fastpath.rs", "program")];

/// What the engine must not import.
const NOT_FOR_ENGINE: &[&str] = &[
    "scenario", "backend", "probe", "run", "world", "netns", "sys",
];

/// The backends' folders under `backend/`: none imports another.
const BACKENDS: &[&str] = &["kernel", "userspace", "docker", "sim"];

/// One source file of the library.
struct File {
    /// Path under `src/`, `/`-separated.
    rel: String,
    /// Its module path (`["backend", "kernel"]` for `backend/kernel/mod.rs`).
    module: Vec<String>,
    /// The code with comments, literals and test items blanked.
    code: String,
    /// The names of the child modules it declares under `#[cfg(test)]`.
    test_children: Vec<String>,
}

impl File {
    fn folder(&self) -> &str {
        self.rel.rsplit_once('/').map_or("", |(d, _)| d)
    }
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            walk(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// `text` with comments and the contents of string and character literals
/// replaced by spaces (newlines kept, so line numbers stay).
fn scrub(text: &str) -> String {
    let c: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let blank = |ch: char| if ch == '\n' { '\n' } else { ' ' };
    let mut i = 0;
    while i < c.len() {
        let next = c.get(i + 1).copied();
        if c[i] == '/' && next == Some('/') {
            while i < c.len() && c[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c[i] == '/' && next == Some('*') {
            let mut depth = 0;
            loop {
                if i >= c.len() {
                    break;
                }
                if c[i] == '/' && c.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if c[i] == '*' && c.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(c[i]));
                    i += 1;
                }
            }
        } else if c[i] == 'r'
            && (i == 0
                || !is_ident(c[i - 1])
                || (c[i - 1] == 'b' && (i < 2 || !is_ident(c[i - 2]))))
            && matches!(next, Some('"' | '#'))
            && raw_string_start(&c, i + 1).is_some()
        {
            let (hashes, open) = raw_string_start(&c, i + 1).expect("checked");
            for _ in i..=open {
                out.push(' ');
            }
            i = open + 1;
            out.pop();
            out.push('"');
            let close: String = std::iter::once('"')
                .chain(std::iter::repeat_n('#', hashes))
                .collect();
            let close: Vec<char> = close.chars().collect();
            while i < c.len() && c[i..].iter().take(close.len()).ne(close.iter()) {
                out.push(blank(c[i]));
                i += 1;
            }
            out.push('"');
            for _ in 1..close.len() {
                out.push(' ');
            }
            i += close.len();
        } else if c[i] == '"' {
            out.push('"');
            i += 1;
            while i < c.len() && c[i] != '"' {
                if c[i] == '\\' {
                    out.push(' ');
                    i += 1;
                }
                if i < c.len() {
                    out.push(blank(c[i]));
                    i += 1;
                }
            }
            out.push('"');
            i += 1;
        } else if c[i] == '\'' {
            // A character literal, or a lifetime (`'a`, left as it is).
            let len = if next == Some('\\') {
                c.get(i + 3..)
                    .and_then(|rest| rest.iter().position(|&x| x == '\''))
                    .map(|p| p + 4)
            } else if c.get(i + 2) == Some(&'\'') {
                Some(3)
            } else {
                None
            };
            match len {
                Some(n) => {
                    out.push_str("' '");
                    for _ in 3..n {
                        out.push(' ');
                    }
                    i += n;
                }
                None => {
                    out.push('\'');
                    i += 1;
                }
            }
        } else {
            out.push(c[i]);
            i += 1;
        }
    }
    out
}

/// For `r#…#"` starting at `at` (after the `r`): the number of `#` and the
/// index of the opening quote.
fn raw_string_start(c: &[char], at: usize) -> Option<(usize, usize)> {
    let hashes = c[at..].iter().take_while(|&&x| x == '#').count();
    (c.get(at + hashes) == Some(&'"')).then_some((hashes, at + hashes))
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// [`is_ident`] for one byte of scrubbed code (identifiers are ASCII there).
fn is_ident_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// The index just past the item that starts at `from`: up to its first
/// `;` outside brackets, or the end of its first `{…}` block.
fn item_end(code: &[u8], from: usize) -> usize {
    let mut depth = 0i32;
    let mut i = from;
    while i < code.len() {
        match code[i] {
            b'(' | b'[' => depth += 1,
            b')' | b']' => depth -= 1,
            b';' if depth == 0 => return i + 1,
            b'{' if depth == 0 => return block_end(code, i),
            _ => {}
        }
        i += 1;
    }
    code.len()
}

/// The index just past the `}` closing the `{` at `open`.
fn block_end(code: &[u8], open: usize) -> usize {
    let mut depth = 0;
    for (i, &b) in code.iter().enumerate().skip(open) {
        match b {
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
    }
    code.len()
}

/// Blanks every item under `#[cfg(test)]` or `#[test]`; returns the names
/// of the modules declared so (`#[cfg(test)] mod tests;`).
fn blank_tests(code: &mut String) -> Vec<String> {
    let mut test_mods = Vec::new();
    loop {
        let at = ["#[cfg(test)]", "#[test]"]
            .iter()
            .filter_map(|a| code.find(a))
            .min();
        let Some(at) = at else { break };
        let bytes = code.as_bytes();
        let end = item_end(bytes, at);
        let item = code[at..end].to_string();
        if let Some(name) = declared_module(&item) {
            test_mods.push(name);
        }
        let blanked: String = item
            .chars()
            .map(|c| if c == '\n' { '\n' } else { ' ' })
            .collect();
        code.replace_range(at..end, &blanked);
    }
    test_mods
}

/// `mod NAME;` (after attributes and a visibility) → NAME.
fn declared_module(item: &str) -> Option<String> {
    let mut rest = item.trim_start();
    while let Some(r) = rest.strip_prefix("#[") {
        rest = r[r.find(']')? + 1..].trim_start();
    }
    let rest = rest.strip_prefix("pub").map_or(rest, |r| {
        let r = r.trim_start();
        r.strip_prefix('(')
            .and_then(|x| x.find(')').map(|p| &x[p + 1..]))
            .unwrap_or(r)
    });
    let rest = rest.trim_start().strip_prefix("mod")?;
    let name: String = rest
        .trim_start()
        .chars()
        .take_while(|&c| is_ident(c))
        .collect();
    let after = rest.trim_start()[name.len()..].trim_start();
    after.starts_with(';').then_some(name)
}

/// The library's files, their code scrubbed and test items blanked; test
/// files (declared under `#[cfg(test)]`) are left out.
fn library() -> Vec<File> {
    let root = src();
    let mut paths = Vec::new();
    walk(&root, &mut paths);
    let mut files = Vec::new();
    for p in paths {
        let rel = p
            .strip_prefix(&root)
            .expect("under src")
            .to_string_lossy()
            .replace('\\', "/");
        if rel == "main.rs" {
            continue;
        }
        let mut module: Vec<String> = rel
            .trim_end_matches(".rs")
            .split('/')
            .map(str::to_string)
            .collect();
        if matches!(module.last().map(String::as_str), Some("mod" | "lib")) {
            module.pop();
        }
        let text = std::fs::read_to_string(&p).expect("a source file");
        let mut code = scrub(&text);
        let test_children = blank_tests(&mut code);
        files.push(File {
            rel,
            module,
            code,
            test_children,
        });
    }
    let tests: BTreeSet<Vec<String>> = files
        .iter()
        .flat_map(|f| {
            f.test_children.iter().map(|c| {
                let mut m = f.module.clone();
                m.push(c.clone());
                m
            })
        })
        .collect();
    files.retain(|f| !tests.iter().any(|t| f.module.starts_with(t)));
    files
}

/// The paths a `use` tree names (`a::{b, c::d}` → `a::b`, `a::c::d`);
/// `self` in a group is the prefix, `*` the prefix too.
fn use_paths(tree: &str, prefix: &[String], out: &mut Vec<Vec<String>>) {
    let tree = tree.trim();
    if let Some(open) = tree.find('{') {
        let mut base = prefix.to_vec();
        base.extend(segments(&tree[..open]));
        let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
        let mut depth = 0;
        let mut start = 0;
        for (i, ch) in inner.char_indices() {
            match ch {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    use_paths(&inner[start..i], &base, out);
                    start = i + 1;
                }
                _ => {}
            }
        }
        use_paths(&inner[start..], &base, out);
        return;
    }
    let tree = tree.split(" as ").next().unwrap_or("").trim();
    if tree.is_empty() {
        return;
    }
    let mut p = prefix.to_vec();
    for s in segments(tree) {
        if s != "self" && s != "*" {
            p.push(s);
        }
    }
    out.push(p);
}

fn segments(path: &str) -> Vec<String> {
    path.split("::")
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// Every path the code of `f` names: `use` trees (then blanked), and the
/// paths written in the code.
fn paths_of(f: &File) -> Vec<Vec<String>> {
    let mut code = f.code.clone();
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(i) = code[from..].find("use ") {
        let at = from + i;
        from = at + 4;
        let before = code[..at].chars().next_back();
        if before.is_some_and(is_ident) {
            continue;
        }
        let end = at + code[at..].find(';').unwrap_or(code.len() - at);
        let tree = code[at + 4..end].to_string();
        use_paths(&tree.replace(char::is_whitespace, " "), &[], &mut out);
        let blanked: String = code[at..end]
            .chars()
            .map(|c| if c == '\n' { '\n' } else { ' ' })
            .collect();
        code.replace_range(at..end, &blanked);
    }
    // Paths in the code: `a::b::c` not preceded by `::`.
    let b = code.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let starts =
            is_ident_byte(b[i]) && (i == 0 || !(is_ident_byte(b[i - 1]) || b[i - 1] == b':'));
        if !starts {
            i += 1;
            continue;
        }
        let mut j = i;
        let mut path = Vec::new();
        loop {
            let s = j;
            while j < b.len() && is_ident_byte(b[j]) {
                j += 1;
            }
            path.push(code[s..j].to_string());
            if code[j..].starts_with("::") && code[j + 2..].starts_with(|c: char| is_ident(c)) {
                j += 2;
            } else {
                break;
            }
        }
        if path.len() > 1 {
            out.push(path);
        }
        i = j.max(i + 1);
    }
    out
}

/// The import graph: file index → files it imports.
fn graph(files: &[File]) -> Vec<BTreeSet<usize>> {
    let by_module: BTreeMap<&[String], usize> = files
        .iter()
        .enumerate()
        .map(|(i, f)| (f.module.as_slice(), i))
        .collect();
    let mut edges = vec![BTreeSet::new(); files.len()];
    for (i, f) in files.iter().enumerate() {
        for p in paths_of(f) {
            let mut abs: Vec<String> = match p[0].as_str() {
                "crate" => Vec::new(),
                "self" => f.module.clone(),
                "super" => f.module.clone(),
                first => {
                    let mut child = f.module.clone();
                    child.push(first.to_string());
                    if !by_module.contains_key(child.as_slice()) {
                        continue;
                    }
                    f.module.clone()
                }
            };
            let mut rest = &p[..];
            if matches!(rest[0].as_str(), "crate" | "self") {
                rest = &rest[1..];
            }
            while rest.first().is_some_and(|s| s == "super") {
                abs.pop();
                rest = &rest[1..];
            }
            abs.extend(rest.iter().cloned());
            let target = (0..=abs.len())
                .rev()
                .find_map(|n| by_module.get(&abs[..n]).copied());
            if let Some(t) = target.filter(|&t| t != i) {
                edges[i].insert(t);
            }
        }
    }
    edges
}

/// Strongly connected components (Tarjan), each a list of file indices.
fn components(edges: &[BTreeSet<usize>]) -> Vec<Vec<usize>> {
    struct Tarjan<'a> {
        edges: &'a [BTreeSet<usize>],
        index: Vec<Option<usize>>,
        low: Vec<usize>,
        stack: Vec<usize>,
        on: Vec<bool>,
        next: usize,
        out: Vec<Vec<usize>>,
    }
    impl Tarjan<'_> {
        fn visit(&mut self, v: usize) {
            self.index[v] = Some(self.next);
            self.low[v] = self.next;
            self.next += 1;
            self.stack.push(v);
            self.on[v] = true;
            for &w in self.edges[v].iter() {
                match self.index[w] {
                    None => {
                        self.visit(w);
                        self.low[v] = self.low[v].min(self.low[w]);
                    }
                    Some(iw) if self.on[w] => self.low[v] = self.low[v].min(iw),
                    Some(_) => {}
                }
            }
            if Some(self.low[v]) == self.index[v] {
                let mut comp = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on[w] = false;
                    comp.push(w);
                    if w == v {
                        break;
                    }
                }
                self.out.push(comp);
            }
        }
    }
    let n = edges.len();
    let mut t = Tarjan {
        edges,
        index: vec![None; n],
        low: vec![0; n],
        stack: Vec::new(),
        on: vec![false; n],
        next: 0,
        out: Vec::new(),
    };
    for v in 0..n {
        if t.index[v].is_none() {
            t.visit(v);
        }
    }
    t.out
}

/// The circles between files of different folders, each as the imports
/// inside it that cross a folder.
fn cross_folder_circles(files: &[File], edges: &[BTreeSet<usize>]) -> Vec<String> {
    let mut found = Vec::new();
    for comp in components(edges) {
        let folders: BTreeSet<&str> = comp.iter().map(|&i| files[i].folder()).collect();
        if folders.len() < 2 {
            continue;
        }
        let mut lines = Vec::new();
        for &a in &comp {
            for &b in &edges[a] {
                if comp.contains(&b) && files[a].folder() != files[b].folder() {
                    lines.push(format!("  {} -> {}", files[a].rel, files[b].rel));
                }
            }
        }
        lines.sort();
        found.push(format!(
            "a circle through {} files:\n{}",
            comp.len(),
            lines.join("\n")
        ));
    }
    found
}

#[test]
fn no_circle_between_files_of_different_folders() {
    let files = library();
    let edges = graph(&files);
    let circles = cross_folder_circles(&files, &edges);
    assert!(circles.is_empty(), "{}", circles.join("\n"));
}

#[test]
fn the_engine_imports_nothing_of_the_io_side() {
    let files = library();
    let edges = graph(&files);
    let mut bad = Vec::new();
    for (i, f) in files.iter().enumerate() {
        if f.module.first().map(String::as_str) != Some("engine") {
            continue;
        }
        for &t in &edges[i] {
            let top = files[t].module.first().map_or("", String::as_str);
            if NOT_FOR_ENGINE.contains(&top) {
                bad.push(format!("{} -> {}", f.rel, files[t].rel));
            }
        }
    }
    assert!(bad.is_empty(), "the engine imports:\n{}", bad.join("\n"));
}

/// The backend folder a module is in (`backend/kernel/…` → `kernel`).
fn backend_of(module: &[String]) -> Option<&str> {
    match module {
        [b, name, ..] if b == "backend" && BACKENDS.contains(&name.as_str()) => Some(name),
        _ => None,
    }
}

#[test]
fn backends_do_not_import_one_another() {
    let files = library();
    let edges = graph(&files);
    let mut bad = Vec::new();
    for (i, f) in files.iter().enumerate() {
        let Some(from) = backend_of(&f.module) else {
            continue;
        };
        for &t in &edges[i] {
            if let Some(to) = backend_of(&files[t].module).filter(|&to| to != from) {
                bad.push(format!("{} -> {} ({from} -> {to})", f.rel, files[t].rel));
            }
        }
    }
    assert!(
        bad.is_empty(),
        "backends import one another:\n{}",
        bad.join("\n")
    );
}

#[test]
fn one_wire_module() {
    let files = library();
    let wires: BTreeSet<&str> = files
        .iter()
        .filter(|f| f.module.last().is_some_and(|m| m == "wire"))
        .map(|f| f.rel.as_str())
        .collect();
    assert_eq!(
        wires.into_iter().collect::<Vec<_>>(),
        ["wire/mod.rs"],
        "header views belong in the one `wire` module"
    );
}

/// Every non-test function of the library and the binary with its length
/// in lines: (file, name, first line, lines).
fn functions() -> Vec<(String, String, usize, usize)> {
    let mut files = library();
    let main = src().join("main.rs");
    let mut code = scrub(&std::fs::read_to_string(&main).expect("main.rs"));
    blank_tests(&mut code);
    files.push(File {
        rel: "main.rs".into(),
        module: vec!["main".into()],
        code,
        test_children: Vec::new(),
    });
    files
        .iter()
        .flat_map(|f| {
            functions_of(f)
                .into_iter()
                .map(|(name, line, n)| (f.rel.clone(), name, line, n))
        })
        .collect()
}

/// The functions with a body in `f`: (name, first line, lines).
fn functions_of(f: &File) -> Vec<(String, usize, usize)> {
    let b = f.code.as_bytes();
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(i) = f.code[from..].find("fn ") {
        let at = from + i;
        from = at + 3;
        if at > 0 && is_ident_byte(b[at - 1]) {
            continue;
        }
        let name: String = f.code[at + 3..]
            .trim_start()
            .chars()
            .take_while(|&c| is_ident(c))
            .collect();
        if name.is_empty() {
            continue;
        }
        // The body: the first `{` before any `;` (a declaration has none).
        let Some(open) = f.code[at..].find(['{', ';']).map(|p| at + p) else {
            continue;
        };
        if b[open] == b';' {
            continue;
        }
        let end = block_end(b, open);
        let first = f.code[..at].matches('\n').count() + 1;
        let last = f.code[..end].matches('\n').count() + 1;
        out.push((name, first, last - first + 1));
    }
    out
}

#[test]
fn no_function_over_150_lines() {
    let long: Vec<String> = functions()
        .into_iter()
        .filter(|(_, _, _, n)| *n > MAX_FN_LINES)
        .filter(|(file, name, _, _)| !LONG_FN_ALLOWED.iter().any(|(f, n)| f == file && n == name))
        .map(|(file, name, line, n)| format!("{file}:{line} fn {name}: {n} lines"))
        .collect();
    assert!(
        long.is_empty(),
        "functions over {MAX_FN_LINES} lines:\n{}",
        long.join("\n")
    );
}

/// The reader must see what it checks: a scrubbed file keeps its imports
/// and loses its comments, literals and tests.
#[test]
fn the_reader_sees_imports_and_skips_tests_comments_and_literals() {
    let mut code = scrub(
        "use crate::a::{b, c::{d, self}, e as f};\n\
         // use crate::comment;\n\
         fn g() { let s = \"crate::string::x\"; let r = r#\"crate::raw\"#; let c = '{'; super::h::i(); }\n\
         #[cfg(test)]\nmod tests { use crate::tested; }\n\
         #[cfg(test)]\nmod more;\n",
    );
    let children = blank_tests(&mut code);
    assert_eq!(children, ["more"]);
    let f = File {
        rel: "x/y.rs".into(),
        module: vec!["x".into(), "y".into()],
        code,
        test_children: children,
    };
    let paths: Vec<String> = paths_of(&f).iter().map(|p| p.join("::")).collect();
    assert_eq!(
        paths,
        [
            "crate::a::b",
            "crate::a::c::d",
            "crate::a::c",
            "crate::a::e",
            "super::h::i"
        ]
    );
}

/// Lengths run from the signature to the closing brace; declarations
/// without a body and braces in literals do not count.
#[test]
fn a_function_is_measured_from_signature_to_closing_brace() {
    let mut code = scrub(
        "trait T { fn decl(&self); }\n\
         fn three() {\n    let s = \"}\";\n}\n\
         fn one() -> impl Fn() { || {} }\n",
    );
    blank_tests(&mut code);
    let f = File {
        rel: "x.rs".into(),
        module: vec!["x".into()],
        code,
        test_children: Vec::new(),
    };
    assert_eq!(
        functions_of(&f),
        [("three".to_string(), 2, 3), ("one".to_string(), 5, 1)]
    );
}

/// The graph finds a circle between folders, and only between folders.
#[test]
fn a_circle_between_folders_is_found() {
    let file = |rel: &str, module: &[&str], code: &str| File {
        rel: rel.into(),
        module: module.iter().map(|s| s.to_string()).collect(),
        code: code.into(),
        test_children: Vec::new(),
    };
    let files = [
        file(
            "a/mod.rs",
            &["a"],
            "use crate::a::b::x; use crate::a::c::y;",
        ),
        file("a/b/mod.rs", &["a", "b"], "fn f() { crate::a::z(); }"),
        file("a/c.rs", &["a", "c"], "use super::w;"),
    ];
    let edges = graph(&files);
    let circles = cross_folder_circles(&files, &edges);
    assert_eq!(circles.len(), 1, "{circles:?}");
    assert!(circles[0].contains("a/b/mod.rs -> a/mod.rs"), "{circles:?}");
    assert!(!circles[0].contains("a/c.rs"), "same folder: {circles:?}");
}
