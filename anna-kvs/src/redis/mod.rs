//! The Redis-protocol front end: RESP parsing and encoding ([`resp`]), the value a Redis key
//! holds ([`value`]), and the server ([`server`]).

pub mod resp;
pub mod server;
pub mod value;

pub use server::{RunningServer, Server, ServerConfig, ServerError};
pub use value::{Kind, RedisOp, RedisOpOutput, RedisValue};
