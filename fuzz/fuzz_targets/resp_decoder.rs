//! The RESP command decoder on arbitrary bytes: it must never panic, never loop, and never
//! return more than it was given. Each input is also fed in two pieces, as a socket may split it.
#![no_main]

use anna_kvs::redis::resp::{Limits, ParseError, parse_command};
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;

fn drain(input: &[u8], limits: &Limits) -> usize {
    let mut buf = BytesMut::from(input);
    let mut commands = 0;
    loop {
        let before = buf.len();
        match parse_command(&mut buf, limits) {
            Ok(args) => {
                let total: usize = args.iter().map(|a| a.len()).sum();
                assert!(total <= input.len());
                assert!(args.len() <= limits.max_args);
                assert!(buf.len() < before, "a parsed command must consume input");
                commands += 1;
            }
            Err(ParseError::Incomplete) => {
                assert_eq!(buf.len(), before, "incomplete input must be left in the buffer");
                return commands;
            }
            Err(ParseError::Protocol(_)) => return commands,
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let big = Limits { max_args: 1024, max_bulk: 1 << 20, max_inline: 1 << 16 };
    drain(data, &big);
    drain(data, &Limits::UNAUTHENTICATED);
    // Split delivery: whatever parses from a prefix must parse the same from the whole.
    if data.len() > 1 {
        let cut = data[0] as usize % data.len();
        let mut buf = BytesMut::from(&data[..cut]);
        let mut first = Vec::new();
        while let Ok(args) = parse_command(&mut buf, &big) {
            first.push(args);
        }
        let mut whole = BytesMut::from(data);
        for expected in first {
            if let Ok(args) = parse_command(&mut whole, &big) {
                assert_eq!(args, expected);
            }
        }
    }
});
