//! The Redis-protocol front end, laid out the way a command flows through it:
//!
//! | file | step |
//! |---|---|
//! | [`config`] | [`RedisConfig`], and the [`Settings`](config::Settings) planners read |
//! | [`front_end`] | the port: the listener, one service per actor |
//! | [`connection`] | socket I/O on the actor's thread: read, parse, flush, limits |
//! | [`resp`] | RESP2/RESP3 bytes ⇄ commands and replies, no I/O |
//! | [`session`] | what a connection remembers: auth, RESP version, name |
//! | [`table`] | **the command table**: name, arity, flags, keys, planner — dispatch reads it |
//! | [`commands`] | data commands by type (`strings`, `sets`, `keyspace`) turned into plans |
//! | [`admin`] | connection and server commands (AUTH, HELLO, CLIENT, CONFIG, INFO, …) |
//! | [`durability`] | SAVE, BGSAVE, LASTSAVE, WAIT: snapshots and replication acknowledgements |
//! | [`plan`] | what a planner returns and reads; the one engine-error → Redis-text mapping |
//! | [`crate::tls`] | TLS on the Redis port: Redis's settings turned into a rustls configuration (shared with the native port) |
//! | [`value`] | what a key holds ([`RedisValue`]), short strings inline ([`inline_bytes`]) |
//!
//! A `SET` goes: [`connection`] reads and parses it → [`table::dispatch`] finds its row and
//! checks auth and arity → [`commands::strings::plan_set`] returns a plan holding one engine
//! request → the actor applies it (or sends it to the owning actor) → the plan's finish turns
//! the answer into `+OK` → [`connection`] writes it. Adding a command is one row in
//! [`table::TABLE`] plus its planner.

pub mod admin;
pub mod clients;
pub mod commands;
pub mod config;
pub mod connection;
pub mod durability;
pub mod front_end;
pub mod inline_bytes;
pub mod introspect;
pub mod long_double;
pub mod plan;
pub mod resp;
pub mod session;
pub mod table;
pub mod value;

pub use config::RedisConfig;
pub use front_end::RedisFrontEnd;
pub use value::{Kind, RedisOp, RedisOpOutput, RedisValue};
