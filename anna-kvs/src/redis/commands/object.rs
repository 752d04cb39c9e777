//! `OBJECT`: what Redis would say of a key's representation, computed from the key's value.
//!
//! Redis's encodings depend on a value's history (an `APPEND`ed string stays `raw` however
//! short, a set that once held a word stays `hashtable`); this store keeps lattice states,
//! not Redis's objects, so `ENCODING` answers the encoding Redis gives a value *written now*:
//! a string that reads as a 64-bit integer is `int`, up to 44 bytes `embstr`, else `raw`; a
//! counter is `int`; a set of at most 512 integers is `intset`, else `hashtable`.

use bytes::Bytes;

use crate::redis::plan::{Context, Plan, engine, get, key_in_db, read_value};
use crate::redis::resp::Reply;
use crate::redis::session::Session;
use crate::redis::value::{Kind, RedisValue, parse_integer};

/// Redis's `set-max-intset-entries` default.
const MAX_INTSET_ENTRIES: usize = 512;
/// The longest string Redis stores `embstr` (`OBJ_ENCODING_EMBSTR_SIZE_LIMIT`).
const MAX_EMBSTR: usize = 44;
/// Redis shares the integers below this (`OBJ_SHARED_INTEGERS`); their refcount reads as
/// `INT_MAX`.
const SHARED_INTEGERS: i64 = 10_000;

/// What one `OBJECT` subcommand asks of a key.
#[derive(Clone, Copy, Debug)]
enum Question {
    Encoding,
    RefCount,
    IdleTime,
    /// Refused for a key that exists (Redis looks the key up first).
    Freq,
}

/// `OBJECT ENCODING|REFCOUNT|IDLETIME|FREQ key`, `OBJECT HELP`.
pub fn plan_object(session: &mut Session, _: &Context<'_>, args: &[Bytes]) -> Plan {
    let sub = String::from_utf8_lossy(&args[0]).to_ascii_lowercase();
    let question = match sub.as_str() {
        "help" if args.len() == 1 => return Plan::Now(help()),
        "encoding" => Question::Encoding,
        "refcount" => Question::RefCount,
        "idletime" => Question::IdleTime,
        "freq" => Question::Freq,
        "help" => return Plan::Now(wrong_arity(&sub)),
        _ => {
            return Plan::Now(Reply::Error(format!(
                "ERR unknown subcommand '{}'. Try OBJECT HELP.",
                String::from_utf8_lossy(&args[0])
            )));
        }
    };
    if args.len() != 2 {
        return Plan::Now(wrong_arity(&sub));
    }
    let key = match key_in_db(session.db, &args[1]) {
        Ok(key) => key,
        Err(reply) => return Plan::Now(reply),
    };
    engine(vec![get(&key)], move |mut answers, _| match read_value(answers.remove(0)) {
        Ok(Some(value)) => answer(question, &value),
        Ok(None) => Reply::Nil,
        Err(reply) => reply,
    })
}

fn wrong_arity(sub: &str) -> Reply {
    Reply::Error(format!("ERR wrong number of arguments for 'object|{sub}' command"))
}

/// The answer about a stored value (nil if it reads as absent).
fn answer(question: Question, value: &RedisValue) -> Reply {
    let Some(kind) = value.kind() else { return Reply::Nil };
    match question {
        Question::Encoding => Reply::text(encoding(kind, value)),
        Question::RefCount => {
            let shared = match kind {
                Kind::Counter | Kind::String => value
                    .get_string()
                    .ok()
                    .flatten()
                    .and_then(|s| as_integer(&s))
                    .is_some_and(|n| (0..SHARED_INTEGERS).contains(&n)),
                Kind::Set => false,
            };
            Reply::Int(if shared { i64::from(i32::MAX) } else { 1 })
        }
        Question::Freq => Reply::Error(
            "ERR An LFU maxmemory policy is not selected, access frequency not tracked. Please note that when switching between policies at runtime LRU and LFU data will take some time to adjust.".into(),
        ),
        Question::IdleTime => {
            let now = crate::redis::value::now_us();
            let written = value.written_at().unwrap_or(now);
            Reply::Int(i64::try_from(now.saturating_sub(written) / 1_000_000).unwrap_or(i64::MAX))
        }
    }
}

/// A string Redis would store as an integer: at most 20 bytes reading as an `i64`.
fn as_integer(bytes: &[u8]) -> Option<i64> {
    if bytes.len() <= 20 { parse_integer(bytes) } else { None }
}

/// The encoding Redis gives this value written now.
fn encoding(kind: Kind, value: &RedisValue) -> &'static str {
    match kind {
        Kind::Counter => "int",
        Kind::String => {
            let string = value.get_string().ok().flatten().unwrap_or_default();
            if as_integer(&string).is_some() {
                "int"
            } else if string.len() <= MAX_EMBSTR {
                "embstr"
            } else {
                "raw"
            }
        }
        Kind::Set => {
            let members = value.members().unwrap_or_default();
            if members.len() <= MAX_INTSET_ENTRIES
                && members.iter().all(|m| parse_integer(m).is_some())
            {
                "intset"
            } else {
                "hashtable"
            }
        }
    }
}

fn help() -> Reply {
    let lines = [
        "OBJECT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
        "ENCODING <key>",
        "    How Redis would represent the key's value if it were written now.",
        "FREQ <key>",
        "    Refused: access frequencies are kept only under an LFU policy, which this server",
        "    does not offer.",
        "IDLETIME <key>",
        "    Seconds since the write that gave the key its value, on this replica (reads are",
        "    not tracked).",
        "REFCOUNT <key>",
        "    As Redis answers it: 2147483647 for a shared small integer, else 1.",
        "HELP",
        "    Prints this help.",
    ];
    Reply::Array(lines.iter().map(|l| Reply::Simple((*l).into())).collect())
}
