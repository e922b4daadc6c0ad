//! EDNS(0), RFC 6891: the OPT pseudo-record of a query and of a response.

use bytes::Bytes;

/// Option codes we act on (IANA "DNS EDNS0 Option Codes").
pub mod option_code {
    /// Name server identifier, RFC 5001.
    pub const NSID: u16 = 3;
    /// Client subnet, RFC 7871.
    pub const CLIENT_SUBNET: u16 = 8;
    /// DNS cookie, RFC 7873.
    pub const COOKIE: u16 = 10;
    /// TCP keepalive, RFC 7828.
    pub const TCP_KEEPALIVE: u16 = 11;
    /// Padding, RFC 7830.
    pub const PADDING: u16 = 12;
    /// Extended DNS error, RFC 8914.
    pub const EXTENDED_ERROR: u16 = 15;
}

/// One EDNS option: code and opaque data (RFC 6891 §6.1.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EdnsOption {
    pub code: u16,
    pub data: Bytes,
}

/// What a query's OPT record said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Edns {
    /// The requester's UDP payload size (values below 512 are treated as 512, §6.2.3).
    pub udp_payload_size: u16,
    /// EDNS version; only 0 is defined.
    pub version: u8,
    /// The DO bit (RFC 3225).
    pub dnssec_ok: bool,
    /// Options in the order sent; unknown ones are kept and ignored (§6.1.2).
    pub options: Vec<EdnsOption>,
}

impl Edns {
    /// The first option with this code.
    pub fn option(&self, code: u16) -> Option<&EdnsOption> {
        self.options.iter().find(|o| o.code == code)
    }

    /// Reads the options of an OPT RDATA; `None` if an option overruns it.
    pub(crate) fn parse_options(mut rdata: &[u8]) -> Option<Vec<EdnsOption>> {
        let mut options = Vec::new();
        while !rdata.is_empty() {
            if rdata.len() < 4 {
                return None;
            }
            let code = u16::from_be_bytes([rdata[0], rdata[1]]);
            let len = usize::from(u16::from_be_bytes([rdata[2], rdata[3]]));
            let data = rdata.get(4..4 + len)?;
            options.push(EdnsOption {
                code,
                data: Bytes::copy_from_slice(data),
            });
            rdata = &rdata[4 + len..];
        }
        Some(options)
    }
}
