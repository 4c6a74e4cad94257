//! Finds where a key path is written in the TOML source.

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::{KeyPath, PathSegment};

/// 1-based line and column of byte `offset` in `source`.
pub fn line_column(source: &str, offset: usize) -> (usize, usize) {
    let before = &source[..offset.min(source.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// The text of 1-based `line`, without its newline.
pub fn line_text(source: &str, line: usize) -> String {
    source.lines().nth(line - 1).unwrap_or_default().to_owned()
}

/// The source parsed again with spans, to place validation issues.
pub struct Locator<'s> {
    source: &'s str,
    root: Option<Spanned<DeTable<'s>>>,
}

impl<'s> Locator<'s> {
    pub fn new(source: &'s str) -> Self {
        Self {
            source,
            root: DeTable::parse(source).ok(),
        }
    }

    /// Where the deepest existing prefix of `path` is written: the value of
    /// the key itself if it is there, else the table that lacks it.
    pub fn position(&self, path: &KeyPath) -> Option<(usize, usize)> {
        let root = self.root.as_ref()?;
        let mut span = None;
        let mut table: Option<&DeTable<'s>> = Some(root.get_ref());
        let mut value: Option<&Spanned<DeValue<'s>>> = None;
        for segment in &path.0 {
            let next = match (segment, table, value) {
                (PathSegment::Key(key), Some(table), _) => table
                    .iter()
                    .find(|(k, _)| k.get_ref() == key)
                    .map(|(_, v)| v),
                (PathSegment::Index(index), _, Some(v)) => {
                    v.get_ref().as_array().and_then(|array| array.get(*index))
                }
                _ => None,
            };
            let Some(next) = next else { break };
            span = Some(next.span());
            value = Some(next);
            table = next.get_ref().as_table();
        }
        span.map(|span| line_column(self.source, span.start))
    }
}

impl Locator<'_> {
    /// The key path of the key or value written at byte `offset`, if any.
    pub fn path_at(&self, offset: usize) -> Option<KeyPath> {
        let root = self.root.as_ref()?;
        find_in_table(root.get_ref(), offset, KeyPath::default())
    }
}

fn find_in_table(table: &DeTable<'_>, offset: usize, path: KeyPath) -> Option<KeyPath> {
    table.iter().find_map(|(key, value)| {
        let here = path.key(key.get_ref());
        if key.span().contains(&offset) {
            return Some(here);
        }
        find_in_value(value, offset, here)
    })
}

fn find_in_value(value: &Spanned<DeValue<'_>>, offset: usize, path: KeyPath) -> Option<KeyPath> {
    match value.get_ref() {
        DeValue::Table(table) => find_in_table(table, offset, path),
        DeValue::Array(array) => array
            .iter()
            .enumerate()
            .find_map(|(index, element)| find_in_value(element, offset, path.index(index))),
        _ => value.span().contains(&offset).then_some(path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_are_one_based() {
        let source = "a = 1\nbb = 2\n";
        assert_eq!(line_column(source, 0), (1, 1));
        assert_eq!(line_column(source, 6), (2, 1));
        assert_eq!(line_column(source, 11), (2, 6));
        assert_eq!(line_text(source, 2), "bb = 2");
    }

    #[test]
    fn finds_values_inside_arrays_of_tables() {
        let source = "[[l]]\nport = 1\n\n[[l]]\nname = \"x\"\nport = 0\n";
        let locator = Locator::new(source);
        let path = KeyPath::default().key("l").index(1).key("port");
        assert_eq!(locator.position(&path), Some((6, 8)));
        // A key that is absent points at its table.
        let missing = KeyPath::default().key("l").index(1).key("pool");
        assert_eq!(locator.position(&missing).map(|(line, _)| line), Some(4));
    }

    #[test]
    fn names_the_key_path_at_an_offset() {
        let source = "[[l]]\nport = 1\n\n[[l]]\nname = \"x\"\nprot = 0\n[t]\nv = [1, 2]\n";
        let locator = Locator::new(source);
        let at = |needle: &str| {
            locator
                .path_at(source.find(needle).unwrap())
                .map(|p| p.to_string())
        };
        assert_eq!(at("prot").as_deref(), Some("l[1].prot"));
        assert_eq!(at("\"x\"").as_deref(), Some("l[1].name"));
        assert_eq!(at("2]").as_deref(), Some("t.v[1]"));
        assert_eq!(at("[[l]]"), None);
    }
}
