//! Set commands: SADD, SREM, SMEMBERS, SCARD, SISMEMBER.
//!
//! A set is an add-wins observed-remove set: an `SADD` concurrent with an `SREM` of the same
//! member on another replica survives it once the replicas have gossiped.

use bytes::Bytes;

use crate::redis::plan::{
    Context, Plan, apply_one, engine, get, op_error_reply, owned, read_value,
};
use crate::redis::resp::Reply;
use crate::redis::session::Session;
use crate::redis::value::RedisOp;

/// `SADD key member [member ...]`.
pub fn plan_sadd(_: &mut Session, cx: &Context<'_>, args: &[Bytes]) -> Plan {
    if let Some(reply) = args[1..].iter().find_map(|m| cx.check_sizes(&args[0], Some(m)).err()) {
        return Plan::Now(reply);
    }
    apply_one(&args[0], RedisOp::SAdd(args[1..].iter().map(owned).collect()))
}

/// `SREM key member [member ...]`.
pub fn plan_srem(_: &mut Session, cx: &Context<'_>, args: &[Bytes]) -> Plan {
    if let Some(reply) = args[1..].iter().find_map(|m| cx.check_sizes(&args[0], Some(m)).err()) {
        return Plan::Now(reply);
    }
    apply_one(&args[0], RedisOp::SRem(args[1..].to_vec()))
}

/// `SMEMBERS key`.
pub fn plan_smembers(_: &mut Session, _: &Context<'_>, args: &[Bytes]) -> Plan {
    members(&args[0], |members| Reply::Set(members.into_iter().map(Reply::Bulk).collect()))
}

/// `SCARD key`: counted where the set is stored, without copying it.
pub fn plan_scard(_: &mut Session, _: &Context<'_>, args: &[Bytes]) -> Plan {
    apply_one(&args[0], RedisOp::SCard)
}

/// `SISMEMBER key member`: looked up where the set is stored, without copying it.
pub fn plan_sismember(_: &mut Session, _: &Context<'_>, args: &[Bytes]) -> Plan {
    apply_one(&args[0], RedisOp::SIsMember(owned(&args[1])))
}

/// Reads the set at `key` (empty if absent) and answers with `reply`.
fn members(key: &Bytes, reply: impl FnOnce(Vec<Bytes>) -> Reply + Send + 'static) -> Plan {
    engine(vec![get(key)], move |mut answers, _| match read_value(answers.remove(0)) {
        Ok(value) => match value.map_or(Ok(Vec::new()), |v| v.members()) {
            Ok(members) => reply(members),
            Err(wrong) => op_error_reply(&wrong),
        },
        Err(reply) => reply,
    })
}
