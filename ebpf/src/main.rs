//! Frameguard's kernel splice: an SK_SKB stream verdict (no stream parser) attached to the
//! `UPSTREAMS` sockhash. Every skb an upstream socket receives is redirected whole to the
//! client socket paired with it (`PEERS`), which sits in the program-less `CLIENTS` sockhash.
//! The program never hands data to the local stack: it returns the redirect helper's result
//! only when that helper accepted the redirect, and SK_DROP otherwise (a missing peer, which
//! userspace's insert/remove order rules out, is counted).
//!
//! Per connection (`STATS`, keyed by the upstream socket's cookie) it counts the redirected
//! bytes, walks the WebSocket frame headers of the redirected stream (so userspace can stop at a
//! frame boundary) and posts a checkpoint to `CHECKPOINTS` every `checkpoint_interval` bytes so
//! userspace can enforce its budget of unacknowledged bytes without polling.
#![no_std]
#![no_main]

use core::ffi::c_void;

use aya_ebpf::{
    bindings::{__sk_buff, sk_action},
    helpers::{bpf_get_socket_cookie, bpf_loop, bpf_skb_load_bytes},
    macros::{map, stream_verdict},
    maps::{Array, HashMap, RingBuf, SockHash},
    programs::SkBuffContext,
};
use aya_log_ebpf::warn;
use frameguard_common::{
    ByteSource, Checkpoint, FrameCursor, SocketKey, SpliceStats, CURSOR_LOST, MAX_HEADER_LEN,
};

/// Connections that can be spliced at the same time (userspace falls back beyond that).
const MAX_CONNECTIONS: u32 = 65_536;

#[map]
static UPSTREAMS: SockHash<SocketKey> = SockHash::with_max_entries(MAX_CONNECTIONS, 0);
#[map]
static CLIENTS: SockHash<SocketKey> = SockHash::with_max_entries(MAX_CONNECTIONS, 0);
#[map]
static PEERS: HashMap<SocketKey, SocketKey> = HashMap::with_max_entries(MAX_CONNECTIONS, 0);
#[map]
static STATS: HashMap<SocketKey, SpliceStats> = HashMap::with_max_entries(MAX_CONNECTIONS, 0);
#[map]
static CHECKPOINTS: RingBuf = RingBuf::with_byte_size(256 * 1024, 0);
/// skbs dropped because their socket had no peer or no stats entry.
#[map]
static ORPHAN_DROPS: Array<u64> = Array::with_max_entries(1, 0);

struct Skb(*mut __sk_buff);

impl ByteSource for Skb {
    fn load_header(&self, offset: u32, dst: &mut [u8; MAX_HEADER_LEN]) -> bool {
        // SAFETY: `dst` is a valid buffer of exactly the length passed; the helper checks the
        // skb bounds itself.
        let ret = unsafe {
            bpf_skb_load_bytes(
                self.0 as *const c_void,
                offset,
                dst.as_mut_ptr() as *mut c_void,
                MAX_HEADER_LEN as u32,
            )
        };
        ret == 0
    }

    fn load_byte(&self, offset: u32) -> Option<u8> {
        let mut byte = 0u8;
        // SAFETY: as above, for one byte.
        let ret = unsafe {
            bpf_skb_load_bytes(
                self.0 as *const c_void,
                offset,
                &mut byte as *mut u8 as *mut c_void,
                1,
            )
        };
        (ret == 0).then_some(byte)
    }
}

/// State of one frame walk, handed to every `bpf_loop` iteration.
#[repr(C)]
struct Walk {
    skb: *mut __sk_buff,
    cursor: *mut FrameCursor,
    offset: u32,
    len: u32,
}

/// One step of the frame walk; returns 1 to end the loop.
extern "C" fn walk_step(_index: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: `ctx` is the `Walk` on the verdict's stack that `bpf_loop` passes through, and its
    // `cursor` points into this connection's STATS value, which outlives the loop.
    let walk = unsafe { &mut *(ctx as *mut Walk) };
    // SAFETY: see above.
    let cursor = unsafe { &mut *walk.cursor };
    match cursor.step(walk.offset, walk.len, &Skb(walk.skb)) {
        Some(next) => {
            walk.offset = next;
            (next >= walk.len) as i64
        }
        None => {
            cursor.flags |= CURSOR_LOST;
            1
        }
    }
}

#[stream_verdict]
pub fn frameguard_verdict(ctx: SkBuffContext) -> u32 {
    let skb = ctx.skb.skb;
    // SAFETY: the program context is a valid __sk_buff for this helper.
    let key: SocketKey = unsafe { bpf_get_socket_cookie(skb as *mut c_void) };
    // SAFETY: PEERS values are plain u64s, copied out at once.
    let peer = unsafe { PEERS.get(&key) }.copied();
    let (Some(mut client), Some(stats)) = (peer, STATS.get_ptr_mut(&key)) else {
        if let Some(drops) = ORPHAN_DROPS.get_ptr_mut(0) {
            // SAFETY: a valid pointer into the array map's only element.
            unsafe { *drops += 1 };
        }
        warn!(&ctx, "frameguard: skb of socket {} has no peer; dropped", key);
        return sk_action::SK_DROP;
    };
    // SAFETY: a valid pointer into this connection's STATS value; the verdict of one socket
    // never runs concurrently with itself (it runs under the socket's lock).
    let stats = unsafe { &mut *stats };
    let len = ctx.len();
    let verdict = CLIENTS.redirect_skb(&ctx, &mut client, 0) as u32;
    if verdict != sk_action::SK_PASS {
        stats.redirect_failures += 1;
        return sk_action::SK_DROP;
    }
    stats.redirected_bytes += len as u64;
    stats.redirected_skbs += 1;
    let mut walk = Walk {
        skb,
        cursor: &mut stats.cursor,
        offset: 0,
        len,
    };
    // Every step advances at least one byte, so `len` iterations always finish the skb.
    // SAFETY: `walk_step` has the callback signature bpf_loop expects and `walk` lives on this
    // stack for the whole call.
    unsafe {
        bpf_loop(
            len,
            walk_step as *mut c_void,
            &mut walk as *mut Walk as *mut c_void,
            0,
        )
    };
    if walk.offset < len {
        stats.cursor.flags |= CURSOR_LOST;
    }
    if stats.redirected_bytes >= stats.next_checkpoint {
        stats.next_checkpoint = stats.redirected_bytes + stats.checkpoint_interval;
        let checkpoint = Checkpoint {
            upstream: key,
            redirected_bytes: stats.redirected_bytes,
        };
        // A full ring only delays the budget check to the next checkpoint.
        let _ = CHECKPOINTS.output::<Checkpoint>(&checkpoint, 0);
    }
    // The redirect helper's own success value: with the redirect recorded in the skb this
    // means "redirect", never "pass to the local stack".
    verdict
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[link_section = "license"]
#[no_mangle]
static LICENSE: [u8; 4] = *b"GPL\0";
