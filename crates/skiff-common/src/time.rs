//! Timestamps as Kubernetes writes them: RFC 3339 in UTC, whole seconds for `metav1.Time`
//! (`2024-05-01T12:00:00Z`) and microseconds for `metav1.MicroTime`
//! (`2024-05-01T12:00:00.123456Z`), both truncated as Go's formatting truncates.

use std::cell::RefCell;
use std::time::SystemTime;

use jiff::Timestamp;

/// `t` as a `metav1.Time`: whole seconds.
pub fn rfc3339(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// `t` as a `metav1.MicroTime`: six fractional digits.
pub fn rfc3339_micro(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%S.%6fZ").to_string()
}

/// A system time (a container's start, a file's mtime) as a `metav1.Time`; times before the
/// epoch, which no runtime reports, are written as the epoch.
pub fn rfc3339_system(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    rfc3339(
        i64::try_from(secs)
            .ok()
            .and_then(|s| Timestamp::from_second(s).ok())
            .unwrap_or(Timestamp::UNIX_EPOCH),
    )
}

/// Now as a `metav1.Time`.
pub fn now() -> String {
    // Formatted once per second per thread: the apiserver asks for it several times for every
    // object it creates, and formatting showed in its profile.
    thread_local! {
        static LAST: RefCell<(i64, String)> = const { RefCell::new((i64::MIN, String::new())) };
    }
    let now = Timestamp::now();
    LAST.with_borrow_mut(|(second, text)| {
        if *second != now.as_second() {
            *second = now.as_second();
            *text = rfc3339(now);
        }
        text.clone()
    })
}

/// Now as a `metav1.MicroTime` (Lease renew times, Events' `eventTime`).
pub fn now_micro() -> String {
    rfc3339_micro(Timestamp::now())
}

/// `seconds` from now as a `metav1.Time` (a deletion deadline).
pub fn rfc3339_in(seconds: i64) -> String {
    rfc3339(Timestamp::now() + jiff::SignedDuration::from_secs(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_as_kubernetes_writes_times() {
        let t: Timestamp = "2024-05-01T12:00:07.123456789Z".parse().unwrap();
        assert_eq!(rfc3339(t), "2024-05-01T12:00:07Z");
        assert_eq!(rfc3339_micro(t), "2024-05-01T12:00:07.123456Z");
        let whole: Timestamp = "2024-05-01T12:00:07Z".parse().unwrap();
        assert_eq!(rfc3339_micro(whole), "2024-05-01T12:00:07.000000Z");
        let sys = SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(1_500);
        assert_eq!(rfc3339_system(sys), "1970-01-01T00:00:01Z");
        let before = SystemTime::UNIX_EPOCH - std::time::Duration::from_secs(5);
        assert_eq!(rfc3339_system(before), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn now_is_the_current_second() {
        let before = Timestamp::now().as_second();
        let parsed: Timestamp = now().parse().unwrap();
        let after = Timestamp::now().as_second();
        assert!((before..=after).contains(&parsed.as_second()));
        // The cached text is the same on a second call within the second (or the next one).
        let again: Timestamp = now().parse().unwrap();
        assert!(again >= parsed);
        let micro: Timestamp = now_micro().parse().unwrap();
        assert!(micro.as_second() >= before);
        let later: Timestamp = rfc3339_in(30).parse().unwrap();
        assert!(later.as_second() >= before + 30);
    }
}
