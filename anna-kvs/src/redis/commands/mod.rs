//! The data commands, one file per Redis type, each a set of planners (see
//! [`super::table`] for how a command name reaches its planner).
//!
//! A planner is `fn(&mut Session, &Context, args) -> Plan`: `args` are the arguments after the
//! command name, already checked against the table's arity, and the plan is either a reply
//! now or engine requests plus how to turn their answers into a reply.

pub mod expiry;
pub mod keyspace;
pub mod lcs;
pub mod moves;
pub mod object;
pub mod sets;
pub mod strings;
