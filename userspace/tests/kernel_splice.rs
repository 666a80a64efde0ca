//! The sockmap splice, for real (root, Linux 6.x): intact and in order, no duplication on
//! either insertion case, close without loss, bounded memory for a client that stops reading,
//! no CPU while idle, every map entry removed, no kernel warnings.
//! FRAMEGUARD_SKIP_EBPF_TESTS=1 skips them; otherwise they fail when eBPF cannot load.

mod kernel_rig;

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use frameguard::kernel::{KernelPath, MapOccupancy};
use frameguard::splice::Ended;
use kernel_rig::*;
use tokio::io::AsyncWriteExt;

const UPSTREAM_ENDED: Ended = Ended::UpstreamEnded {
    close_forwarded: None,
    at_boundary: true,
};

#[tokio::test]
async fn spliced_traffic_arrives_intact_and_in_order_without_userspace_copies() {
    let Some((_serial, kernel, dmesg)) = kernel_test().await else {
        return;
    };
    for payload in [60, 16 * 1024, 1_000_000] {
        let Rig {
            mut upstream_peer,
            upstream,
            client,
            mut client_peer,
        } = rig().await;
        let mut spliced = kernel.splice(&client, &upstream, Bytes::new()).unwrap();
        assert!(spliced.in_kernel());
        let frames = Frames::new(payload);
        let total = (32 << 20) / frames.frame_len() as u64 * frames.frame_len() as u64;
        let mut sent = frames.clone();
        let received = Arc::new(AtomicU64::new(0));
        let counter = received.clone();
        // The client keeps up (the sender stays within 2 MiB of it), so nothing is evicted.
        let sender = tokio::spawn(async move {
            send_paced(&mut upstream_peer, &mut sent, total, &counter, 2 << 20).await;
            upstream_peer.shutdown().await.unwrap();
            upstream_peer
        });
        let mut expected = frames.clone();
        let receiver = tokio::spawn(async move {
            receive_counting(&mut client_peer, &mut expected, total, &received).await
        });
        let ended = spliced.run(std::future::pending()).await.unwrap();
        assert_eq!(ended, UPSTREAM_ENDED);
        receiver.await.unwrap();
        sender.await.unwrap();
        let totals = spliced.totals();
        assert_eq!(totals.kernel_bytes, total, "payload {payload}: {totals:?}");
        assert_eq!(totals.copied_bytes, 0, "payload {payload}: {totals:?}");
        assert_eq!(totals.spliced_bytes, 0, "payload {payload}: {totals:?}");
    }
    assert_eq!(kernel.counters().redirect_failures, 0);
    dmesg.check();
}

#[tokio::test]
async fn bytes_queued_before_insert_are_neither_lost_nor_doubled() {
    let Some((_serial, kernel, dmesg)) = kernel_test().await else {
        return;
    };
    for partly_read in [false, true] {
        let Rig {
            mut upstream_peer,
            upstream,
            client,
            mut client_peer,
        } = rig().await;
        let frames = Frames::new(1000);
        let mut sent = frames.clone();
        // Bytes waiting in the upstream's receive queue before anything is inserted.
        send(&mut upstream_peer, &mut sent, 301_200).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        // Like hyper's read past the handshake: part of the queue (and of its first skb) is
        // already in userspace.
        let leftover = if partly_read {
            let mut buf = vec![0u8; 777];
            upstream.readable().await.unwrap();
            let n = upstream.try_read(&mut buf).unwrap();
            Bytes::copy_from_slice(&buf[..n])
        } else {
            Bytes::new()
        };
        let mut spliced = kernel.splice(&client, &upstream, leftover).unwrap();
        assert!(!spliced.in_kernel(), "bytes are queued: drain first");
        let total = 301_200 + 10_040_000;
        let sender = tokio::spawn(async move {
            send(&mut upstream_peer, &mut sent, 10_040_000).await;
            upstream_peer.shutdown().await.unwrap();
            upstream_peer
        });
        let mut expected = frames.clone();
        let receiver = tokio::spawn(async move {
            receive(&mut client_peer, &mut expected, total).await;
            client_peer
        });
        let ended = spliced.run(std::future::pending()).await.unwrap();
        assert_eq!(ended, UPSTREAM_ENDED);
        let mut client_peer = receiver.await.unwrap();
        let _upstream_peer = sender.await.unwrap();
        let totals = spliced.totals();
        assert_eq!(totals.bytes(), total, "{totals:?}");
        // Everything queued before the insert went through userspace, the rest (bar what
        // arrived while draining) through the kernel.
        assert!(
            totals.copied_bytes >= 301_200,
            "partly read {partly_read}: {totals:?}"
        );
        assert!(totals.kernel_bytes > 0, "{totals:?}");
        // Nothing more arrived after the upstream's FIN.
        drop(spliced);
        let mut rest = Vec::new();
        drop(client);
        tokio::io::AsyncReadExt::read_to_end(&mut client_peer, &mut rest)
            .await
            .unwrap();
        assert!(rest.is_empty(), "{} extra bytes", rest.len());
    }
    dmesg.check();
}

#[tokio::test]
async fn an_immediate_upstream_close_after_64_mib_loses_nothing() {
    let _serial = SERIAL.lock().await;
    if kernel_or_skip().is_none() {
        return;
    }
    // A budget above the transfer keeps it all in the kernel until the upstream's FIN: the
    // close path itself must wait for the client's acknowledgements.
    let kernel = KernelPath::load_with_budget(1 << 30).unwrap();
    let dmesg = Dmesg::start();
    let Rig {
        mut upstream_peer,
        upstream,
        client,
        mut client_peer,
    } = rig().await;
    let mut spliced = kernel.splice(&client, &upstream, Bytes::new()).unwrap();
    assert!(spliced.in_kernel());
    let frames = Frames::new(65_536);
    let total = 64 * frames.frame_len() as u64 * 16;
    let mut sent = frames.clone();
    // The upstream writes everything and closes at once, before the client read much.
    send(&mut upstream_peer, &mut sent, total).await;
    drop(upstream_peer);
    let mut expected = frames.clone();
    let receiver = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        receive(&mut client_peer, &mut expected, total).await;
        client_peer
    });
    let ended = spliced.run(std::future::pending()).await.unwrap();
    assert_eq!(ended, UPSTREAM_ENDED);
    let totals = spliced.totals();
    assert_eq!(totals.kernel_bytes, total, "{totals:?}");
    drop(spliced);
    drop(client);
    let mut client_peer = receiver.await.unwrap();
    let mut rest = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut client_peer, &mut rest)
        .await
        .unwrap();
    assert!(rest.is_empty());
    assert_eq!(kernel.occupancy(), MapOccupancy::default());
    dmesg.check();
}

#[tokio::test]
async fn a_client_that_stops_reading_is_evicted_with_memory_bounded() {
    let Some((_serial, kernel, dmesg)) = kernel_test().await else {
        return;
    };
    const CONNECTIONS: usize = 4;
    const TOTAL: u64 = 160 << 20;
    let frames = Frames::new(16_000);
    let total = TOTAL / frames.frame_len() as u64 * frames.frame_len() as u64;
    let rigs: Vec<Rig> = futures_util::future::join_all((0..CONNECTIONS).map(|_| rig())).await;
    let mem_before = mem_available_bytes();
    let rss_before = rss_bytes();
    let mut upstreams = Vec::new();
    let mut clients = Vec::new();
    let mut proxies = Vec::new();
    for rig in rigs {
        upstreams.push(rig.upstream_peer);
        clients.push(rig.client_peer);
        proxies.push((rig.client, rig.upstream));
    }
    let mut senders = Vec::new();
    let sent_so_far: Vec<_> = (0..CONNECTIONS)
        .map(|_| std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0)))
        .collect();
    for (mut upstream_peer, counter) in upstreams.into_iter().zip(sent_so_far.clone()) {
        let mut sent = frames.clone();
        senders.push(tokio::spawn(async move {
            let chunk = 64 * 1024;
            let mut left = total;
            while left > 0 {
                let n = left.min(chunk);
                send(&mut upstream_peer, &mut sent, n).await;
                counter.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
                left -= n;
            }
            upstream_peer.shutdown().await.unwrap();
            upstream_peer
        }));
    }
    let drive = async {
        let mut runs = Vec::new();
        for (client, upstream) in &proxies {
            let mut spliced = kernel.splice(client, upstream, Bytes::new()).unwrap();
            runs.push(async move {
                let ended = spliced.run(std::future::pending()).await.unwrap();
                (ended, spliced.totals())
            });
        }
        futures_util::future::join_all(runs).await
    };
    let stall = async {
        // The clients read nothing for 10 s while the upstreams stream.
        let mut lowest = mem_before;
        let mut highest_rss = rss_before;
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(100)).await;
            lowest = lowest.min(mem_available_bytes());
            highest_rss = highest_rss.max(rss_bytes());
        }
        let ahead: Vec<u64> = sent_so_far
            .iter()
            .map(|c| c.load(std::sync::atomic::Ordering::Relaxed))
            .collect();
        let counters = kernel.counters();
        let mut checks = Vec::new();
        for (mut client_peer, _) in clients.drain(..).zip(0..) {
            let mut expected = frames.clone();
            checks.push(tokio::spawn(async move {
                receive(&mut client_peer, &mut expected, total).await;
            }));
        }
        for check in checks {
            check.await.unwrap();
        }
        (lowest, highest_rss, ahead, counters)
    };
    let (results, (lowest_mem, highest_rss, ahead, counters)) = tokio::join!(drive, stall);
    for sender in senders {
        sender.await.unwrap();
    }
    let (rmem, wmem) = tcp_buffer_max();
    let budget = kernel.budget();
    // What one connection may hold: the budget in the kernel path, plus what the verdict goes
    // on redirecting while the eviction is decided (a checkpoint interval, the checkpoint's trip
    // to the worker on a busy machine, and the quiesce window of a few milliseconds: at loopback
    // rates up to three budgets more, 1.6 were seen), plus the four socket buffers any relay has
    // between the two peers. A path without the budget holds the whole stream (`TOTAL`).
    let per_connection = budget * 4 + budget / 4 + 2 * rmem + 2 * wmem;
    assert!(
        per_connection < total,
        "the bound must tell a bounded path from an unbounded one"
    );
    for (i, sent) in ahead.iter().enumerate() {
        assert!(
            *sent <= per_connection,
            "connection {i}: the upstream got {sent} bytes ahead of a stalled client (bound {per_connection})"
        );
    }
    assert_eq!(counters.evictions, CONNECTIONS as u64, "{counters:?}");
    let drop = mem_before.saturating_sub(lowest_mem);
    // Other work on this shared machine moves MemAvailable too: allow 256 MiB of noise. The
    // unbounded design this replaces pinned gigabytes here.
    let allowed = CONNECTIONS as u64 * per_connection + (256 << 20);
    assert!(
        drop <= allowed,
        "MemAvailable fell by {drop} bytes (allowed {allowed})"
    );
    let rss_growth = highest_rss.saturating_sub(rss_before);
    eprintln!(
        "stalled clients: upstreams got {ahead:?} bytes ahead; MemAvailable fell by at most \
         {drop} bytes; RSS grew by {rss_growth} bytes"
    );
    assert!(
        rss_growth <= CONNECTIONS as u64 * budget,
        "proxy RSS grew by {rss_growth} bytes"
    );
    for (ended, totals) in results {
        assert_eq!(ended, UPSTREAM_ENDED);
        assert_eq!(totals.bytes(), total, "{totals:?}");
        assert_eq!(totals.evictions, 1, "{totals:?}");
    }
    assert_eq!(kernel.occupancy(), MapOccupancy::default());
    dmesg.check();
}

#[tokio::test]
async fn an_idle_spliced_connection_costs_no_cpu() {
    let Some((_serial, kernel, dmesg)) = kernel_test().await else {
        return;
    };
    let Rig {
        mut upstream_peer,
        upstream,
        client,
        mut client_peer,
    } = rig().await;
    let mut spliced = kernel.splice(&client, &upstream, Bytes::new()).unwrap();
    assert!(spliced.in_kernel());
    let mut frames = Frames::new(100);
    let mut expected = frames.clone();
    let run = spliced.run(std::future::pending());
    tokio::pin!(run);
    let traffic = async {
        send(&mut upstream_peer, &mut frames, 1020).await;
        receive(&mut client_peer, &mut expected, 1020).await;
        let before = cpu_time();
        tokio::time::sleep(Duration::from_secs(2)).await;
        cpu_time() - before
    };
    let idle_cpu = tokio::select! {
        cpu = traffic => cpu,
        ended = &mut run => panic!("ended early: {ended:?}"),
    };
    assert!(
        idle_cpu < Duration::from_millis(20),
        "an idle spliced connection used {idle_cpu:?} of CPU in 2 s"
    );
    drop(upstream_peer);
    assert_eq!(run.await.unwrap(), UPSTREAM_ENDED);
    dmesg.check();
}

#[tokio::test]
async fn a_pause_stops_at_a_frame_boundary_and_resumes_in_the_kernel() {
    let Some((_serial, kernel, dmesg)) = kernel_test().await else {
        return;
    };
    let Rig {
        mut upstream_peer,
        upstream,
        client,
        mut client_peer,
    } = rig().await;
    let mut spliced = kernel.splice(&client, &upstream, Bytes::new()).unwrap();
    assert!(spliced.in_kernel());
    let frames = Frames::new(200_000);
    let frame_len = frames.frame_len() as u64;
    let total = 100 * frame_len;
    let mut sent = frames.clone();
    let received = Arc::new(AtomicU64::new(0));
    let counter = received.clone();
    let sender = tokio::spawn(async move {
        send_paced(&mut upstream_peer, &mut sent, total, &counter, 2 << 20).await;
        upstream_peer
    });
    // Interleave our own frames (as the relay's pings would be) into the spliced stream.
    let ping = [0x89u8, 0x00];
    let received_by_client = received;
    let reader = tokio::spawn(async move {
        let mut expected = frames.clone();
        let mut received = 0u64;
        let mut pings = 0;
        let mut head = [0u8; 2];
        while received < total {
            // At a frame boundary: either one of our pings or a whole spliced frame.
            tokio::io::AsyncReadExt::read_exact(&mut client_peer, &mut head)
                .await
                .unwrap();
            if head == ping {
                pings += 1;
                continue;
            }
            let mut check = expected.clone();
            let mut first = [0u8; 2];
            check.fill(&mut first);
            assert_eq!(head, first, "a frame starts at byte {received}");
            expected.fill(&mut [0u8; 2]);
            receive_counting(
                &mut client_peer,
                &mut expected,
                frame_len - 2,
                &received_by_client,
            )
            .await;
            received += frame_len;
        }
        pings
    });
    let mut pings_sent = 0;
    loop {
        let ended = spliced
            .run(tokio::time::sleep(Duration::from_millis(20)))
            .await
            .unwrap();
        if ended != Ended::Paused {
            panic!("ended: {ended:?}");
        }
        if spliced.totals().bytes() >= total {
            break;
        }
        client.writable().await.unwrap();
        client.try_write(&ping).unwrap();
        pings_sent += 1;
    }
    let pings = reader.await.unwrap();
    assert_eq!(pings, pings_sent);
    let totals = spliced.totals();
    assert!(totals.kernel_bytes > 0, "{totals:?}");
    drop(sender.await.unwrap());
    assert_eq!(
        spliced.run(std::future::pending()).await.unwrap(),
        UPSTREAM_ENDED
    );
    dmesg.check();
}

#[tokio::test]
async fn maps_are_empty_after_1000_sequential_and_200_concurrent_connections() {
    let Some((_serial, kernel, dmesg)) = kernel_test().await else {
        return;
    };
    async fn one(kernel: &KernelPath) {
        let Rig {
            mut upstream_peer,
            upstream,
            client,
            mut client_peer,
        } = rig().await;
        let mut spliced = kernel.splice(&client, &upstream, Bytes::new()).unwrap();
        let mut frames = Frames::new(500);
        let mut expected = frames.clone();
        let traffic = async {
            send(&mut upstream_peer, &mut frames, 5040).await;
            drop(upstream_peer);
            receive(&mut client_peer, &mut expected, 5040).await;
        };
        let (ended, ()) = tokio::join!(spliced.run(std::future::pending()), traffic);
        assert_eq!(ended.unwrap(), UPSTREAM_ENDED);
    }
    for _ in 0..1000 {
        one(&kernel).await;
    }
    assert_eq!(kernel.occupancy(), MapOccupancy::default());
    futures_util::future::join_all((0..200).map(|_| one(&kernel))).await;
    assert_eq!(kernel.occupancy(), MapOccupancy::default());
    assert_eq!(kernel.counters().redirect_failures, 0);
    dmesg.check();
}
