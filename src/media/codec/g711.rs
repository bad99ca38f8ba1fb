//! ITU-T G.711 μ-law (PCMU) and A-law (PCMA), by table (RFC 3551 §4.5.14: 8000 Hz, one
//! octet per sample).
//!
//! Decoding is a 256-entry table built at compile time; encoding is the classic segment
//! search. Both are allocation-free and branch-light because they run per sample.

const ULAW_BIAS: i32 = 0x84;
const ULAW_CLIP: i32 = 32635;

pub fn linear_to_ulaw(sample: i16) -> u8 {
    let mut s = sample as i32;
    let sign = if s < 0 {
        s = -s;
        0x80
    } else {
        0
    };
    if s > ULAW_CLIP {
        s = ULAW_CLIP;
    }
    s += ULAW_BIAS;
    let mut exponent = 7;
    let mut mask = 0x4000;
    while exponent > 0 && (s & mask) == 0 {
        exponent -= 1;
        mask >>= 1;
    }
    let mantissa = (s >> (exponent + 3)) & 0x0F;
    !(sign | (exponent << 4) | mantissa) as u8
}

const fn ulaw_to_linear(u: u8) -> i16 {
    let u = !u;
    let sign = u & 0x80;
    let exponent = ((u >> 4) & 0x07) as i32;
    let mantissa = (u & 0x0F) as i32;
    let magnitude = (((mantissa << 3) + ULAW_BIAS) << exponent) - ULAW_BIAS;
    if sign != 0 {
        -magnitude as i16
    } else {
        magnitude as i16
    }
}

pub fn linear_to_alaw(sample: i16) -> u8 {
    let mut s = sample as i32;
    let sign = if s >= 0 {
        0x80
    } else {
        s = -s - 1;
        0
    };
    if s > 32767 {
        s = 32767;
    }
    let encoded = if s < 256 {
        s >> 4
    } else {
        let mut exponent = 7;
        let mut mask = 0x4000;
        while exponent > 1 && (s & mask) == 0 {
            exponent -= 1;
            mask >>= 1;
        }
        (exponent << 4) | ((s >> (exponent + 3)) & 0x0F)
    };
    ((sign | encoded) ^ 0x55) as u8
}

const fn alaw_to_linear(a: u8) -> i16 {
    let a = a ^ 0x55;
    let sign = a & 0x80;
    let exponent = ((a >> 4) & 0x07) as i32;
    let mantissa = (a & 0x0F) as i32;
    let magnitude = if exponent == 0 {
        (mantissa << 4) + 8
    } else {
        ((mantissa << 4) + 0x108) << (exponent - 1)
    };
    if sign != 0 {
        magnitude as i16
    } else {
        -magnitude as i16
    }
}

const fn build_table(alaw: bool) -> [i16; 256] {
    let mut t = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = if alaw {
            alaw_to_linear(i as u8)
        } else {
            ulaw_to_linear(i as u8)
        };
        i += 1;
    }
    t
}

pub static ULAW_TO_LINEAR: [i16; 256] = build_table(false);
pub static ALAW_TO_LINEAR: [i16; 256] = build_table(true);

#[cfg(test)]
mod tests {
    use super::super::Codec;
    use super::*;

    #[test]
    fn known_code_points() {
        assert_eq!(linear_to_ulaw(0), 0xFF);
        assert_eq!(linear_to_alaw(0), 0xD5);
        assert_eq!(ULAW_TO_LINEAR[0xFF], 0);
        assert_eq!(ULAW_TO_LINEAR[0x00], -32124);
        assert_eq!(ULAW_TO_LINEAR[0x80], 32124);
        assert_eq!(ALAW_TO_LINEAR[0xD5], 8);
        assert_eq!(ALAW_TO_LINEAR[0x55], -8);
        assert_eq!(ALAW_TO_LINEAR[0xAA], 32256);
    }

    #[test]
    fn every_code_word_round_trips() {
        for b in 0..=255u8 {
            assert_eq!(
                linear_to_ulaw(ULAW_TO_LINEAR[b as usize]),
                if b == 0x7F { 0xFF } else { b },
                "ulaw {b:#x}"
            );
            assert_eq!(linear_to_alaw(ALAW_TO_LINEAR[b as usize]), b, "alaw {b:#x}");
        }
    }

    #[test]
    fn quantisation_error_is_bounded() {
        for s in (-32768i32..=32767).step_by(7) {
            let s = s as i16;
            for c in [Codec::Pcmu, Codec::Pcma] {
                let back = c.decode_sample(c.encode_sample(s)) as i32;
                let err = (back - s as i32).abs();
                // Worst-case step is 1024 in the top segment (half of it after rounding + bias).
                assert!(err <= 1100, "{c:?} {s} -> {back}");
            }
        }
    }
}
