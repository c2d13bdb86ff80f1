//! What an operator steers a room with, in the configuration and at run time: how many may be
//! inside, the admission model, the release rate, the mode and the event's times.
//!
//! The settings in force live in the zone (see `Room::settings`), so that every worker applies
//! the same ones and a change made at run time survives a reload; `Room::adopt_settings` puts a
//! new configuration's settings in force only where the configuration itself changed.

use core::fmt;

use serde_json::Value;

/// How new visitors are treated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Admitted while slots are free, queued when not.
    Normal,
    /// Everyone new queues, even when slots are free, and nobody is called: for a moment when
    /// the origin must not take more visitors (being fixed, or warming up).
    Queue,
    /// Nobody new joins: newcomers get the "closed" page. Those in line keep their places and
    /// are called as slots free.
    Reject,
    /// The room is off: everyone passes. Sessions are still opened and counted while slots are
    /// free; the rest pass without a place.
    Pass,
}

/// Which waiting visitor is called when a slot frees.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Model {
    /// The first in line.
    Fifo,
    /// Any one of those waiting, each equally likely: arriving early or refreshing often gives
    /// no advantage.
    Random,
    /// Those in line when the draw is made (the event's start, or the moment the model is put
    /// in force) are served in an order drawn at random; later arrivals queue behind them.
    Lottery,
}

/// Where an event stands, by the wall clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Before the start: everyone waits in the pre-queue; nobody is admitted or called.
    Before,
    /// Admitting (also when the room has no event).
    Open,
    /// After the end: newcomers are turned away; those inside and in line go on.
    Over,
}

impl Mode {
    pub const ALL: [Mode; 4] = [Mode::Normal, Mode::Queue, Mode::Reject, Mode::Pass];

    pub fn name(self) -> &'static str {
        match self {
            Mode::Normal => "normal",
            Mode::Queue => "queue",
            Mode::Reject => "reject",
            Mode::Pass => "pass",
        }
    }

    fn code(self) -> u32 {
        self as u32
    }

    pub fn parse(s: &[u8]) -> Option<Mode> {
        Mode::ALL.into_iter().find(|m| m.name().as_bytes() == s)
    }
}

impl Model {
    pub const ALL: [Model; 3] = [Model::Fifo, Model::Random, Model::Lottery];

    pub fn name(self) -> &'static str {
        match self {
            Model::Fifo => "fifo",
            Model::Random => "random",
            Model::Lottery => "lottery",
        }
    }

    fn code(self) -> u32 {
        self as u32
    }

    pub fn parse(s: &[u8]) -> Option<Model> {
        Model::ALL.into_iter().find(|m| m.name().as_bytes() == s)
    }
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Before => "before",
            Phase::Open => "open",
            Phase::Over => "over",
        }
    }
}

/// The settings a room runs with, as plain data for the zone and the state file.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    /// How many sessions may be live at once.
    pub max_active: u32,
    mode: u32,
    model: u32,
    /// New admissions (direct, or calls from the line) per minute at most; 0: no limit.
    pub rate_per_minute: u32,
    /// The event's start and end, wall-clock seconds since 1970; 0: none.
    pub start: u64,
    pub end: u64,
}

/// One admission, in the unit the release rate's allowance is counted in.
const ONE: u64 = 60_000;

/// The most admissions per minute a rate may allow: beyond it, a rate limits nothing.
pub const RATE_MAX: u32 = 6_000_000;

/// Why settings cannot be put in force.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SettingsError {
    /// `max_active` is 0 or above what the zone holds.
    MaxActive {
        capacity: u32,
    },
    Rate,
    /// The end is not after the start.
    EndBeforeStart,
    /// The room stands by while another nginx runs it (a binary upgrade): changes go to that
    /// one.
    StandingBy,
}

impl fmt::Display for SettingsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SettingsError::MaxActive { capacity } => {
                write!(f, "max_active must be between 1 and {capacity}, what the zone holds")
            }
            SettingsError::Rate => write!(f, "rate must be between 1r/m and {RATE_MAX}r/m"),
            SettingsError::EndBeforeStart => f.write_str("the end must be after the start"),
            SettingsError::StandingBy => f.write_str(
                "the room stands by while another nginx runs it (a binary upgrade): try again \
                 in a few seconds",
            ),
        }
    }
}

impl Settings {
    pub fn new(max_active: u32) -> Settings {
        Settings { max_active, ..Settings::default() }
    }

    pub fn mode(&self) -> Mode {
        Mode::ALL.into_iter().find(|m| m.code() == self.mode).unwrap_or(Mode::Normal)
    }

    pub fn set_mode(&mut self, m: Mode) {
        self.mode = m.code();
    }

    pub fn model(&self) -> Model {
        Model::ALL.into_iter().find(|m| m.code() == self.model).unwrap_or(Model::Fifo)
    }

    pub fn set_model(&mut self, m: Model) {
        self.model = m.code();
    }

    /// Where the event stands at wall-clock second `wall`.
    pub fn phase(&self, wall: u64) -> Phase {
        if self.start != 0 && wall < self.start {
            Phase::Before
        } else if self.end != 0 && wall >= self.end {
            Phase::Over
        } else {
            Phase::Open
        }
    }

    /// Checks the settings against a zone whose session table holds `capacity`.
    pub fn check(&self, capacity: u32) -> Result<(), SettingsError> {
        if self.max_active == 0 || self.max_active > capacity {
            return Err(SettingsError::MaxActive { capacity });
        }
        if self.rate_per_minute > RATE_MAX {
            return Err(SettingsError::Rate);
        }
        if self.start != 0 && self.end != 0 && self.end <= self.start {
            return Err(SettingsError::EndBeforeStart);
        }
        Ok(())
    }

    /// The names of the settings that differ between `self` and `other`.
    pub fn differences(&self, other: &Settings) -> impl Iterator<Item = &'static str> {
        let diff = [
            ("max_active", self.max_active != other.max_active),
            ("mode", self.mode != other.mode),
            ("model", self.model != other.model),
            ("rate", self.rate_per_minute != other.rate_per_minute),
            ("start", self.start != other.start),
            ("end", self.end != other.end),
        ];
        diff.into_iter().filter(|d| d.1).map(|d| d.0)
    }

    /// `self` with each setting that `conf` changed from `before` taken from `conf`: a
    /// configuration read anew changes what its text changed, and leaves what was set at run
    /// time otherwise.
    pub fn merged(&self, before: &Settings, conf: &Settings) -> Settings {
        fn pick<T: PartialEq + Copy>(live: T, before: T, conf: T) -> T {
            if before != conf {
                conf
            } else {
                live
            }
        }
        Settings {
            max_active: pick(self.max_active, before.max_active, conf.max_active),
            mode: pick(self.mode, before.mode, conf.mode),
            model: pick(self.model, before.model, conf.model),
            rate_per_minute: pick(
                self.rate_per_minute,
                before.rate_per_minute,
                conf.rate_per_minute,
            ),
            start: pick(self.start, before.start, conf.start),
            end: pick(self.end, before.end, conf.end),
        }
    }
}

/// A change asked for at run time: the settings named, the others left as they are.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Change {
    pub max_active: Option<u32>,
    pub mode: Option<Mode>,
    pub model: Option<Model>,
    /// `Some(0)`: no limit.
    pub rate_per_minute: Option<u32>,
    /// `Some(0)`: none.
    pub start: Option<u64>,
    pub end: Option<u64>,
    /// Back to what the configuration says, before the other changes apply.
    pub reset: bool,
}

impl Change {
    /// `current` with this change applied; `conf` is what the configuration says.
    pub fn apply(&self, current: &Settings, conf: &Settings) -> Settings {
        let mut s = if self.reset { *conf } else { *current };
        if let Some(v) = self.max_active {
            s.max_active = v;
        }
        if let Some(m) = self.mode {
            s.set_mode(m);
        }
        if let Some(m) = self.model {
            s.set_model(m);
        }
        if let Some(v) = self.rate_per_minute {
            s.rate_per_minute = v;
        }
        if let Some(v) = self.start {
            s.start = v;
        }
        if let Some(v) = self.end {
            s.end = v;
        }
        s
    }
}

/// The control block in the zone's header: the settings in force and what the configuration
/// said, the lottery's draw, the release rate's bucket and the generator behind the draws.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Control {
    pub live: Settings,
    /// The settings of the configuration last adopted.
    pub conf: Settings,
    /// Tickets numbered below this were in the lottery's draw.
    pub draw_mark: u64,
    /// 1 once the draw for the lottery in force was made.
    pub drawn: u32,
    pub _pad: u32,
    /// The state of the generator behind random calls (never 0 once seeded).
    pub rng: u64,
    /// Admissions the rate still allows now, in [`ONE`]s, and when that was counted (monotonic
    /// milliseconds; 0: not yet).
    pub allowance: u64,
    pub allowance_at: u64,
    /// The wall clock (seconds) as last told, for the event's phase.
    pub wall: u64,
    /// Changes made at run time since the zone was made.
    pub changes: u64,
    /// Newcomers turned away (closed, or the event over), and let through without a place
    /// (the room off), since the zone was made.
    pub turned_away: u64,
    pub passed: u64,
}

impl Control {
    /// A number from the generator (splitmix64): good enough to pick among those waiting,
    /// cheap, and the same in every process since its state is in the zone.
    pub fn next_random(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (n > 0), each as likely as the others (to within 2^-40 for any
    /// queue a zone can hold).
    pub fn below(&mut self, n: u64) -> u64 {
        if n <= 1 {
            return 0;
        }
        ((u128::from(self.next_random()) * u128::from(n)) >> 64) as u64
    }

    /// The most admissions in a row the rate allows: a second's worth, at least one (in
    /// [`ONE`]s).
    fn burst(&self) -> u64 {
        u64::from(self.live.rate_per_minute).div_ceil(60).max(1) * ONE
    }

    /// Fills the rate's allowance up to `now`: `rate` admissions a minute is `rate` [`ONE`]s
    /// of 60,000 a millisecond, so nothing is lost to rounding however often it is counted.
    fn refill(&mut self, now: u64) {
        if self.allowance_at == 0 {
            self.allowance = self.burst();
            self.allowance_at = now.max(1);
            return;
        }
        // A clock from another process a moment behind adds nothing.
        let elapsed = now.saturating_sub(self.allowance_at);
        if elapsed == 0 {
            return;
        }
        let gained = elapsed.saturating_mul(u64::from(self.live.rate_per_minute));
        self.allowance = self.allowance.saturating_add(gained).min(self.burst());
        self.allowance_at = now;
    }

    /// Whether the release rate allows an admission now.
    pub fn may_admit(&mut self, now: u64) -> bool {
        if self.live.rate_per_minute == 0 {
            return true;
        }
        self.refill(now);
        self.allowance >= ONE
    }

    /// Counts an admission against the release rate.
    pub fn admitted(&mut self, now: u64) {
        if self.live.rate_per_minute == 0 {
            return;
        }
        self.refill(now);
        self.allowance = self.allowance.saturating_sub(ONE);
    }

    /// Starts the rate's allowance afresh (a new rate).
    pub fn reset_allowance(&mut self) {
        self.allowance = 0;
        self.allowance_at = 0;
    }
}

/// `rate=` text: `Nr/s` or `Nr/m`, as admissions per minute.
pub fn parse_rate(s: &[u8]) -> Option<u32> {
    let (num, per) = if let Some(n) = s.strip_suffix(b"r/s") {
        (n, 60u64)
    } else if let Some(n) = s.strip_suffix(b"r/m") {
        (n, 1u64)
    } else {
        return None;
    };
    if num.is_empty() || num.len() > 9 || !num.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n: u64 = core::str::from_utf8(num).ok()?.parse().ok()?;
    let per_minute = n.checked_mul(per)?;
    (per_minute > 0 && per_minute <= u64::from(RATE_MAX)).then_some(per_minute as u32)
}

/// A rate as it is written, in admissions a minute (`2r/s` is `120r/m`): one unit, whatever
/// the configuration said.
pub fn rate_text(per_minute: u32) -> String {
    format!("{per_minute}r/m")
}

/// An event's time as the configuration and the control location write it: RFC 3339 in UTC,
/// `2026-11-27T09:00:00Z`; seconds since 1970 (never 0).
pub fn parse_time(s: &[u8]) -> Option<u64> {
    let text = core::str::from_utf8(s).ok()?;
    let t = humantime::parse_rfc3339(text).ok()?;
    let secs = t.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs();
    (secs > 0).then_some(secs)
}

/// A time as [`parse_time`] reads it; `none` for 0.
pub fn time_text(secs: u64) -> String {
    if secs == 0 {
        return "none".to_owned();
    }
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
    humantime::format_rfc3339_seconds(t).to_string()
}

/// A change as a JSON object names it, every value checked; the first problem found is the
/// answer.
pub fn parse_change(body: &[u8]) -> Result<Change, String> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
    let obj = v.as_object().ok_or("the body must be a JSON object")?;
    if obj.is_empty() {
        return Err("the body names no setting to change".into());
    }
    let mut c = Change::default();
    for (key, val) in obj {
        let bad = || {
            let want = match key.as_str() {
                "max_active" => "a number from 1",
                "mode" => "\"normal\", \"queue\", \"reject\" or \"pass\"",
                "model" => "\"fifo\", \"random\" or \"lottery\"",
                "rate" => "like \"60r/m\" or \"2r/s\", or null for none",
                "start" | "end" => "a time in UTC like \"2026-11-27T09:00:00Z\", or null for none",
                _ => "true or false",
            };
            Err(format!("invalid {key} value {val}, it must be {want}"))
        };
        let text = val.as_str().map(str::as_bytes);
        match key.as_str() {
            "max_active" => match val.as_u64() {
                Some(n) if (1..=u64::from(u32::MAX)).contains(&n) => c.max_active = Some(n as u32),
                _ => return bad(),
            },
            "mode" => match text.and_then(Mode::parse) {
                Some(m) => c.mode = Some(m),
                None => return bad(),
            },
            "model" => match text.and_then(Model::parse) {
                Some(m) => c.model = Some(m),
                None => return bad(),
            },
            "rate" if val.is_null() || text == Some(b"off") || text == Some(b"none") => {
                c.rate_per_minute = Some(0)
            }
            "rate" => match text.and_then(parse_rate) {
                Some(n) => c.rate_per_minute = Some(n),
                None => return bad(),
            },
            "start" | "end" => {
                let t = if val.is_null() {
                    0
                } else {
                    match text.and_then(parse_time) {
                        Some(t) => t,
                        None => return bad(),
                    }
                };
                if key == "start" {
                    c.start = Some(t);
                } else {
                    c.end = Some(t);
                }
            }
            "reset" => match val.as_bool() {
                Some(b) => c.reset = b,
                None => return bad(),
            },
            _ => return Err(format!("unknown setting \"{key}\"")),
        }
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_utc_rfc3339() {
        let t = parse_time(b"2026-11-27T09:00:00Z");
        assert_eq!(t, Some(1_795_770_000));
        assert_eq!(time_text(1_795_770_000), "2026-11-27T09:00:00Z");
        assert_eq!(parse_time(b"2026-11-27T09:00:00+00:00"), t);
        assert_eq!(parse_time(b"2026-11-27 09:00"), None);
        assert_eq!(parse_time(b"2026-11-27T09:00:00+01:00"), None);
        assert_eq!(parse_time(b"tomorrow"), None);
        assert_eq!(time_text(0), "none");
    }

    #[test]
    fn rates_read_like_limit_req() {
        assert_eq!(parse_rate(b"60r/m"), Some(60));
        assert_eq!(parse_rate(b"2r/s"), Some(120));
        assert_eq!(parse_rate(b"0r/s"), None);
        assert_eq!(parse_rate(b"r/s"), None);
        assert_eq!(parse_rate(b"10"), None);
        assert_eq!(parse_rate(b"-1r/m"), None);
        assert_eq!(parse_rate(b"999999999r/s"), None);
        assert_eq!(rate_text(120), "120r/m");
        assert_eq!(rate_text(90), "90r/m");
    }

    #[test]
    fn a_reload_changes_what_the_configuration_changed() {
        let before = Settings::new(20);
        let mut live = before;
        live.max_active = 50;
        live.set_mode(Mode::Queue);
        // The configuration read anew says the same: the run-time changes stay.
        assert_eq!(live.merged(&before, &before), live);
        // It now says another rate: that applies, the rest stays as set at run time.
        let mut conf = before;
        conf.rate_per_minute = 30;
        let m = live.merged(&before, &conf);
        assert_eq!((m.max_active, m.mode(), m.rate_per_minute), (50, Mode::Queue, 30));
        // It now says another max_active: the configuration's wins.
        conf.max_active = 10;
        assert_eq!(live.merged(&before, &conf).max_active, 10);
    }

    #[test]
    fn phases_follow_the_wall_clock() {
        let mut s = Settings::new(1);
        assert_eq!(s.phase(5), Phase::Open);
        s.start = 100;
        s.end = 200;
        assert_eq!(s.phase(99), Phase::Before);
        assert_eq!(s.phase(100), Phase::Open);
        assert_eq!(s.phase(200), Phase::Over);
        assert_eq!(s.check(10), Ok(()));
        s.end = 100;
        assert_eq!(s.check(10), Err(SettingsError::EndBeforeStart));
        s.end = 0;
        s.max_active = 11;
        assert_eq!(s.check(10), Err(SettingsError::MaxActive { capacity: 10 }));
    }

    #[test]
    fn the_rate_allows_a_second_s_worth_then_its_pace() {
        for (rate, step, want) in [(120, 10, 2 + 121), (1, 8, 1 + 1), (7, 3, 1 + 7)] {
            let mut c = Control::default();
            c.live.rate_per_minute = rate;
            let mut admitted = 0;
            for ms in (1_000..62_000).step_by(step) {
                while c.may_admit(ms) {
                    c.admitted(ms);
                    admitted += 1;
                }
            }
            // A second's worth at once, then the pace for 61 s less a moment.
            assert_eq!(admitted, want, "{rate}r/m counted every {step} ms");
        }
        let mut c = Control::default();
        assert!(c.may_admit(5), "no rate, no limit");
    }

    #[test]
    fn draws_are_even() {
        let mut c = Control { rng: 42, ..Control::default() };
        let mut seen = [0u32; 7];
        for _ in 0..70_000 {
            seen[c.below(7) as usize] += 1;
        }
        for n in seen {
            assert!((9_500..10_500).contains(&n), "{seen:?}");
        }
        assert_eq!(c.below(1), 0);
    }

    #[test]
    fn changes_are_checked_whole() {
        let c = parse_change(br#"{"max_active": 50, "mode": "queue", "rate": "2r/s"}"#);
        let c = c.unwrap_or_default();
        assert_eq!(
            (c.max_active, c.mode, c.rate_per_minute),
            (Some(50), Some(Mode::Queue), Some(120))
        );
        let c = parse_change(br#"{"rate": null, "start": null, "end": "2026-11-27T10:00:00Z"}"#);
        let c = c.unwrap_or_default();
        assert_eq!((c.rate_per_minute, c.start, c.end), (Some(0), Some(0), Some(1_795_773_600)));
        for bad in [
            &b"not json"[..],
            b"[]",
            b"{}",
            br#"{"max_active": 0}"#,
            br#"{"max_active": -3}"#,
            br#"{"max_active": "7"}"#,
            br#"{"mode": "closed"}"#,
            br#"{"model": "FIFO"}"#,
            br#"{"rate": "fast"}"#,
            br#"{"start": "tomorrow"}"#,
            br#"{"reset": 1}"#,
            br#"{"colour": "red"}"#,
        ] {
            assert!(parse_change(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }
}
