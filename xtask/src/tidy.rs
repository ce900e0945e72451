//! Tidy tests: the source tree keeps the architecture docs/ARCHITECTURE.md describes.
//!
//! After rust-analyzer's `xtask/src/tidy.rs`: plain `#[test]`s that read the workspace's files
//! and `cargo metadata`, so `cargo test -p xtask` (and so `cargo xtask test`, hence CI) fails
//! when a rule is broken. Each failure names the file and line, what is wrong and how to fix
//! it. Source files are read as library code: comments, string and char literals and
//! `#[cfg(test)] mod … { … }` blocks are blanked first (line numbers kept), so a doc comment or
//! an error message that names `malloc_trim` is not a call of it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::layers::{self, LAYERS, ORT_USERS, UNRESTRICTED};

/// Files of `crates/cli/src` (relative to it) that may write with `std::fs` directly, each
/// with the reason. Everything else the binary writes goes through the libraries
/// (`masp_run::write_file`, the run directory, the report writer), which write atomically and
/// durably; the binary prints. Empty today: no printing helper of the CLI writes files itself.
const CLI_FS_WRITE_ALLOWED: &[(&str, &str)] = &[];

/// `std::fs` calls that create, change or remove files (see `cli_writes_files_only_through_
/// the_libraries`). Paths match as written; bare names match as whole identifiers.
const FS_WRITE_CALLS: &[&str] = &[
    "fs::write",
    "fs::copy",
    "File::create",
    "OpenOptions",
    "create_dir",
    "create_dir_all",
    "rename",
    "remove_file",
    "remove_dir",
    "remove_dir_all",
    "hard_link",
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask is inside the workspace")
        .to_path_buf()
}

/// `path` relative to the workspace root, for messages.
fn rel(path: &Path) -> String {
    path.strip_prefix(root())
        .unwrap_or(path)
        .display()
        .to_string()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// Every `.rs` file under `dir`, sorted; build output (`target`) and hidden directories are
/// skipped.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.expect("reading a directory entry").path();
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            if path.is_dir() {
                if name != "target" && !name.starts_with('.') {
                    stack.push(path);
                }
            } else if name.ends_with(".rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// Panics listing `problems` (one per line) and the fix, unless there are none.
fn report(what: &str, problems: &[String], fix: &str) {
    if !problems.is_empty() {
        panic!(
            "\n{what}: {} problem(s)\n  {}\n\nfix: {fix}\n",
            problems.len(),
            problems.join("\n  ")
        );
    }
}

fn line_of(text: &str, byte: usize) -> usize {
    text[..byte].matches('\n').count() + 1
}

fn is_ident(ch: char) -> bool {
    ch.is_alphanumeric() || ch == '_'
}

/// Byte offsets of `needle` in `code` with no identifier character just before it when it
/// starts with one, nor just after it when it ends with one (so `rename` does not match
/// `rename_all`, nor `ort::` `report::`).
fn find_token(code: &str, needle: &str) -> Vec<usize> {
    code.match_indices(needle)
        .map(|(at, _)| at)
        .filter(|&at| {
            let before_ok = !needle.starts_with(is_ident)
                || !code[..at].chars().next_back().is_some_and(is_ident);
            let after_ok = !needle.ends_with(is_ident)
                || !code[at + needle.len()..]
                    .chars()
                    .next()
                    .is_some_and(is_ident);
            before_ok && after_ok
        })
        .collect()
}

fn packages(metadata: &Value) -> &[Value] {
    metadata["packages"]
        .as_array()
        .map(Vec::as_slice)
        .expect("cargo metadata lists packages")
}

fn manifest_path(package: &Value) -> PathBuf {
    PathBuf::from(package["manifest_path"].as_str().unwrap_or_default())
}

/// `crates/<dir>` for a package whose manifest is `crates/<dir>/Cargo.toml`.
fn crate_dir(package: &Value) -> Option<String> {
    let dir = manifest_path(package).parent()?.to_path_buf();
    let relative = dir.strip_prefix(root().join("crates")).ok()?;
    Some(relative.to_str()?.to_owned())
}

fn has_lib_target(package: &Value) -> bool {
    package["targets"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|t| {
            t["kind"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|k| k == "lib")
        })
}

/// `manifest:line` of the first line of `manifest` that declares `dep` (for messages).
fn dep_location(manifest: &Path, dep: &str) -> String {
    let text = read(manifest);
    let line = text
        .lines()
        .position(|l| {
            let l = l.trim_start();
            l.starts_with(dep) && l[dep.len()..].trim_start().starts_with(['=', '.'])
        })
        .map_or(1, |i| i + 1);
    format!("{}:{line}", rel(manifest))
}

// ---------------------------------------------------------------------------------------------
// Blanking: what the compiler builds the library from.
// ---------------------------------------------------------------------------------------------

/// `src` without comments, literals and test modules, same lines: what the library compiles.
fn library_code(src: &str) -> String {
    blank_test_modules(&blank_comments_and_literals(src))
}

/// `src` with comments and the contents of string and char literals replaced by spaces
/// (newlines kept), so nothing in them looks like a path or a brace.
fn blank_comments_and_literals(src: &str) -> String {
    let c: Vec<char> = src.chars().collect();
    let mut out = c.clone();
    let blank = |out: &mut Vec<char>, from: usize, to: usize| {
        for ch in &mut out[from.min(c.len())..to.min(c.len())] {
            if *ch != '\n' {
                *ch = ' ';
            }
        }
    };
    let ident = |i: usize| i < c.len() && is_ident(c[i]);
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

/// Byte ranges `(start, end)` of the `{ … }` bodies of inline `mod <name> { … }` items in
/// `code` (which has no comments or literals, so counting braces finds each end).
fn inline_modules(code: &str) -> Vec<(usize, usize)> {
    let mut ranges = Vec::new();
    for at in find_token(code, "mod") {
        let rest = &code[at + 3..];
        let name = rest.trim_start();
        let name_len = name.find(|ch: char| !is_ident(ch)).unwrap_or(name.len());
        if name_len == 0 || !name[name_len..].trim_start().starts_with('{') {
            continue; // `mod name;`
        }
        let open = at + 3 + rest.find('{').unwrap_or(0);
        let mut depth = 0usize;
        for (k, ch) in code[open..].char_indices() {
            match ch {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        ranges.push((open, open + k + 1));
                        break;
                    }
                }
                _ => {}
            }
        }
    }
    ranges
}

/// `code` with `#[cfg(test)] mod <name> { … }` blocks blanked (newlines kept): a test may use
/// any module to build its fixtures without the library depending on it.
fn blank_test_modules(code: &str) -> String {
    let mut ranges = Vec::new();
    for (attr, _) in code.match_indices("#[cfg(test)]") {
        let after = attr + "#[cfg(test)]".len();
        let item = code[after..].trim_start();
        if !item.starts_with("mod ") {
            continue; // some other test-only item: kept
        }
        let item_at = code.len() - item.len();
        if let Some(&(open, end)) = inline_modules(&code[item_at..]).first()
            && code[item_at + "mod ".len()..item_at + open]
                .trim()
                .chars()
                .all(is_ident)
        {
            ranges.push((attr, item_at + end));
        }
    }
    code.char_indices()
        .map(|(k, ch)| {
            let blanked = ch != '\n' && ranges.iter().any(|&(s, e)| s <= k && k < e);
            if blanked { ' ' } else { ch }
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The module graph of a crate, at file granularity.
// ---------------------------------------------------------------------------------------------

/// A module's path inside its crate: `[]` is the crate root, `["plan", "search"]` is
/// `plan/search.rs`.
type ModPath = Vec<String>;

/// Each module (by `a::b` name) and the modules its code names, with the line of the first
/// reference.
type Graph = BTreeMap<String, BTreeMap<String, usize>>;

/// The module a source file is, from its path relative to `src/`: `lib.rs`/`main.rs` → the
/// root, `a.rs` and `a/mod.rs` → `a`, `a/b.rs` → `a::b`.
fn module_path_of(file: &str) -> Option<ModPath> {
    let stem = file.strip_suffix(".rs")?;
    let mut parts: Vec<String> = stem.split('/').map(str::to_owned).collect();
    if parts.first().is_some_and(|p| p == "bin") {
        return None; // src/bin/*: separate binaries
    }
    if parts.len() == 1 && (parts[0] == "lib" || parts[0] == "main") {
        return Some(Vec::new());
    }
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    Some(parts)
}

fn mod_name(path: &[String]) -> String {
    path.join("::")
}

/// One path of a use tree or of a path expression: its segments (`crate`, `super` and `self`
/// included) and its alias (`as X`).
type UsePath = (Vec<String>, Option<String>);

/// The paths of the use tree (or path expression) that starts at `s`: `a::{b::C, d as E}`
/// gives `[a, b, C]` and `[a, d]` as `E`. Generic arguments and what follows a path end it.
fn parse_use_tree(s: &str) -> Vec<UsePath> {
    fn skip_ws(c: &[char], i: &mut usize) {
        while *i < c.len() && c[*i].is_whitespace() {
            *i += 1;
        }
    }
    fn ident(c: &[char], i: &mut usize) -> Option<String> {
        skip_ws(c, i);
        let start = *i;
        while *i < c.len() && is_ident(c[*i]) {
            *i += 1;
        }
        (*i > start).then(|| c[start..*i].iter().collect())
    }
    fn tree(c: &[char], i: &mut usize, prefix: Vec<String>, out: &mut Vec<UsePath>, depth: u32) {
        skip_ws(c, i);
        if depth > 16 {
            return;
        }
        if c.get(*i) == Some(&'{') {
            *i += 1;
            loop {
                skip_ws(c, i);
                match c.get(*i) {
                    None => return,
                    Some('}') => {
                        *i += 1;
                        return;
                    }
                    _ => {}
                }
                let before = *i;
                tree(c, i, prefix.clone(), out, depth + 1);
                skip_ws(c, i);
                match c.get(*i) {
                    Some(',') => *i += 1,
                    Some('}') => {
                        *i += 1;
                        return;
                    }
                    _ if *i == before => return, // not a use tree after all
                    _ => return,
                }
            }
        }
        if c.get(*i) == Some(&'*') {
            *i += 1;
            let mut path = prefix;
            path.push("*".into());
            out.push((path, None));
            return;
        }
        let Some(segment) = ident(c, i) else {
            if !prefix.is_empty() {
                out.push((prefix, None));
            }
            return;
        };
        let mut path = prefix;
        path.push(segment);
        let mut j = *i;
        skip_ws(c, &mut j);
        if c.get(j) == Some(&':') && c.get(j + 1) == Some(&':') {
            let mut k = j + 2;
            skip_ws(c, &mut k);
            if c.get(k) != Some(&'<') {
                *i = k;
                tree(c, i, path, out, depth + 1);
                return;
            }
        }
        let mut k = *i;
        let alias = (ident(c, &mut k).as_deref() == Some("as"))
            .then(|| ident(c, &mut k))
            .flatten();
        if alias.is_some() {
            *i = k;
        }
        out.push((path, alias));
    }
    let c: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    tree(&c, &mut 0, Vec::new(), &mut out, 0);
    out
}

/// The module graph of the crate whose sources are in `src_dir`, and each module's file.
fn crate_module_graph(src_dir: &Path) -> (Graph, BTreeMap<String, String>) {
    let files: BTreeMap<String, String> = rust_files(src_dir)
        .into_iter()
        .map(|path| {
            let relative = path.strip_prefix(src_dir).unwrap_or(&path);
            let name = relative.to_string_lossy().replace('\\', "/");
            (name, read(&path))
        })
        .collect();
    let names = files
        .keys()
        .filter_map(|f| Some((mod_name(&module_path_of(f)?), f.clone())))
        .collect();
    (module_graph(&files), names)
}

/// The graph of a crate given as its files (path relative to `src/` → source text).
///
/// What counts, and why:
/// - A module is a file. The crate root is no node: it declares every module, so it would
///   close a cycle with each of them; its `pub use` lines resolve names instead. Likewise a
///   module's references into its own subtree are no edges: a `mod.rs` (or `a.rs` beside
///   `a/`) declares its children and is their façade, as the root is the crate's.
/// - A reference is a `crate::…` or `super::…` path in code (use trees included), resolved to
///   the deepest module it names; a name a module re-exports (`pub use inner::Thing` in
///   `a/mod.rs` makes `crate::a::Thing` a use of `a::inner`, and `pub use a::Thing` in the root
///   makes `crate::Thing` one too) resolves to where it comes from. Items of the root itself,
///   macros and other crates are no edges. Glob re-exports are not resolved.
/// - `super::` inside an inline `mod x { … }` first leaves that inline module (it names the
///   file's own module: no edge).
fn module_graph(files: &BTreeMap<String, String>) -> Graph {
    let modules: BTreeMap<ModPath, String> = files
        .iter()
        .filter_map(|(file, text)| Some((module_path_of(file)?, library_code(text))))
        .collect();
    let known: BTreeSet<&ModPath> = modules.keys().collect();

    // Where a use path written in module `at` starts, and what is left of it; None for paths
    // into other crates or out of the crate. `inline_depth`: inline modules around the path.
    let start = |at: &ModPath, path: &[String], inline_depth: usize| -> Option<(ModPath, usize)> {
        match path.first()?.as_str() {
            "crate" => Some((Vec::new(), 1)),
            "self" => Some((at.clone(), 1)),
            "super" => {
                let supers = path.iter().take_while(|s| *s == "super").count();
                let up = supers.checked_sub(inline_depth).filter(|&up| up > 0);
                let Some(up) = up else {
                    return Some((at.clone(), supers)); // the file's own module
                };
                let base = at.len().checked_sub(up)?;
                Some((at[..base].to_vec(), supers))
            }
            first => {
                let mut child = at.clone();
                child.push(first.to_owned());
                known.contains(&child).then(|| (at.clone(), 0))
            }
        }
    };
    type Reexports = BTreeMap<ModPath, BTreeMap<String, ModPath>>;
    let resolve = |mut at: ModPath, rest: &[String], reexports: &Reexports| -> ModPath {
        for segment in rest {
            match segment.as_str() {
                "self" => continue,
                "*" => break,
                _ => {}
            }
            let mut child = at.clone();
            child.push(segment.clone());
            if known.contains(&child) {
                at = child;
                continue;
            }
            if let Some(target) = reexports.get(&at).and_then(|r| r.get(segment)) {
                return target.clone();
            }
            break;
        }
        at
    };

    // Re-exports (`pub use`, `pub(crate) use`, …) of every module, resolved to a fixpoint so
    // a chain root → a → a::inner ends where the item is defined.
    let mut declared = Vec::new(); // (module, exported name, start, rest)
    for (at, code) in &modules {
        for use_at in find_token(code, "use") {
            let before = code[..use_at].trim_end();
            // `pub use`, or `pub(…) use` with nothing between the visibility and `use`.
            let restricted = before.ends_with(')')
                && before
                    .rfind("pub(")
                    .is_some_and(|p| !before[p..].contains([';', '{', '}']));
            if !(before.ends_with("pub") || restricted) {
                continue;
            }
            let stmt = &code[use_at + 3..];
            let stmt = &stmt[..stmt.find(';').unwrap_or(stmt.len())];
            for (path, alias) in parse_use_tree(stmt) {
                let Some((base, skip)) = start(at, &path, 0) else {
                    continue;
                };
                let name = match (alias, path.last().map(String::as_str)) {
                    (Some(alias), _) => alias,
                    (None, Some("self")) if path.len() >= 2 => path[path.len() - 2].clone(),
                    (None, Some("*") | None) => continue,
                    (None, Some(last)) => last.to_owned(),
                };
                declared.push((at.clone(), name, base, path[skip..].to_vec()));
            }
        }
    }
    let mut reexports = Reexports::new();
    for _ in 0..8 {
        let mut next = Reexports::new();
        for (at, name, base, rest) in &declared {
            let target = resolve(base.clone(), rest, &reexports);
            next.entry(at.clone())
                .or_default()
                .insert(name.clone(), target);
        }
        if next == reexports {
            break;
        }
        reexports = next;
    }

    let mut graph = Graph::new();
    for (at, code) in &modules {
        if at.is_empty() {
            continue;
        }
        let inline = inline_modules(code);
        let edges = graph.entry(mod_name(at)).or_default();
        let mut starts = find_token(code, "crate");
        starts.extend(find_token(code, "super").into_iter().filter(|&p| {
            // The first `super` of a `super::super::…` chain only.
            !code[..p].trim_end().ends_with("::")
        }));
        for pos in starts {
            if !code[pos..]
                .trim_start_matches(is_ident)
                .trim_start()
                .starts_with("::")
            {
                continue; // `pub(crate)`, `pub(super)`
            }
            let depth = inline.iter().filter(|&&(s, e)| s < pos && pos < e).count();
            for (path, _) in parse_use_tree(&code[pos..]) {
                let Some((base, skip)) = start(at, &path, depth) else {
                    continue;
                };
                let target = resolve(base, &path[skip..], &reexports);
                if target.is_empty() || target.starts_with(at) {
                    continue; // the root, this module or its own children
                }
                edges
                    .entry(mod_name(&target))
                    .or_insert_with(|| line_of(code, pos));
            }
        }
    }
    graph
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
        for next in graph.get(node).into_iter().flat_map(BTreeMap::keys) {
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

/// Every cycle worth reporting: find one, drop its first edge, repeat.
fn all_cycles(graph: &Graph) -> Vec<Vec<String>> {
    let mut graph = graph.clone();
    let mut cycles = Vec::new();
    while let Some(cycle) = find_cycle(&graph) {
        if let Some(edges) = graph.get_mut(&cycle[0]) {
            edges.remove(&cycle[1]);
        }
        cycles.push(cycle);
        if cycles.len() == 20 {
            break;
        }
    }
    cycles
}

// ---------------------------------------------------------------------------------------------
// The layer diagram of docs/ARCHITECTURE.md.
// ---------------------------------------------------------------------------------------------

/// The `a ─► b` edges of the ```` ```text layers ```` block of `doc`, with their line.
fn diagram_edges(doc: &str) -> Result<Vec<(String, String, usize)>, String> {
    let lines: Vec<&str> = doc.lines().collect();
    let open = lines
        .iter()
        .position(|l| l.trim_end() == "```text layers")
        .ok_or("docs/ARCHITECTURE.md has no ```text layers block")?;
    let mut edges = Vec::new();
    for (k, line) in lines.iter().enumerate().skip(open + 1) {
        if line.trim_end() == "```" {
            return Ok(edges);
        }
        if line.trim().is_empty() {
            continue;
        }
        let names: Vec<&str> = line.split("─►").map(str::trim).collect();
        let valid = |n: &&str| {
            !n.is_empty()
                && n.chars()
                    .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-')
        };
        if names.len() < 2 || !names.iter().all(valid) {
            return Err(format!(
                "docs/ARCHITECTURE.md:{}: `{line}` is not a chain like `budget ─► profiler ─► cli`",
                k + 1
            ));
        }
        for pair in names.windows(2) {
            edges.push((pair[0].to_owned(), pair[1].to_owned(), k + 1));
        }
    }
    Err("docs/ARCHITECTURE.md: the ```text layers block is not closed".into())
}

/// What each crate may depend on by the diagram: `a ─► b` lets `b` and everything above `b`
/// depend on `a` (crate names as packages: `cli` is `masp-cli`).
fn diagram_layers(edges: &[(String, String, usize)]) -> BTreeMap<String, BTreeSet<String>> {
    let mut below: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (a, b, _) in edges {
        below.entry(format!("masp-{a}")).or_default();
        below
            .entry(format!("masp-{b}"))
            .or_default()
            .insert(format!("masp-{a}"));
    }
    // Transitive closure (the graph is tiny).
    loop {
        let mut changed = false;
        for name in below.keys().cloned().collect::<Vec<_>>() {
            let reach: BTreeSet<String> = below[&name]
                .iter()
                .flat_map(|lower| below[lower].iter().cloned())
                .collect();
            let set = below.get_mut(&name).expect("name is a key");
            for r in reach {
                changed |= set.insert(r);
            }
        }
        if !changed {
            return below;
        }
    }
}

fn table_layers() -> BTreeMap<String, BTreeSet<String>> {
    LAYERS
        .iter()
        .map(|(name, allowed)| {
            let allowed = allowed.iter().map(|s| (*s).to_owned()).collect();
            ((*name).to_owned(), allowed)
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// a. Layers: the diagram, the table and the manifests agree.
// ---------------------------------------------------------------------------------------------

#[test]
fn layer_diagram_matches_the_layers_table() {
    let doc = read(&root().join("docs/ARCHITECTURE.md"));
    let edges = diagram_edges(&doc).unwrap_or_else(|e| panic!("\n{e}\n"));
    let diagram = diagram_layers(&edges);
    let table = table_layers();
    let mut problems = Vec::new();
    for (name, below) in &diagram {
        if below.contains(name) {
            problems.push(format!(
                "docs/ARCHITECTURE.md: the diagram has a cycle through {name}"
            ));
        }
    }
    for name in diagram.keys().chain(table.keys()).collect::<BTreeSet<_>>() {
        let (d, t) = (diagram.get(name), table.get(name));
        match (d, t) {
            (Some(d), Some(t)) if d != t => problems.push(format!(
                "{name}: by the diagram it may depend on {{{}}}, by LAYERS (xtask/src/layers.rs) \
                 on {{{}}}",
                d.iter().cloned().collect::<Vec<_>>().join(", "),
                t.iter().cloned().collect::<Vec<_>>().join(", "),
            )),
            (Some(_), None) => problems.push(format!(
                "{name} is in the diagram of docs/ARCHITECTURE.md but not in LAYERS"
            )),
            (None, Some(_)) => problems.push(format!(
                "{name} is in LAYERS but not in the diagram of docs/ARCHITECTURE.md"
            )),
            _ => {}
        }
    }
    report(
        "the ```text layers diagram of docs/ARCHITECTURE.md and xtask/src/layers.rs disagree",
        &problems,
        "change both in the same commit: an arrow `a ─► b` means b (and all above it) may \
         depend on a",
    );
}

#[test]
fn the_layers_table_matches_cargo_metadata() {
    let metadata = layers::metadata().expect("cargo metadata");
    let packages = packages(&metadata);
    let ours: Vec<&str> = packages.iter().filter_map(|p| p["name"].as_str()).collect();
    let mut problems = Vec::new();
    for package in packages {
        let name = package["name"].as_str().unwrap_or_default();
        if !UNRESTRICTED.contains(&name) && !LAYERS.iter().any(|(n, _)| *n == name) {
            problems.push(format!(
                "{}: {name} is not in LAYERS (xtask/src/layers.rs)",
                rel(&manifest_path(package))
            ));
        }
        for dep in package["dependencies"].as_array().into_iter().flatten() {
            let to = dep["name"].as_str().unwrap_or_default();
            if !ours.contains(&to) {
                continue; // ort is the next test's
            }
            let dev = dep["kind"].as_str() == Some("dev");
            if let Some(why) = layers::judge(name, to, dev, &ours) {
                let kind = dep["kind"].as_str().unwrap_or("normal");
                problems.push(format!(
                    "{}: {kind} dependency {why}",
                    dep_location(&manifest_path(package), to)
                ));
            }
        }
    }
    for (name, _) in LAYERS {
        if !ours.contains(name) {
            problems.push(format!(
                "xtask/src/layers.rs: LAYERS names {name}, which is not a workspace member"
            ));
        }
    }
    report(
        "crate dependencies and LAYERS disagree",
        &problems,
        "remove the edge (move the code to the lower crate), or change the layering in \
         LAYERS and docs/ARCHITECTURE.md together; testkit may be a dev-dependency of anything",
    );
}

#[test]
fn every_crate_has_an_architecture_section() {
    let doc = read(&root().join("docs/ARCHITECTURE.md"));
    let metadata = layers::metadata().expect("cargo metadata");
    let mut problems = Vec::new();
    for package in packages(&metadata) {
        let (Some(dir), Some(name)) = (crate_dir(package), package["name"].as_str()) else {
            continue;
        };
        let heading = format!("### crates/{dir} ({name})");
        if !doc.lines().any(|l| l.trim_end() == heading) {
            problems.push(format!("docs/ARCHITECTURE.md: no `{heading}` section"));
        }
    }
    report(
        "crates without a section in docs/ARCHITECTURE.md",
        &problems,
        "add the section under `## Code map`: what the crate owns, its API boundary, and its \
         **Architecture Invariant:** lines",
    );
}

// ---------------------------------------------------------------------------------------------
// b. ONNX Runtime only in the orchestrator and the models.
// ---------------------------------------------------------------------------------------------

#[test]
fn only_ort_users_depend_on_ort() {
    let metadata = layers::metadata().expect("cargo metadata");
    let mut problems = Vec::new();
    for package in packages(&metadata) {
        let name = package["name"].as_str().unwrap_or_default();
        for dep in package["dependencies"].as_array().into_iter().flatten() {
            let to = dep["name"].as_str().unwrap_or_default();
            if (to == "ort" || to == "ort-sys") && !ORT_USERS.contains(&name) {
                let kind = dep["kind"].as_str().unwrap_or("normal");
                problems.push(format!(
                    "{}: {name} has a {kind} dependency on {to}",
                    dep_location(&manifest_path(package), to)
                ));
            }
        }
    }
    report(
        "ONNX Runtime bindings outside ORT_USERS",
        &problems,
        &format!(
            "only {} may depend on ort (dev-dependencies too): go through the orchestrator's \
             API (or masp-testkit) instead",
            ORT_USERS.join(" and ")
        ),
    );
}

#[test]
fn only_the_orchestrator_and_the_models_name_ort_in_code() {
    let root = root();
    let allowed = [root.join("crates/orchestrator"), root.join("crates/models")];
    let mut problems = Vec::new();
    for path in rust_files(&root) {
        if allowed.iter().any(|dir| path.starts_with(dir)) {
            continue;
        }
        let code = library_code(&read(&path));
        for needle in ["ort::", "use ort"] {
            for at in find_token(&code, needle) {
                problems.push(format!("{}:{}: `{needle}`", rel(&path), line_of(&code, at)));
            }
        }
    }
    report(
        "code outside crates/orchestrator and crates/models names ort",
        &problems,
        "use masp-orchestrator's types (Runtime, SessionOptions, the adapters) instead of ort's",
    );
}

// ---------------------------------------------------------------------------------------------
// c. One place trims the allocator.
// ---------------------------------------------------------------------------------------------

#[test]
fn allocator_calls_only_in_budget_trim() {
    let root = root();
    let trim = root.join("crates/budget/src/trim.rs");
    let mut problems = Vec::new();
    let mut found_in_trim = BTreeSet::new();
    for path in rust_files(&root) {
        let code = library_code(&read(&path));
        for needle in ["malloc_trim", "mallopt"] {
            for at in find_token(&code, needle) {
                if path == trim {
                    found_in_trim.insert(needle);
                } else {
                    problems.push(format!("{}:{}: `{needle}`", rel(&path), line_of(&code, at)));
                }
            }
        }
    }
    // The check reads the right file: the calls are where they belong.
    assert_eq!(
        found_in_trim.len(),
        2,
        "crates/budget/src/trim.rs no longer calls malloc_trim and mallopt: update this test"
    );
    report(
        "allocator calls outside crates/budget/src/trim.rs",
        &problems,
        "call masp_budget::trim::release_freed_memory (or pin_mmap_threshold) instead",
    );
}

/// Every model call in masp-models passes the task's run options, so the watchdog can stop it:
/// `crate::call::run`, never `Session::run` directly. The int8 calibration (`quantize`) runs
/// outside any task, under its own reservation, and is the one exception.
#[test]
fn model_calls_pass_the_tasks_run_options() {
    let src = root().join("crates/models/src");
    let exempt = [src.join("call.rs"), src.join("quantize.rs")];
    let mut problems = Vec::new();
    let mut calls = 0;
    for path in rust_files(&src) {
        let code = library_code(&read(&path));
        calls += code.matches("call::run(").count();
        if exempt.contains(&path) {
            continue;
        }
        for needle in [".run(ort::inputs!", ".run(inputs", "session.run("] {
            for (at, _) in code.match_indices(needle) {
                problems.push(format!("{}:{}: `{needle}`", rel(&path), line_of(&code, at)));
            }
        }
    }
    report(
        "model calls without the task's run options",
        &problems,
        "run the session through crate::call::run with the model's CallOptions (set from \
         TaskContext::run_options), so the watchdog can terminate the call",
    );
    // The check reads the right files: silero (2), the embedder and the generic adapter.
    assert!(
        calls >= 4,
        "only {calls} `call::run(` in crates/models/src: update this test"
    );
}

// ---------------------------------------------------------------------------------------------
// d. No module cycles inside a library crate.
// ---------------------------------------------------------------------------------------------

fn library_src_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root().join("crates"))
        .expect("reading crates/")
        .filter_map(|e| Some(e.ok()?.path().join("src")))
        // The `masp` binary too: "no module imports a module that imports it back" holds in
        // every crate.
        .filter(|src| src.join("lib.rs").is_file() || src.join("main.rs").is_file())
        .collect();
    dirs.sort();
    dirs
}

#[test]
fn no_module_cycles_in_library_crates() {
    let mut problems = Vec::new();
    let mut n_edges = 0;
    let mut graphs = BTreeMap::new();
    for src in library_src_dirs() {
        let (graph, files) = crate_module_graph(&src);
        n_edges += graph.values().map(BTreeMap::len).sum::<usize>();
        for cycle in all_cycles(&graph) {
            let mut text = format!("{}: {}", rel(&src), cycle.join(" -> "));
            for pair in cycle.windows(2) {
                let line = graph[&pair[0]][&pair[1]];
                text.push_str(&format!(
                    "\n      {}/{}:{line} uses {}",
                    rel(&src),
                    files[&pair[0]],
                    pair[1]
                ));
            }
            problems.push(text);
        }
        graphs.insert(rel(&src), graph);
    }
    report(
        "module cycles",
        &problems,
        "move what both modules need into a third one that neither imports back (or into the \
         lower of the two)",
    );
    // The parse found the real imports, so the absence of a cycle means something.
    // `to` or a file inside it (a module may become a directory).
    let edge = |krate: &str, from: &str, to: &str| {
        graphs
            .get(&format!("crates/{krate}/src"))
            .and_then(|g| g.get(from))
            .is_some_and(|e| {
                e.keys()
                    .any(|t| t == to || t.starts_with(&format!("{to}::")))
            })
    };
    assert!(edge("profiler", "report", "profile"), "{graphs:#?}");
    assert!(edge("profiler", "svg", "report"), "{graphs:#?}");
    assert!(
        edge("orchestrator", "worker::client", "worker::protocol"),
        "{graphs:#?}"
    );
    assert!(n_edges > 50, "only {n_edges} edges found: {graphs:#?}");
}

fn files(list: &[(&str, &str)]) -> BTreeMap<String, String> {
    list.iter()
        .map(|(name, text)| ((*name).to_owned(), (*text).to_owned()))
        .collect()
}

fn cycle(names: &[&str]) -> Option<Vec<String>> {
    Some(names.iter().map(|n| (*n).to_owned()).collect())
}

#[test]
fn module_graph_finds_cycles_through_directories_and_reexports() {
    // a.rs names a file inside a directory module, which names a back through the root.
    let nested = files(&[
        ("lib.rs", "mod a; mod dir; pub use dir::Thing;"),
        ("a.rs", "pub struct Y; use crate::dir::inner::X;"),
        ("dir/mod.rs", "mod inner; pub use inner::{Thing, X};"),
        (
            "dir/inner.rs",
            "pub struct X; fn f() -> crate::a::Y { todo!() }",
        ),
    ]);
    assert_eq!(
        find_cycle(&module_graph(&nested)),
        cycle(&["a", "dir::inner", "a"])
    );
    // `crate::Thing` is re-exported by lib.rs from `dir`, which re-exports it from
    // `dir::inner`: a use of dir/inner.rs.
    let reexported = files(&[
        ("lib.rs", "mod b; mod dir; pub use dir::Thing;"),
        ("b.rs", "use crate::Thing; pub fn g() {}"),
        ("dir/mod.rs", "mod inner; pub use inner::Thing;"),
        ("dir/inner.rs", "pub struct Thing; fn f() { crate::b::g() }"),
    ]);
    assert_eq!(
        find_cycle(&module_graph(&reexported)),
        cycle(&["b", "dir::inner", "b"])
    );
    // Siblings through `super::`, in the `foo.rs` + `foo/` layout.
    let siblings = files(&[
        ("lib.rs", "mod foo;"),
        ("foo.rs", "mod x; mod y;"),
        ("foo/x.rs", "use super::y::{A, self};"),
        ("foo/y.rs", "use super::{x::B};"),
    ]);
    assert_eq!(
        find_cycle(&module_graph(&siblings)),
        cycle(&["foo::x", "foo::y", "foo::x"])
    );
    // Three modules, through groups and an alias.
    let three = files(&[
        (
            "lib.rs",
            "mod a; mod b; mod c; pub use c::Thing as Renamed;",
        ),
        ("a.rs", "use crate::{b::X, self};"),
        ("b.rs", "type T = crate::Renamed;"),
        ("c.rs", "use crate::a::Z;"),
    ]);
    assert_eq!(
        find_cycle(&module_graph(&three)),
        cycle(&["a", "b", "c", "a"])
    );
}

#[test]
fn module_graph_passes_layered_modules() {
    // A directory's mod.rs is its children's façade: it calls them, they use its items.
    let facade = files(&[
        ("lib.rs", "mod plan; mod batch; pub use plan::Plan;"),
        (
            "plan/mod.rs",
            "mod search; pub struct Options; pub fn plan() { search::solve() }",
        ),
        (
            "plan/search.rs",
            "use super::Options; use crate::plan::Options as O; pub fn solve() {}",
        ),
        ("batch.rs", "use crate::Plan; use crate::plan::search;"),
    ]);
    let graph = module_graph(&facade);
    assert_eq!(find_cycle(&graph), None, "{graph:#?}");
    assert!(graph["plan::search"].contains_key("plan"), "{graph:#?}");
    assert!(graph["batch"].contains_key("plan"), "{graph:#?}");
    assert!(graph["batch"].contains_key("plan::search"), "{graph:#?}");
    let chain = files(&[
        ("lib.rs", "mod a; mod b; mod c;"),
        ("a.rs", "use crate::b;"),
        ("b.rs", "use crate::c::X;"),
        ("c.rs", ""),
    ]);
    assert_eq!(find_cycle(&module_graph(&chain)), None);
}

#[test]
fn module_graph_ignores_comments_literals_tests_and_inline_modules() {
    let b_source = r####"
        //! See [`A`](crate::a::A).
        /* use crate::a; /* nested */ crate::a */
        const S: &str = "crate::a {";
        const R: &str = r#"crate::a " }"#;
        const Q: char = '"';
        pub(crate) fn f<'a>(x: &'a str) -> &'a str { crate::b::g(x) }
        mod imp { use super::f; }
        #[cfg(test)]
        mod tests {
            use crate::a::A;
            fn h() { let _ = format!("{{"); }
        }
        pub fn after_tests() -> crate::c::C { todo!() }
    "####;
    let graph = module_graph(&files(&[
        ("lib.rs", "mod a; mod b; mod c;"),
        ("a.rs", "use crate::b;"),
        ("b.rs", b_source),
        ("c.rs", ""),
    ]));
    assert_eq!(
        graph["b"].keys().collect::<Vec<_>>(),
        ["c"],
        "only what follows the test module: {graph:#?}"
    );
    assert_eq!(graph["b"]["c"], 14, "the line of the reference");
    assert!(graph["a"].contains_key("b"));
}

// ---------------------------------------------------------------------------------------------
// e. ONNX Runtime sessions only on the orchestrator's admitted path.
// ---------------------------------------------------------------------------------------------

#[test]
fn runtime_session_is_not_pub() {
    let path = root().join("crates/orchestrator/src/runtime.rs");
    let code = library_code(&read(&path));
    // `Runtime`'s own methods (Admitted::session, which needs a reservation, is checked below).
    let start = code.find("impl Runtime {").unwrap_or(0);
    let end = code[start..]
        .find("\n}\n")
        .map_or(code.len(), |i| start + i);
    let defs: Vec<usize> = find_token(&code, "fn session")
        .into_iter()
        .filter(|&at| (start..end).contains(&at))
        .collect();
    assert!(
        !defs.is_empty(),
        "{}: no `fn session` any more: point this test at the method that creates sessions",
        rel(&path)
    );
    let mut problems = Vec::new();
    for at in defs {
        let line_start = code[..at].rfind('\n').map_or(0, |i| i + 1);
        let qualifiers = &code[line_start..at];
        if qualifiers.split_whitespace().any(|q| q == "pub") {
            problems.push(format!(
                "{}:{}: `{}fn session` is public",
                rel(&path),
                line_of(&code, at),
                qualifiers.trim_start()
            ));
        }
    }
    report(
        "Runtime::session is public",
        &problems,
        "make it `pub(crate)`: sessions are created by the orchestrator after the budget \
         admitted the load (adapters get theirs through the load context)",
    );
}

#[test]
fn sessions_outside_the_orchestrator_need_a_reservation() {
    // `Runtime::session` is crate-private (the test above), so outside the orchestrator the
    // compiler allows only `Admitted::session`; what is left to check is that an `Admitted` can
    // only be made from a reservation: every public function of `impl Admitted` that returns
    // one takes a `&Reservation` (the orchestrator's own constructor for workers is
    // `pub(crate)`).
    let path = root().join("crates/orchestrator/src/runtime.rs");
    let code = library_code(&read(&path));
    let Some(start) = find_token(&code, "impl<'a> Admitted<'a>")
        .into_iter()
        .next()
    else {
        panic!(
            "{}: no `impl<'a> Admitted<'a>`: point this test at the type that admits sessions",
            rel(&path)
        );
    };
    let body_end = code[start..]
        .find("\n}\n")
        .map_or(code.len(), |i| start + i);
    let body = &code[start..body_end];
    let mut problems = Vec::new();
    let mut constructors = 0;
    for (offset, line) in body.lines().scan(0, |at, l| {
        let here = *at;
        *at += l.len() + 1;
        Some((here, l))
    }) {
        let line = line.trim_start();
        if !line.starts_with("pub fn ") {
            continue;
        }
        let signature_end = body[offset..].find('{').map_or(body.len(), |i| offset + i);
        let signature = &body[offset..signature_end];
        if !signature.contains("-> Self") {
            continue;
        }
        constructors += 1;
        if !signature.contains("&'a Reservation") && !signature.contains("&Reservation") {
            problems.push(format!(
                "{}:{}: `{}` makes an Admitted without a reservation",
                rel(&path),
                line_of(&code, start + offset),
                line.trim_end_matches('{').trim()
            ));
        }
    }
    assert!(
        constructors > 0,
        "{}: Admitted has no public constructor",
        rel(&path)
    );
    report(
        "ONNX Runtime sessions that a budget did not admit",
        &problems,
        "take the reservation that admits the load as a parameter",
    );
}

// ---------------------------------------------------------------------------------------------
// f. The binary prints; the libraries write.
// ---------------------------------------------------------------------------------------------

#[test]
fn cli_writes_files_only_through_the_libraries() {
    let src = root().join("crates/cli/src");
    let mut problems = Vec::new();
    let mut writers = BTreeSet::new();
    for path in rust_files(&src) {
        let name = path
            .strip_prefix(&src)
            .unwrap_or(&path)
            .to_string_lossy()
            .into_owned();
        let code = library_code(&read(&path));
        for needle in FS_WRITE_CALLS {
            for at in find_token(&code, needle) {
                let rest = code[at + needle.len()..].trim_start();
                if *needle == "rename" && !rest.starts_with('(') {
                    continue; // `rename_all` is excluded already; a `rename` field is no call
                }
                writers.insert(name.clone());
                if !CLI_FS_WRITE_ALLOWED.iter().any(|(f, _)| *f == name) {
                    problems.push(format!("{}:{}: `{needle}`", rel(&path), line_of(&code, at)));
                }
            }
        }
    }
    for (file, _) in CLI_FS_WRITE_ALLOWED {
        if !writers.contains(*file) {
            problems.push(format!(
                "xtask/src/tidy.rs: CLI_FS_WRITE_ALLOWED lists {file}, which no longer writes: \
                 remove it"
            ));
        }
    }
    report(
        "crates/cli/src writes files with std::fs",
        &problems,
        "write through the libraries (masp_run::write_file, masp-run's run directory and \
         formats), which write atomically and durably; a printing helper that must write \
         goes into CLI_FS_WRITE_ALLOWED with its reason",
    );
}

/// Most lines of code (blank lines, comments and test modules aside) a module of the binary
/// may have: the binary is flags, settings, progress and printing, and a command module that
/// grows past this is doing a library's job.
const MAX_CLI_MODULE_LINES: usize = 300;

#[test]
fn cli_modules_stay_small() {
    let src = root().join("crates/cli/src");
    let mut problems = Vec::new();
    for path in rust_files(&src) {
        let code = library_code(&read(&path));
        let lines = code.lines().filter(|l| !l.trim().is_empty()).count();
        if lines > MAX_CLI_MODULE_LINES {
            problems.push(format!(
                "{}: {lines} lines of code (at most {MAX_CLI_MODULE_LINES})",
                rel(&path)
            ));
        }
    }
    report(
        "crates/cli/src has a module over the size of a command's shell",
        &problems,
        "move the logic into the library it belongs to (masp-run, masp-models, ...) or split \
         the module by the job each part does",
    );
}

// ---------------------------------------------------------------------------------------------
// f2. Results and caches are written durably, through one helper (issue #20, class 7).
// ---------------------------------------------------------------------------------------------

/// Files of library crates (relative to the workspace root; an entry ending in `/` is a whole
/// directory) that may call `fs::write` or `fs::rename` themselves, each with the reason. Everything else writes results and caches
/// through `masp_model_registry::atomic` (unique temporary file, sync, rename, directory sync).
const RAW_WRITE_ALLOWED: &[(&str, &str)] = &[
    (
        "crates/model-registry/src/atomic.rs",
        "the helper itself: its rename is the one every durable write ends in",
    ),
    (
        "crates/budget/src/probe.rs",
        "writes a control word to /proc/self/clear_refs, which is no file on a disk",
    ),
    (
        "crates/profiler/src/write.rs",
        "profiler sits below model-registry, the helper's crate; a profile is a diagnostic \
         that the next run rewrites, and no journal or resume trusts it",
    ),
    (
        "crates/testkit/src/",
        "the test framework: fixtures, synthetic models and suite reports go to test and \
         cache directories and are regenerated when missing or wrong, never resumed from",
    ),
];

/// The raw calls [`durable_writes_only_through_atomic`] looks for.
const RAW_WRITE_CALLS: &[&str] = &["fs::write", "fs::rename"];

/// Whether the allow-list entry `entry` covers the file `name`.
fn allows(entry: &str, name: &str) -> bool {
    if entry.ends_with('/') {
        name.starts_with(entry)
    } else {
        name == entry
    }
}

#[test]
fn durable_writes_only_through_atomic() {
    let mut problems = Vec::new();
    let mut writers = BTreeSet::new();
    for src in library_src_dirs() {
        if !src.join("lib.rs").is_file() {
            continue; // the binary is covered by cli_writes_files_only_through_the_libraries
        }
        for path in rust_files(&src) {
            let name = rel(&path);
            let code = library_code(&read(&path));
            for needle in RAW_WRITE_CALLS {
                for at in find_token(&code, needle) {
                    match RAW_WRITE_ALLOWED.iter().find(|(f, _)| allows(f, &name)) {
                        Some((entry, _)) => {
                            writers.insert(*entry);
                        }
                        None => {
                            problems.push(format!("{name}:{}: `{needle}`", line_of(&code, at)));
                        }
                    }
                }
            }
        }
    }
    for (file, _) in RAW_WRITE_ALLOWED {
        if !writers.contains(file) {
            problems.push(format!(
                "xtask/src/tidy.rs: RAW_WRITE_ALLOWED lists {file}, which no longer writes raw: \
                 remove it"
            ));
        }
    }
    report(
        "library code writes or renames files without syncing them",
        &problems,
        "write with masp_model_registry::atomic::write_atomic / write_atomic_with (or \
         persist for a file already synced): unique temporary file, fsync, rename, directory \
         fsync; a raw call that is right goes into RAW_WRITE_ALLOWED with its reason",
    );
}

// ---------------------------------------------------------------------------------------------
// g. Descriptions and file docs.
// ---------------------------------------------------------------------------------------------

#[test]
fn library_crates_have_a_description() {
    let metadata = layers::metadata().expect("cargo metadata");
    let mut problems = Vec::new();
    for package in packages(&metadata) {
        if crate_dir(package).is_none() || !has_lib_target(package) {
            continue;
        }
        let described = package["description"]
            .as_str()
            .is_some_and(|d| !d.trim().is_empty());
        if !described {
            problems.push(format!(
                "{}:1: {} has no `description`",
                rel(&manifest_path(package)),
                package["name"].as_str().unwrap_or_default()
            ));
        }
    }
    report(
        "library crates without a description",
        &problems,
        "add `description = \"…\"` under [package]: one line saying what the crate is for",
    );
}

#[test]
fn every_source_file_starts_with_a_doc_line() {
    let mut problems = Vec::new();
    let crates = root().join("crates");
    for dir in std::fs::read_dir(&crates).expect("reading crates/") {
        let src = dir.expect("reading crates/").path().join("src");
        for path in rust_files(&src) {
            if !read(&path).starts_with("//!") {
                problems.push(format!("{}:1: does not start with `//!`", rel(&path)));
            }
        }
    }
    report(
        "source files without a `//!` first line",
        &problems,
        "start the file with a `//!` line saying what it is for",
    );
}

/// The `key = value` lines of the TOML table headed `header` in `text`, comments and blank
/// lines dropped, in order.
fn table_lines(text: &str, header: &str) -> Vec<String> {
    text.lines()
        .skip_while(|l| l.trim() != header)
        .skip(1)
        .take_while(|l| !l.trim_start().starts_with('['))
        .map(|l| l.split('#').next().unwrap_or_default().trim().to_owned())
        .filter(|l| !l.is_empty())
        .collect()
}

#[test]
fn downstream_vad_embed_builds_with_the_workspace_profile() {
    // check.sh builds vad-embed in the workspace's target directory to reuse its dependencies;
    // a profile that differs in any setting silently rebuilds all of them (time and disk).
    let workspace = read(&root().join("Cargo.toml"));
    let project = read(&root().join("downstream/vad-embed/Cargo.toml"));
    let mut problems = Vec::new();
    for header in ["[profile.dev]", "[profile.dev.package.\"*\"]"] {
        let (want, got) = (
            table_lines(&workspace, header),
            table_lines(&project, header),
        );
        if want.is_empty() || want != got {
            problems.push(format!(
                "downstream/vad-embed/Cargo.toml {header}: {got:?}, the workspace has {want:?}"
            ));
        }
    }
    report(
        "downstream/vad-embed's profile differs from the workspace's",
        &problems,
        "copy the workspace's [profile.dev] and [profile.dev.package.\"*\"] settings",
    );
}
