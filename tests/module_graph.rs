//! The module graph check: no two files of `src/` import each other, directly or through a
//! cycle. A cycle between files means neither can be understood, tested or moved without the
//! other (issue 26; the last one was `storage/rows.rs` ↔ `storage/transactions.rs`).
//!
//! Every `use crate::…`, `use super::…` (use trees expanded) and inline `crate::a::b` or
//! `super::a` path is resolved to the file of the module it names (the longest prefix of the
//! path that is a module; an inline module counts as its file). Imports between a file and its
//! ancestor or descendant (a `mod.rs` using its child, the child using `super`) are not edges.
//! Code under `#[cfg(test)]` (inline test modules, `tests.rs` files) is left out: tests use
//! whatever they check, and are compiled only with it. `src/main.rs` is the binary crate, which
//! reaches the library by name only.
//!
//! Plain text is enough: comments and literals are blanked first, then tokens are scanned for
//! `mod`, `use`, paths and braces. It needs no service, and runs with the whole suite.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
};

/// A module's path from the crate root (`["storage", "rows"]`); empty for the root.
type ModulePath = Vec<String>;

#[test]
fn no_file_imports_itself_through_another() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    collect(&src, &src, &mut files);
    assert!(files.len() > 50, "src/ read: {} files", files.len());
    // The scan sees imports at all: a few it must find.
    let edges = edges(&files);
    for (from, to) in [
        ("worker/supervisor.rs", "amqp/nodes.rs"),
        ("storage/transactions.rs", "storage/rows.rs"),
        ("amqp/nodes.rs", "config/mod.rs"),
    ] {
        assert!(
            edges.get(from).is_some_and(|e| e.contains_key(to)),
            "{from} -> {to} not found"
        );
    }
    let cycles = cycles(&files);
    assert!(
        cycles.is_empty(),
        "files importing each other (move the shared item to a module both can use):\n{}",
        cycles.join("\n")
    );
}

/// The check itself on the old cycle: `rows.rs` took `NewTransaction` from `transactions.rs`,
/// which called `rows::write`.
#[test]
fn the_old_storage_cycle_is_found() {
    let file = |path: &str, text: &str| (path.to_owned(), text.to_owned());
    let files = [
        file("lib.rs", "pub mod storage;"),
        file("storage/mod.rs", "mod rows; mod transactions;"),
        file(
            "storage/rows.rs",
            "use super::transactions::NewTransaction;\n\
             #[cfg(test)]\nmod tests { use crate::storage::transactions::Stores; }",
        ),
        file(
            "storage/transactions.rs",
            "pub struct NewTransaction;\n\
             fn f() { super::rows::write(); } // crate::nothing::here\n\
             const NOT_A_PATH: &str = \"crate::storage::rows\";",
        ),
    ];
    assert_eq!(
        cycles(&files),
        [
            "storage/rows.rs -> storage/transactions.rs (super::transactions::NewTransaction) -> storage/rows.rs (super::rows::write)"
        ]
    );
    // Without `rows.rs`'s import, nothing: the test module's own import does not count, nor do
    // the comment and the string.
    let mut acyclic = files.clone();
    acyclic[2].1 = acyclic[2]
        .1
        .replace("use super::transactions::NewTransaction;", "");
    assert_eq!(cycles(&acyclic), Vec::<String>::new());
    // A parent and its child using each other is no cycle.
    let family = [
        file("lib.rs", "mod a;"),
        file("a/mod.rs", "mod b; use self::b::B; pub struct A;"),
        file(
            "a/b.rs",
            "use super::A; use crate::a::A as Same; pub struct B;",
        ),
    ];
    assert_eq!(cycles(&family), Vec::<String>::new());
}

/// Every `.rs` file under `dir`, as (path relative to `src`, text), but the binary's root.
fn collect(src: &Path, dir: &Path, files: &mut Vec<(String, String)>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            collect(src, &path, files);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            let relative = path.strip_prefix(src).unwrap().to_str().unwrap().to_owned();
            if relative != "main.rs" {
                files.push((relative, std::fs::read_to_string(&path).unwrap()));
            }
        }
    }
}

/// `a/b.rs` and `a/b/mod.rs` are `a::b`; `lib.rs` is the root.
fn module_of(file: &str) -> ModulePath {
    let stem = file.strip_suffix(".rs").unwrap();
    let stem = stem.strip_suffix("/mod").unwrap_or(stem);
    if stem == "lib" {
        return Vec::new();
    }
    stem.split('/').map(str::to_owned).collect()
}

/// Which file imports which: for each, the files it imports with a path that makes the edge.
type Edges = BTreeMap<String, BTreeMap<String, String>>;

/// One line per cycle found (a strongly connected set of files), each edge with a path that
/// makes it.
fn cycles(files: &[(String, String)]) -> Vec<String> {
    let edges = edges(files);
    strongly_connected(&edges)
        .into_iter()
        .map(|component| describe(&component, &edges))
        .collect()
}

/// The imports between files that are not ancestor and descendant, test code left out.
fn edges(files: &[(String, String)]) -> Edges {
    let by_module: BTreeMap<ModulePath, String> = files
        .iter()
        .map(|(file, _)| (module_of(file), file.clone()))
        .collect();
    let scans: Vec<(String, Scan)> = files
        .iter()
        .map(|(file, text)| (file.clone(), scan(&module_of(file), text)))
        .collect();
    // Files whose every line is test code: declared by `#[cfg(test)] mod x;`.
    let test_files: BTreeSet<&String> = scans
        .iter()
        .flat_map(|(_, scan)| &scan.test_children)
        .filter_map(|module| by_module.get(module))
        .collect();
    let mut modules = by_module.clone();
    for (file, scan) in &scans {
        for inline in &scan.inline_modules {
            modules
                .entry(inline.clone())
                .or_insert_with(|| file.clone());
        }
    }
    let mut edges = Edges::new();
    for (file, scan) in &scans {
        if test_files.contains(file) {
            continue;
        }
        let from = module_of(file);
        for (target, written) in &scan.paths {
            let Some(to_file) = (0..=target.len())
                .rev()
                .find_map(|len| modules.get(&target[..len]))
            else {
                continue;
            };
            let to = module_of(to_file);
            let related = from.starts_with(&to) || to.starts_with(&from);
            if !related && !test_files.contains(to_file) {
                edges
                    .entry(file.clone())
                    .or_default()
                    .entry(to_file.clone())
                    .or_insert_with(|| written.clone());
            }
        }
    }
    edges
}

/// Tarjan's algorithm: the sets of two or more files that reach each other.
fn strongly_connected(edges: &Edges) -> Vec<Vec<String>> {
    struct State<'a> {
        edges: &'a Edges,
        index: BTreeMap<String, usize>,
        low: BTreeMap<String, usize>,
        stack: Vec<String>,
        on_stack: BTreeSet<String>,
        found: Vec<Vec<String>>,
    }
    fn visit(state: &mut State<'_>, node: &str) {
        let index = state.index.len();
        state.index.insert(node.to_owned(), index);
        state.low.insert(node.to_owned(), index);
        state.stack.push(node.to_owned());
        state.on_stack.insert(node.to_owned());
        let next: Vec<String> = state
            .edges
            .get(node)
            .map(|to| to.keys().cloned().collect())
            .unwrap_or_default();
        for to in next {
            if !state.index.contains_key(&to) {
                visit(state, &to);
                let low = state.low[node].min(state.low[&to]);
                state.low.insert(node.to_owned(), low);
            } else if state.on_stack.contains(&to) {
                let low = state.low[node].min(state.index[&to]);
                state.low.insert(node.to_owned(), low);
            }
        }
        if state.low[node] == state.index[node] {
            let mut component = Vec::new();
            loop {
                let member = state.stack.pop().unwrap();
                state.on_stack.remove(&member);
                let done = member == node;
                component.push(member);
                if done {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                state.found.push(component);
            }
        }
    }
    let mut state = State {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for node in edges.keys() {
        if !state.index.contains_key(node) {
            visit(&mut state, node);
        }
    }
    state.found
}

/// One cycle through `component`, from its first file back to it (shortest, by breadth-first
/// search), each step with the path that makes it.
fn describe(component: &[String], edges: &Edges) -> String {
    let start = &component[0];
    let mut came_from: BTreeMap<&String, &String> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([start]);
    let mut last = None;
    'search: while let Some(node) = queue.pop_front() {
        for to in edges.get(node).into_iter().flat_map(|to| to.keys()) {
            if !component.contains(to) {
                continue;
            }
            if to == start {
                last = Some(node);
                break 'search;
            }
            if !came_from.contains_key(to) {
                came_from.insert(to, node);
                queue.push_back(to);
            }
        }
    }
    let mut path = Vec::new();
    let mut node = last.expect("a strongly connected set has a cycle");
    loop {
        path.push(node.clone());
        if node == start {
            break;
        }
        node = came_from[node];
    }
    path.reverse();
    path.push(start.clone());
    let mut line = path[0].clone();
    for step in path.windows(2) {
        let written = &edges[&step[0]][&step[1]];
        line.push_str(&format!(" -> {} ({written})", step[1]));
    }
    line
}

/// What one file declares and imports (test code left out).
#[derive(Default)]
struct Scan {
    /// Modules declared inline (`mod x { … }`), by their full path.
    inline_modules: Vec<ModulePath>,
    /// Child files declared as test code (`#[cfg(test)] mod tests;`).
    test_children: Vec<ModulePath>,
    /// Every path it names, made absolute, with the path as written.
    paths: Vec<(ModulePath, String)>,
}

/// Scans a file of module `module`: modules, `use` trees and inline paths.
fn scan(module: &ModulePath, text: &str) -> Scan {
    let tokens = tokens(&blank_comments_and_literals(text));
    let mut scan = Scan::default();
    // The modules around the cursor: (path, brace depth at which it closes, is test code).
    let mut scopes: Vec<(ModulePath, usize, bool)> = vec![(module.clone(), 0, false)];
    let mut depth = 0;
    // `#[cfg(test)]` was seen and applies to the next item.
    let mut cfg_test = false;
    let mut i = 0;
    while i < tokens.len() {
        let (current, _, in_test) = scopes.last().unwrap().clone();
        let token = tokens[i].as_str();
        match token {
            "#" if tokens[i + 1..]
                .starts_with(&["[", "cfg", "(", "test", ")", "]"].map(str::to_owned)) =>
            {
                cfg_test = true;
                i += 7;
                continue;
            }
            // The body of an item under `#[cfg(test)]` (a function, an `impl`) is test code.
            "{" if cfg_test => {
                scopes.push((current.clone(), depth, true));
                depth += 1;
            }
            "{" => depth += 1,
            "}" => {
                depth -= 1;
                if scopes.last().unwrap().1 == depth && scopes.len() > 1 {
                    scopes.pop();
                }
            }
            ";" => cfg_test = false,
            "mod" if tokens.get(i + 2).is_some_and(|t| t == "{") => {
                let mut inner = current.clone();
                inner.push(tokens[i + 1].clone());
                if !in_test && !cfg_test {
                    scan.inline_modules.push(inner.clone());
                }
                scopes.push((inner, depth, in_test || cfg_test));
                cfg_test = false;
                depth += 1;
                i += 3;
                continue;
            }
            "mod" if tokens.get(i + 2).is_some_and(|t| t == ";") && (cfg_test || in_test) => {
                let mut child = current.clone();
                child.push(tokens[i + 1].clone());
                scan.test_children.push(child);
            }
            // Not `use<…>`, the captured lifetimes of an `impl Trait`.
            "use" if tokens.get(i + 1).is_some_and(|t| t != "<") => {
                let end = (i..tokens.len()).find(|&j| tokens[j] == ";").unwrap();
                if !in_test && !cfg_test {
                    let mut trees = Vec::new();
                    expand_use(&tokens[i + 1..end], &[], &mut trees);
                    for tree in trees {
                        if let Some(target) = absolute(&current, &tree) {
                            scan.paths.push((target, tree.join("::")));
                        }
                    }
                }
                cfg_test = false;
                i = end + 1;
                continue;
            }
            "crate" | "super" if tokens.get(i + 1).is_some_and(|t| t == "::") => {
                let preceded_by_dollar = i > 0 && tokens[i - 1] == "$";
                let mut j = i;
                let mut path = vec![tokens[j].clone()];
                while tokens.get(j + 1).is_some_and(|t| t == "::")
                    && tokens.get(j + 2).is_some_and(|t| is_identifier(t))
                {
                    path.push(tokens[j + 2].clone());
                    j += 2;
                }
                if !in_test
                    && !cfg_test
                    && !preceded_by_dollar
                    && let Some(target) = absolute(&current, &path)
                {
                    scan.paths.push((target, path.join("::")));
                }
                i = j + 1;
                continue;
            }
            _ => {}
        }
        // An attribute applies to the item it precedes; a `{` of that item also ends it.
        if token == "{" {
            cfg_test = false;
        }
        i += 1;
    }
    scan
}

/// `crate::…`, `super::…` or `self::…` made absolute from `current`; `None` for a path that
/// starts elsewhere (another crate, a name in scope).
fn absolute(current: &ModulePath, path: &[String]) -> Option<ModulePath> {
    let mut base = match path.first()?.as_str() {
        "crate" => Vec::new(),
        "super" | "self" => current.clone(),
        _ => return None,
    };
    let mut rest = if path[0] == "crate" { &path[1..] } else { path };
    while let Some(first) = rest.first() {
        match first.as_str() {
            "super" => {
                base.pop();
            }
            "self" => {}
            _ => break,
        }
        rest = &rest[1..];
    }
    base.extend(rest.iter().filter(|s| *s != "*").cloned());
    Some(base)
}

/// The paths of a `use` tree (`a::{b, c::{d as e, self}}` gives `a::b`, `a::c::d`, `a::c`).
fn expand_use(tokens: &[String], prefix: &[String], out: &mut Vec<Vec<String>>) {
    let mut path = prefix.to_vec();
    for (i, token) in tokens.iter().enumerate() {
        match token.as_str() {
            "::" => {}
            "{" => {
                let close = matching_brace(tokens, i);
                for part in split_top_level(&tokens[i + 1..close]) {
                    expand_use(part, &path, out);
                }
                return;
            }
            // `as x` names what comes before it.
            "as" => break,
            // `{self, …}`: the prefix itself.
            "self" if i == 0 && !path.is_empty() => {}
            segment => path.push(segment.to_owned()),
        }
    }
    out.push(path);
}

fn matching_brace(tokens: &[String], open: usize) -> usize {
    let mut depth = 0;
    for (i, token) in tokens.iter().enumerate().skip(open) {
        match token.as_str() {
            "{" => depth += 1,
            "}" => {
                depth -= 1;
                if depth == 0 {
                    return i;
                }
            }
            _ => {}
        }
    }
    panic!("unbalanced use tree")
}

/// The comma-separated parts of a use tree's braces, nested braces kept whole.
fn split_top_level(tokens: &[String]) -> Vec<&[String]> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, token) in tokens.iter().enumerate() {
        match token.as_str() {
            "{" => depth += 1,
            "}" => depth -= 1,
            "," if depth == 0 => {
                parts.push(&tokens[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&tokens[start..]);
    parts.retain(|part| !part.is_empty());
    parts
}

fn is_identifier(token: &str) -> bool {
    token
        .chars()
        .next()
        .is_some_and(|c| c.is_alphabetic() || c == '_')
}

/// Identifiers, `::` and single punctuation characters.
fn tokens(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c.is_alphanumeric() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            tokens.push(chars[start..i].iter().collect());
        } else if c == ':' && chars.get(i + 1) == Some(&':') {
            tokens.push("::".to_owned());
            i += 2;
        } else {
            tokens.push(c.to_string());
            i += 1;
        }
    }
    tokens
}

/// The text with comments removed and string and character literals emptied, so that neither
/// a path in a doc comment nor a brace in a string is read as code.
fn blank_comments_and_literals(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            out.push(' ');
        } else if c == 'r'
            && (next == Some('"') || next == Some('#'))
            && (!preceded_by_word(&chars, i)
                || (chars[i - 1] == 'b' && !preceded_by_word(&chars, i - 1)))
        {
            // A raw string: r"…", r#"…"#, …
            let hashes = chars[i + 1..].iter().take_while(|&&h| h == '#').count();
            if chars.get(i + 1 + hashes) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            i += 2 + hashes;
            let closing: Vec<char> = std::iter::once('"')
                .chain(std::iter::repeat_n('#', hashes))
                .collect();
            while i < chars.len() && !chars[i..].starts_with(&closing) {
                i += 1;
            }
            i += closing.len();
            out.push_str("\"\"");
        } else if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else if c == '\'' {
            // A character literal ('x', '\n', '\u{1F600}'), or else a lifetime or label.
            if next == Some('\\') {
                i += 2;
                while i < chars.len() && chars[i] != '\'' {
                    i += 1;
                }
                i += 1;
                out.push_str("' '");
            } else if chars.get(i + 2) == Some(&'\'') {
                i += 3;
                out.push_str("' '");
            } else {
                out.push(c);
                i += 1;
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn preceded_by_word(chars: &[char], i: usize) -> bool {
    i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_')
}
