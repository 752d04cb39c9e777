//! `INCRBYFLOAT`'s arithmetic, in the type Redis does it in.
//!
//! Redis adds in C's `long double` and prints the sum with `"%.17Lf"`, trailing zeros
//! dropped: on x86-64 that is the x87 80-bit format, whose 64-bit mantissa makes
//! `INCRBYFLOAT k 0.1` on `10.5` answer `10.6` where an `f64` would print
//! `10.59999999999999964`. Rust has no `long double`, so a few lines of C
//! (`csrc/long_double.c`) do the parse (`strtold`, with Redis's refusals), the sum and the
//! print, and replies match Redis on the same machine digit for digit.

// The one call into C: it reads the two slices (pointer and length each) and writes at most
// `out.len()` bytes into `out`, retaining nothing.
#![allow(unsafe_code)]

use std::ffi::{c_char, c_int, c_long, c_uchar};

unsafe extern "C" {
    fn anna_incr_long_double(
        current: *const c_uchar,
        current_len: usize,
        has_current: c_int,
        increment: *const c_uchar,
        increment_len: usize,
        out: *mut c_char,
        out_cap: usize,
    ) -> c_long;
}

/// Redis's bound on the text of a `long double` (`MAX_LONG_DOUBLE_CHARS`).
const TEXT_MAX: usize = 5 * 1024;

/// Why an increment was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FloatError {
    /// The value or the increment does not read as a float (`ERR value is not a valid
    /// float`).
    NotAFloat,
    /// The sum is NaN or infinite (`ERR increment would produce NaN or Infinity`).
    NotFinite,
}

/// `current` (`None`: the key is absent, read as 0) plus `increment`, as the text
/// `INCRBYFLOAT` stores and answers.
///
/// # Errors
/// [`FloatError`]: an operand is not a float (as Redis's `strtold`-based check reads it), or
/// the sum is not finite.
///
/// ```
/// use anna_kvs::redis::long_double::{incr_by_float, FloatError};
/// assert_eq!(incr_by_float(Some(b"10.50"), b"0.1").unwrap(), "10.6");
/// assert_eq!(incr_by_float(None, b"5.0e3").unwrap(), "5000");
/// assert_eq!(incr_by_float(Some(b"abc"), b"1"), Err(FloatError::NotAFloat));
/// assert_eq!(incr_by_float(Some(b"1"), b" 1"), Err(FloatError::NotAFloat));
/// assert_eq!(incr_by_float(Some(b"inf"), b"1"), Err(FloatError::NotFinite));
/// ```
pub fn incr_by_float(current: Option<&[u8]>, increment: &[u8]) -> Result<String, FloatError> {
    let mut out = vec![0_u8; TEXT_MAX];
    let (current_ptr, current_len) =
        current.map_or((std::ptr::null(), 0), |c| (c.as_ptr(), c.len()));
    // SAFETY: both inputs are valid for their lengths (a null pointer only with length 0 and
    // `has_current` 0, when the C side does not read it); `out` is writable for its length,
    // which is passed as the capacity. The C function keeps no pointer.
    let len = unsafe {
        anna_incr_long_double(
            current_ptr,
            current_len,
            c_int::from(current.is_some()),
            increment.as_ptr(),
            increment.len(),
            out.as_mut_ptr().cast::<c_char>(),
            out.len(),
        )
    };
    match len {
        -1 => Err(FloatError::NotAFloat),
        len if len < 0 => Err(FloatError::NotFinite),
        len => {
            out.truncate(usize::try_from(len).unwrap_or(0));
            // printf of a finite number writes ASCII only.
            Ok(String::from_utf8(out).unwrap_or_default())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A starting value (`None`: absent), an increment, the text Redis answers.
    type Case = (Option<&'static [u8]>, &'static [u8], &'static str);

    #[test]
    fn sums_print_as_redis_prints_them() {
        let cases: [Case; 8] = [
            (Some(b"10.50"), b"0.1", "10.6"),
            (Some(b"5.0e3"), b"2.0e2", "5200"),
            (None, b"-0", "0"),
            (Some(b"3"), b"-3.0", "0"),
            (Some(b"0x10"), b"1", "17"),
            (Some(b"1"), b"1e-20", "1"),
            (Some(b"-1.5"), b"0.25", "-1.25"),
            (None, b"1e30", "1000000000000000000024696061952"),
        ];
        for (current, step, want) in cases {
            assert_eq!(incr_by_float(current, step).as_deref(), Ok(want), "{current:?} + {step:?}");
        }
    }

    #[test]
    fn refusals_are_redis_refusals() {
        for bad in
            [&b""[..], b" 1", b"1 ", b"nan", b"1e99999", b"1e-99999", b"x", b"1\x002", b"\x001"]
        {
            assert_eq!(incr_by_float(None, bad), Err(FloatError::NotAFloat), "{bad:?}");
        }
        assert_eq!(incr_by_float(Some(b""), b"1"), Err(FloatError::NotAFloat));
        assert_eq!(incr_by_float(Some(&[b'1'; TEXT_MAX]), b"1"), Err(FloatError::NotAFloat));
        assert_eq!(incr_by_float(Some(b"1e4932"), b"1e4932"), Err(FloatError::NotFinite));
        assert_eq!(incr_by_float(Some(b"-inf"), b"1"), Err(FloatError::NotFinite));
    }
}
