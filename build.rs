//! Build steps:
//! 1. compile `bpf/steer.bpf.c` with clang and generate its libbpf-rs skeleton;
//! 2. turn the doc comments of `src/config/schema.rs` into the config
//!    reference (`OUT_DIR/config_reference.md`), which `lastack check
//!    --explain` prints and `docs/config.md` must equal (a test checks).

use std::env;
use std::fmt::Write as _;
use std::path::PathBuf;

use libbpf_cargo::SkeletonBuilder;

const BPF_SOURCE: &str = "bpf/steer.bpf.c";
const SCHEMA: &str = "src/config/schema.rs";

fn main() {
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR is set by cargo"));
    build_bpf(&out_dir);
    let schema = std::fs::read_to_string(SCHEMA).expect("read the config schema");
    let reference = manual::render(&schema);
    std::fs::write(out_dir.join("config_reference.md"), reference).expect("write the reference");
    println!("cargo:rerun-if-changed={SCHEMA}");
}

fn build_bpf(out_dir: &std::path::Path) {
    let skeleton = out_dir.join("steer.skel.rs");
    // Debian keeps <asm/types.h> under the multiarch include directory.
    let arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_else(|_| "x86_64".into());
    let multiarch = format!("-I/usr/include/{arch}-linux-gnu");
    SkeletonBuilder::new()
        .source(BPF_SOURCE)
        .clang_args([multiarch.as_str(), "-Wall", "-Werror", "-Ibpf"])
        .build_and_generate(&skeleton)
        .unwrap_or_else(|err| {
            panic!("building {BPF_SOURCE} failed (is clang installed? run `make deps`): {err:#}")
        });
    println!("cargo:rerun-if-changed={BPF_SOURCE}");
    println!("cargo:rerun-if-changed=bpf/steer.h");
}

/// Renders the schema's structs and enums as a Markdown reference.
mod manual {
    use super::*;
    use syn::{Attribute, Expr, Fields, GenericArgument, Item, Lit, Meta, PathArguments, Type};

    /// The `///` lines of an item, joined with newlines.
    fn docs(attrs: &[Attribute]) -> String {
        let lines: Vec<String> = attrs
            .iter()
            .filter(|a| a.path().is_ident("doc"))
            .filter_map(|a| match &a.meta {
                Meta::NameValue(nv) => match &nv.value {
                    Expr::Lit(lit) => match &lit.lit {
                        Lit::Str(s) => Some(s.value()),
                        _ => None,
                    },
                    _ => None,
                },
                _ => None,
            })
            .map(|line| line.strip_prefix(' ').unwrap_or(&line).to_owned())
            .collect();
        lines.join("\n")
    }

    /// True if a field carries `#[serde(default)]` or `#[serde(default = ..)]`.
    fn has_default(attrs: &[Attribute]) -> bool {
        attrs
            .iter()
            .filter(|a| a.path().is_ident("serde"))
            .any(|a| {
                let mut found = false;
                let _ = a.parse_nested_meta(|meta| {
                    if meta.path.is_ident("default") {
                        found = true;
                        if meta.input.peek(syn::Token![=]) {
                            let _: Expr = meta.value()?.parse()?;
                        }
                    }
                    Ok(())
                });
                found
            })
    }

    /// `ZeroCopy` -> `zero-copy` (serde's kebab-case).
    fn kebab(ident: &str) -> String {
        let mut out = String::new();
        for (i, c) in ident.chars().enumerate() {
            if c.is_ascii_uppercase() && i > 0 {
                out.push('-');
            }
            out.push(c.to_ascii_lowercase());
        }
        out
    }

    /// The last path segment of a type and its first generic argument.
    fn split(ty: &Type) -> (String, Option<&Type>) {
        let Type::Path(path) = ty else {
            return ("?".into(), None);
        };
        let last = path
            .path
            .segments
            .last()
            .expect("a type path has a segment");
        let inner = match &last.arguments {
            PathArguments::AngleBracketed(args) => args.args.iter().find_map(|a| match a {
                GenericArgument::Type(t) => Some(t),
                _ => None,
            }),
            _ => None,
        };
        (last.ident.to_string(), inner)
    }

    fn toml_type(ty: &Type, enums: &[(String, Vec<String>)], tables: &[String]) -> String {
        let (name, inner) = split(ty);
        match name.as_str() {
            "String" => "string".into(),
            "u8" | "u16" | "u32" | "u64" | "usize" => "integer".into(),
            "bool" => "boolean".into(),
            "Duration" => "duration string (`\"200ms\"`, `\"5s\"`, `\"2m\"`)".into(),
            "Ipv4" => "IPv4 address string".into(),
            "SocketV4" => "`\"address:port\"` string".into(),
            "PortRange" => "port range string (`\"first-last\"`)".into(),
            "Option" => format!("{}, optional", toml_type(inner.unwrap(), enums, tables)),
            "Vec" => {
                let inner = inner.unwrap();
                let (inner_name, _) = split(inner);
                if tables.contains(&inner_name) {
                    format!(
                        "array of tables (see [{inner_name}](#{}))",
                        inner_name.to_lowercase()
                    )
                } else {
                    format!("array of {}", toml_type(inner, enums, tables))
                }
            }
            other => {
                if let Some((_, variants)) = enums.iter().find(|(n, _)| n == other) {
                    let quoted: Vec<String> =
                        variants.iter().map(|v| format!("`\"{v}\"`")).collect();
                    format!("one of {}", quoted.join(", "))
                } else if tables.iter().any(|t| t == other) {
                    format!("table (see [{other}](#{}))", other.to_lowercase())
                } else {
                    other.to_owned()
                }
            }
        }
    }

    pub fn render(source: &str) -> String {
        let file = syn::parse_file(source).expect("src/config/schema.rs parses");
        let mut enums = Vec::new();
        let mut tables = Vec::new();
        for item in &file.items {
            match item {
                Item::Enum(e) => enums.push((
                    e.ident.to_string(),
                    e.variants
                        .iter()
                        .map(|v| kebab(&v.ident.to_string()))
                        .collect::<Vec<_>>(),
                )),
                Item::Struct(s) => tables.push(s.ident.to_string()),
                _ => {}
            }
        }
        let mut out = String::from(
            "# lastack configuration reference\n\n\
             Generated from the doc comments of `src/config/schema.rs` (do not edit: \
             `make docs` rewrites this file, and a test fails when it is stale). \
             `lastack check --explain` prints the same text, and \
             `lastack check -c FILE` validates a file. Unknown keys are errors.\n",
        );
        for item in &file.items {
            match item {
                Item::Struct(s) => {
                    let doc = docs(&s.attrs);
                    let mut lines = doc.lines();
                    let title = lines.next().unwrap_or_default();
                    let rest: Vec<&str> = lines.collect();
                    let _ = writeln!(
                        out,
                        "\n<a id=\"{}\"></a>\n## {title}\n",
                        s.ident.to_string().to_lowercase()
                    );
                    let rest = rest.join("\n");
                    if !rest.trim().is_empty() {
                        let _ = writeln!(out, "{}\n", rest.trim());
                    }
                    let Fields::Named(fields) = &s.fields else {
                        continue;
                    };
                    let _ = writeln!(
                        out,
                        "| key | type | required | meaning |\n|---|---|---|---|"
                    );
                    for field in &fields.named {
                        let name = field.ident.as_ref().expect("named field").to_string();
                        let (outer, _) = split(&field.ty);
                        let required = if has_default(&field.attrs) || outer == "Option" {
                            "no"
                        } else {
                            "**yes**"
                        };
                        let meaning = docs(&field.attrs).replace('\n', " ").replace('|', "\\|");
                        let ty = toml_type(&field.ty, &enums, &tables).replace('|', "\\|");
                        let _ = writeln!(out, "| `{name}` | {ty} | {required} | {meaning} |");
                    }
                }
                Item::Enum(e) => {
                    let _ = writeln!(out, "\n### Values of {}\n\n{}\n", e.ident, docs(&e.attrs));
                    for variant in &e.variants {
                        let value = kebab(&variant.ident.to_string());
                        let doc = docs(&variant.attrs).replace('\n', " ");
                        let _ = writeln!(out, "- `\"{value}\"`: {doc}");
                    }
                }
                _ => {}
            }
        }
        out
    }
}
