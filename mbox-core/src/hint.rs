//! "Did you mean": the known name nearest to one a user mistyped, for error messages.

/// The name in `known` nearest to `wrong` (case aside), if it is near enough to be the one
/// meant: at most one edit (a transposition counts one) per four characters of its last
/// `/`-separated part, and at least one (`PKT/ICMP` is not a typo of `PKT/TCP`).
pub fn nearest<'a>(wrong: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let wrong = wrong.to_ascii_uppercase();
    let last = wrong.rsplit('/').next().unwrap_or_default();
    let most = (last.chars().count() / 4).max(1);
    known
        .into_iter()
        .map(|k| (strsim::damerau_levenshtein(&wrong, &k.to_ascii_uppercase()), k))
        .filter(|&(d, _)| d <= most)
        .min_by_key(|&(d, k)| (d, k.len()))
        .map(|(_, k)| k)
}

/// `; did you mean `NAME`?` for the nearest known name, or nothing.
pub fn did_you_mean<'a>(wrong: &str, known: impl IntoIterator<Item = &'a str>) -> String {
    nearest(wrong, known).map_or_else(String::new, |k| format!("; did you mean `{k}`?"))
}

/// The control socket's answer for an NF name no NF has: the names there are, and the one
/// meant if it is near.
pub fn no_nf_named(name: &str, known: &[&str]) -> String {
    format!("no NF named `{name}` (NFs: {}){}", known.join(", "), did_you_mean(name, known.iter().copied()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_typo_finds_its_name_and_a_stranger_finds_none() {
        let types = ["FLOW", "FLOW/TCP", "FLOW/TCP/TERMINATE", "FLOW/UDP", "PKT"];
        assert_eq!(nearest("FLOW/TPC", types), Some("FLOW/TCP"), "a transposition is one edit");
        assert_eq!(nearest("FLOW/TCP/TERMINAT", types), Some("FLOW/TCP/TERMINATE"));
        assert_eq!(nearest("flow/udp", types), Some("FLOW/UDP"), "case aside");
        assert_eq!(nearest("NOPE", types), None);
        assert_eq!(nearest("PKT/ICMP", ["PKT/TCP", "PKT/UDP"]), None, "another protocol, not a typo");
        assert_eq!(nearest("X", types), None);
        assert_eq!(did_you_mean("flowstats", ["flow-stats", "logger"]), "; did you mean `flow-stats`?");
        assert_eq!(did_you_mean("dpii", Vec::<&str>::new()), "");
    }
}
