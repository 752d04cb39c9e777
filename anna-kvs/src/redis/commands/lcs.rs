//! `LCS key1 key2 [LEN] [IDX] [MINMATCHLEN len] [WITHMATCHLEN]`: the longest common
//! subsequence of two strings, as Redis 7 answers it.
//!
//! Both values are read in one round; the answer is computed where the reply is built, with
//! the classic table of prefix lengths. That table is bounded: two strings whose table would
//! pass [`MAX_TABLE_BYTES`] are refused rather than stall the actor serving the client.

use bytes::Bytes;

use crate::redis::plan::{Context, Plan, engine, get, not_an_integer, parse_i64, read_value};
use crate::redis::resp::Reply;
use crate::redis::session::Session;
use crate::redis::value::Kind;

/// The most working memory one `LCS` may use (4 bytes per cell of its table).
pub const MAX_TABLE_BYTES: u64 = 64 << 20;

/// What `LCS` answers.
#[derive(Clone, Copy, Debug)]
struct Want {
    len: bool,
    idx: bool,
    min_match: usize,
    with_match_len: bool,
}

/// `LCS key1 key2 [LEN] [IDX] [MINMATCHLEN len] [WITHMATCHLEN]`.
pub fn plan_lcs(_: &mut Session, cx: &Context<'_>, args: &[Bytes]) -> Plan {
    if let Err(reply) = cx.check_keys(&args[..2]) {
        return Plan::Now(reply);
    }
    // Redis checks the keys' types first, then the options: an option's error waits for
    // the values.
    let want = options(&args[2..]);
    engine(vec![get(&args[0]), get(&args[1])], move |mut answers, _| {
        let mut strings = Vec::with_capacity(2);
        for answer in answers.drain(..) {
            let value = match read_value(answer) {
                Ok(value) => value,
                Err(reply) => return reply,
            };
            let string = match value.as_ref().and_then(|v| v.kind()) {
                None => Bytes::new(),
                Some(Kind::Set) => {
                    return Reply::Error(
                        "ERR The specified keys must contain string values".into(),
                    );
                }
                Some(_) => value.and_then(|v| v.get_string().ok().flatten()).unwrap_or_default(),
            };
            strings.push(string);
        }
        match want {
            Ok(want) => lcs(&strings[0], &strings[1], want),
            Err(reply) => reply,
        }
    })
}

/// `LCS`'s options, or the error Redis answers for them.
fn options(args: &[Bytes]) -> Result<Want, Reply> {
    let mut want = Want { len: false, idx: false, min_match: 0, with_match_len: false };
    let mut i = 0;
    while i < args.len() {
        match args[i].to_ascii_lowercase().as_slice() {
            b"len" => want.len = true,
            b"idx" => want.idx = true,
            b"withmatchlen" => want.with_match_len = true,
            b"minmatchlen" if i + 1 < args.len() => {
                let n = parse_i64(&args[i + 1]).ok_or_else(not_an_integer)?;
                want.min_match = usize::try_from(n.max(0)).unwrap_or(usize::MAX);
                i += 1;
            }
            _ => return Err(Reply::Error("ERR syntax error".into())),
        }
        i += 1;
    }
    if want.len && want.idx {
        return Err(Reply::Error(
            "ERR If you want both the length and indexes, please just use IDX.".into(),
        ));
    }
    Ok(want)
}

/// The answer for strings `a` and `b`.
fn lcs(a: &[u8], b: &[u8], want: Want) -> Reply {
    let cells = (a.len() as u64 + 1).saturating_mul(b.len() as u64 + 1);
    if cells.saturating_mul(4) > MAX_TABLE_BYTES {
        return Reply::Error(format!(
            "ERR LCS of strings of {} and {} bytes would need more than {} MiB of working memory; anna-server refuses it so as not to stall the other clients",
            a.len(),
            b.len(),
            MAX_TABLE_BYTES >> 20
        ));
    }
    // table[i][j]: the LCS length of a[..i] and b[..j].
    let width = b.len() + 1;
    let mut table = vec![0_u32; (a.len() + 1) * width];
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            table[i * width + j] = if a[i - 1] == b[j - 1] {
                table[(i - 1) * width + j - 1] + 1
            } else {
                table[(i - 1) * width + j].max(table[i * width + j - 1])
            };
        }
    }
    let length = table[a.len() * width + b.len()] as usize;
    if want.len {
        return Reply::Int(length as i64);
    }
    // Walk back from the ends: the common subsequence, and (IDX) its runs, last first.
    let mut common = vec![0_u8; length];
    let mut left = length;
    let mut matches = Vec::new();
    // The run being built: a's first and last index, b's first and last.
    let mut run: Option<(usize, usize, usize, usize)> = None;
    let (mut i, mut j) = (a.len(), b.len());
    while i > 0 && j > 0 {
        let mut emit = false;
        if a[i - 1] == b[j - 1] {
            common[left - 1] = a[i - 1];
            left -= 1;
            match &mut run {
                None => run = Some((i - 1, i - 1, j - 1, j - 1)),
                // Contiguous in both strings: the run grows backwards.
                Some((a_start, _, b_start, _)) if *a_start == i && *b_start == j => {
                    *a_start -= 1;
                    *b_start -= 1;
                }
                Some(_) => emit = true,
            }
            if run.is_some_and(|(a_start, _, b_start, _)| a_start == 0 || b_start == 0) {
                emit = true;
            }
            i -= 1;
            j -= 1;
        } else {
            if table[(i - 1) * width + j] > table[i * width + j - 1] {
                i -= 1;
            } else {
                j -= 1;
            }
            emit = run.is_some();
        }
        if emit && let Some((a_start, a_end, b_start, b_end)) = run.take() {
            let match_len = a_end - a_start + 1;
            if match_len >= want.min_match {
                matches.push((a_start, a_end, b_start, b_end, match_len));
            }
        }
    }
    if !want.idx {
        return Reply::Bulk(Bytes::from(common));
    }
    let pair = |start: usize, end: usize| {
        Reply::Array(vec![Reply::Int(start as i64), Reply::Int(end as i64)])
    };
    let matches = matches
        .into_iter()
        .map(|(a_start, a_end, b_start, b_end, match_len)| {
            let mut entry = vec![pair(a_start, a_end), pair(b_start, b_end)];
            if want.with_match_len {
                entry.push(Reply::Int(match_len as i64));
            }
            Reply::Array(entry)
        })
        .collect();
    let fields = vec![
        (Reply::text("matches"), Reply::Array(matches)),
        (Reply::text("len"), Reply::Int(length as i64)),
    ];
    Reply::Map(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_over_the_bound_is_refused_before_it_is_allocated() {
        let want = Want { len: true, idx: false, min_match: 0, with_match_len: false };
        let big = vec![b'a'; 5_000];
        let refused = lcs(&big, &big, want);
        assert!(matches!(refused, Reply::Error(ref e) if e.contains("64 MiB")), "{refused:?}");
        assert_eq!(lcs(&big[..100], &big[..50], want), Reply::Int(50));
    }
}
