//! Commands on keys of any type: DEL, UNLINK, EXISTS, TYPE.
//!
//! A `DEL` is a write like any other: a tombstone stamped by the actor, observed-remove for
//! counters and sets, so writes concurrent with it on other replicas survive it.

use bytes::Bytes;

use crate::message::{Request, Response};
use crate::redis::plan::{Context, Plan, engine, get, read_value};
use crate::redis::resp::Reply;
use crate::redis::session::Session;
use crate::redis::value::Kind;
use crate::value::KvsValue;

/// `DEL key [key ...]` (and `UNLINK`, the same here: memory is reclaimed after gossip anyway):
/// how many of the keys existed.
pub fn plan_del(_: &mut Session, _: &Context<'_>, args: &[Bytes]) -> Plan {
    let mut requests = Vec::with_capacity(args.len() * 2);
    for key in args {
        requests.push(get(key));
        requests.push(Request::Delete { key: key.clone() });
    }
    engine(requests, |answers, _| {
        let mut existed = 0;
        for pair in answers.chunks(2) {
            if let [Ok(Response::Value(Some(v))), _] = pair
                && !v.is_deleted()
            {
                existed += 1;
            }
        }
        Reply::Int(existed)
    })
}

/// `EXISTS key [key ...]`: how many of the keys exist (a key named twice counts twice).
pub fn plan_exists(_: &mut Session, _: &Context<'_>, args: &[Bytes]) -> Plan {
    engine(args.iter().map(get).collect(), |answers, _| {
        Reply::Int(
            answers.into_iter().filter(|a| matches!(a, Ok(Response::Value(Some(_))))).count()
                as i64,
        )
    })
}

/// `TYPE key`: `string` (strings and counters), `set` or `none`.
pub fn plan_type(_: &mut Session, _: &Context<'_>, args: &[Bytes]) -> Plan {
    engine(vec![get(&args[0])], |mut answers, _| match read_value(answers.remove(0)) {
        Ok(value) => Reply::Simple(
            match value.and_then(|v| v.kind()) {
                Some(Kind::Set) => "set",
                Some(Kind::String | Kind::Counter) => "string",
                None => "none",
            }
            .into(),
        ),
        Err(reply) => reply,
    })
}
