//! Rule thresholds (`threshold:` and `detection_filter:`) and the state that applies them:
//! how many of a rule's matches become alerts, per source, destination, both or the rule, in
//! windows of so many seconds — Suricata's semantics, over the matches the caller reports.
//!
//! The state is bounded: at most [`Thresholds::MAX_TRACKED`] (rule, address) entries; past it,
//! entries whose window ended make room, and a match that still finds no room alerts (counted
//! `untracked`: a threshold may only ever hide alerts, so without state it hides none).

use std::collections::HashMap;
use std::net::IpAddr;

/// What a threshold does with the matches in a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThresholdKind {
    /// The first `count` matches alert, the rest of the window does not.
    Limit,
    /// Every `count`-th match alerts.
    Threshold,
    /// The `count`-th match alerts, once per window.
    Both,
    /// `detection_filter`: every match after the first `count` alerts.
    DetectionFilter,
}

/// Whose matches are counted together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Track {
    BySrc,
    ByDst,
    /// Source and destination as a pair.
    ByBoth,
    ByRule,
}

/// A rule's threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Threshold {
    pub kind: ThresholdKind,
    pub track: Track,
    pub count: u32,
    pub seconds: u32,
}

impl Threshold {
    /// Parses the value of `threshold:` (`detection_filter` false) or `detection_filter:`:
    /// comma-separated `type X`, `track Y`, `count N`, `seconds T`, in any order.
    pub fn parse(text: &str, detection_filter: bool) -> Result<Threshold, String> {
        let (mut kind, mut track, mut count, mut seconds) = (detection_filter.then_some(ThresholdKind::DetectionFilter), None, None, None);
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = part.split_once(char::is_whitespace).ok_or_else(|| format!("`{part}` has no value"))?;
            let value = value.trim();
            let num = || value.parse::<u32>().map_err(|_| format!("{key} `{value}` is not a number"));
            match key {
                "type" if !detection_filter => {
                    kind = Some(match value {
                        "limit" => ThresholdKind::Limit,
                        "threshold" => ThresholdKind::Threshold,
                        "both" => ThresholdKind::Both,
                        other => return Err(format!("type `{other}` (limit, threshold or both)")),
                    })
                }
                "track" => {
                    track = Some(match value {
                        "by_src" => Track::BySrc,
                        "by_dst" => Track::ByDst,
                        "by_both" => Track::ByBoth,
                        "by_rule" => Track::ByRule,
                        other => return Err(format!("track `{other}` (by_src, by_dst, by_both or by_rule)")),
                    })
                }
                "count" => count = Some(num()?),
                "seconds" => seconds = Some(num()?),
                other => return Err(format!("`{other}`")),
            }
        }
        let missing = |what: &str| format!("no {what}");
        let t = Threshold {
            kind: kind.ok_or_else(|| missing("type"))?,
            track: track.ok_or_else(|| missing("track"))?,
            count: count.ok_or_else(|| missing("count"))?,
            seconds: seconds.ok_or_else(|| missing("seconds"))?,
        };
        if t.count == 0 && t.kind != ThresholdKind::DetectionFilter {
            return Err("count 0".into());
        }
        Ok(t)
    }
}

/// The addresses a threshold counts by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    rule: u32,
    addrs: [Option<IpAddr>; 2],
}

/// One tracked window.
#[derive(Debug, Clone, Copy)]
struct Window {
    /// When it ends (its rule's `seconds` after the match that opened it).
    end_ns: u64,
    matches: u32,
    alerted: bool,
}

/// The windows of every thresholded rule (see the module documentation).
#[derive(Debug, Default)]
pub struct Thresholds {
    windows: HashMap<Key, Window>,
    /// Matches that alerted because no state could be kept for them.
    pub untracked: u64,
    /// Matches a threshold kept from alerting.
    pub suppressed: u64,
}

impl Thresholds {
    /// The most (rule, address) windows kept.
    pub const MAX_TRACKED: usize = 65_536;

    /// Whether a match of rule `rule` (with threshold `t`) from `src` to `dst` at `now_ns`
    /// alerts.
    pub fn alerts(&mut self, rule: u32, t: &Threshold, src: IpAddr, dst: IpAddr, now_ns: u64) -> bool {
        let addrs = match t.track {
            Track::BySrc => [Some(src), None],
            Track::ByDst => [None, Some(dst)],
            Track::ByBoth => [Some(src), Some(dst)],
            Track::ByRule => [None, None],
        };
        let key = Key { rule, addrs };
        let window_ns = u64::from(t.seconds) * 1_000_000_000;
        if !self.windows.contains_key(&key) && self.windows.len() >= Self::MAX_TRACKED {
            // Windows that ended hold nothing a later match needs.
            self.windows.retain(|_, w| now_ns < w.end_ns);
            if self.windows.len() >= Self::MAX_TRACKED {
                self.untracked += 1;
                return true;
            }
        }
        let fresh = Window { end_ns: now_ns.saturating_add(window_ns), matches: 0, alerted: false };
        let w = self.windows.entry(key).or_insert(fresh);
        if now_ns >= w.end_ns {
            *w = fresh;
        }
        w.matches = w.matches.saturating_add(1);
        let alert = match t.kind {
            ThresholdKind::Limit => w.matches <= t.count,
            ThresholdKind::Threshold => {
                let due = w.matches >= t.count;
                if due {
                    w.matches = 0;
                }
                due
            }
            ThresholdKind::Both => {
                let due = !w.alerted && w.matches >= t.count;
                w.alerted |= due;
                due
            }
            ThresholdKind::DetectionFilter => w.matches > t.count,
        };
        if !alert {
            self.suppressed += 1;
        }
        alert
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn run(t: &str, detection_filter: bool, at_seconds: &[u64]) -> Vec<bool> {
        let t = Threshold::parse(t, detection_filter).unwrap();
        let mut th = Thresholds::default();
        let (a, b) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        at_seconds.iter().map(|&s| th.alerts(7, &t, a, b, s * S)).collect()
    }

    #[test]
    fn each_kind_lets_through_what_suricata_does() {
        // limit: the first 2 of each 60 s.
        assert_eq!(
            run("type limit, track by_src, count 2, seconds 60", false, &[0, 1, 2, 61, 62, 63]),
            [true, true, false, true, true, false]
        );
        // threshold: every 3rd within 60 s.
        assert_eq!(
            run("type threshold, track by_src, count 3, seconds 60", false, &[0, 1, 2, 3, 4, 5]),
            [false, false, true, false, false, true]
        );
        // both: the 3rd, once per window.
        assert_eq!(
            run("track by_src, type both, count 3, seconds 60", false, &[0, 1, 2, 3, 70, 71, 72]),
            [false, false, true, false, false, false, true]
        );
        // detection_filter: every match after the first 2.
        assert_eq!(run("track by_src, count 2, seconds 60", true, &[0, 1, 2, 3]), [false, false, true, true]);
    }

    #[test]
    fn counting_is_per_tracked_address() {
        let t = Threshold::parse("type limit, track by_dst, count 1, seconds 60", false).unwrap();
        let mut th = Thresholds::default();
        let addr = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(th.alerts(1, &t, addr("10.0.0.1"), addr("10.0.0.9"), 0));
        assert!(!th.alerts(1, &t, addr("10.0.0.2"), addr("10.0.0.9"), S), "the same destination");
        assert!(th.alerts(1, &t, addr("10.0.0.1"), addr("10.0.0.8"), S), "another destination");
        assert!(th.alerts(2, &t, addr("10.0.0.1"), addr("10.0.0.9"), S), "another rule");
        assert_eq!(th.suppressed, 1);
    }

    #[test]
    fn bad_thresholds_say_what_is_wrong() {
        let e = |t: &str| Threshold::parse(t, false).unwrap_err();
        assert_eq!(e("type limit, track by_src, count 1"), "no seconds");
        assert!(e("type sometimes, track by_src, count 1, seconds 1").contains("type `sometimes`"));
        assert!(e("type limit, track by_ip, count 1, seconds 1").contains("track `by_ip`"));
        assert!(e("type limit, track by_src, count x, seconds 1").contains("not a number"));
        assert!(Threshold::parse("type limit, track by_src, count 1, seconds 1", true).is_err(), "detection_filter has no type");
    }
}
