//! Container IDs (64 hex digits) and Docker-style random names (`eager_turing`).

/// Adjectives of random names (a short list in the spirit of Docker's).
const LEFT: &[&str] = &[
    "admiring",
    "agitated",
    "amazing",
    "angry",
    "awesome",
    "blissful",
    "bold",
    "boring",
    "brave",
    "busy",
    "charming",
    "clever",
    "compassionate",
    "competent",
    "confident",
    "cool",
    "cranky",
    "crazy",
    "dazzling",
    "determined",
    "distracted",
    "dreamy",
    "eager",
    "ecstatic",
    "elastic",
    "elated",
    "elegant",
    "eloquent",
    "epic",
    "exciting",
    "fervent",
    "festive",
    "flamboyant",
    "focused",
    "friendly",
    "frosty",
    "funny",
    "gallant",
    "gifted",
    "goofy",
    "gracious",
    "great",
    "happy",
    "hardcore",
    "heuristic",
    "hopeful",
    "hungry",
    "infallible",
    "inspiring",
    "intelligent",
    "interesting",
    "jolly",
    "jovial",
    "keen",
    "kind",
    "laughing",
    "loving",
    "lucid",
    "magical",
    "modest",
    "musing",
    "mystifying",
    "naughty",
    "nervous",
    "nice",
    "nifty",
    "nostalgic",
    "objective",
    "optimistic",
    "peaceful",
    "pedantic",
    "pensive",
    "practical",
    "priceless",
    "quirky",
    "quizzical",
    "recursing",
    "relaxed",
    "reverent",
    "romantic",
    "sad",
    "serene",
    "sharp",
    "silly",
    "sleepy",
    "stoic",
    "strange",
    "stupefied",
    "suspicious",
    "sweet",
    "tender",
    "thirsty",
    "trusting",
    "unruffled",
    "upbeat",
    "vibrant",
    "vigilant",
    "vigorous",
    "wizardly",
    "wonderful",
    "xenodochial",
    "youthful",
    "zealous",
    "zen",
];

/// Scientists and engineers.
const RIGHT: &[&str] = &[
    "agnesi",
    "albattani",
    "allen",
    "archimedes",
    "ardinghelli",
    "babbage",
    "banach",
    "bardeen",
    "bartik",
    "bassi",
    "bell",
    "benz",
    "bhabha",
    "blackwell",
    "bohr",
    "booth",
    "borg",
    "bose",
    "brahmagupta",
    "brown",
    "carson",
    "cerf",
    "chandrasekhar",
    "clarke",
    "curie",
    "darwin",
    "davinci",
    "dijkstra",
    "dubinsky",
    "easley",
    "einstein",
    "elion",
    "engelbart",
    "euclid",
    "euler",
    "fermat",
    "fermi",
    "feynman",
    "franklin",
    "galileo",
    "gauss",
    "goldberg",
    "goldstine",
    "goodall",
    "hamilton",
    "hawking",
    "heisenberg",
    "hermann",
    "hodgkin",
    "hoover",
    "hopper",
    "hugle",
    "hypatia",
    "jackson",
    "jang",
    "jennings",
    "jepsen",
    "johnson",
    "joliot",
    "kalam",
    "keller",
    "kepler",
    "khorana",
    "kilby",
    "knuth",
    "kowalevski",
    "lalande",
    "lamarr",
    "lamport",
    "leakey",
    "leavitt",
    "lovelace",
    "lumiere",
    "mahavira",
    "mayer",
    "mccarthy",
    "mcclintock",
    "meitner",
    "mendel",
    "mestorf",
    "mirzakhani",
    "montalcini",
    "moore",
    "morse",
    "napier",
    "nash",
    "newton",
    "nightingale",
    "nobel",
    "noether",
    "noyce",
    "pare",
    "pascal",
    "pasteur",
    "payne",
    "perlman",
    "pike",
    "poincare",
    "ptolemy",
    "raman",
    "ramanujan",
    "ride",
    "ritchie",
    "rosalind",
    "sammet",
    "shannon",
    "shockley",
    "sinoussi",
    "snyder",
    "spence",
    "stallman",
    "swanson",
    "tesla",
    "thompson",
    "torvalds",
    "turing",
    "varahamihira",
    "visvesvaraya",
    "volhard",
    "wescoff",
    "wiles",
    "williams",
    "wilson",
    "wing",
    "wozniak",
    "wright",
    "yalow",
    "yonath",
];

/// A fresh random container ID: 64 lowercase hex digits.
pub fn new_id() -> std::io::Result<String> {
    Ok(hex::encode(crate::fsutil::random_bytes()?))
}

/// A random `adjective_scientist` name for which `taken` says false; after a few collisions
/// a digit is appended, as Docker does.
pub fn random_name(taken: impl Fn(&str) -> bool) -> std::io::Result<String> {
    for attempt in 0..64u32 {
        let r = crate::fsutil::random_bytes()?;
        let l = u16::from_le_bytes([r[0], r[1]]) as usize % LEFT.len();
        let rr = u16::from_le_bytes([r[2], r[3]]) as usize % RIGHT.len();
        let mut name = format!("{}_{}", LEFT[l], RIGHT[rr]);
        if attempt >= 8 {
            name.push_str(&(r[4] % 10).to_string());
        }
        // Docker never names a container "boring_wozniak" (Steve Wozniak is not boring).
        if name == "boring_wozniak" || taken(&name) {
            continue;
        }
        return Ok(name);
    }
    Err(std::io::Error::other("no free random container name"))
}

/// Whether `text` is a full 64-hex container ID.
pub fn is_full_id(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_64_hex_and_differ() {
        let a = new_id().unwrap();
        let b = new_id().unwrap();
        assert!(is_full_id(&a) && is_full_id(&b));
        assert_ne!(a, b);
    }

    #[test]
    fn random_names_are_valid_and_avoid_taken_ones() {
        for _ in 0..200 {
            let n = random_name(|n| n.starts_with('a')).unwrap();
            assert!(!n.starts_with('a'), "{n}");
            spec::validate_container_name(&n).unwrap();
            assert!(n.contains('_'));
        }
    }
}
