//! Time to live: EXPIRE, PEXPIRE, EXPIREAT, PEXPIREAT, TTL, PTTL, EXPIRETIME, PEXPIRETIME,
//! PERSIST, SETEX, PSETEX, GETEX, and the parsing `SET … EX|PX|EXAT|PXAT` shares with them.
//!
//! A key's deadline is part of its lattice state (see [`crate::redis::value`]'s expiry
//! module): replicas that have seen the same writes agree on it, an expired key reads as
//! absent to every command, and the actor holding it deletes it once the deadline passes.
//! Conditions (`NX`, `XX`, `GT`, `LT`) are judged by the owning actor, as for `SET NX`.

use bytes::Bytes;

use crate::message::{RequestError, Response};
use crate::redis::plan::{Context, Plan, applied, apply, apply_one, owned, parse_i64};
use crate::redis::resp::Reply;
use crate::redis::session::Session;
use crate::redis::value::{Condition, ExpireWhen, RedisOp, RedisOpOutput, Ttl, now_us, ttl_reply};
use crate::value::OpError;

/// The clock in milliseconds, as Redis reads it for a command.
fn now_ms() -> i64 {
    (now_us() / 1000) as i64
}

/// `ERR invalid expire time in '<command>' command`.
fn invalid_expire_time(command: &str) -> Reply {
    Reply::Error(format!("ERR invalid expire time in '{command}' command"))
}

/// A deadline option of `SET`, `SETEX`, `GETEX` (`EX`, `PX`, `EXAT`, `PXAT`): how its number
/// reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// `EX`: seconds from now.
    Seconds,
    /// `PX`: milliseconds from now.
    Millis,
    /// `EXAT`: a Unix time in seconds.
    SecondsAt,
    /// `PXAT`: a Unix time in milliseconds.
    MillisAt,
}

impl Unit {
    /// The option's unit, if `word` (upper-case) names one.
    pub fn of(word: &[u8]) -> Option<Self> {
        match word {
            b"EX" => Some(Self::Seconds),
            b"PX" => Some(Self::Millis),
            b"EXAT" => Some(Self::SecondsAt),
            b"PXAT" => Some(Self::MillisAt),
            _ => None,
        }
    }

    /// The deadline (ms since the Unix epoch) `arg` names, with Redis's checks: an integer
    /// (else `ERR value is not an integer…`), above zero, and no overflow (else `ERR invalid
    /// expire time in '<command>' command`).
    ///
    /// # Errors
    /// The reply to send instead.
    pub fn deadline(self, arg: &[u8], command: &str) -> Result<i64, Reply> {
        let value = parse_i64(arg).ok_or_else(crate::redis::plan::not_an_integer)?;
        let seconds = matches!(self, Self::Seconds | Self::SecondsAt);
        if value <= 0 || (seconds && value > i64::MAX / 1000) {
            return Err(invalid_expire_time(command));
        }
        let millis = if seconds { value * 1000 } else { value };
        let at = match self {
            Self::Seconds | Self::Millis => millis.checked_add(now_ms()),
            Self::SecondsAt | Self::MillisAt => Some(millis),
        };
        at.filter(|&at| at > 0).ok_or_else(|| invalid_expire_time(command))
    }
}

/// `EXPIRE key seconds [NX|XX|GT|LT]`.
pub fn plan_expire(_: &mut Session, cx: &Context<'_>, args: &[Bytes]) -> Plan {
    expire(cx, args, "expire", true, false)
}

/// `PEXPIRE key milliseconds [NX|XX|GT|LT]`.
pub fn plan_pexpire(_: &mut Session, cx: &Context<'_>, args: &[Bytes]) -> Plan {
    expire(cx, args, "pexpire", false, false)
}

/// `EXPIREAT key unix-seconds [NX|XX|GT|LT]`.
pub fn plan_expireat(_: &mut Session, cx: &Context<'_>, args: &[Bytes]) -> Plan {
    expire(cx, args, "expireat", true, true)
}

/// `PEXPIREAT key unix-milliseconds [NX|XX|GT|LT]`.
pub fn plan_pexpireat(_: &mut Session, cx: &Context<'_>, args: &[Bytes]) -> Plan {
    expire(cx, args, "pexpireat", false, true)
}

/// The `EXPIRE` family, checked in Redis's order: options, then the number, then overflow.
fn expire(cx: &Context<'_>, args: &[Bytes], command: &str, seconds: bool, absolute: bool) -> Plan {
    let key = &args[0];
    if let Err(reply) = cx.check_sizes(key, None) {
        return Plan::Now(reply);
    }
    let (mut nx, mut xx, mut gt, mut lt) = (false, false, false, false);
    for option in &args[2..] {
        match &option.to_ascii_uppercase()[..] {
            b"NX" => nx = true,
            b"XX" => xx = true,
            b"GT" => gt = true,
            b"LT" => lt = true,
            _ => {
                return Plan::Now(Reply::Error(format!(
                    "ERR Unsupported option {}",
                    String::from_utf8_lossy(option)
                )));
            }
        }
    }
    if nx && (xx || gt || lt) {
        return Plan::Now(Reply::Error(
            "ERR NX and XX, GT or LT options at the same time are not compatible".into(),
        ));
    }
    if gt && lt {
        return Plan::Now(Reply::Error(
            "ERR GT and LT options at the same time are not compatible".into(),
        ));
    }
    let Some(mut at) = parse_i64(&args[1]) else {
        return Plan::Now(crate::redis::plan::not_an_integer());
    };
    if seconds {
        match at.checked_mul(1000) {
            Some(millis) => at = millis,
            None => return Plan::Now(invalid_expire_time(command)),
        }
    }
    if !absolute {
        match at.checked_add(now_ms()) {
            Some(deadline) => at = deadline,
            None => return Plan::Now(invalid_expire_time(command)),
        }
    }
    let when = ExpireWhen { nx, xx, gt, lt };
    apply_one(key, RedisOp::Expire { at, when })
}

/// `TTL key`: seconds left (rounded), `-1` without a deadline, `-2` for a missing key.
pub fn plan_ttl(_: &mut Session, cx: &Context<'_>, args: &[Bytes]) -> Plan {
    deadline(cx, &args[0], |answer, _| ttl_answer(answer, false, false))
}

/// `PTTL key`: milliseconds left.
pub fn plan_pttl(_: &mut Session, cx: &Context<'_>, args: &[Bytes]) -> Plan {
    deadline(cx, &args[0], |answer, _| ttl_answer(answer, false, true))
}

/// `EXPIRETIME key`: the deadline as a Unix time in seconds.
pub fn plan_expiretime(_: &mut Session, cx: &Context<'_>, args: &[Bytes]) -> Plan {
    deadline(cx, &args[0], |answer, _| ttl_answer(answer, true, false))
}

/// `PEXPIRETIME key`: the deadline as a Unix time in milliseconds.
pub fn plan_pexpiretime(_: &mut Session, cx: &Context<'_>, args: &[Bytes]) -> Plan {
    deadline(cx, &args[0], |answer, _| ttl_answer(answer, true, true))
}

fn deadline(cx: &Context<'_>, key: &Bytes, finish: crate::redis::plan::FinishOne) -> Plan {
    if let Err(reply) = cx.check_sizes(key, None) {
        return Plan::Now(reply);
    }
    Plan::Single(Some(apply(key, RedisOp::Deadline)), finish)
}

fn ttl_answer(
    answer: Result<Response<crate::redis::value::RedisValue>, RequestError>,
    absolute: bool,
    millis: bool,
) -> Reply {
    match answer {
        Ok(Response::Applied(RedisOpOutput::Int(deadline))) => {
            Reply::Int(ttl_reply(deadline, now_ms(), absolute, millis))
        }
        other => applied(other),
    }
}

/// `PERSIST key`: 1 if it dropped a deadline.
pub fn plan_persist(_: &mut Session, cx: &Context<'_>, args: &[Bytes]) -> Plan {
    if let Err(reply) = cx.check_sizes(&args[0], None) {
        return Plan::Now(reply);
    }
    apply_one(&args[0], RedisOp::Persist)
}

/// `SETEX key seconds value`.
pub fn plan_setex(_: &mut Session, cx: &Context<'_>, args: &[Bytes]) -> Plan {
    set_with_ttl(cx, args, Unit::Seconds, "setex")
}

/// `PSETEX key milliseconds value`.
pub fn plan_psetex(_: &mut Session, cx: &Context<'_>, args: &[Bytes]) -> Plan {
    set_with_ttl(cx, args, Unit::Millis, "psetex")
}

fn set_with_ttl(cx: &Context<'_>, args: &[Bytes], unit: Unit, command: &str) -> Plan {
    let (key, value) = (&args[0], &args[2]);
    if let Err(reply) = cx.check_sizes(key, Some(value)) {
        return Plan::Now(reply);
    }
    match unit.deadline(&args[1], command) {
        Ok(at) => apply_one(
            key,
            RedisOp::SetIf {
                value: owned(value),
                when: Condition::Always,
                get: false,
                ttl: Ttl::At(at),
            },
        ),
        Err(reply) => Plan::Now(reply),
    }
}

/// `GETEX key [EX seconds | PX ms | EXAT unix-seconds | PXAT unix-ms | PERSIST]`. As in
/// Redis, a missing key answers nil and a set `WRONGTYPE` before the number is checked, so
/// the number's error travels with the request and the owning actor answers it.
pub fn plan_getex(_: &mut Session, cx: &Context<'_>, args: &[Bytes]) -> Plan {
    let key = &args[0];
    if let Err(reply) = cx.check_sizes(key, None) {
        return Plan::Now(reply);
    }
    // The last of repeated options of one kind wins; two kinds are a syntax error.
    let mut ttl: Option<(Option<Unit>, Bytes)> = None;
    let mut words = args[1..].iter();
    while let Some(word) = words.next() {
        let upper = word.to_ascii_uppercase();
        let unit = Unit::of(&upper);
        let persist = &upper[..] == b"PERSIST";
        let same_kind = ttl.as_ref().is_none_or(|(kind, _)| *kind == unit);
        match (unit, persist) {
            (Some(_), _) if same_kind => {
                let Some(number) = words.next() else {
                    return Plan::Now(Reply::Error("ERR syntax error".into()));
                };
                ttl = Some((unit, number.clone()));
            }
            (None, true) if same_kind => ttl = Some((None, Bytes::new())),
            _ => return Plan::Now(Reply::Error("ERR syntax error".into())),
        }
    }
    let ttl = match ttl {
        None => Ok(None),
        Some((None, _)) => Ok(Some(Ttl::Clear)),
        Some((Some(unit), number)) => match unit.deadline(&number, "getex") {
            Ok(at) => Ok(Some(Ttl::At(at))),
            Err(Reply::Error(text)) if text.starts_with("ERR invalid expire time") => {
                Err(OpError::Other("invalid expire time in 'getex' command".into()))
            }
            Err(_) => Err(OpError::NotAnInteger),
        },
    };
    apply_one(key, RedisOp::GetEx(ttl))
}
