//! No import cycle between the crate's modules: a file of `src/` may use another only if that
//! one does not use it back, directly or through others.
//!
//! The checker is std-only and takes a `src/` directory, so it can be copied as it is into a
//! workspace-wide tidy test. What it counts, and why:
//! - A module is a file directly in `src/`. The crate root (`lib.rs` or `main.rs`) is no node:
//!   it declares every module, so it would close a cycle with each of them; its `pub use` lines
//!   serve to resolve names instead (below). A nested module directory is refused rather than
//!   silently skipped: a crate that has one needs this extended first.
//! - A reference is `crate::<name>` in code, including `use crate::{a::X, b}` groups. `<name>`
//!   is a module, or a name the root re-exports from one (`pub use report::Report` makes
//!   `crate::Report` a use of `report`), so going through the root hides nothing. Other names
//!   (items defined in the root itself, macros) are no edge.
//! - Comments are blanked first: an intra-doc link `[Report](crate::Report)` is not an import.
//!   So are string and char literals, which can hold `crate::` or unbalanced braces.
//! - `#[cfg(test)] mod … { … }` blocks are dropped: a test may build its fixtures with any
//!   module (report's tests could start a real profiler) without the library depending on it.
//! - `super::` is not followed: in a crate of flat files it only appears inside those blocks.
//! - Self-references (`crate::svg::render` inside `svg.rs`) are no edge.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Each module and the modules its code names.
type Graph = BTreeMap<String, BTreeSet<String>>;

/// The module graph of the crate whose sources are in `src_dir`.
///
/// # Panics
///
/// If `src_dir` cannot be read, has no `lib.rs`/`main.rs`, or has a subdirectory.
fn crate_module_graph(src_dir: &Path) -> Graph {
    let mut root = None;
    let mut modules = BTreeMap::new();
    for entry in std::fs::read_dir(src_dir).unwrap() {
        let path = entry.unwrap().path();
        assert!(
            !path.is_dir(),
            "{}: nested modules are not handled; extend crate_module_graph first",
            path.display()
        );
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&path).unwrap();
        if name == "lib" || name == "main" {
            root = Some(text);
        } else {
            modules.insert(name, text);
        }
    }
    let root = root.unwrap_or_else(|| panic!("{}: no lib.rs or main.rs", src_dir.display()));
    module_graph(&root, &modules)
}

/// The graph of `modules` (name → source text), resolving root re-exports from `root`.
fn module_graph(root: &str, modules: &BTreeMap<String, String>) -> Graph {
    let names: BTreeSet<&str> = modules.keys().map(String::as_str).collect();
    let reexports = root_reexports(&library_code(root), &names);
    modules
        .iter()
        .map(|(module, text)| {
            let uses = crate_path_heads(&library_code(text))
                .into_iter()
                .filter_map(|head| {
                    if names.contains(head.as_str()) {
                        Some(head)
                    } else {
                        reexports.get(&head).cloned()
                    }
                })
                .filter(|target| target != module)
                .collect();
            (module.clone(), uses)
        })
        .collect()
}

/// A cycle of `graph` as `[a, b, …, a]`, or `None` if it has none.
fn find_cycle(graph: &Graph) -> Option<Vec<String>> {
    fn visit<'g>(
        node: &'g str,
        graph: &'g Graph,
        done: &mut BTreeSet<&'g str>,
        path: &mut Vec<&'g str>,
    ) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|&n| n == node) {
            let mut cycle: Vec<String> = path[start..].iter().map(|&n| n.to_owned()).collect();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if !done.insert(node) {
            return None;
        }
        path.push(node);
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, done, path) {
                return Some(cycle);
            }
        }
        path.pop();
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut done, &mut Vec::new()))
}

/// `src` without comments, literals and test modules: what the library itself compiles from.
fn library_code(src: &str) -> String {
    without_test_modules(&blank_comments_and_literals(src))
}

/// `src` with comments and the contents of string and char literals replaced by spaces
/// (newlines kept), so nothing in them looks like a path or a brace.
fn blank_comments_and_literals(src: &str) -> String {
    let c: Vec<char> = src.chars().collect();
    let mut out = c.clone();
    let blank = |out: &mut Vec<char>, from: usize, to: usize| {
        for ch in &mut out[from..to.min(c.len())] {
            if *ch != '\n' {
                *ch = ' ';
            }
        }
    };
    let ident = |i: usize| i < c.len() && (c[i].is_alphanumeric() || c[i] == '_');
    let mut i = 0;
    while i < c.len() {
        let at = |j: usize| c.get(j).copied();
        if c[i] == '/' && at(i + 1) == Some('/') {
            let end = (i..c.len()).find(|&j| c[j] == '\n').unwrap_or(c.len());
            blank(&mut out, i, end);
            i = end;
        } else if c[i] == '/' && at(i + 1) == Some('*') {
            let (mut depth, mut j) = (1, i + 2);
            while j < c.len() && depth > 0 {
                match (c[j], at(j + 1)) {
                    ('/', Some('*')) => (depth, j) = (depth + 1, j + 2),
                    ('*', Some('/')) => (depth, j) = (depth - 1, j + 2),
                    _ => j += 1,
                }
            }
            blank(&mut out, i, j);
            i = j;
        } else if c[i] == 'r' && !(i > 0 && ident(i - 1) && c[i - 1] != 'b') && {
            let hashes = (i + 1..c.len()).take_while(|&j| c[j] == '#').count();
            at(i + 1 + hashes) == Some('"')
        } {
            // Raw string r"…" / r#"…"# (and br"…"): ends at a quote followed by as many #.
            let hashes = (i + 1..c.len()).take_while(|&j| c[j] == '#').count();
            let body = i + 2 + hashes;
            let end = (body..c.len())
                .find(|&j| c[j] == '"' && (1..=hashes).all(|k| at(j + k) == Some('#')))
                .map_or(c.len(), |j| j + 1 + hashes);
            blank(&mut out, body, end.saturating_sub(1 + hashes));
            i = end;
        } else if c[i] == '"' {
            let mut j = i + 1;
            while j < c.len() && c[j] != '"' {
                j += if c[j] == '\\' { 2 } else { 1 };
            }
            blank(&mut out, i + 1, j);
            i = j + 1;
        } else if c[i] == '\'' && (at(i + 1) == Some('\\') || at(i + 2) == Some('\'')) {
            // A char literal ('x', '\n', '\u{7f}', '"'); otherwise `'` starts a lifetime.
            let end = (i + 2..c.len()).find(|&j| c[j] == '\'').unwrap_or(c.len());
            blank(&mut out, i + 1, end);
            i = end + 1;
        } else {
            i += 1;
        }
    }
    out.into_iter().collect()
}

/// `code` without `#[cfg(test)] mod <name> { … }` blocks (`code` has no comments or literals,
/// so counting braces finds the block's end).
fn without_test_modules(code: &str) -> String {
    let mut out = code.to_owned();
    while let Some(attr) = out.find("#[cfg(test)]") {
        let after = attr + "#[cfg(test)]".len();
        let rest = &out[after..];
        let item = rest.trim_start();
        let is_mod_block = item.strip_prefix("mod ").is_some_and(|m| {
            let m = m.trim_start();
            let name_len = m
                .find(|ch: char| !(ch.is_alphanumeric() || ch == '_'))
                .unwrap_or(m.len());
            m[name_len..].trim_start().starts_with('{')
        });
        if !is_mod_block {
            // Some other test-only item: keep it, but do not look at this attribute again.
            out.replace_range(attr..after, &" ".repeat(after - attr));
            continue;
        }
        let open = after + rest.find('{').unwrap_or(0);
        let mut depth = 0usize;
        let mut end = out.len();
        for (k, ch) in out[open..].char_indices() {
            match ch {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = open + k + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        out.replace_range(attr..end, "");
    }
    out
}

/// The first segment of every `crate::…` path in `code`, expanding `crate::{a::X, b}` groups.
fn crate_path_heads(code: &str) -> Vec<String> {
    let mut heads = Vec::new();
    for (at, _) in code.match_indices("crate::") {
        let before = code[..at].chars().next_back();
        if before.is_some_and(|ch| ch.is_alphanumeric() || ch == '_') {
            continue; // `mycrate::`
        }
        let rest = code[at + "crate::".len()..].trim_start();
        if let Some(group) = rest.strip_prefix('{') {
            heads.extend(group_heads(group));
        } else {
            heads.extend(leading_ident(rest));
        }
    }
    heads
}

/// The leading identifier of each top-level item of a `{…}` group (`group` starts after `{`).
fn group_heads(group: &str) -> Vec<String> {
    let (mut depth, mut item_start, mut heads) = (0usize, 0, Vec::new());
    for (k, ch) in group.char_indices() {
        match ch {
            '{' => depth += 1,
            '}' if depth == 0 => {
                heads.extend(leading_ident(&group[item_start..k]));
                break;
            }
            '}' => depth -= 1,
            ',' if depth == 0 => {
                heads.extend(leading_ident(&group[item_start..k]));
                item_start = k + 1;
            }
            _ => {}
        }
    }
    heads.retain(|h| h != "self");
    heads
}

/// Identifiers and single punctuation characters (`::` reads as two `:`), whitespace dropped.
fn tokens(s: &str) -> Vec<&str> {
    let mut tokens = Vec::new();
    let mut word_start = None;
    for (k, ch) in s.char_indices() {
        if ch.is_alphanumeric() || ch == '_' {
            word_start.get_or_insert(k);
            continue;
        }
        if let Some(start) = word_start.take() {
            tokens.push(&s[start..k]);
        }
        if !ch.is_whitespace() {
            tokens.push(&s[k..k + ch.len_utf8()]);
        }
    }
    tokens.extend(word_start.map(|start| &s[start..]));
    tokens
}

fn leading_ident(s: &str) -> Option<String> {
    let s = s.trim_start();
    let len = s
        .find(|ch: char| !(ch.is_alphanumeric() || ch == '_'))
        .unwrap_or(s.len());
    (len > 0).then(|| s[..len].to_owned())
}

/// Names the root makes visible from a module (`pub use report::{Report, Phase as P}` gives
/// `Report` and `P` → `report`). Globs are not resolved.
fn root_reexports(root_code: &str, modules: &BTreeSet<&str>) -> BTreeMap<String, String> {
    let mut names = BTreeMap::new();
    for (at, _) in root_code.match_indices("use ") {
        if root_code[..at]
            .chars()
            .next_back()
            .is_some_and(|ch| ch.is_alphanumeric() || ch == '_')
        {
            continue;
        }
        let stmt = &root_code[at + "use ".len()..];
        let stmt = &stmt[..stmt.find(';').unwrap_or(stmt.len())];
        let stmt = stmt.trim_start();
        let stmt = stmt
            .strip_prefix("crate::")
            .or_else(|| stmt.strip_prefix("self::"))
            .unwrap_or(stmt);
        let Some(module) = leading_ident(stmt).filter(|m| modules.contains(m.as_str())) else {
            continue;
        };
        let tokens = tokens(stmt);
        for (k, token) in tokens.iter().enumerate() {
            let next = tokens.get(k + 1).copied();
            let is_ident = token.chars().all(|ch| ch.is_alphanumeric() || ch == '_');
            if !is_ident || next == Some(":") || next == Some("as") {
                continue;
            }
            if ["as", "self", "super", "crate"].contains(token) {
                continue;
            }
            names.insert((*token).to_owned(), module.clone());
        }
    }
    names
}

fn modules(list: &[(&str, &str)]) -> BTreeMap<String, String> {
    list.iter()
        .map(|(name, text)| ((*name).to_owned(), (*text).to_owned()))
        .collect()
}

#[test]
fn the_crate_has_no_module_cycle() {
    let graph = crate_module_graph(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    if let Some(cycle) = find_cycle(&graph) {
        panic!(
            "module cycle in src/: {}\nwhole graph: {graph:#?}",
            cycle.join(" -> ")
        );
    }
    // The parse found the real imports, so the absence of a cycle means something.
    assert!(graph["report"].contains("profile"), "{graph:#?}");
    assert!(graph["svg"].contains("report"), "{graph:#?}");
    assert!(graph["text"].contains("report"), "{graph:#?}");
}

#[test]
fn finds_cycles_through_groups_and_reexports() {
    let root = "mod a; mod b; mod c;\npub use c::{Thing, other::Deep as Renamed};\n";
    let two = modules(&[
        ("a", "use crate::{b::X, self};"),
        ("b", "fn f() -> crate::a::Y { todo!() }"),
        ("c", ""),
    ]);
    assert_eq!(
        find_cycle(&module_graph(root, &two)),
        Some(vec!["a".into(), "b".into(), "a".into()])
    );
    let three = modules(&[
        ("a", "use crate::b;"),
        ("b", "use crate::Thing;"),
        ("c", "type T = crate::Renamed; use crate::a::Z;"),
    ]);
    assert_eq!(
        find_cycle(&module_graph(root, &three)),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
    let acyclic = modules(&[("a", "use crate::b;"), ("b", "use crate::c;"), ("c", "")]);
    assert_eq!(find_cycle(&module_graph(root, &acyclic)), None);
}

#[test]
fn comments_literals_tests_and_self_references_are_no_edges() {
    let root = "mod a; mod b;";
    let b_source = r####"
        //! See [`A`](crate::a::A).
        /* use crate::a; /* nested */ crate::a */
        const S: &str = "crate::a {";
        const R: &str = r#"crate::a " }"#;
        const Q: char = '"';
        fn f<'a>(x: &'a str) -> &'a str { crate::b::g(x) }
        #[cfg(test)]
        mod tests {
            use crate::a::A;
            fn h() { let _ = format!("{{"); }
        }
        pub fn after_tests() {}
    "####;
    let graph = module_graph(root, &modules(&[("a", "use crate::b;"), ("b", b_source)]));
    assert_eq!(graph["b"], BTreeSet::new(), "{graph:#?}");
    assert!(graph["a"].contains("b"));
    // What follows the test module is still read.
    let code = library_code(b_source);
    assert!(code.contains("after_tests") && !code.contains("mod tests"));
}
