//! The documentation is checked against the repository and the code, so that
//! it cannot drift from them:
//!
//! - every link in README.md and docs/*.md (and BENCHMARKS.md,
//!   deploy/README.md, tests/peers/README.md) resolves: a relative link to a
//!   file or folder of the repository, a `#anchor` to a heading of the
//!   target Markdown file (GitHub's anchors: lower case, punctuation dropped,
//!   spaces to `-`, `-1`, `-2` for repeats);
//! - every key the config types accept is in docs/configuration.md by its
//!   full path in backticks (`agent.poll_interval_secs`, `log_groups[].name`,
//!   `log_groups[].parsers[].when.prefix`), and every key a `| key |` table
//!   there documents is one they accept;
//! - every command, subcommand and flag of the binary is in docs/cli.md,
//!   in the section `` ## `cwtap COMMAND` `` (or under Global options);
//! - every metric is in docs/operations.md;
//! - config.example.yaml passes `cwtap check` with no environment variable
//!   set, and README.md stays a first screen.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;

use cwtap::config::{
    RawAccount, RawAgent, RawAws, RawConfig, RawLogGroup, RawRateLimits, RawRedact, field_names,
};
use cwtap::parse::spec::{RawParser, RawWhen};
use cwtap::sink::ndjson::RawNdjson;
use cwtap::sink::otlp::config::RawOtlp;
use cwtap::sink::vectadb::config::RawVectadb;
use cwtap::source::firehose::config::RawFirehose;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// README.md, every docs/*.md, and the other Markdown files of the
/// repository, in a stable order.
fn documents() -> Vec<PathBuf> {
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .expect("docs/ exists")
        .map(|e| e.expect("a docs/ entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    docs.sort();
    docs.insert(0, root().join("README.md"));
    for other in ["BENCHMARKS.md", "deploy/README.md", "tests/peers/README.md"] {
        let path = root().join(other);
        if path.exists() {
            docs.push(path);
        }
    }
    docs
}

fn shown(path: &Path) -> String {
    path.strip_prefix(root())
        .unwrap_or(path)
        .display()
        .to_string()
}

/// The lines outside fenced code blocks, with their 1-based numbers.
fn prose_lines(text: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut fence: Option<(char, usize)> = None;
    for (n, line) in text.lines().enumerate() {
        let t = line.trim_start();
        let marker = t.chars().next().filter(|c| *c == '`' || *c == '~');
        let run = marker.map_or(0, |m| t.chars().take_while(|c| *c == m).count());
        match (fence, marker) {
            (None, Some(m)) if run >= 3 => fence = Some((m, run)),
            (Some((m, open)), Some(c)) if c == m && run >= open && t[run..].trim().is_empty() => {
                fence = None
            }
            (None, _) => out.push((n + 1, line)),
            _ => {}
        }
    }
    out
}

/// `line` with its code spans blanked out (so that a `[x](y)` inside one is
/// not a link), the rest kept in place.
fn without_code_spans(line: &str) -> String {
    let chars: Vec<char> = line.chars().collect();
    let mut out = String::with_capacity(line.len());
    let mut i = 0;
    while i < chars.len() {
        if chars[i] != '`' {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        let run = chars[i..].iter().take_while(|c| **c == '`').count();
        // The closing run: exactly as many backticks.
        let mut j = i + run;
        let mut close = None;
        while j < chars.len() {
            if chars[j] == '`' {
                let r = chars[j..].iter().take_while(|c| **c == '`').count();
                if r == run {
                    close = Some(j);
                    break;
                }
                j += r;
            } else {
                j += 1;
            }
        }
        match close {
            Some(j) => {
                out.extend(std::iter::repeat_n('x', j + run - i));
                i = j + run;
            }
            None => {
                out.extend(&chars[i..i + run]);
                i += run;
            }
        }
    }
    out
}

/// The targets of the inline links and link definitions of one line.
fn link_targets(line: &str) -> Vec<String> {
    let inline = regex::Regex::new(r#"\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)"#).unwrap();
    let definition = regex::Regex::new(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)").unwrap();
    let line = without_code_spans(line);
    let mut out: Vec<String> = inline
        .captures_iter(&line)
        .map(|c| c[1].to_string())
        .collect();
    if let Some(c) = definition.captures(&line) {
        out.push(c[1].to_string());
    }
    out
}

/// A heading's text as GitHub renders it: links as their text, code spans
/// without backticks, no emphasis markers.
fn rendered(title: &str) -> String {
    let link = regex::Regex::new(r"\[([^\]]*)\]\([^)]*\)").unwrap();
    link.replace_all(title, "$1").replace(['`', '*'], "")
}

/// GitHub's anchor of a heading text: lower case, every character but
/// letters, digits, `-`, `_` and spaces dropped, spaces to `-`.
fn github_slug(text: &str) -> String {
    text.to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// The ATX headings of a Markdown text: (level, rendered text).
fn headings(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (_, line) in prose_lines(text) {
        let t = line.trim_start();
        if line.len() - t.len() > 3 {
            continue;
        }
        let level = t.chars().take_while(|c| *c == '#').count();
        if level == 0 || level > 6 {
            continue;
        }
        let rest = &t[level..];
        if !(rest.is_empty() || rest.starts_with(' ')) {
            continue;
        }
        let title = rest.trim().trim_end_matches('#').trim();
        out.push((level, rendered(title)));
    }
    out
}

/// Every anchor a Markdown text has: its headings' (with GitHub's `-N`
/// suffixes for repeats) and explicit `id`/`name` attributes.
fn anchors(text: &str) -> BTreeSet<String> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut out = BTreeSet::new();
    for (_, title) in headings(text) {
        let slug = github_slug(&title);
        let n = seen.entry(slug.clone()).or_insert(0);
        out.insert(if *n == 0 {
            slug.clone()
        } else {
            format!("{slug}-{n}")
        });
        *n += 1;
    }
    let html = regex::Regex::new(r#"<a\s+(?:id|name)="([^"]+)""#).unwrap();
    for c in html.captures_iter(text) {
        out.insert(c[1].to_string());
    }
    out
}

#[test]
fn every_link_in_the_readme_and_docs_resolves_to_a_file_or_heading() {
    let repo = root().canonicalize().expect("the repository");
    let mut anchors_of: HashMap<PathBuf, BTreeSet<String>> = HashMap::new();
    let mut failures = Vec::new();
    let mut links = 0;
    for doc in documents() {
        let text = read(&doc);
        for (n, line) in prose_lines(&text) {
            for target in link_targets(line) {
                if target.contains("://") || target.starts_with("mailto:") {
                    continue;
                }
                links += 1;
                let at = format!("{}:{n}: ({target})", shown(&doc));
                let (path, fragment) = match target.split_once('#') {
                    Some((p, f)) => (p, Some(f)),
                    None => (target.as_str(), None),
                };
                let file = if path.is_empty() {
                    doc.clone()
                } else {
                    doc.parent().expect("a folder").join(path)
                };
                let Ok(real) = file.canonicalize() else {
                    failures.push(format!("{at}: no file {}", shown(&file)));
                    continue;
                };
                if !real.starts_with(&repo) {
                    failures.push(format!("{at}: leaves the repository"));
                    continue;
                }
                let Some(fragment) = fragment else { continue };
                if real.extension().is_none_or(|x| x != "md") {
                    failures.push(format!("{at}: an anchor into a file that is not Markdown"));
                    continue;
                }
                let known = anchors_of
                    .entry(real.clone())
                    .or_insert_with(|| anchors(&read(&real)));
                if !known.contains(fragment) {
                    failures.push(format!("{at}: {} has no heading #{fragment}", shown(&real)));
                }
            }
        }
    }
    assert!(
        links > 50,
        "only {links} links found: is the parser broken?"
    );
    assert!(
        failures.is_empty(),
        "{} broken link(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn github_anchors_are_computed_as_github_does() {
    let text = "# Title\n## The late-arrival window, and what it costs\n## `cwtap run`\n## Parser rules: `log_groups[].parsers[]`\n## Title\n```\n# not a heading\n```\n";
    let found = anchors(text);
    for a in [
        "title",
        "the-late-arrival-window-and-what-it-costs",
        "cwtap-run",
        "parser-rules-log_groupsparsers",
        "title-1",
    ] {
        assert!(found.contains(a), "{a} in {found:?}");
    }
    assert!(!found.contains("not-a-heading"));
    assert_eq!(
        link_targets("see [a](x.md#y), `[b](nope.md)` and [`c`](#z)"),
        ["x.md#y", "#z"]
    );
}

/// Every key the config types accept, by its full path.
fn config_keys() -> BTreeSet<String> {
    let sections: Vec<(&str, &[&str])> = vec![
        ("", field_names::<RawConfig>()),
        ("aws.", field_names::<RawAws>()),
        ("aws.rate_limits.", field_names::<RawRateLimits>()),
        ("accounts[].", field_names::<RawAccount>()),
        ("accounts[].rate_limits.", field_names::<RawRateLimits>()),
        ("log_groups[].", field_names::<RawLogGroup>()),
        ("log_groups[].parsers[].", field_names::<RawParser>()),
        ("log_groups[].parsers[].when.", field_names::<RawWhen>()),
        ("redact.", field_names::<RawRedact>()),
        ("agent.", field_names::<RawAgent>()),
        ("vectadb.", field_names::<RawVectadb>()),
        ("ndjson.", field_names::<RawNdjson>()),
        ("otlp.", field_names::<RawOtlp>()),
        ("firehose.", field_names::<RawFirehose>()),
    ];
    let mut keys = BTreeSet::new();
    for (prefix, fields) in &sections {
        assert!(!fields.is_empty(), "no field names found for {prefix:?}");
        keys.extend(fields.iter().map(|f| format!("{prefix}{f}")));
    }
    // The sections their modules read for themselves: every one must have
    // its raw type in the list above.
    let owned = cwtap::sink::OUTPUTS
        .iter()
        .map(|o| o.name)
        .chain([cwtap::source::firehose::config::SECTION]);
    for section in owned {
        assert!(
            sections.iter().any(|(p, _)| *p == format!("{section}.")),
            "the `{section}:` section's raw type is missing from config_keys()"
        );
        keys.insert(section.to_string());
    }
    keys
}

#[test]
fn every_config_key_is_in_the_configuration_reference_by_its_full_path() {
    let reference = read(&root().join("docs/configuration.md"));
    let keys = config_keys();
    let missing: Vec<&String> = keys
        .iter()
        .filter(|k| !reference.contains(&format!("`{k}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/configuration.md lacks {} key(s) (write each as `path.to.key`, lists as `[]`):\n{}",
        missing.len(),
        missing
            .iter()
            .map(|k| k.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
    // And every key a `| key |` table documents exists.
    let mut in_table = false;
    let mut documented = 0;
    let mut unknown = Vec::new();
    for (n, line) in prose_lines(&reference) {
        let t = line.trim();
        if !t.starts_with('|') {
            in_table = false;
            continue;
        }
        let first = t.trim_start_matches('|').split('|').next().unwrap_or("");
        let first = first.trim();
        if first == "key" {
            in_table = true;
            continue;
        }
        if !in_table || first.starts_with("---") {
            continue;
        }
        let key = first.trim_matches('`');
        documented += 1;
        if !keys.contains(key) {
            unknown.push(format!("docs/configuration.md:{n}: `{key}`"));
        }
    }
    assert!(documented >= keys.len(), "{documented} keys in tables");
    assert!(
        unknown.is_empty(),
        "documented keys the config does not accept:\n{}",
        unknown.join("\n")
    );
}

#[test]
fn the_example_config_passes_check_with_an_empty_environment() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cwtap"));
    cmd.env_clear()
        .current_dir(dir.path())
        .args(["check", "--config"])
        .arg(root().join("config.example.yaml"));
    for keep in ["PATH", "HOME"] {
        if let Some(v) = std::env::var_os(keep) {
            cmd.env(keep, v);
        }
    }
    let out = cmd.output().expect("cwtap runs");
    assert!(
        out.status.success(),
        "cwtap check --config config.example.yaml: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("output: NDJSON"), "{stdout}");
    assert!(
        std::fs::read_dir(dir.path()).unwrap().next().is_none(),
        "check wrote files"
    );
}

/// The `## ` sections of a Markdown text by rendered heading.
fn sections(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut current: Option<(String, String)> = None;
    for line in text.lines() {
        if let Some(title) = line.strip_prefix("## ") {
            if let Some((t, body)) = current.take() {
                out.insert(t, body);
            }
            current = Some((rendered(title.trim()), String::new()));
        } else if let Some((_, body)) = current.as_mut() {
            body.push_str(line);
            body.push('\n');
        }
    }
    if let Some((t, body)) = current {
        out.insert(t, body);
    }
    out
}

/// The long flags of `command` and of its subcommands, at any depth.
fn long_flags(command: &clap::Command, out: &mut BTreeSet<String>) {
    for arg in command.get_arguments() {
        if let (Some(long), false) = (arg.get_long(), arg.is_hide_set()) {
            out.insert(format!("--{long}"));
        }
    }
    for sub in command.get_subcommands() {
        long_flags(sub, out);
    }
}

#[test]
fn every_command_and_flag_is_in_the_cli_reference() {
    use clap::CommandFactory;
    let cli = cwtap::cli::Cli::command();
    let doc = sections(&read(&root().join("docs/cli.md")));
    let globals = doc
        .get("Global options")
        .expect("docs/cli.md has ## Global options");
    let mut missing = Vec::new();
    for arg in cli.get_arguments() {
        if let Some(long) = arg.get_long()
            && !globals.contains(&format!("--{long}"))
        {
            missing.push(format!("Global options: --{long}"));
        }
    }
    let mut commands = 0;
    for sub in cli.get_subcommands() {
        if sub.is_hide_set() || sub.get_name() == "help" {
            continue;
        }
        commands += 1;
        let title = format!("cwtap {}", sub.get_name());
        let Some(body) = doc.get(&title) else {
            missing.push(format!("a section ## `{title}`"));
            continue;
        };
        for nested in sub.get_subcommands() {
            let name = format!("{title} {}", nested.get_name());
            if !nested.is_hide_set() && nested.get_name() != "help" && !body.contains(&name) {
                missing.push(format!("{title}: {name}"));
            }
        }
        let mut flags = BTreeSet::new();
        long_flags(sub, &mut flags);
        for flag in flags {
            if !body.contains(&flag) && !globals.contains(&flag) {
                missing.push(format!("{title}: {flag}"));
            }
        }
    }
    assert!(commands >= 20, "{commands} commands found");
    assert!(
        missing.is_empty(),
        "docs/cli.md lacks:\n{}",
        missing.join("\n")
    );
}

/// Every metric name registered in src/obs/ (without the `cwtap_` prefix).
/// Read from the source: a metric family without series is not in the
/// exposition until something records to it.
fn registered_metrics() -> Vec<String> {
    let register = regex::Regex::new(r#"register\(\s*"([a-z0-9_]+)""#).unwrap();
    let mut names = Vec::new();
    for entry in std::fs::read_dir(root().join("src/obs")).expect("src/obs") {
        let path = entry.expect("an entry").path();
        if path.extension().is_some_and(|x| x == "rs") {
            let text = read(&path);
            names.extend(register.captures_iter(&text).map(|c| c[1].to_string()));
        }
    }
    names.sort();
    names
}

#[test]
fn every_metric_is_in_the_operations_guide() {
    let guide = read(&root().join("docs/operations.md"));
    let names = registered_metrics();
    assert!(names.len() >= 20, "{} metrics found", names.len());
    // Counters are exposed with `_total`.
    let missing: Vec<&String> = names
        .iter()
        .filter(|n| {
            !guide.contains(&format!("`cwtap_{n}`"))
                && !guide.contains(&format!("`cwtap_{n}_total`"))
        })
        .collect();
    assert!(
        missing.is_empty(),
        "docs/operations.md lacks the metric(s): {missing:?}"
    );
    // The names as exposed: what the exposition shows has the same names.
    let exposition = cwtap::obs::metrics().encode();
    for line in exposition.lines() {
        if let Some(name) = line
            .strip_prefix("# TYPE cwtap_")
            .and_then(|r| r.split_whitespace().next())
        {
            assert!(
                names.iter().any(|n| n == name),
                "{name} not found in src/obs"
            );
        }
    }
}

#[test]
fn the_readme_is_a_first_screen_and_names_the_test_command() {
    let readme = read(&root().join("README.md"));
    let lines = readme.lines().count();
    assert!(lines <= 250, "README.md has {lines} lines (at most 250)");
    assert!(readme.contains("./scripts/test.sh"));
    assert!(readme.contains("scripts/demo.sh"));
}
