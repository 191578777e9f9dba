//! ctnetlink: deleting the calling thread's namespace's conntrack entries
//! that carry one mark (what kube-proxy does for endpoints that go: a
//! flow to a task that is gone is scheduled afresh on its next packet,
//! as IPVS's `expire_nodest_conn` has it).

use std::io;

use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_NETFILTER};

/// Why conntrack entries could not be deleted.
#[derive(Debug, thiserror::Error)]
pub enum ConntrackError {
    /// The ctnetlink socket could not be opened or used.
    #[error("ctnetlink socket: {0}")]
    Socket(#[source] io::Error),
    /// The kernel refused the request.
    #[error("ctnetlink delete of mark {mark:#x}: {source}")]
    Refused {
        /// The mark asked for.
        mark: u32,
        /// The kernel's error.
        source: io::Error,
    },
}

/// `NFNL_SUBSYS_CTNETLINK << 8 | IPCTNL_MSG_CT_DELETE`.
const CT_DELETE: u16 = (1 << 8) | 2;
/// `CTA_MARK`, `CTA_MARK_MASK` (big-endian u32 attributes).
const CTA_MARK: u16 = 8;
const CTA_MARK_MASK: u16 = 21;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLMSG_ERROR: u16 = 2;

/// The request: delete every IPv4 entry whose mark is `mark` (no tuple:
/// the kernel flushes with the mark as filter).
pub(crate) fn delete_request(mark: u32, seq: u32) -> Vec<u8> {
    let mut m = Vec::with_capacity(36);
    m.extend_from_slice(&36u32.to_ne_bytes());
    m.extend_from_slice(&CT_DELETE.to_ne_bytes());
    m.extend_from_slice(&(NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    // nfgenmsg: AF_INET, NFNETLINK_V0, res_id 0.
    m.extend_from_slice(&[libc::AF_INET as u8, 0, 0, 0]);
    for (kind, value) in [(CTA_MARK, mark), (CTA_MARK_MASK, u32::MAX)] {
        m.extend_from_slice(&8u16.to_ne_bytes());
        m.extend_from_slice(&kind.to_ne_bytes());
        m.extend_from_slice(&value.to_be_bytes());
    }
    m
}

/// Deletes the calling thread's namespace's IPv4 conntrack entries with
/// ct mark `mark`. None there is not an error.
pub fn delete_mark(mark: u32) -> Result<(), ConntrackError> {
    let mut s = Socket::new(NETLINK_NETFILTER).map_err(ConntrackError::Socket)?;
    s.bind_auto().map_err(ConntrackError::Socket)?;
    s.connect(&SocketAddr::new(0, 0))
        .map_err(ConntrackError::Socket)?;
    let req = delete_request(mark, 1);
    s.send(&req, 0).map_err(ConntrackError::Socket)?;
    let mut buf = Vec::with_capacity(4096);
    loop {
        buf.clear();
        let n = match s.recv(&mut buf, 0) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => r.map_err(ConntrackError::Socket)?,
        };
        if n < 20 {
            return Err(ConntrackError::Socket(io::Error::new(
                io::ErrorKind::InvalidData,
                "short ctnetlink reply",
            )));
        }
        let kind = u16::from_ne_bytes([buf[4], buf[5]]);
        if kind != NLMSG_ERROR {
            continue;
        }
        let code = i32::from_ne_bytes([buf[16], buf[17], buf[18], buf[19]]);
        return match code {
            // ENOENT: nothing carried the mark.
            0 => Ok(()),
            c if -c == libc::ENOENT => Ok(()),
            c => Err(ConntrackError::Refused {
                mark,
                source: io::Error::from_raw_os_error(-c),
            }),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::delete_request;

    /// The request as ctnetlink reads it: header, nfgenmsg, two marks.
    #[test]
    fn request_layout() {
        let r = delete_request(0x0a01_0003, 7);
        assert_eq!(r.len(), 36);
        assert_eq!(u32::from_ne_bytes(r[0..4].try_into().unwrap()), 36);
        assert_eq!(u16::from_ne_bytes([r[4], r[5]]), 0x0102, "ctnetlink delete");
        assert_eq!(u16::from_ne_bytes([r[6], r[7]]), 5);
        assert_eq!(u32::from_ne_bytes(r[8..12].try_into().unwrap()), 7);
        assert_eq!(r[16], libc::AF_INET as u8);
        let attr = |kind: u16, v: [u8; 4]| -> Vec<u8> {
            [&8u16.to_ne_bytes()[..], &kind.to_ne_bytes()[..], &v[..]].concat()
        };
        assert_eq!(r[20..28], attr(8, [0x0a, 0x01, 0x00, 0x03])[..]);
        assert_eq!(r[28..36], attr(21, [0xff; 4])[..]);
    }
}
