//! Types shared with the eBPF side. Everything here is `#[repr(C)]`, `Copy`, and free of
//! pointers so that the same bytes mean the same thing in a BPF map and in userspace.
#![no_std]

/// Per-connection counters kept by the sockmap verdict program for one spliced direction.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SpliceStats {
    /// Bytes the verdict program redirected to the peer socket.
    pub redirected_bytes: u64,
    /// skbs redirected (one per verdict call that returned a redirect).
    pub redirected_skbs: u64,
    /// Redirects that the kernel refused (peer missing from the map, for example).
    pub redirect_failures: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splice_stats_layout_is_three_u64() {
        assert_eq!(core::mem::size_of::<SpliceStats>(), 24);
        assert_eq!(core::mem::align_of::<SpliceStats>(), 8);
    }
}
