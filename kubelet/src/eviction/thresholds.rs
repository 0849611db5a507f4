//! Eviction signals and thresholds as the kubelet's flags write them
//! (`--eviction-hard=memory.available<100Mi,nodefs.available<10%`), and the [`Tracker`] that
//! turns observations into node conditions (held for the pressure transition period) and the
//! thresholds due for reclaim (soft ones once their grace period has passed).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::time::Duration;

use skiff_api::Quantity;
use skiff_api::quantity::Format;
use tokio::time::Instant;

/// `--eviction-hard`'s default, as the kubelet's on Linux.
pub const DEFAULT_EVICTION_HARD: &str =
    "memory.available<100Mi,nodefs.available<10%,imagefs.available<15%,nodefs.inodesFree<5%";

/// What the eviction manager measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Signal {
    /// The node's memory capacity less its working set.
    MemoryAvailable,
    /// Free bytes on the filesystem of the kubelet's root dir.
    NodeFsAvailable,
    /// Free inodes on that filesystem.
    NodeFsInodesFree,
    /// Free bytes on the container runtime's image filesystem.
    ImageFsAvailable,
    /// Free inodes on that filesystem.
    ImageFsInodesFree,
}

impl Signal {
    pub const ALL: [Signal; 5] = [
        Signal::MemoryAvailable,
        Signal::NodeFsAvailable,
        Signal::NodeFsInodesFree,
        Signal::ImageFsAvailable,
        Signal::ImageFsInodesFree,
    ];

    /// The signal's name in flags.
    pub fn name(self) -> &'static str {
        match self {
            Signal::MemoryAvailable => "memory.available",
            Signal::NodeFsAvailable => "nodefs.available",
            Signal::NodeFsInodesFree => "nodefs.inodesFree",
            Signal::ImageFsAvailable => "imagefs.available",
            Signal::ImageFsInodesFree => "imagefs.inodesFree",
        }
    }

    pub fn parse(s: &str) -> Option<Signal> {
        Signal::ALL.into_iter().find(|sig| sig.name() == s)
    }

    /// The node condition a met threshold on this signal sets.
    pub fn condition(self) -> PressureCondition {
        match self {
            Signal::MemoryAvailable => PressureCondition::MemoryPressure,
            _ => PressureCondition::DiskPressure,
        }
    }

    /// The resource an eviction for this signal reclaims, as eviction messages name it.
    pub fn resource(self) -> &'static str {
        match self {
            Signal::MemoryAvailable => "memory",
            Signal::NodeFsAvailable | Signal::ImageFsAvailable => "ephemeral-storage",
            Signal::NodeFsInodesFree | Signal::ImageFsInodesFree => "inodes",
        }
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The node conditions the eviction manager reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PressureCondition {
    MemoryPressure,
    DiskPressure,
}

impl PressureCondition {
    pub fn type_name(self) -> &'static str {
        match self {
            PressureCondition::MemoryPressure => "MemoryPressure",
            PressureCondition::DiskPressure => "DiskPressure",
        }
    }
}

/// A threshold's amount: a quantity, or a fraction of the signal's capacity.
#[derive(Debug, Clone, PartialEq)]
pub enum Amount {
    /// Bytes (or inodes), with the text the operator wrote, which messages repeat.
    Quantity { value: u64, text: String },
    /// A fraction in (0, 1).
    Percentage(f64),
}

impl Amount {
    /// The amount for a signal of this capacity.
    pub fn of(&self, capacity: u64) -> u64 {
        match self {
            Amount::Quantity { value, .. } => *value,
            Amount::Percentage(p) => (capacity as f64 * p) as u64,
        }
    }

    /// The amount as eviction messages show it: the operator's quantity, or a percentage
    /// worked out as a binary-SI quantity.
    pub fn display(&self, capacity: u64) -> String {
        match self {
            Amount::Quantity { text, .. } => text.clone(),
            Amount::Percentage(_) => bytes(self.of(capacity)),
        }
    }

    /// A statement's value: `100Mi`, `10%`. `0%` and `100%` mean no threshold (None), as
    /// upstream ignores them.
    fn parse(signal: Signal, text: &str) -> Result<Option<Amount>, EvictionError> {
        if let Some(p) = text.strip_suffix('%') {
            if text == "0%" || text == "100%" {
                return Ok(None);
            }
            let p: f64 = p.parse().map_err(|_| EvictionError::Value {
                signal,
                value: text.into(),
            })?;
            if !(0.0..=100.0).contains(&p) {
                return Err(EvictionError::Percentage {
                    signal,
                    value: text.into(),
                });
            }
            return Ok(Some(Amount::Percentage(p / 100.0)));
        }
        let q = Quantity::parse(text).map_err(|_| EvictionError::Value {
            signal,
            value: text.into(),
        })?;
        if q.is_zero() || q.is_negative() {
            return Err(EvictionError::NotPositive {
                signal,
                value: text.into(),
            });
        }
        Ok(Some(Amount::Quantity {
            value: q.value() as u64,
            text: text.into(),
        }))
    }
}

/// A byte count as Kubernetes prints a binary-SI quantity (`50Mi`, `102401Ki`).
pub fn bytes(n: u64) -> String {
    Quantity::from_value(i64::try_from(n).unwrap_or(i64::MAX), Format::BinarySI).to_string()
}

/// One threshold: eviction when the signal's available amount falls below `amount`.
#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    pub signal: Signal,
    pub amount: Amount,
    /// None for a hard threshold; how long a soft one must hold before pods are evicted.
    pub grace_period: Option<Duration>,
    /// `--eviction-minimum-reclaim`: once met, the threshold holds until this much more
    /// than its amount is available again.
    pub min_reclaim: Option<Amount>,
}

impl Threshold {
    pub fn is_hard(&self) -> bool {
        self.grace_period.is_none()
    }
}

/// Why the eviction flags do not parse.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum EvictionError {
    #[error(
        "unsupported eviction signal {0:?} (supported: memory.available, nodefs.available, nodefs.inodesFree, imagefs.available, imagefs.inodesFree)"
    )]
    UnsupportedSignal(String),
    #[error(
        "invalid eviction threshold {0:?}: write <signal><<quantity or percentage>, like memory.available<100Mi or nodefs.available<10%"
    )]
    Statement(String),
    #[error(
        "invalid value {value:?} for {signal}: expected a quantity (100Mi) or a percentage (10%)"
    )]
    Value { signal: Signal, value: String },
    #[error("eviction percentage threshold {signal} must be >= 0% and <= 100%: {value}")]
    Percentage { signal: Signal, value: String },
    #[error("eviction threshold {signal} must be positive: {value}")]
    NotPositive { signal: Signal, value: String },
    #[error("eviction threshold {0} is given twice")]
    Duplicate(Signal),
    #[error(
        "grace period must be specified for the soft eviction threshold {0} (--eviction-soft-grace-period={0}=1m30s)"
    )]
    MissingGracePeriod(Signal),
    #[error("invalid {flag} entry {entry:?}: write <signal>=<value>")]
    Entry { flag: &'static str, entry: String },
    #[error("invalid grace period for {signal}: {reason}")]
    GracePeriod { signal: Signal, reason: String },
}

/// Splits `a<b,c<d` (or `a=b,c=d`) into pairs, each signal once.
fn statements(
    text: &str,
    sep: char,
    flag: &'static str,
) -> Result<Vec<(Signal, String)>, EvictionError> {
    let mut out: Vec<(Signal, String)> = Vec::new();
    for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let Some((name, value)) = entry.split_once(sep) else {
            return Err(if sep == '<' {
                EvictionError::Statement(entry.into())
            } else {
                EvictionError::Entry {
                    flag,
                    entry: entry.into(),
                }
            });
        };
        let signal = Signal::parse(name.trim())
            .ok_or_else(|| EvictionError::UnsupportedSignal(name.trim().into()))?;
        if out.iter().any(|(s, _)| *s == signal) {
            return Err(EvictionError::Duplicate(signal));
        }
        out.push((signal, value.trim().to_string()));
    }
    Ok(out)
}

/// The thresholds of `--eviction-hard`, `--eviction-soft` (with `--eviction-soft-grace-period`)
/// and `--eviction-minimum-reclaim`, as the kubelet's `ParseThresholdConfig`.
pub fn parse_thresholds(
    hard: &str,
    soft: &str,
    soft_grace_period: &str,
    minimum_reclaim: &str,
) -> Result<Vec<Threshold>, EvictionError> {
    let graces: BTreeMap<Signal, Duration> =
        statements(soft_grace_period, '=', "--eviction-soft-grace-period")?
            .into_iter()
            .map(|(signal, v)| {
                skiff_common::parse_duration(&v)
                    .map(|d| (signal, d))
                    .map_err(|reason| EvictionError::GracePeriod { signal, reason })
            })
            .collect::<Result<_, _>>()?;
    let mut reclaims: BTreeMap<Signal, Amount> = BTreeMap::new();
    for (signal, v) in statements(minimum_reclaim, '=', "--eviction-minimum-reclaim")? {
        // A zero minimum reclaim is no minimum reclaim.
        if v == "0" || v == "0%" || Quantity::parse(&v).is_ok_and(|q| q.is_zero()) {
            continue;
        }
        if let Some(a) = Amount::parse(signal, &v)? {
            reclaims.insert(signal, a);
        }
    }
    let mut out = Vec::new();
    for (text, hard) in [(hard, true), (soft, false)] {
        for (signal, v) in statements(text, '<', "")? {
            let Some(amount) = Amount::parse(signal, &v)? else {
                continue;
            };
            let grace_period = if hard {
                None
            } else {
                Some(
                    *graces
                        .get(&signal)
                        .ok_or(EvictionError::MissingGracePeriod(signal))?,
                )
            };
            out.push(Threshold {
                signal,
                amount,
                grace_period,
                min_reclaim: reclaims.get(&signal).cloned(),
            });
        }
    }
    Ok(out)
}

/// One signal's measurement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observation {
    pub available: u64,
    pub capacity: u64,
}

pub type Observations = BTreeMap<Signal, Observation>;

/// What one look at the signals decided.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Verdict {
    /// The node conditions to report (True) now.
    pub conditions: BTreeSet<PressureCondition>,
    /// Indexes of the thresholds met whose grace period has passed: pods may go for them.
    pub reclaim: Vec<usize>,
}

/// Remembers when thresholds were first met and conditions last observed, as the kubelet's
/// eviction manager does between its passes.
#[derive(Debug)]
pub struct Tracker {
    thresholds: Vec<Threshold>,
    transition_period: Duration,
    first_observed: HashMap<usize, Instant>,
    last_observed: BTreeMap<PressureCondition, Instant>,
    /// Thresholds met at the last pass: they hold until their minimum reclaim is available.
    met: BTreeSet<usize>,
}

impl Tracker {
    pub fn new(thresholds: Vec<Threshold>, transition_period: Duration) -> Tracker {
        Tracker {
            thresholds,
            transition_period,
            first_observed: HashMap::new(),
            last_observed: BTreeMap::new(),
            met: BTreeSet::new(),
        }
    }

    pub fn thresholds(&self) -> &[Threshold] {
        &self.thresholds
    }

    /// Whether threshold `i` is met by `observations`; with `enforce_min_reclaim`, it also is
    /// while less than its amount plus its minimum reclaim is available.
    pub fn is_met(&self, i: usize, observations: &Observations, enforce_min_reclaim: bool) -> bool {
        let t = &self.thresholds[i];
        let Some(o) = observations.get(&t.signal) else {
            return false;
        };
        let mut amount = t.amount.of(o.capacity);
        if enforce_min_reclaim && let Some(m) = &t.min_reclaim {
            amount = amount.saturating_add(m.of(o.capacity));
        }
        o.available < amount
    }

    /// One pass: which conditions hold and which thresholds are due.
    pub fn observe(&mut self, observations: &Observations, now: Instant) -> Verdict {
        let met: BTreeSet<usize> = (0..self.thresholds.len())
            .filter(|i| self.is_met(*i, observations, self.met.contains(i)))
            .collect();
        self.first_observed.retain(|i, _| met.contains(i));
        for i in &met {
            self.first_observed.entry(*i).or_insert(now);
            // Soft thresholds set their condition before their grace period is over, as
            // upstream: the node stops taking pods before it starts evicting them.
            self.last_observed
                .insert(self.thresholds[*i].signal.condition(), now);
        }
        let period = self.transition_period;
        self.last_observed
            .retain(|_, at| now.saturating_duration_since(*at) < period || *at == now);
        let conditions = self.last_observed.keys().copied().collect();
        let reclaim = met
            .iter()
            .copied()
            .filter(|i| {
                let grace = self.thresholds[*i].grace_period.unwrap_or_default();
                now.saturating_duration_since(self.first_observed[i]) >= grace
            })
            .collect();
        self.met = met;
        Verdict {
            conditions,
            reclaim,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MI: u64 = 1 << 20;

    fn q(value: u64, text: &str) -> Amount {
        Amount::Quantity {
            value,
            text: text.into(),
        }
    }

    #[test]
    fn the_default_parses_as_upstream() {
        let t = parse_thresholds(DEFAULT_EVICTION_HARD, "", "", "").unwrap();
        assert_eq!(
            t.iter()
                .map(|t| (t.signal, t.amount.clone(), t.is_hard()))
                .collect::<Vec<_>>(),
            [
                (Signal::MemoryAvailable, q(100 * MI, "100Mi"), true),
                (Signal::NodeFsAvailable, Amount::Percentage(0.10), true),
                (Signal::ImageFsAvailable, Amount::Percentage(0.15), true),
                (Signal::NodeFsInodesFree, Amount::Percentage(0.05), true),
            ]
        );
    }

    #[test]
    fn soft_thresholds_need_grace_periods_and_take_minimum_reclaims() {
        let t = parse_thresholds(
            "memory.available<1Gi",
            "memory.available<1.5Gi, nodefs.available<20%",
            "memory.available=1m30s,nodefs.available=2m",
            "memory.available=0Mi,nodefs.available=500Mi",
        )
        .unwrap();
        assert_eq!(t.len(), 3);
        assert_eq!(t[1].signal, Signal::MemoryAvailable);
        assert_eq!(t[1].amount.of(0), 1536 * MI);
        assert_eq!(t[1].grace_period, Some(Duration::from_secs(90)));
        assert_eq!(t[1].min_reclaim, None);
        assert_eq!(t[2].min_reclaim, Some(q(500 * MI, "500Mi")));
        assert_eq!(
            parse_thresholds("", "memory.available<1Gi", "", ""),
            Err(EvictionError::MissingGracePeriod(Signal::MemoryAvailable))
        );
    }

    #[test]
    fn bad_statements_are_refused() {
        let err = |hard: &str| parse_thresholds(hard, "", "", "").unwrap_err();
        assert!(matches!(
            err("memory.available>100Mi"),
            EvictionError::Statement(_)
        ));
        assert!(matches!(
            err("cpu.available<1"),
            EvictionError::UnsupportedSignal(_)
        ));
        assert!(matches!(
            err("nodefs.available<120%"),
            EvictionError::Percentage { .. }
        ));
        assert!(matches!(
            err("memory.available<0"),
            EvictionError::NotPositive { .. }
        ));
        assert!(matches!(
            err("memory.available<lots"),
            EvictionError::Value { .. }
        ));
        assert!(matches!(
            err("memory.available<1Mi,memory.available<2Mi"),
            EvictionError::Duplicate(_)
        ));
        // 0% and 100% mean no threshold, as upstream.
        assert!(
            parse_thresholds("nodefs.available<0%,imagefs.available<100%", "", "", "")
                .unwrap()
                .is_empty()
        );
        assert!(parse_thresholds("", "", "", "").unwrap().is_empty());
    }

    #[test]
    fn percentages_are_of_the_capacity_and_shown_as_quantities() {
        let a = Amount::Percentage(0.10);
        assert_eq!(a.of(1000 * MI), 100 * MI);
        assert_eq!(a.display(1000 * MI), "100Mi");
        assert_eq!(q(100 * MI, "100Mi").display(0), "100Mi");
        assert_eq!(bytes(50 * 1024), "50Ki");
    }

    fn memory(available_mib: u64) -> Observations {
        [(
            Signal::MemoryAvailable,
            Observation {
                available: available_mib * MI,
                capacity: 1000 * MI,
            },
        )]
        .into()
    }

    #[test]
    fn conditions_hold_for_the_transition_period() {
        let t = parse_thresholds("memory.available<100Mi", "", "", "").unwrap();
        let mut tracker = Tracker::new(t, Duration::from_secs(30));
        let t0 = Instant::now();
        assert_eq!(tracker.observe(&memory(500), t0), Verdict::default());
        let v = tracker.observe(&memory(50), t0 + Duration::from_secs(10));
        assert_eq!(
            v.conditions,
            BTreeSet::from([PressureCondition::MemoryPressure])
        );
        assert_eq!(v.reclaim, [0]);
        // The signal clears: no more evictions, but the condition stays for 30 s.
        let v = tracker.observe(&memory(500), t0 + Duration::from_secs(20));
        assert_eq!(
            v.conditions,
            BTreeSet::from([PressureCondition::MemoryPressure])
        );
        assert!(v.reclaim.is_empty());
        let v = tracker.observe(&memory(500), t0 + Duration::from_secs(39));
        assert!(!v.conditions.is_empty());
        let v = tracker.observe(&memory(500), t0 + Duration::from_secs(40));
        assert!(v.conditions.is_empty());
    }

    #[test]
    fn soft_thresholds_wait_for_their_grace_period_but_set_the_condition() {
        let t = parse_thresholds("", "memory.available<100Mi", "memory.available=1m", "").unwrap();
        let mut tracker = Tracker::new(t, Duration::ZERO);
        let t0 = Instant::now();
        let v = tracker.observe(&memory(50), t0);
        assert_eq!(v.conditions.len(), 1);
        assert!(v.reclaim.is_empty());
        assert!(
            tracker
                .observe(&memory(50), t0 + Duration::from_secs(59))
                .reclaim
                .is_empty()
        );
        assert_eq!(
            tracker
                .observe(&memory(50), t0 + Duration::from_secs(60))
                .reclaim,
            [0]
        );
        // Cleared and met again: the grace period starts over.
        assert!(
            tracker
                .observe(&memory(500), t0 + Duration::from_secs(61))
                .conditions
                .is_empty()
        );
        assert!(
            tracker
                .observe(&memory(50), t0 + Duration::from_secs(62))
                .reclaim
                .is_empty()
        );
    }

    #[test]
    fn a_met_threshold_holds_until_its_minimum_reclaim_is_available() {
        let t =
            parse_thresholds("memory.available<100Mi", "", "", "memory.available=50Mi").unwrap();
        let mut tracker = Tracker::new(t, Duration::ZERO);
        let t0 = Instant::now();
        // 120Mi: not met at first.
        assert!(tracker.observe(&memory(120), t0).reclaim.is_empty());
        assert_eq!(tracker.observe(&memory(90), t0).reclaim, [0]);
        // Met before: 120Mi is still under 100Mi + 50Mi.
        assert_eq!(tracker.observe(&memory(120), t0).reclaim, [0]);
        assert!(tracker.observe(&memory(150), t0).reclaim.is_empty());
    }
}
