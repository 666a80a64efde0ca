//! The splice(2) relay on real sockets: large transfers arrive intact whatever the frame size,
//! and a client that stops reading stops the upstream (TCP backpressure, nothing buffered).

mod kernel_rig;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use frameguard::splice::{Ended, SpliceRelay};
use kernel_rig::*;
use tokio::io::AsyncWriteExt;

const UPSTREAM_ENDED: Ended = Ended::UpstreamEnded {
    close_forwarded: None,
    at_boundary: true,
};

#[tokio::test]
async fn transfers_arrive_intact_at_every_frame_size() {
    for payload in [60, 4095, 4096, 16 * 1024, 1_000_000] {
        let Rig {
            mut upstream_peer,
            upstream,
            client,
            mut client_peer,
        } = rig().await;
        let frames = Frames::new(payload);
        let total = (24 << 20) / frames.frame_len() as u64 * frames.frame_len() as u64;
        let mut sent = frames.clone();
        let sender = tokio::spawn(async move {
            send(&mut upstream_peer, &mut sent, total).await;
            upstream_peer.shutdown().await.unwrap();
            upstream_peer
        });
        let mut expected = frames.clone();
        let receiver =
            tokio::spawn(async move { receive(&mut client_peer, &mut expected, total).await });
        let mut relay = SpliceRelay::new(&client, &upstream, Bytes::new()).unwrap();
        let ended = relay.run(std::future::pending()).await.unwrap();
        assert_eq!(ended, UPSTREAM_ENDED, "payload {payload}");
        receiver.await.unwrap();
        sender.await.unwrap();
        let totals = relay.totals();
        assert_eq!(totals.bytes(), total, "payload {payload}: {totals:?}");
        assert_eq!(totals.kernel_bytes, 0);
        // How much is spliced rather than copied depends on how reads fall on a loaded machine
        // (a read may take several frames' headers and payload at once): only the presence of
        // splicing is checked here.
        if payload >= 16 * 1024 {
            assert!(totals.spliced_bytes > 0, "payload {payload}: {totals:?}");
        } else if payload < 4096 {
            assert_eq!(totals.spliced_bytes, 0, "payload {payload}: {totals:?}");
        }
    }
}

#[tokio::test]
async fn a_client_that_stops_reading_stops_the_upstream() {
    let Rig {
        mut upstream_peer,
        upstream,
        client,
        mut client_peer,
    } = rig().await;
    let frames = Frames::new(100_000);
    let total = 400 * frames.frame_len() as u64;
    let written = Arc::new(AtomicU64::new(0));
    let mut sent = frames.clone();
    let counter = written.clone();
    let sender = tokio::spawn(async move {
        let chunk = 64 * 1024;
        let mut left = total;
        while left > 0 {
            let n = left.min(chunk);
            send(&mut upstream_peer, &mut sent, n).await;
            counter.fetch_add(n, Ordering::Relaxed);
            left -= n;
        }
        upstream_peer.shutdown().await.unwrap();
        upstream_peer
    });
    let rss_before = rss_bytes();
    let mut relay = SpliceRelay::new(&client, &upstream, Bytes::new()).unwrap();
    let run = relay.run(std::future::pending());
    tokio::pin!(run);
    // The client reads nothing for 3 s.
    tokio::select! {
        _ = tokio::time::sleep(Duration::from_secs(3)) => {}
        ended = &mut run => panic!("ended early: {ended:?}"),
    }
    let ahead = written.load(Ordering::Relaxed);
    let rss_growth = rss_bytes().saturating_sub(rss_before);
    let (rmem, wmem) = tcp_buffer_max();
    // Only the four socket buffers between the peers (and one pipe) can hold data.
    let bound = 2 * rmem + 2 * wmem + (1 << 20);
    assert!(
        ahead <= bound,
        "the upstream got {ahead} bytes ahead (bound {bound})"
    );
    assert!(ahead < total, "the upstream was never stopped");
    assert!(rss_growth < 4 << 20, "RSS grew by {rss_growth} bytes");
    let mut expected = frames.clone();
    let receiver =
        tokio::spawn(async move { receive(&mut client_peer, &mut expected, total).await });
    assert_eq!(run.await.unwrap(), UPSTREAM_ENDED);
    receiver.await.unwrap();
    sender.await.unwrap();
}
