//! Every `prereg-sync …` command line in README.md and docs/ names commands the binary has and
//! flags those commands take, so the documentation cannot drift from the command line: each is
//! checked against the real binary's `--help`.
//!
//! Read from inline code (`` `prereg-sync dlq list --group` ``, where `a\|b` lists alternatives
//! and `[…]` optional parts) and from code blocks (lines that start with `prereg-sync`, after
//! `VAR=value` assignments, or run it after `--`, as `kubectl exec … -- prereg-sync …`).

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    process::Command,
};

use regex::Regex;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn documents() -> Vec<PathBuf> {
    let mut files = vec![root().join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    files
}

/// The text after `prereg-sync ` of every command line in `markdown`.
fn command_lines(markdown: &str) -> Vec<String> {
    let span = Regex::new(r"``?\s*prereg-sync ([^`]*)`").unwrap();
    let block_line = Regex::new(r"^\s*(?:[A-Z_]+=\S+\s+)*(?:.*\s--\s+)?prereg-sync (.*)$").unwrap();
    let mut lines = Vec::new();
    let mut in_block = false;
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            in_block = !in_block;
        } else if in_block {
            lines.extend(block_line.captures(line).map(|c| c[1].to_owned()));
        } else {
            lines.extend(span.captures_iter(line).map(|c| c[1].to_owned()));
        }
    }
    lines
}

/// The words of a command line, each with its alternatives (`list\|show`); a shell pipe,
/// redirection or comment ends it.
fn words(line: &str) -> Vec<Vec<String>> {
    let mut words = Vec::new();
    for token in line.split_whitespace() {
        if ["|", ">", "2>", "&&", ";", "#"].contains(&token) {
            break;
        }
        let alternatives: Vec<String> = token
            .split("\\|")
            .map(|part| part.trim_matches(|c| "[]()\\…".contains(c)).to_owned())
            .filter(|part| !part.is_empty())
            .collect();
        if !alternatives.is_empty() {
            words.push(alternatives);
        }
    }
    words
}

/// `prereg-sync <path> --help`, run once per path.
struct Help(HashMap<Vec<String>, String>);

impl Help {
    fn of(&mut self, path: &[String]) -> &str {
        self.0.entry(path.to_vec()).or_insert_with(|| {
            let out = Command::new(env!("CARGO_BIN_EXE_prereg-sync"))
                .args(path)
                .arg("--help")
                .output()
                .unwrap();
            assert!(out.status.success(), "prereg-sync {path:?} --help failed");
            String::from_utf8(out.stdout).unwrap()
        })
    }

    /// The subcommands `--help` of `path` lists.
    fn subcommands(&mut self, path: &[String]) -> Vec<String> {
        self.of(path)
            .split("Commands:\n")
            .nth(1)
            .map(|section| {
                section
                    .lines()
                    .take_while(|line| !line.trim().is_empty())
                    .filter_map(|line| line.split_whitespace().next().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// What is wrong with one documented command line, if anything.
fn problems(help: &mut Help, line: &str) -> Vec<String> {
    let words = words(line);
    let mut paths = vec![Vec::<String>::new()];
    let mut rest = words.as_slice();
    while let Some((word, tail)) = rest.split_first() {
        if word[0].starts_with('-') || !help.subcommands(&paths[0]).contains(&word[0]) {
            break;
        }
        let mut longer = Vec::new();
        for path in &paths {
            for name in word {
                if !help.subcommands(path).contains(name) {
                    return vec![format!("`{}` has no command `{name}`", path.join(" "))];
                }
                longer.push([path.clone(), vec![name.clone()]].concat());
            }
        }
        paths = longer;
        rest = tail;
    }
    let flags: Vec<&str> = rest
        .iter()
        .flatten()
        .filter(|word| word.starts_with("--"))
        .map(|flag| flag.split('=').next().unwrap())
        .collect();
    let mut problems = Vec::new();
    for path in &paths {
        let text = help.of(path).to_owned();
        for flag in &flags {
            let taken = [" ", "\n", ","]
                .iter()
                .any(|after| text.contains(&format!("{flag}{after}")));
            if !taken {
                problems.push(format!("`{}` takes no {flag}", path.join(" ")));
            }
        }
    }
    problems
}

#[test]
fn every_documented_command_line_exists_with_its_flags() {
    let mut help = Help(HashMap::new());
    let mut checked = 0;
    let mut wrong = Vec::new();
    for file in documents() {
        let markdown = std::fs::read_to_string(&file).unwrap();
        for line in command_lines(&markdown) {
            checked += 1;
            for problem in problems(&mut help, &line) {
                let name = file.strip_prefix(root()).unwrap().display();
                wrong.push(format!("{name}: `prereg-sync {line}`: {problem}"));
            }
        }
    }
    assert!(checked > 50, "only {checked} command lines found");
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn the_checker_catches_a_missing_command_and_flag() {
    let mut help = Help(HashMap::new());
    assert!(problems(&mut help, "dlq list --group").is_empty());
    assert!(problems(&mut help, "report [--date D \\| --since T [--until T]]").is_empty());
    assert_eq!(
        problems(&mut help, "dlq list\\|purge --group"),
        ["`dlq` has no command `purge`"]
    );
    assert_eq!(
        problems(&mut help, "dlq export --output x.jsonl"),
        ["`dlq export` takes no --output"]
    );
}
