//! Exact conversion between decimal text and Avro's `decimal` representation
//! (a big-endian two's-complement unscaled integer).
//!
//! Money flows through this path, so nothing goes via floating point: the
//! text is rescaled digit by digit and rejected rather than rounded.

/// Parsed decimal text: sign, significant digits (ASCII, no leading zeros)
/// and the power of ten they are multiplied by.
struct Parsed {
    negative: bool,
    digits: Vec<u8>,
    exponent: i64,
}

fn parse(s: &str) -> Option<Parsed> {
    let b = s.as_bytes();
    let (negative, b) = match b.first() {
        Some(b'-') => (true, &b[1..]),
        Some(b'+') => (false, &b[1..]),
        _ => (false, b),
    };
    let (mantissa, exp) = match b.iter().position(|&c| c == b'e' || c == b'E') {
        Some(i) => {
            let e = std::str::from_utf8(&b[i + 1..]).ok()?.parse::<i64>().ok()?;
            (&b[..i], e)
        }
        None => (b, 0),
    };
    let (int, frac) = match mantissa.iter().position(|&c| c == b'.') {
        Some(i) => (&mantissa[..i], &mantissa[i + 1..]),
        None => (mantissa, &mantissa[..0]),
    };
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    if !int.iter().chain(frac).all(u8::is_ascii_digit) {
        return None;
    }
    let mut digits: Vec<u8> = int.iter().chain(frac).copied().collect();
    let lead = digits.iter().take_while(|&&d| d == b'0').count();
    digits.drain(..lead);
    let exponent = exp.checked_sub(i64::try_from(frac.len()).ok()?)?;
    Some(Parsed {
        negative,
        digits,
        exponent,
    })
}

/// Converts decimal text to the minimal two's-complement big-endian bytes of
/// its unscaled value at `scale`, enforcing `precision`.
pub(crate) fn to_unscaled(text: &str, precision: u32, scale: u32) -> Result<Vec<u8>, String> {
    let p = parse(text).ok_or_else(|| format!("`{text}` is not a decimal number"))?;
    // Value = digits * 10^exponent; we need digits * 10^(exponent + scale).
    let shift = p.exponent + i64::from(scale);
    let mut digits = p.digits;
    if shift < 0 {
        let drop = usize::try_from(-shift).unwrap_or(usize::MAX);
        let keep = digits.len().saturating_sub(drop);
        if digits[keep..].iter().any(|&d| d != b'0') {
            return Err(format!(
                "`{text}` has more than {scale} fraction digits and would lose precision"
            ));
        }
        digits.truncate(keep);
    } else {
        // Check before materialising the zeros so `1e999999999` cannot make
        // us allocate a gigabyte.
        let len = i64::try_from(digits.len())
            .unwrap_or(i64::MAX)
            .saturating_add(shift);
        if !digits.is_empty() && len > i64::from(precision) {
            return Err(format!(
                "`{text}` needs {len} digits, more than the precision {precision}"
            ));
        }
        if !digits.is_empty() {
            digits.extend(std::iter::repeat_n(b'0', shift as usize));
        }
    }
    if digits.len() > precision as usize {
        return Err(format!(
            "`{text}` needs {} digits, more than the precision {precision}",
            digits.len()
        ));
    }
    // Base-256 magnitude, big-endian.
    let mut mag: Vec<u8> = Vec::new();
    for d in digits {
        let mut carry = u32::from(d - b'0');
        for byte in mag.iter_mut().rev() {
            let v = u32::from(*byte) * 10 + carry;
            *byte = (v & 0xff) as u8;
            carry = v >> 8;
        }
        while carry > 0 {
            mag.insert(0, (carry & 0xff) as u8);
            carry >>= 8;
        }
    }
    // One spare leading byte guarantees room for the sign bit.
    mag.insert(0, 0);
    if p.negative {
        negate(&mut mag);
    }
    Ok(minimise(mag))
}

/// Two's-complement negation in place.
fn negate(bytes: &mut [u8]) {
    let mut carry = true;
    for b in bytes.iter_mut().rev() {
        let (v, c) = (!*b).overflowing_add(u8::from(carry));
        *b = v;
        carry = c;
    }
}

/// Drops leading bytes that only repeat the sign, keeping at least one byte.
fn minimise(mut bytes: Vec<u8>) -> Vec<u8> {
    let mut start = 0;
    while start + 1 < bytes.len() {
        let (b, next) = (bytes[start], bytes[start + 1]);
        if (b == 0 && next & 0x80 == 0) || (b == 0xff && next & 0x80 != 0) {
            start += 1;
        } else {
            break;
        }
    }
    bytes.drain(..start);
    if bytes.is_empty() {
        bytes.push(0);
    }
    bytes
}

/// Sign-extends minimal two's-complement bytes to exactly `size` bytes.
pub(crate) fn sign_extend(bytes: &[u8], size: usize) -> Option<Vec<u8>> {
    if bytes.len() > size {
        return None;
    }
    let fill = if bytes.first().is_some_and(|b| b & 0x80 != 0) {
        0xff
    } else {
        0
    };
    let mut out = vec![fill; size - bytes.len()];
    out.extend_from_slice(bytes);
    Some(out)
}

/// Renders two's-complement bytes as decimal text with exactly `scale`
/// fraction digits, rejecting values with more than `precision` digits (which
/// a conforming writer never produces and which would otherwise make a
/// hostile multi-megabyte value cost quadratic time).
pub(crate) fn from_unscaled(bytes: &[u8], precision: u32, scale: u32) -> Result<String, String> {
    let bytes = minimise(bytes.to_vec());
    // A precision-p value needs at most p*log2(10)/8 + 1 bytes.
    let max_len = (f64::from(precision) * std::f64::consts::LOG2_10 / 8.0).ceil() as usize + 1;
    if bytes.len() > max_len {
        return Err(format!(
            "decimal value of {} bytes exceeds precision {precision}",
            bytes.len()
        ));
    }
    let negative = bytes[0] & 0x80 != 0;
    let mut mag = bytes;
    if negative {
        negate(&mut mag);
    }
    // Repeated division by 10^9 yields base-10^9 chunks, least significant first.
    let mut chunks: Vec<u32> = Vec::new();
    while mag.iter().any(|&b| b != 0) {
        let mut rem: u64 = 0;
        for b in mag.iter_mut() {
            let cur = (rem << 8) | u64::from(*b);
            *b = (cur / 1_000_000_000) as u8;
            rem = cur % 1_000_000_000;
        }
        chunks.push(rem as u32);
    }
    let mut digits = match chunks.split_last() {
        None => String::from("0"),
        Some((top, rest)) => {
            let mut s = top.to_string();
            for c in rest.iter().rev() {
                s.push_str(&format!("{c:09}"));
            }
            s
        }
    };
    if digits != "0" && digits.len() > precision as usize {
        return Err(format!(
            "decimal value has {} digits, more than the precision {precision}",
            digits.len()
        ));
    }
    let scale = scale as usize;
    if scale > 0 {
        if digits.len() <= scale {
            digits = format!("{}{digits}", "0".repeat(scale + 1 - digits.len()));
        }
        digits.insert(digits.len() - scale, '.');
    }
    if negative {
        digits.insert(0, '-');
    }
    Ok(digits)
}
