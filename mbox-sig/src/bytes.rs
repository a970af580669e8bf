//! `byte_test` and `byte_jump`: a number read out of a buffer (binary in either byte order, or
//! ASCII digits), then compared, or used to move where the next relative step looks — with
//! Suricata's options and arithmetic.

/// How the bytes are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reading {
    /// Bytes read: 1 to 8 binary, 1 to 10 as a string.
    pub bytes: u8,
    /// From the end of the previous match (else from the buffer's start).
    pub relative: bool,
    pub offset: i32,
    pub little_endian: bool,
    /// `string, dec|hex|oct`: ASCII digits in that base.
    pub string_base: Option<u32>,
    /// `bitmask`: the value is masked, then shifted right past the mask's low zero bits.
    pub bitmask: Option<u64>,
}

impl Reading {
    /// Reads the number; `None` when the bytes are not there or are not digits. Also returns
    /// where the bytes read end.
    pub fn read(&self, buffer: &[u8], prev_end: usize) -> Option<(u64, usize)> {
        let base = if self.relative { prev_end as i64 } else { 0 };
        let start = usize::try_from(base + i64::from(self.offset)).ok()?;
        let end = start.checked_add(usize::from(self.bytes))?;
        let raw = buffer.get(start..end)?;
        let value = match self.string_base {
            Some(radix) => u64::from_str_radix(std::str::from_utf8(raw).ok()?.trim(), radix).ok()?,
            None if self.little_endian => raw.iter().rev().fold(0u64, |v, &b| v << 8 | u64::from(b)),
            None => raw.iter().fold(0u64, |v, &b| v << 8 | u64::from(b)),
        };
        let value = match self.bitmask {
            Some(mask) if mask != 0 => (value & mask) >> mask.trailing_zeros(),
            _ => value,
        };
        Some((value, end))
    }
}

/// `byte_test`: the number compared with a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteTest {
    pub reading: Reading,
    pub op: Op,
    pub negated: bool,
    pub value: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Lt,
    Gt,
    Eq,
    Le,
    Ge,
    /// Any of the value's bits set.
    And,
    /// The number XOR the value is not zero.
    Xor,
}

impl ByteTest {
    /// Whether the test holds; `None` when the number cannot be read.
    pub fn holds(&self, buffer: &[u8], prev_end: usize) -> Option<bool> {
        let (n, _) = self.reading.read(buffer, prev_end)?;
        let v = self.value;
        let result = match self.op {
            Op::Lt => n < v,
            Op::Gt => n > v,
            Op::Eq => n == v,
            Op::Le => n <= v,
            Op::Ge => n >= v,
            Op::And => n & v != 0,
            Op::Xor => n ^ v != 0,
        };
        Some(result != self.negated)
    }
}

/// `byte_jump`: the number (times `multiplier`, rounded up to 4 with `align`) is a distance to
/// skip, from the end of the bytes read (or the buffer's start, `from_beginning`, or its end,
/// `from_end`), then `post_offset` more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteJump {
    pub reading: Reading,
    pub multiplier: u64,
    pub align: bool,
    pub from_beginning: bool,
    pub from_end: bool,
    pub post_offset: i64,
}

impl ByteJump {
    /// Where the next relative step counts from; `None` when the number cannot be read or the
    /// jump leaves the buffer.
    pub fn target(&self, buffer: &[u8], prev_end: usize) -> Option<usize> {
        let (n, read_end) = self.reading.read(buffer, prev_end)?;
        let mut skip = n.checked_mul(self.multiplier)?;
        if self.align {
            skip = skip.checked_add(3)? & !3;
        }
        let from = if self.from_beginning {
            0
        } else if self.from_end {
            buffer.len() as i64
        } else {
            read_end as i64
        };
        let to = from.checked_add(i64::try_from(skip).ok()?)?.checked_add(self.post_offset)?;
        usize::try_from(to).ok().filter(|&t| t <= buffer.len())
    }
}

/// `123` or `0x7b`.
fn decimal_or_hex(text: &str) -> Option<u64> {
    match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}

/// The options common to both: `bytes, ..., offset` leading fields already split off.
fn reading_options<'a>(bytes: &str, offset: &str, rest: impl Iterator<Item = &'a str>) -> Result<(Reading, Vec<&'a str>), String> {
    let bytes: u8 = bytes.trim().parse().map_err(|_| format!("`{bytes}` is not a byte count"))?;
    let offset: i32 = offset.trim().parse().map_err(|_| format!("offset `{offset}` is not a number"))?;
    let mut r = Reading { bytes, relative: false, offset, little_endian: false, string_base: None, bitmask: None };
    let mut string = false;
    let mut others = Vec::new();
    for opt in rest.map(str::trim) {
        let (key, value) = opt.split_once(char::is_whitespace).map(|(k, v)| (k, v.trim())).unwrap_or((opt, ""));
        match key {
            "relative" => r.relative = true,
            "little" => r.little_endian = true,
            "big" => r.little_endian = false,
            "string" => string = true,
            "dec" => r.string_base = Some(10),
            "hex" => r.string_base = Some(16),
            "oct" => r.string_base = Some(8),
            "bitmask" => r.bitmask = Some(decimal_or_hex(value).ok_or_else(|| format!("bitmask `{value}` is not a number"))?),
            "dce" => return Err("`dce` (DCE/RPC byte order) is not supported".into()),
            _ => others.push(opt),
        }
    }
    match (string, r.string_base) {
        (true, None) => r.string_base = Some(10),
        (false, Some(_)) => return Err("`dec`, `hex` or `oct` without `string`".into()),
        _ => {}
    }
    let most = if r.string_base.is_some() { 10 } else { 8 };
    if !(1..=most).contains(&r.bytes) {
        return Err(format!("{} bytes (1 to {most} here)", r.bytes));
    }
    Ok((r, others))
}

/// Parses `byte_test:bytes, [!]op, value, offset[, options]`.
pub fn parse_byte_test(text: &str) -> Result<ByteTest, String> {
    let mut parts = text.split(',');
    let (Some(bytes), Some(op), Some(value), Some(offset)) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err("needs bytes, operator, value and offset".into());
    };
    let (reading, others) = reading_options(bytes, offset, parts)?;
    if let Some(other) = others.first() {
        return Err(format!("option `{other}`"));
    }
    let op = op.trim();
    let (negated, op) = match op.strip_prefix('!') {
        Some(rest) => (true, rest.trim()),
        None => (false, op),
    };
    let op = match op {
        "<" => Op::Lt,
        ">" => Op::Gt,
        "=" => Op::Eq,
        "<=" => Op::Le,
        ">=" => Op::Ge,
        "&" => Op::And,
        "^" => Op::Xor,
        other => return Err(format!("operator `{other}`")),
    };
    let value = value.trim();
    let value =
        decimal_or_hex(value).ok_or_else(|| format!("value `{value}` is not a number (a byte_extract variable is not supported)"))?;
    Ok(ByteTest { reading, op, negated, value })
}

/// Parses `byte_jump:bytes, offset[, options]`.
pub fn parse_byte_jump(text: &str) -> Result<ByteJump, String> {
    let mut parts = text.split(',');
    let (Some(bytes), Some(offset)) = (parts.next(), parts.next()) else { return Err("needs bytes and offset".into()) };
    let (reading, others) = reading_options(bytes, offset, parts)?;
    let mut jump = ByteJump { reading, multiplier: 1, align: false, from_beginning: false, from_end: false, post_offset: 0 };
    for opt in others {
        let (key, value) = opt.split_once(char::is_whitespace).map(|(k, v)| (k, v.trim())).unwrap_or((opt, ""));
        let num = |v: &str| v.parse::<i64>().map_err(|_| format!("{key} `{v}` is not a number"));
        match key {
            "multiplier" => jump.multiplier = u64::try_from(num(value)?).map_err(|_| "a negative multiplier".to_string())?,
            "align" => jump.align = true,
            "from_beginning" => jump.from_beginning = true,
            "from_end" => jump.from_end = true,
            "post_offset" => jump.post_offset = num(value)?,
            other => return Err(format!("option `{other}`")),
        }
    }
    Ok(jump)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_as_suricata_reads_them() {
        let t = |text: &str, buf: &[u8], prev: usize| parse_byte_test(text).unwrap().holds(buf, prev);
        assert_eq!(t("2, =, 258, 0", b"\x01\x02", 0), Some(true));
        assert_eq!(t("2, =, 513, 0, little", b"\x01\x02", 0), Some(true));
        assert_eq!(t("3, >, 99, 1, relative, string, dec", b"xx100", 1), Some(true));
        assert_eq!(t("2, =, 0xff, 0, string, hex", b"ff", 0), Some(true));
        assert_eq!(t("1, &, 0x80, 0", b"\x7f", 0), Some(false));
        assert_eq!(t("1, !=, 5, 0", b"\x05", 0), Some(false), "`!=` is `!` then `=`");
        assert_eq!(t("1, !<, 5, 0", b"\x05", 0), Some(true));
        assert_eq!(t("1, =, 3, 0, bitmask 0x0c", b"\x0c", 0), Some(true), "masked and shifted");
        assert_eq!(t("4, =, 1, 0", b"\x00\x01", 0), None, "not enough bytes");
        assert_eq!(t("2, =, 1, 0, string, dec", b"1x", 0), None, "not digits");
    }

    #[test]
    fn jumps_land_where_suricata_lands() {
        let j = |text: &str, buf: &[u8], prev: usize| parse_byte_jump(text).unwrap().target(buf, prev);
        // The PE header's offset, at 0x3c of an MZ file: little-endian, relative to after "MZ".
        let mut mz = vec![0u8; 128];
        mz[..2].copy_from_slice(b"MZ");
        mz[60..64].copy_from_slice(&100u32.to_le_bytes());
        assert_eq!(j("4, 58, relative, little", &mz, 2), None, "64 + 100 lies beyond the 128 bytes");
        mz[60..64].copy_from_slice(&40u32.to_le_bytes());
        assert_eq!(j("4, 58, relative, little", &mz, 2), Some(104));
        assert_eq!(j("1, 0, multiplier 2, post_offset -1", b"\x03......", 0), Some(1 + 6 - 1));
        assert_eq!(j("1, 0, align", b"\x03.......", 0), Some(1 + 4));
        assert_eq!(j("1, 0, from_beginning", b"\x03....", 0), Some(3));
        assert_eq!(j("1, 0", b"\xff", 0), None, "beyond the buffer");
    }

    #[test]
    fn bad_options_say_what_is_wrong() {
        assert!(parse_byte_test("9, =, 1, 0").unwrap_err().contains("1 to 8"));
        assert!(parse_byte_test("2, ~, 1, 0").unwrap_err().contains("operator `~`"));
        assert!(parse_byte_test("2, =, var, 0").unwrap_err().contains("byte_extract"));
        assert!(parse_byte_test("2, =, 1").unwrap_err().contains("needs"));
        assert!(parse_byte_jump("2, 0, dce").unwrap_err().contains("dce"));
        assert!(parse_byte_jump("2, 0, sideways").unwrap_err().contains("`sideways`"));
        assert!(parse_byte_jump("2, 0, hex").unwrap_err().contains("without `string`"));
    }
}
