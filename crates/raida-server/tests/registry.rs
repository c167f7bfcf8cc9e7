//! The dispatch registry is the only list of commands: it must name exactly the commands of
//! PROTOCOL.md section 6, each with its codec file and handler file of the same name.

use std::collections::BTreeSet;
use std::path::PathBuf;

use raida_proto::commands::SPEC_COMMANDS;
use raida_server::dispatch::{DispatchTable, COMMANDS};

/// (group, command, snake_case name) of every command in PROTOCOL.md section 6: the
/// bullets `* **0 Echo**` and headings `**41 Post Key**` under `### Group N`.
fn spec_commands() -> BTreeSet<(u8, u8, String)> {
    let path = raida_vectors::protocol();
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let start = text.find("\n## 6.").expect("PROTOCOL.md has section 6");
    let section = &text[start + 1..];
    let section = &section[..section[1..].find("\n## ").map_or(section.len(), |e| e + 1)];
    let mut group = None;
    let mut found = BTreeSet::new();
    for line in section.lines() {
        if let Some(rest) = line.strip_prefix("### Group ") {
            group = rest.split_whitespace().next().and_then(|g| g.parse::<u8>().ok());
            continue;
        }
        let bold = line.strip_prefix("* **").or_else(|| line.strip_prefix("**"));
        let Some(title) = bold.and_then(|b| b.split("**").next()) else { continue };
        let Some((number, name)) = title.split_once(' ') else { continue };
        let Ok(number) = number.parse::<u8>() else { continue };
        let g = group.expect("a command before any `### Group` heading");
        found.insert((g, number, name.to_lowercase().replace(' ', "_")));
    }
    found
}

#[test]
fn the_registry_is_section_6_exactly() {
    let spec = spec_commands();
    assert!(!spec.is_empty(), "section 6 parsed: {spec:?}");
    let registry: BTreeSet<(u8, u8, String)> =
        COMMANDS.iter().map(|c| (c.group, c.command, c.name.to_string())).collect();
    let missing: Vec<_> = spec.difference(&registry).collect();
    let extra: Vec<_> = registry.difference(&spec).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing from the registry: {missing:?}; not in section 6: {extra:?}"
    );
    assert_eq!(registry.len(), COMMANDS.len(), "a command is registered twice");
}

#[test]
fn every_command_has_its_codec_and_handler_file() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    for c in COMMANDS {
        let handler = root.join("src/cmd").join(format!("{}.rs", c.name));
        let codec = root.join("../raida-proto/src/commands").join(format!("{}.rs", c.name));
        assert!(handler.is_file(), "{}: no handler file {}", c.name, handler.display());
        assert!(codec.is_file(), "{}: no codec file {}", c.name, codec.display());
    }
}

#[test]
fn the_table_and_the_sans_io_mirror_derive_from_the_registry() {
    let table = DispatchTable::standard();
    let listed: Vec<(u8, u8)> = table.commands().collect();
    let registry: Vec<(u8, u8)> = COMMANDS.iter().map(|c| (c.group, c.command)).collect();
    assert_eq!(listed, registry);
    assert_eq!(SPEC_COMMANDS.to_vec(), registry, "raida_proto::commands::SPEC_COMMANDS mirrors the registry");
    for c in COMMANDS {
        assert!(table.get(c.group, c.command).is_some());
        let heavy = c.heavy_above.unwrap_or(usize::MAX - 1);
        assert_eq!(table.is_heavy(c.group, c.command, heavy + 1), c.heavy_above.is_some(), "{}", c.name);
    }
}
