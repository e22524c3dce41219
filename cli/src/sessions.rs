//! One line of `localstream sessions`: when (in local time), which way,
//! how much (in human units) and how it ended.

use jiff::Timestamp;
use jiff::tz::TimeZone;
use localstream_node::store::{Direction, Outcome, SessionRecord};
use localstream_node::units::human_bytes;
use localstream_proto::names::escape_for_terminal;

/// The time zone sessions are shown in: the system's (`TZ` honoured), UTC
/// when it cannot be found.
#[must_use]
pub fn zone() -> TimeZone {
    TimeZone::try_system().unwrap_or(TimeZone::UTC)
}

/// `  2026-11-24 03:58:14  3f2a9c1e  received     1 file    1.50 MiB  ok           0.5 s  detail`
#[must_use]
pub fn line(s: &SessionRecord, tz: &TimeZone) -> String {
    let resumed = if s.resumed > 0 {
        format!(" (+{} already there)", human_bytes(s.resumed))
    } else {
        String::new()
    };
    let took = s
        .ended
        .map_or_else(|| "-".to_owned(), |e| duration(e.saturating_sub(s.started)));
    let line = format!(
        "  {}  {}  {:<8}  {:>9}  {:>11}{resumed}  {:<11}  {:>10}  {}",
        local_time(s.started, tz),
        s.id.chars().take(8).collect::<String>(),
        match s.direction {
            Direction::Send => "sent",
            Direction::Receive => "received",
        },
        files(s.files),
        human_bytes(s.bytes),
        outcome(s.outcome),
        took,
        // In words, as on the terminal when it happened.
        crate::hint::without_os_codes(&escape_for_terminal(&s.detail))
    );
    line.trim_end().to_owned()
}

/// "1 file", "12 files".
fn files(n: u64) -> String {
    format!("{n} file{}", if n == 1 { "" } else { "s" })
}

fn outcome(o: Outcome) -> &'static str {
    match o {
        Outcome::Ok => "ok",
        Outcome::Refused => "refused",
        Outcome::Failed => "failed",
        Outcome::Incomplete => "incomplete",
        Outcome::Interrupted => "interrupted",
    }
}

/// `2026-11-24 03:58:14` in `tz`, from Unix milliseconds.
fn local_time(ms: u64, tz: &TimeZone) -> String {
    i64::try_from(ms)
        .ok()
        .and_then(|ms| Timestamp::from_millisecond(ms).ok())
        .map_or_else(
            || "????-??-?? ??:??:??".to_owned(),
            |t| {
                t.to_zoned_datetime(tz.clone())
                    .strftime("%Y-%m-%d %H:%M:%S")
                    .to_string()
            },
        )
}

/// "0.5 s", "42.0 s", "3 min 07 s", "2 h 05 min".
fn duration(ms: u64) -> String {
    if ms < 59_950 {
        return format!("{:.1} s", ms as f64 / 1000.0);
    }
    let secs = (ms + 500) / 1000;
    if secs < 3600 {
        format!("{} min {:02} s", secs / 60, secs % 60)
    } else {
        format!("{} h {:02} min", secs / 3600, secs % 3600 / 60)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn record(files: u64, bytes: u64, took: Option<u64>) -> SessionRecord {
        let mut s = SessionRecord::begin("3f2a9c1e77", Direction::Receive, 1_795_489_094_000);
        s.files = files;
        s.bytes = bytes;
        s.ended = took.map(|t| s.started + t);
        s.outcome = Outcome::Ok;
        s
    }

    #[test]
    fn times_are_local() {
        let berlin = TimeZone::posix("CET-1CEST,M3.5.0,M10.5.0/3").unwrap();
        assert_eq!(
            local_time(1_795_489_094_000, &berlin),
            "2026-11-24 03:58:14"
        );
        assert_eq!(
            local_time(1_795_489_094_000, &TimeZone::UTC),
            "2026-11-24 02:58:14"
        );
        // Summer time: two hours ahead.
        assert_eq!(
            local_time(1_783_000_000_000, &berlin),
            "2026-07-02 15:46:40"
        );
        let ny = TimeZone::posix("EST5EDT,M3.2.0,M11.1.0").unwrap();
        assert_eq!(local_time(0, &ny), "1969-12-31 19:00:00");
    }

    #[test]
    fn lines_read_as_people_talk() {
        let tz = TimeZone::UTC;
        assert_eq!(
            line(&record(1, 1536 * 1024, Some(500)), &tz),
            "  2026-11-24 02:58:14  3f2a9c1e  received     1 file     1.50 MiB  ok                0.5 s"
        );
        let mut s = record(12, 14, Some(187_000));
        s.direction = Direction::Send;
        s.outcome = Outcome::Refused;
        s.detail = "no\x1b[2J (os error 1)".into();
        s.resumed = 3 << 20;
        assert_eq!(
            line(&s, &tz),
            "  2026-11-24 02:58:14  3f2a9c1e  sent       12 files         14 B (+3.00 MiB already there)  \
             refused      3 min 07 s  no\\x1b[2J"
        );
        assert_eq!(
            line(&record(0, 0, None), &tz),
            "  2026-11-24 02:58:14  3f2a9c1e  received    0 files          0 B  ok                    -"
        );
        assert_eq!(duration(7_500_000), "2 h 05 min");
        assert_eq!(duration(59_999), "1 min 00 s");
        assert_eq!(duration(59_900), "59.9 s");
    }
}
