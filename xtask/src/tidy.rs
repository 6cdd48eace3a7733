//! The repository's own rules, checked by `cargo test` (in the style of
//! rust-analyzer's `xtask/src/tidy.rs`): what ARCHITECTURE.md, the README
//! and docs/tour.md promise about the tree is read from them and compared
//! with the tree, so that no rule lives only in prose.
//!
//! Each rule is one test; a failure names the files and the rule broken.

#![cfg(test)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::workspace;

/// Files that may sleep, how many times, and why: each is a pause or a
/// poll with its reason, never a test waiting for something a readiness
/// line or a socket could tell it. A new sleep fails this check until it
/// is added here with its reason.
const SLEEPS_ALLOWED: &[(&str, usize, &str)] = &[
    (
        "crates/server/src/metrics.rs",
        1,
        "the metrics listener backs off after a failed accept, so it does not spin",
    ),
    (
        "crates/server/src/notify.rs",
        1,
        "the watchdog heartbeat is sent at the interval systemd asks for",
    ),
    (
        "crates/e2e/src/retrying.rs",
        1,
        "the retrying load paces its requests: the pace is the load, not a wait",
    ),
    (
        "crates/load/src/engine.rs",
        2,
        "a paced sender with nothing in flight waits for its next slot",
    ),
    (
        "crates/e2e/src/process.rs",
        1,
        "std cannot wait for a child's exit with a timeout: it polls try_wait",
    ),
    (
        "crates/e2e/src/lib.rs",
        1,
        "wait_until polls state nothing announces (a counter in another thread)",
    ),
    (
        "crates/e2e/tests/stall.rs",
        2,
        "the server's SIGSTOP comes 1.5 s into the run and lasts 150 ms: the stall is the experiment",
    ),
    (
        "crates/e2e/tests/tcp.rs",
        1,
        "a client that pauses between writes, shorter than the idle timeout: the pause is the test",
    ),
    (
        "xtask/src/soak.rs",
        2,
        "the soak samples memory at an interval and runs for a set time",
    ),
];

// ---- the tree ----

/// Every `.rs` file of the workspace and the fuzz crate, relative to the
/// root, in a stable order; build output and corpora are left out.
fn rust_files() -> Vec<PathBuf> {
    let root = workspace::root();
    let mut files = Vec::new();
    for top in ["crates", "xtask", "fuzz"] {
        walk(&root.join(top), &mut files);
    }
    let mut files: Vec<PathBuf> = files
        .into_iter()
        .filter_map(|p| p.strip_prefix(&root).ok().map(Path::to_path_buf))
        .collect();
    files.sort();
    files
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if path.is_dir() {
            let skipped = matches!(
                name.as_str(),
                "target" | "corpus" | "corpus-work" | "artifacts" | "coverage"
            );
            if !skipped && !name.starts_with('.') {
                walk(&path, out);
            }
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
}

fn read(relative: impl AsRef<Path>) -> String {
    let path = workspace::root().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// The crates of the workspace: the directories under `crates/`.
fn crate_dirs() -> Vec<String> {
    let mut dirs: Vec<String> = std::fs::read_dir(workspace::root().join("crates"))
        .expect("crates/")
        .flatten()
        .filter(|e| e.path().join("Cargo.toml").exists())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    dirs.sort();
    dirs
}

/// A file's code with comments removed and the contents of string and
/// character literals blanked, so that a word in a comment or a message
/// (`unsafe`, `sleep(`, `crate::`) is not taken for code.
fn code_only(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let rest = &b[i..];
        if rest.starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if rest.starts_with(b"/*") {
            let mut depth = 0;
            while i < b.len() {
                if b[i..].starts_with(b"/*") {
                    depth += 1;
                    i += 2;
                } else if b[i..].starts_with(b"*/") {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if let Some(hashes) = raw_string_start(rest) {
            // r"..." or r#"..."#, maybe after a b: no escapes inside.
            let open = rest.iter().position(|&c| c == b'"').unwrap_or(0) + 1;
            let mut close = b"\"".to_vec();
            close.extend(std::iter::repeat_n(b'#', hashes));
            let body = &rest[open..];
            let end = find(body, &close).map_or(body.len(), |at| at + close.len());
            out.extend_from_slice(b"\"\"");
            i += open + end;
        } else if b[i] == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            out.extend_from_slice(b"\"\"");
            i += 1;
        } else if let Some(len) = char_literal_len(rest) {
            out.extend_from_slice(b"' '");
            i += len;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `Some(number of #)` when `bytes` starts a raw string (`r"`, `r#"`, `br"`).
fn raw_string_start(bytes: &[u8]) -> Option<usize> {
    let after_b = bytes.strip_prefix(b"b").unwrap_or(bytes);
    let after_r = after_b.strip_prefix(b"r")?;
    let hashes = after_r.iter().take_while(|&&c| c == b'#').count();
    (after_r.get(hashes) == Some(&b'"')).then_some(hashes)
}

/// The length of a character literal starting here (`'a'`, `'\n'`,
/// `'\u{ff}'`, `'ß'`), or `None` for a lifetime or anything else.
fn char_literal_len(bytes: &[u8]) -> Option<usize> {
    if bytes.first() != Some(&b'\'') {
        return None;
    }
    if bytes.get(1) == Some(&b'\\') {
        let close = bytes[2..].iter().position(|&c| c == b'\'')?;
        return Some(close + 3);
    }
    let tail = &bytes[1..bytes.len().min(6)];
    let text = match std::str::from_utf8(tail) {
        Ok(text) => text,
        // A character cut off by the window's end is not a literal's.
        Err(e) => std::str::from_utf8(&tail[..e.valid_up_to()]).ok()?,
    };
    let c = text.chars().next()?;
    (bytes.get(1 + c.len_utf8()) == Some(&b'\'')).then_some(c.len_utf8() + 2)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The part of a file's code that is not a `#[cfg(test)]` module: tests
/// may reach across modules in ways the code itself must not.
fn non_test_code(file: &Path, code: &str) -> String {
    if file.ends_with("tests.rs") || file.components().any(|c| c.as_os_str() == "tests") {
        return String::new();
    }
    code.find("#[cfg(test)]")
        .map_or(code, |at| &code[..at])
        .to_string()
}

/// A section of a Markdown file: from the heading that starts with
/// `heading` to the next heading of the same or a higher level.
fn section<'a>(markdown: &'a str, heading: &str) -> &'a str {
    let start = markdown
        .find(heading)
        .unwrap_or_else(|| panic!("no section {heading:?}"));
    let level = heading.chars().take_while(|&c| c == '#').count();
    let body = &markdown[start + heading.len()..];
    let end = body
        .match_indices('\n')
        .map(|(at, _)| at + 1)
        .find(|&at| {
            let line = &body[at..];
            let hashes = line.chars().take_while(|&c| c == '#').count();
            (1..=level).contains(&hashes) && line[hashes..].starts_with(' ')
        })
        .unwrap_or(body.len());
    &body[..end]
}

/// Every `` `word` `` in a text.
fn backticked(text: &str) -> Vec<&str> {
    text.split('`').skip(1).step_by(2).collect()
}

// ---- the rules ----

#[test]
fn every_module_opens_with_a_doc_comment() {
    let missing: Vec<_> = rust_files()
        .into_iter()
        .filter(|file| {
            let text = read(file);
            let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
            !first.starts_with("//!")
        })
        .collect();
    assert!(
        missing.is_empty(),
        "these files do not open with a `//!` comment saying what they are for: {missing:#?}"
    );
}

#[test]
fn every_binary_main_is_thin() {
    let mains: Vec<_> = rust_files()
        .into_iter()
        .filter(|f| f.ends_with("src/main.rs") && f.starts_with("crates"))
        .collect();
    assert!(!mains.is_empty(), "no main.rs found under crates/");
    for file in mains {
        let code = code_only(&read(&file));
        let lines = code.lines().filter(|l| !l.trim().is_empty()).count();
        let fns = code.matches("fn ").count();
        let control = ["loop", "while ", "for ", "match ", "if "]
            .iter()
            .filter(|word| code.contains(*word))
            .count();
        assert!(
            fns == 1 && code.contains("fn main") && control == 0 && lines <= 15,
            "{}: a binary's main.rs parses its arguments and makes one call into \
             its library ({fns} fns, {control} control words, {lines} lines of code)",
            file.display()
        );
    }
}

#[test]
fn sleeps_are_only_where_allowed() {
    let mut found = BTreeMap::new();
    for file in rust_files() {
        let n = code_only(&read(&file)).matches("sleep(").count();
        if n > 0 {
            found.insert(file.to_string_lossy().into_owned(), n);
        }
    }
    let allowed: BTreeMap<String, usize> = SLEEPS_ALLOWED
        .iter()
        .map(|(file, n, _)| ((*file).to_string(), *n))
        .collect();
    assert_eq!(
        found, allowed,
        "sleeps found (left) and allowed (right): a test waits on a readiness line \
         or a socket; add a sleep to SLEEPS_ALLOWED only with its reason"
    );
}

#[test]
fn unsafe_is_only_where_architecture_md_says() {
    let architecture = read("ARCHITECTURE.md");
    let listed: BTreeSet<String> = backticked(section(&architecture, "## Where unsafe lives"))
        .into_iter()
        .filter(|word| word.ends_with(".rs"))
        .map(str::to_string)
        .collect();
    let mut allowing = BTreeSet::new();
    let mut roots_without_forbid = Vec::new();
    for file in rust_files() {
        let code = code_only(&read(&file));
        let name = file.to_string_lossy().into_owned();
        if code.contains("allow(unsafe_code)") {
            allowing.insert(name.clone());
        }
        let uses_unsafe = ["unsafe {", "unsafe fn", "unsafe impl", "unsafe extern"]
            .iter()
            .any(|word| code.contains(word));
        assert!(
            !uses_unsafe || code.contains("allow(unsafe_code)"),
            "{name} uses unsafe without allowing it where it does"
        );
        let is_root = name.ends_with("src/lib.rs") || name.ends_with("src/main.rs");
        if is_root && !name.starts_with("fuzz") {
            let crate_dir = file.parent().and_then(Path::parent).expect("crate dir");
            let crate_allows = allowing_files_under(crate_dir);
            if crate_allows.is_empty() && !code.contains("#![forbid(unsafe_code)]") {
                roots_without_forbid.push(name);
            }
        }
    }
    assert_eq!(
        allowing, listed,
        "files that allow unsafe (left) against the files ARCHITECTURE.md's \
         \"Where unsafe lives\" lists (right)"
    );
    assert!(
        roots_without_forbid.is_empty(),
        "crates with no unsafe must forbid it at their root: {roots_without_forbid:?}"
    );
    let manifest = read("Cargo.toml");
    assert!(
        manifest.contains("unsafe_code = \"deny\""),
        "the workspace denies unsafe_code"
    );
}

fn allowing_files_under(crate_dir: &Path) -> Vec<PathBuf> {
    rust_files()
        .into_iter()
        .filter(|f| f.starts_with(crate_dir))
        .filter(|f| code_only(&read(f)).contains("allow(unsafe_code)"))
        .collect()
}

#[test]
fn proto_depends_only_on_what_architecture_md_lists() {
    let architecture = read("ARCHITECTURE.md");
    let invariant = architecture
        .lines()
        .find(|l| l.starts_with("- **proto does no I/O**"))
        .expect("ARCHITECTURE.md states proto's invariant");
    let listed: BTreeSet<&str> = backticked(invariant).into_iter().collect();
    let manifest = read("crates/proto/Cargo.toml");
    let deps: BTreeSet<&str> = dependency_names(&manifest, "[dependencies]");
    assert_eq!(
        deps, listed,
        "crates/proto/Cargo.toml's dependencies (left) against ARCHITECTURE.md's \
         invariant (right): {invariant}"
    );
}

/// The names in one `[section]` of a Cargo manifest.
fn dependency_names<'a>(manifest: &'a str, header: &str) -> BTreeSet<&'a str> {
    manifest
        .split_once(header)
        .map(|(_, rest)| rest)
        .unwrap_or("")
        .lines()
        .skip(1)
        .take_while(|l| !l.starts_with('['))
        .filter_map(|l| l.split_once('=').map(|(name, _)| name.trim()))
        .filter(|name| !name.is_empty() && !name.starts_with('#'))
        .map(|name| name.split('.').next().unwrap_or(name))
        .collect()
}

#[test]
fn every_crate_is_in_the_code_map() {
    let architecture = read("ARCHITECTURE.md");
    let map = section(&architecture, "## Code map");
    let missing: Vec<String> = crate_dirs()
        .into_iter()
        .filter(|dir| !map.contains(&format!("  {dir}/")))
        .collect();
    assert!(
        missing.is_empty(),
        "crates missing from ARCHITECTURE.md's code map (each says why it is a crate): {missing:?}"
    );
    for top in ["fuzz/", "xtask/", "docs/"] {
        assert!(map.contains(top), "{top} is missing from the code map");
    }
}

#[test]
fn no_crate_has_a_module_cycle() {
    for dir in crate_dirs()
        .iter()
        .map(|d| format!("crates/{d}/src"))
        .chain(["xtask/src".to_string()])
    {
        let graph = module_graph(Path::new(&dir));
        if let Some(cycle) = find_cycle(&graph) {
            panic!(
                "{dir}: modules import each other in a circle: {}",
                cycle.join(" -> ")
            );
        }
    }
}

/// Each top-level module of a crate and the top-level modules its
/// non-test code names through `crate::`.
fn module_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let files: Vec<PathBuf> = rust_files()
        .into_iter()
        .filter(|f| f.starts_with(src))
        .collect();
    let module_of = |file: &Path| -> Option<String> {
        let rel = file.strip_prefix(src).ok()?;
        let first = rel
            .components()
            .next()?
            .as_os_str()
            .to_string_lossy()
            .into_owned();
        let name = first.trim_end_matches(".rs").to_string();
        (!matches!(name.as_str(), "lib" | "main")).then_some(name)
    };
    let modules: BTreeSet<String> = files.iter().filter_map(|f| module_of(f)).collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = modules
        .iter()
        .map(|m| (m.clone(), BTreeSet::new()))
        .collect();
    for file in &files {
        let Some(from) = module_of(file) else {
            continue;
        };
        let code = non_test_code(file, &code_only(&read(file)));
        for used in crate_paths(&code) {
            if used != from && modules.contains(&used) {
                graph.entry(from.clone()).or_default().insert(used);
            }
        }
    }
    graph
}

/// The first segment of every `crate::a`, and of each item of a
/// `crate::{a, b::c}` group.
fn crate_paths(code: &str) -> Vec<String> {
    let ident = |s: &str| -> String {
        s.trim()
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut found = Vec::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let inner = &group[..group.find('}').unwrap_or(group.len())];
            found.extend(inner.split(',').map(ident).filter(|s| !s.is_empty()));
        } else {
            found.push(ident(rest));
        }
    }
    found
}

fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

#[test]
fn the_readme_has_the_two_commands_and_ci_runs_the_second() {
    let readme = read("README.md");
    let demo = "cargo xtask demo";
    let tests = "rustup toolchain install && cargo xtask ci";
    assert!(readme.contains(demo), "README.md lacks `{demo}`");
    assert!(readme.contains(tests), "README.md lacks `{tests}`");
    let ci = read(".ci/run");
    assert!(
        ci.lines().any(|l| l.trim() == tests),
        ".ci/run must run the README's test command, `{tests}`, as it is"
    );
    let lines = readme.lines().count();
    assert!(
        lines < 300,
        "README.md has {lines} lines: a newcomer's page stays under 300"
    );
}

#[test]
fn every_name_the_tour_cites_exists() {
    let tour = read("docs/tour.md");
    let citations = cited_names(&tour);
    assert!(
        citations.len() >= 10,
        "the tour cites only {} names",
        citations.len()
    );
    let mut missing = Vec::new();
    for (name, target) in citations {
        let path = Path::new("docs").join(&target);
        let path = normalize(&path);
        let Ok(text) = std::fs::read_to_string(workspace::root().join(&path)) else {
            missing.push(format!("{name} -> {} (no such file)", path.display()));
            continue;
        };
        let item = name
            .rsplit("::")
            .next()
            .unwrap_or(&name)
            .trim_end_matches("()");
        let defined = ["fn", "struct", "enum", "trait", "const", "static", "type", "mod"]
            .iter()
            .any(|kind| {
                let defined_as = format!("{kind} {item}");
                text.match_indices(&defined_as).any(|(at, _)| {
                    let after = text[at + defined_as.len()..].chars().next();
                    !after.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
                })
            })
            // A variant or a field: `Name,` `Name {` `Name(` at the start of a line.
            || text.lines().any(|l| {
                let l = l.trim_start();
                l.strip_prefix(item).is_some_and(|rest| {
                    rest.starts_with([',', ' ', '(', ':']) || rest.is_empty()
                })
            });
        if !defined {
            missing.push(format!("{name} -> {}", path.display()));
        }
    }
    assert!(
        missing.is_empty(),
        "docs/tour.md cites names that are not in the files it links: {missing:#?}"
    );
}

/// Every ``[`name`](path.rs)`` link of a Markdown text (an anchor after
/// the path is ignored).
fn cited_names(markdown: &str) -> Vec<(String, String)> {
    let mut found = Vec::new();
    for (at, _) in markdown.match_indices("[`") {
        let rest = &markdown[at + 2..];
        let Some(end) = rest.find("`](") else {
            continue;
        };
        let name = &rest[..end];
        let link = &rest[end + 3..];
        let Some(close) = link.find(')') else {
            continue;
        };
        let target = link[..close].split('#').next().unwrap_or("");
        if target.ends_with(".rs") && !name.contains(' ') {
            found.push((name.to_string(), target.to_string()));
        }
    }
    found
}

/// `docs/../crates/x` as `crates/x`.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

// ---- the checker's own parts ----

#[test]
fn code_only_drops_comments_and_literals() {
    let code = code_only(
        "let a = \"unsafe { sleep(\"; // unsafe { x }\nlet b = r#\"crate::x \"inner\"\"#; \
         /* sleep( /* nested */ */ let c = '\"'; let d = 'ß'; fn f<'a>() {}",
    );
    assert!(!code.contains("unsafe"), "{code}");
    assert!(!code.contains("sleep("), "{code}");
    assert!(!code.contains("crate::x"), "{code}");
    assert!(
        code.contains("let c") && code.contains("let d") && code.contains("fn f<'a>"),
        "{code}"
    );
}

#[test]
fn crate_paths_and_cycles_are_found() {
    assert_eq!(
        crate_paths("use crate::a::B; use crate::{b, c::D}; crate::d(x);"),
        ["a", "b", "c", "d"]
    );
    let graph = |edges: &[(&str, &str)]| {
        let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (from, to) in edges {
            g.entry((*from).to_string())
                .or_default()
                .insert((*to).to_string());
            g.entry((*to).to_string()).or_default();
        }
        g
    };
    assert_eq!(find_cycle(&graph(&[("a", "b"), ("b", "c")])), None);
    assert_eq!(
        find_cycle(&graph(&[("a", "b"), ("b", "c"), ("c", "a")])),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
}

#[test]
fn sections_and_citations_are_read() {
    let md = "# T\n## A\none `x.rs`\n### A.1\ntwo\n## B\nthree\n";
    assert_eq!(section(md, "## A"), "\none `x.rs`\n### A.1\ntwo\n");
    assert_eq!(backticked(section(md, "## A")), ["x.rs"]);
    let tour = "see [`Worker::run`](../crates/server/src/worker.rs#L1) and [`a b`](x.rs)";
    assert_eq!(
        cited_names(tour),
        [(
            "Worker::run".to_string(),
            "../crates/server/src/worker.rs".to_string()
        )]
    );
    assert_eq!(
        normalize(Path::new("docs/../crates/x.rs")),
        PathBuf::from("crates/x.rs")
    );
}
