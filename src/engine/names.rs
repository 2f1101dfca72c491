//! Class names from an Ultralytics model's `names` metadata: a Python dict literal
//! such as `{0: 'person', 1: 'bicycle'}`.

/// Parses `{0: 'a', 1: "b"}` into names by index; `None` when it is not such a dict or
/// the indices are not 0..n.
pub fn parse_names(text: &str) -> Option<Vec<String>> {
    let body = text.trim().strip_prefix('{')?.strip_suffix('}')?;
    let mut pairs = Vec::new();
    let mut rest = body.trim();
    while !rest.is_empty() {
        let (index, after) = rest.split_once(':')?;
        let index: usize = index.trim().parse().ok()?;
        let after = after.trim_start();
        let quote = after.chars().next().filter(|c| *c == '\'' || *c == '"')?;
        let after = &after[1..];
        let end = after.find(quote)?;
        pairs.push((index, after[..end].to_owned()));
        rest = after[end + 1..].trim_start();
        rest = rest.strip_prefix(',').unwrap_or(rest).trim_start();
    }
    pairs.sort_by_key(|p| p.0);
    pairs
        .iter()
        .enumerate()
        .all(|(i, p)| p.0 == i)
        .then(|| pairs.into_iter().map(|p| p.1).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ultralytics_dicts_parse_in_index_order() {
        let names = parse_names("{0: 'person', 2: 'car', 1: \"traffic, light\"}").unwrap();
        assert_eq!(names, ["person", "traffic, light", "car"]);
        assert_eq!(
            parse_names("{0: 'License_Plate'}").unwrap(),
            ["License_Plate"]
        );
    }

    #[test]
    fn malformed_or_gappy_dicts_are_rejected() {
        assert_eq!(parse_names("[person]"), None);
        assert_eq!(parse_names("{0: 'a', 2: 'c'}"), None);
        assert_eq!(parse_names("{zero: 'a'}"), None);
        assert_eq!(parse_names("{}"), Some(vec![]));
    }
}
