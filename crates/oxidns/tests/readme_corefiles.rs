//! Every ```corefile block in the READMEs is a working configuration: each is
//! parsed and checked with the plugins oxidns links, so docs cannot rot.

use std::path::{Path, PathBuf};

use oxidns::plugins::PLUGINS;
use oxidns_server::corefile::parse_str;
use oxidns_server::{Options, build};

/// The repository root, made the current directory so that relative paths
/// in examples (`examples/db.example.org`) resolve as they do for a user.
fn repo_root() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    std::env::set_current_dir(&root).expect("enter the repository root");
    root
}

/// The READMEs to read: the project's and every plugin's.
fn readmes() -> Vec<PathBuf> {
    let root = repo_root();
    let mut files = vec![root.join("README.md")];
    for entry in std::fs::read_dir(root.join("plugins")).expect("plugins folder") {
        let readme = entry.expect("entry").path().join("README.md");
        if readme.exists() {
            files.push(readme);
        }
    }
    files.sort();
    files
}

/// (line of the opening fence, text) of each ```corefile block.
fn corefile_blocks(text: &str) -> Vec<(usize, String)> {
    let mut blocks = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (index, line) in text.lines().enumerate() {
        match &mut current {
            None if line.trim_start().starts_with("```corefile") => {
                current = Some((index + 1, String::new()));
            }
            Some(_) if line.trim_start().starts_with("```") => {
                blocks.push(current.take().expect("inside a block"));
            }
            Some((_, body)) => {
                body.push_str(line);
                body.push('\n');
            }
            None => {}
        }
    }
    blocks
}

#[test]
fn every_plugin_has_a_readme_in_coredns_shape() {
    for entry in std::fs::read_dir(repo_root().join("plugins")).unwrap() {
        let dir = entry.unwrap().path();
        let readme = std::fs::read_to_string(dir.join("README.md"))
            .unwrap_or_else(|_| panic!("{} has no README.md", dir.display()));
        for section in [
            "## Name",
            "## Description",
            "## Syntax",
            "## Examples",
            "## Metrics",
        ] {
            assert!(
                readme.contains(section),
                "{}: no '{section}'",
                dir.display()
            );
        }
    }
}

#[test]
fn every_readme_corefile_example_is_a_valid_config() {
    let mut checked = 0;
    let mut failures = Vec::new();
    repo_root();
    for readme in readmes() {
        let text = std::fs::read_to_string(&readme).unwrap();
        for (line, body) in corefile_blocks(&text) {
            let place = format!("{}:{line}", readme.display());
            let result = parse_str(&body, &place)
                .map_err(|e| vec![e])
                .and_then(|blocks| build(&blocks, PLUGINS, &Options::default()));
            if let Err(errors) = result {
                let list: Vec<String> = errors.iter().map(ToString::to_string).collect();
                failures.push(format!("{place}:\n  {}", list.join("\n  ")));
            }
            checked += 1;
        }
    }
    assert!(
        failures.is_empty(),
        "invalid README examples:\n{}",
        failures.join("\n")
    );
    assert!(checked > 0, "no corefile examples found");
}

#[test]
fn the_repository_corefile_is_valid() {
    let blocks = oxidns_server::corefile::parse_file(&repo_root().join("Corefile")).unwrap();
    if let Err(errors) = build(&blocks, PLUGINS, &Options::default()) {
        panic!("{errors:?}");
    }
}
