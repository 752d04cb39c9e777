//! Set commands: SADD, SREM, SMEMBERS, SCARD, SISMEMBER.
//!
//! A set is an add-wins observed-remove set: an `SADD` concurrent with an `SREM` of the same
//! member on another replica survives it once the replicas have gossiped.

use bytes::Bytes;

use crate::message::Response;
use crate::redis::plan::{Context, Plan, applied, apply, apply_one, owned};
use crate::redis::resp::{Elements, Reply};
use crate::redis::session::Session;
use crate::redis::value::{RedisOp, RedisOpOutput};

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

/// `SMEMBERS key`: encoded where the set is stored, into one buffer the reply goes out from
/// (the set is not copied; the owning actor spends about 25 ns a member on it).
pub fn plan_smembers(_: &mut Session, _: &Context<'_>, args: &[Bytes]) -> Plan {
    Plan::Single(Some(apply(&args[0], RedisOp::Members)), |answer, _| match answer {
        Ok(Response::Applied(RedisOpOutput::Elements { count, body })) => {
            Reply::Elements(Box::new(Elements { count, body, set: true }))
        }
        other => applied(other),
    })
}

/// `SCARD key`: counted where the set is stored, without copying it.
pub fn plan_scard(_: &mut Session, _: &Context<'_>, args: &[Bytes]) -> Plan {
    apply_one(&args[0], RedisOp::SCard)
}

/// `SISMEMBER key member`: looked up where the set is stored, without copying it.
pub fn plan_sismember(_: &mut Session, _: &Context<'_>, args: &[Bytes]) -> Plan {
    apply_one(&args[0], RedisOp::SIsMember(owned(&args[1])))
}
