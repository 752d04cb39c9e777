/*
 * INCRBYFLOAT's arithmetic in the platform's `long double`, the type Redis computes it in,
 * so replies match Redis on the same machine digit for digit (x86-64: the x87 80-bit
 * format; aarch64: IEEE binary128). Rust has no `long double`; this file is the whole of
 * what needs one. See src/redis/long_double.rs for the contract.
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Redis's bound on a long double's text (MAX_LONG_DOUBLE_CHARS). */
#define TEXT_MAX 5120

/* Reads `len` bytes as a long double the way Redis's string2ld does: strtold over a
 * NUL-terminated copy, refusing the empty string, leading space, trailing bytes (a NUL byte
 * inside included), NaN, and a result out of range (infinite or flushed to zero). 1 on
 * success. */
static int read_long_double(const unsigned char *text, size_t len, long double *out) {
    char buf[TEXT_MAX];
    char *end;
    long double value;

    if (len == 0 || len >= sizeof(buf)) return 0;
    memcpy(buf, text, len);
    buf[len] = '\0';
    errno = 0;
    value = strtold(buf, &end);
    if (isspace((unsigned char)buf[0]) || end[0] != '\0' || (size_t)(end - buf) != len ||
        (errno == ERANGE && (value == HUGE_VALL || value == -HUGE_VALL || value == 0.0L)) ||
        errno == EINVAL || isnan(value))
        return 0;
    *out = value;
    return 1;
}

/* current (absent: has_current == 0, read as 0) + increment, written to `out` as Redis
 * writes INCRBYFLOAT's result: "%.17Lf" with trailing zeros (and a bare point) dropped, and
 * "-0" as "0". Returns the text's length, -1 if either operand is not a valid float, -2 if
 * the sum is NaN or infinite. `out` must hold TEXT_MAX bytes. */
long anna_incr_long_double(const unsigned char *current, size_t current_len, int has_current,
                           const unsigned char *increment, size_t increment_len, char *out,
                           size_t out_cap) {
    long double value = 0.0L, step;
    int len;

    if (has_current && !read_long_double(current, current_len, &value)) return -1;
    if (!read_long_double(increment, increment_len, &step)) return -1;
    value += step;
    if (isnan(value) || isinf(value)) return -2;
    len = snprintf(out, out_cap, "%.17Lf", value);
    if (len < 0 || (size_t)len + 1 > out_cap) return -2;
    if (memchr(out, '.', (size_t)len) != NULL) {
        while (out[len - 1] == '0') len--;
        if (out[len - 1] == '.') len--;
    }
    if (len == 2 && out[0] == '-' && out[1] == '0') {
        out[0] = '0';
        len = 1;
    }
    return len;
}
