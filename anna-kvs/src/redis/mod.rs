//! The Redis-protocol front end: RESP parsing and encoding ([`resp`]), the value a Redis key
//! holds ([`value`], with short strings kept inline: [`inline_bytes`]), and the server
//! ([`server`]).

pub mod inline_bytes;
pub mod resp;
pub mod server;
pub mod value;

pub use server::{RunningServer, Server, ServerConfig, ServerError};
pub use value::{Kind, RedisOp, RedisOpOutput, RedisValue};
