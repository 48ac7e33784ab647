//! The crate's modules import one another in one direction only: no
//! module reaches, directly or through others, back up to a module that
//! depends on it. A reader can then take `src/` layer by layer.
//!
//! The check reads `src/` as text: each file is a module (`a/mod.rs` is
//! `a`), a module depends on its child modules and on every module a
//! `crate::` or `super::` path in its code names (doc comments and comments
//! do not count, nor do unit tests; a name re-exported at the crate root
//! counts as the module it comes from). It fails on the first cycle it
//! finds and prints it.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

type Graph = BTreeMap<String, BTreeSet<String>>;

#[test]
fn module_imports_point_one_way() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = BTreeMap::new();
    read_modules(&src, &src, &mut files);
    let modules: BTreeSet<String> = files.keys().cloned().collect();
    let reexports = root_reexports(&files[""]);

    let mut graph = Graph::new();
    for (module, text) in &files {
        let edges = graph.entry(module.clone()).or_default();
        for child in &modules {
            if parent_of(child).as_deref() == Some(module.as_str()) && !child.is_empty() {
                edges.insert(child.clone());
            }
        }
        if module.is_empty() {
            // The root declares and re-exports; it depends on everything.
            continue;
        }
        // Unit tests sit at the end of a file, in a module of their own
        // whose `super` is the file: they are not part of the graph.
        let code = strip_comments(text.split("#[cfg(test)]").next().unwrap_or(text));
        for path in paths_in(&code, module) {
            if let Some(target) = resolve(&path, &modules, &reexports)
                && target != *module
                && !target.starts_with(&format!("{module}::"))
            {
                edges.insert(target);
            }
        }
    }

    if let Some(cycle) = find_cycle(&graph) {
        panic!("an import circle: {}", cycle.join(" -> "));
    }
}

/// A circle is found: the check can fail.
#[test]
fn the_check_finds_a_circle() {
    let mut graph = Graph::new();
    graph.entry("a".into()).or_default().insert("b".into());
    graph.entry("b".into()).or_default().insert("c".into());
    graph.entry("c".into()).or_default().insert("a".into());
    assert_eq!(
        find_cycle(&graph),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
    graph.get_mut("c").unwrap().clear();
    assert_eq!(find_cycle(&graph), None);
}

fn read_modules(root: &Path, dir: &Path, files: &mut BTreeMap<String, String>) {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            read_modules(root, &path, files);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let relative = path.strip_prefix(root).unwrap().with_extension("");
            let mut parts: Vec<String> = relative
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
                parts.pop();
            }
            files.insert(parts.join("::"), fs::read_to_string(&path).unwrap());
        }
    }
}

fn parent_of(module: &str) -> Option<String> {
    if module.is_empty() {
        return None;
    }
    Some(module.rsplit_once("::").map_or("", |(p, _)| p).to_owned())
}

/// Names re-exported at the crate root (`pub use a::b::{X, Y};`) and the
/// module each comes from.
fn root_reexports(lib: &str) -> BTreeMap<String, String> {
    let mut names = BTreeMap::new();
    let code = strip_comments(lib);
    for statement in code.split(';') {
        let Some(rest) = statement.trim().strip_prefix("pub use ") else {
            continue;
        };
        for path in expand(rest.trim()) {
            if let Some((module, name)) = path.rsplit_once("::") {
                names.insert(name.to_owned(), module.to_owned());
            }
        }
    }
    names
}

/// Code without comments (line comments, doc comments, block comments).
fn strip_comments(text: &str) -> String {
    let mut code = String::new();
    for line in text.lines() {
        let line = match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        };
        code.push_str(line);
        code.push('\n');
    }
    while let (Some(start), Some(end)) = (code.find("/*"), code.find("*/")) {
        if end < start {
            break;
        }
        code.replace_range(start..end + 2, "");
    }
    code
}

/// Every `crate::` or `super::` path in `code`, as written from the crate
/// root (`super::` resolved against `module`), with `{...}` groups
/// expanded.
fn paths_in(code: &str, module: &str) -> Vec<String> {
    let mut paths = Vec::new();
    for (prefix, base) in [
        ("crate::", String::new()),
        ("super::", parent_of(module).unwrap_or_default()),
    ] {
        let mut rest = code;
        while let Some(at) = rest.find(prefix) {
            let preceded_by_ident = rest[..at]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':');
            rest = &rest[at + prefix.len()..];
            if preceded_by_ident {
                continue;
            }
            let end = path_end(rest);
            for path in expand(&rest[..end]) {
                paths.push(if base.is_empty() {
                    path
                } else {
                    format!("{base}::{path}")
                });
            }
        }
    }
    paths
}

/// Where a path that starts `rest` ends: its braces balanced, at the first
/// character that cannot be part of it.
fn path_end(rest: &str) -> usize {
    let mut depth = 0;
    for (index, c) in rest.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => return index,
            '}' => depth -= 1,
            c if depth > 0 || c.is_alphanumeric() || c == '_' || c == ':' => {}
            _ => return index,
        }
    }
    rest.len()
}

/// `a::{b, c::{D, E}}` as `a::b`, `a::c::D`, `a::c::E`.
fn expand(path: &str) -> Vec<String> {
    let path: String = path.chars().filter(|c| !c.is_whitespace()).collect();
    let Some(open) = path.find('{') else {
        let path = path.trim_end_matches("::").to_owned();
        return if path.is_empty() { vec![] } else { vec![path] };
    };
    let head = path[..open].trim_end_matches("::");
    let inner = &path[open + 1..path.rfind('}').unwrap_or(path.len())];
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (index, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[start..index]);
                start = index + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    parts
        .into_iter()
        .filter(|p| !p.is_empty())
        .flat_map(|p| {
            expand(p)
                .into_iter()
                .map(move |tail| match (head, tail.as_str()) {
                    ("", _) => tail,
                    (_, "self") => head.to_owned(),
                    _ => format!("{head}::{tail}"),
                })
        })
        .collect()
}

/// The module a path from the crate root lands in: its longest prefix that
/// is a module, or, for a name re-exported at the root, the module the name
/// comes from.
fn resolve(
    path: &str,
    modules: &BTreeSet<String>,
    reexports: &BTreeMap<String, String>,
) -> Option<String> {
    let segments: Vec<&str> = path.split("::").collect();
    for length in (1..=segments.len()).rev() {
        let prefix = segments[..length].join("::");
        if modules.contains(&prefix) {
            return Some(prefix);
        }
    }
    reexports.get(segments[0]).cloned()
}

fn find_cycle(graph: &Graph) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Visiting,
        Done,
    }
    fn visit(
        node: &str,
        graph: &Graph,
        marks: &mut BTreeMap<String, Mark>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match marks.get(node) {
            Some(Mark::Done) => return None,
            Some(Mark::Visiting) => {
                let start = stack.iter().position(|n| n == node).unwrap_or(0);
                let mut cycle = stack[start..].to_vec();
                cycle.push(node.to_owned());
                return Some(cycle);
            }
            None => {}
        }
        marks.insert(node.to_owned(), Mark::Visiting);
        stack.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, marks, stack) {
                return Some(cycle);
            }
        }
        stack.pop();
        marks.insert(node.to_owned(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for node in graph.keys() {
        if let Some(cycle) = visit(node, graph, &mut marks, &mut Vec::new()) {
            return Some(cycle);
        }
    }
    None
}
