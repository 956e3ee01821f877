//! Docker's `--filter key=value` (the Engine API's `filters` in the same pairs): parsed with
//! the keys a list takes, refused in Docker's words. Values of one key are alternatives;
//! different keys must all hold (Docker's rule). What each key means is the lister's.

use std::collections::BTreeMap;

/// Why a filter was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    /// Not `key=value`.
    #[error("bad format of filter {0:?} (expected name=value)")]
    Malformed(String),
    /// A key this list does not filter by (Docker's wording).
    #[error("invalid filter '{key}' (valid for {what}: {valid})")]
    UnknownKey {
        /// The key given.
        key: String,
        /// What is listed.
        what: &'static str,
        /// The keys there are.
        valid: String,
    },
    /// A value the key cannot take.
    #[error("invalid filter '{key}={value}': {why}")]
    BadValue {
        /// The key.
        key: String,
        /// The value given.
        value: String,
        /// What it should be.
        why: &'static str,
    },
}

/// Parsed filters: each key with its values.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Filters(BTreeMap<String, Vec<String>>);

impl Filters {
    /// Parses `key=value` pairs (the CLI's flags, as the list request carries them),
    /// refusing keys outside `valid`.
    pub fn parse(
        pairs: &[String],
        what: &'static str,
        valid: &[&str],
    ) -> Result<Filters, FilterError> {
        let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for pair in pairs {
            let (k, v) = pair
                .split_once('=')
                .ok_or_else(|| FilterError::Malformed(pair.clone()))?;
            let k = k.trim().to_ascii_lowercase();
            if !valid.contains(&k.as_str()) {
                return Err(FilterError::UnknownKey {
                    key: k,
                    what,
                    valid: valid.join(", "),
                });
            }
            map.entry(k).or_default().push(v.to_owned());
        }
        Ok(Filters(map))
    }

    /// The values of `key` (empty when the filter is absent).
    pub fn get(&self, key: &str) -> &[String] {
        self.0.get(key).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Whether `key` is absent, or any of its values satisfies `pred`.
    pub fn any(&self, key: &str, pred: impl Fn(&str) -> bool) -> bool {
        let v = self.get(key);
        v.is_empty() || v.iter().any(|x| pred(x))
    }

    /// Every `label` filter holds: `k` present, `k=v` equal.
    pub fn labels<'a>(&self, mut get: impl FnMut(&str) -> Option<&'a str>) -> bool {
        self.get("label").iter().all(|f| match f.split_once('=') {
            Some((k, v)) => get(k).is_some_and(|x| x == v),
            None => get(f).is_some(),
        })
    }

    /// A boolean filter (`dangling=true`; Docker's `true`/`1`, `false`/`0`): None when absent.
    pub fn boolean(&self, key: &str) -> Result<Option<bool>, FilterError> {
        match self.get(key).last().map(|v| v.to_ascii_lowercase()) {
            None => Ok(None),
            Some(v) if v == "true" || v == "1" => Ok(Some(true)),
            Some(v) if v == "false" || v == "0" => Ok(Some(false)),
            Some(v) => Err(FilterError::BadValue {
                key: key.to_owned(),
                value: v,
                why: "expected true or false",
            }),
        }
    }

    /// Whether any filter is set.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Docker's filters as `key=value` pairs, the form the list requests carry.
pub fn pairs<'a>(map: impl IntoIterator<Item = (&'a String, &'a Vec<String>)>) -> Vec<String> {
    map.into_iter()
        .flat_map(|(k, vs)| vs.iter().map(move |v| format!("{k}={v}")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs_of(f: &[&str]) -> Vec<String> {
        f.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn keys_are_checked_and_values_gathered() {
        let f = Filters::parse(
            &pairs_of(&["Label=a", "label=b=c", "name=x"]),
            "things",
            &["label", "name"],
        )
        .unwrap();
        assert_eq!(f.get("label"), ["a", "b=c"]);
        assert!(f.any("name", |n| n == "x"));
        assert!(
            f.any("other", |_| false),
            "an absent key lets everything through"
        );
        assert!(f.labels(|k| match k {
            "a" => Some(""),
            "b" => Some("c"),
            _ => None,
        }));
        assert!(!f.labels(|k| (k == "a").then_some("")));
        assert_eq!(
            Filters::parse(&pairs_of(&["colour=red"]), "things", &["label", "name"])
                .unwrap_err()
                .to_string(),
            "invalid filter 'colour' (valid for things: label, name)"
        );
        assert_eq!(
            Filters::parse(&pairs_of(&["label"]), "things", &["label"])
                .unwrap_err()
                .to_string(),
            "bad format of filter \"label\" (expected name=value)"
        );
    }

    #[test]
    fn booleans_are_dockers() {
        let f = |v: &str| Filters::parse(&pairs_of(&[v]), "things", &["dangling"]).unwrap();
        assert_eq!(f("dangling=TRUE").boolean("dangling"), Ok(Some(true)));
        assert_eq!(f("dangling=0").boolean("dangling"), Ok(Some(false)));
        assert_eq!(Filters::default().boolean("dangling"), Ok(None));
        assert_eq!(
            f("dangling=maybe")
                .boolean("dangling")
                .unwrap_err()
                .to_string(),
            "invalid filter 'dangling=maybe': expected true or false"
        );
    }

    #[test]
    fn docker_maps_become_pairs() {
        let mut map = BTreeMap::new();
        map.insert("label".to_owned(), vec!["a=b".to_owned(), "c".to_owned()]);
        map.insert("status".to_owned(), vec!["running".to_owned()]);
        assert_eq!(pairs(&map), ["label=a=b", "label=c", "status=running"]);
    }
}
