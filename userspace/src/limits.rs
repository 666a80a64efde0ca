//! Connection limits per route and per client IP (`max-connections`, `max-connections-per-ip`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

#[derive(Default)]
struct RouteCount {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// Open WebSocket connections by route name. Counts survive a config reload, so a reload
/// cannot be used to exceed a limit.
#[derive(Default)]
pub struct ConnectionLimits {
    routes: Mutex<HashMap<String, RouteCount>>,
}

/// One admitted connection; dropping it frees the slot.
pub struct ConnectionSlot {
    limits: Arc<ConnectionLimits>,
    route: String,
    ip: IpAddr,
}

impl ConnectionLimits {
    /// Admit a connection unless the route is at `max` or this IP at `max_per_ip`.
    pub fn try_acquire(
        self: &Arc<Self>,
        route: &str,
        ip: IpAddr,
        max: Option<usize>,
        max_per_ip: Option<usize>,
    ) -> Option<ConnectionSlot> {
        let mut routes = self
            .routes
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        let count = routes.entry(route.to_owned()).or_default();
        let from_ip = count.per_ip.get(&ip).copied().unwrap_or(0);
        if max.is_some_and(|max| count.total >= max) || max_per_ip.is_some_and(|max| from_ip >= max)
        {
            return None;
        }
        count.total += 1;
        *count.per_ip.entry(ip).or_default() += 1;
        Some(ConnectionSlot {
            limits: self.clone(),
            route: route.to_owned(),
            ip,
        })
    }

    #[cfg(test)]
    fn open(&self, route: &str) -> usize {
        let routes = self.routes.lock().unwrap();
        routes.get(route).map_or(0, |c| c.total)
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut routes = self
            .limits
            .routes
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        let Some(count) = routes.get_mut(&self.route) else {
            return;
        };
        count.total -= 1;
        if let Some(n) = count.per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                count.per_ip.remove(&self.ip);
            }
        }
        if count.total == 0 {
            routes.remove(&self.route);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_and_ip_limits_hold_and_free_on_drop() {
        let limits = Arc::new(ConnectionLimits::default());
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let first = limits.try_acquire("ws", a, Some(3), Some(2)).unwrap();
        let _second = limits.try_acquire("ws", a, Some(3), Some(2)).unwrap();
        assert!(
            limits.try_acquire("ws", a, Some(3), Some(2)).is_none(),
            "per-ip limit"
        );
        let _third = limits.try_acquire("ws", b, Some(3), Some(2)).unwrap();
        assert!(
            limits.try_acquire("ws", b, Some(3), Some(2)).is_none(),
            "route limit"
        );
        assert!(
            limits.try_acquire("other", b, Some(3), Some(2)).is_some(),
            "routes are separate"
        );
        drop(first);
        assert_eq!(limits.open("ws"), 2);
        assert!(limits.try_acquire("ws", a, Some(3), Some(2)).is_some());
    }

    #[test]
    fn no_limits_admit_everything_and_leave_no_entries() {
        let limits = Arc::new(ConnectionLimits::default());
        let ip: IpAddr = "::1".parse().unwrap();
        let slots: Vec<_> = (0..100)
            .map(|_| limits.try_acquire("ws", ip, None, None).unwrap())
            .collect();
        assert_eq!(limits.open("ws"), 100);
        drop(slots);
        assert!(limits.routes.lock().unwrap().is_empty());
    }
}
