//! RTP packets (RFC 3550, section 5.1): the fixed 12-byte header, CSRCs, the header extension
//! and padding, parsed in place and built into a buffer.

/// The one-byte-header extension profile (RFC 8285, section 4.2).
pub const ONE_BYTE_PROFILE: u16 = 0xBEDE;

/// A parsed RTP packet; `payload` borrows from the datagram, without padding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet<'a> {
    pub marker: bool,
    pub payload_type: u8,
    pub sequence_number: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    pub csrcs: Vec<u32>,
    /// `(profile, data)` of the header extension; `data` is a whole number of 32-bit words.
    pub extension: Option<(u16, &'a [u8])>,
    pub payload: &'a [u8],
    /// Padding octets removed from the end (the last of them is the count).
    pub padding: u8,
}

/// Why a datagram is not an RTP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    TooShort,
    Version,
    Padding,
}

/// The fields of the fixed header the receive path needs, without allocating.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub marker: bool,
    pub payload_type: u8,
    pub sequence_number: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    /// Where the payload starts (after CSRCs and the extension).
    pub payload_offset: usize,
}

fn u16_at(b: &[u8], i: usize) -> u16 {
    u16::from_be_bytes([b[i], b[i + 1]])
}

fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

/// Parses the header of `data` (version 2, CSRCs and extension in bounds); the payload and
/// padding are not looked at (they may still be encrypted).
pub fn parse_header(data: &[u8]) -> Result<Header, ParseError> {
    if data.len() < 12 {
        return Err(ParseError::TooShort);
    }
    if data[0] >> 6 != 2 {
        return Err(ParseError::Version);
    }
    let csrc_count = usize::from(data[0] & 0x0F);
    let mut offset = 12 + 4 * csrc_count;
    if data[0] & 0x10 != 0 {
        if data.len() < offset + 4 {
            return Err(ParseError::TooShort);
        }
        offset += 4 + 4 * usize::from(u16_at(data, offset + 2));
    }
    if data.len() < offset {
        return Err(ParseError::TooShort);
    }
    Ok(Header {
        marker: data[1] & 0x80 != 0,
        payload_type: data[1] & 0x7F,
        sequence_number: u16_at(data, 2),
        timestamp: u32_at(data, 4),
        ssrc: u32_at(data, 8),
        payload_offset: offset,
    })
}

/// The payload of an (unencrypted) packet whose header is `header`, padding removed.
pub fn payload<'a>(data: &'a [u8], header: &Header) -> Result<(&'a [u8], u8), ParseError> {
    let body = &data[header.payload_offset..];
    if data[0] & 0x20 == 0 {
        return Ok((body, 0));
    }
    let pad = *body.last().ok_or(ParseError::Padding)?;
    if pad == 0 || usize::from(pad) > body.len() {
        return Err(ParseError::Padding);
    }
    Ok((&body[..body.len() - usize::from(pad)], pad))
}

/// Parses a whole (unencrypted) RTP packet.
pub fn parse(data: &[u8]) -> Result<Packet<'_>, ParseError> {
    let header = parse_header(data)?;
    let csrc_count = usize::from(data[0] & 0x0F);
    let csrcs = (0..csrc_count).map(|i| u32_at(data, 12 + 4 * i)).collect();
    let extension = (data[0] & 0x10 != 0).then(|| {
        let at = 12 + 4 * csrc_count;
        (u16_at(data, at), &data[at + 4..header.payload_offset])
    });
    let (payload, padding) = payload(data, &header)?;
    Ok(Packet {
        marker: header.marker,
        payload_type: header.payload_type,
        sequence_number: header.sequence_number,
        timestamp: header.timestamp,
        ssrc: header.ssrc,
        csrcs,
        extension,
        payload,
        padding,
    })
}

/// The data of a one-byte-header extension holding one element `(id, value)`, zero-padded to
/// 32 bits (RFC 8285, section 4.2: `id` 1..=14, `value` 1..=16 bytes).
pub fn one_byte_extension(id: u8, value: &[u8]) -> Vec<u8> {
    debug_assert!((1..=14).contains(&id) && (1..=16).contains(&value.len()));
    let mut data = Vec::with_capacity(20);
    data.push((id << 4) | (value.len() as u8 - 1));
    data.extend_from_slice(value);
    data.resize(data.len().div_ceil(4) * 4, 0);
    data
}

/// Appends the packet to `out`. `extension` data must be a whole number of 32-bit words,
/// `padding` (0: none) is the number of padding octets, count included.
pub fn build(packet: &Packet<'_>, out: &mut Vec<u8>) {
    debug_assert!(packet.csrcs.len() <= 15 && packet.payload_type < 128);
    let mut b0 = 0x80 | packet.csrcs.len() as u8;
    if packet.padding > 0 {
        b0 |= 0x20;
    }
    if packet.extension.is_some() {
        b0 |= 0x10;
    }
    out.push(b0);
    out.push(packet.payload_type | if packet.marker { 0x80 } else { 0 });
    out.extend_from_slice(&packet.sequence_number.to_be_bytes());
    out.extend_from_slice(&packet.timestamp.to_be_bytes());
    out.extend_from_slice(&packet.ssrc.to_be_bytes());
    for csrc in &packet.csrcs {
        out.extend_from_slice(&csrc.to_be_bytes());
    }
    if let Some((profile, data)) = packet.extension {
        debug_assert!(data.len() % 4 == 0);
        out.extend_from_slice(&profile.to_be_bytes());
        out.extend_from_slice(&((data.len() / 4) as u16).to_be_bytes());
        out.extend_from_slice(data);
    }
    out.extend_from_slice(packet.payload);
    if packet.padding > 0 {
        out.resize(out.len() + usize::from(packet.padding) - 1, 0);
        out.push(packet.padding);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet<'a>(ext: Option<(u16, &'a [u8])>, payload: &'a [u8], padding: u8) -> Packet<'a> {
        Packet {
            marker: true,
            payload_type: 111,
            sequence_number: 0xFFFE,
            timestamp: 0xDEAD_BEEF,
            ssrc: 0x1234_5678,
            csrcs: vec![7, 0xFFFF_FFFF],
            extension: ext,
            payload,
            padding,
        }
    }

    #[test]
    fn build_then_parse_gives_the_packet_back() {
        let ext = one_byte_extension(3, b"audio0");
        assert_eq!(ext, [0x35, b'a', b'u', b'd', b'i', b'o', b'0', 0]);
        for (extension, padding) in [
            (None, 0),
            (Some((ONE_BYTE_PROFILE, ext.as_slice())), 0),
            (Some((0x1000, &[1u8, 2, 3, 4][..])), 3),
            (None, 1),
        ] {
            let p = packet(extension, b"opus-payload", padding);
            let mut out = Vec::new();
            build(&p, &mut out);
            let expected_len = 12 + 8 + extension.map_or(0, |(_, d)| 4 + d.len()) + 12;
            assert_eq!(out.len(), expected_len + usize::from(padding));
            assert_eq!(parse(&out), Ok(p));
        }
    }

    #[test]
    fn header_fields_sit_where_rfc_3550_puts_them() {
        let p = Packet {
            csrcs: vec![],
            ..packet(None, b"x", 0)
        };
        let mut out = Vec::new();
        build(&p, &mut out);
        assert_eq!(
            out,
            [
                0x80,
                0x80 | 111,
                0xFF,
                0xFE,
                0xDE,
                0xAD,
                0xBE,
                0xEF,
                0x12,
                0x34,
                0x56,
                0x78,
                b'x'
            ]
        );
    }

    #[test]
    fn malformed_packets_are_refused() {
        let mut out = Vec::new();
        build(&packet(None, b"abc", 0), &mut out);
        assert_eq!(parse(&out[..11]), Err(ParseError::TooShort));
        assert_eq!(parse(&out[..19]), Err(ParseError::TooShort)); // a CSRC cut off
        let mut v1 = out.clone();
        v1[0] = (v1[0] & 0x3F) | 0x40;
        assert_eq!(parse(&v1), Err(ParseError::Version));
        let mut pad = out.clone();
        pad[0] |= 0x20;
        *pad.last_mut().unwrap() = 200; // more padding than payload
        assert_eq!(parse(&pad), Err(ParseError::Padding));
        let mut ext = out.clone();
        ext[0] |= 0x10; // an extension header that runs past the end
        ext.truncate(22);
        assert_eq!(parse(&ext), Err(ParseError::TooShort));
    }
}

/// Whether `datagram` is an RTP packet (not RTCP, RFC 5761) of `ssrc`: what a session's socket
/// relay takes for the peer's audio; the rest (STUN, DTLS, RTCP, other streams) is not media.
pub fn is_rtp_of(datagram: &[u8], ssrc: u32) -> bool {
    datagram.len() > 12
        && (128..192).contains(&datagram[0])
        && !(192..224).contains(&datagram[1])
        && datagram[8..12] == ssrc.to_be_bytes()
}

#[cfg(test)]
mod media_test {
    use super::is_rtp_of;

    #[test]
    fn rtp_of_the_ssrc_only() {
        let mut rtp = vec![0x80, 111, 0, 1, 0, 0, 0, 0, 0, 0, 0, 7, 0xff];
        assert!(is_rtp_of(&rtp, 7));
        assert!(!is_rtp_of(&rtp, 8));
        assert!(!is_rtp_of(&rtp[..12], 7)); // header only
        rtp[1] = 200; // RTCP sender report
        assert!(!is_rtp_of(&rtp, 7));
        rtp[1] = 111;
        rtp[0] = 0x16; // DTLS
        assert!(!is_rtp_of(&rtp, 7));
        rtp[0] = 0x00; // STUN
        assert!(!is_rtp_of(&rtp, 7));
    }
}
