//! Picks the route for a request: the highest priority wins; among equal priorities the longest
//! `path`/`path-prefix` string wins (a route without one counts 0); then the one written first.

use crate::model::{Match, Route};

/// What a route can match on, borrowed from the request head. Query parameters are compared
/// after percent- and `+`-decoding; header values are compared byte for byte.
#[derive(Clone, Copy, Debug)]
pub struct RequestInfo<'a> {
    /// Without the query.
    pub path: &'a str,
    /// Without the `?`.
    pub query: Option<&'a str>,
    pub headers: &'a [(&'a str, &'a [u8])],
}

#[derive(Clone, Debug)]
pub struct Router {
    /// In the order routes are tried.
    candidates: Vec<Candidate>,
}

#[derive(Clone, Debug)]
struct Candidate {
    route_index: usize,
    matches: Vec<Match>,
}

impl Router {
    pub fn new(routes: &[Route]) -> Router {
        let mut candidates: Vec<(i64, usize, Candidate)> = routes
            .iter()
            .enumerate()
            .map(|(route_index, route)| {
                let longest_path = route
                    .matches
                    .iter()
                    .map(|m| match m {
                        Match::Path(path) | Match::PathPrefix(path) => path.len(),
                        Match::QueryParam { .. } | Match::Header { .. } => 0,
                    })
                    .max()
                    .unwrap_or(0);
                (
                    route.priority,
                    longest_path,
                    Candidate {
                        route_index,
                        matches: route.matches.clone(),
                    },
                )
            })
            .collect();
        // Stable, so config order breaks the remaining ties.
        candidates.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.cmp(&a.1)));
        Router {
            candidates: candidates
                .into_iter()
                .map(|(_, _, candidate)| candidate)
                .collect(),
        }
    }

    /// The index, into the routes given to [`Router::new`], of the route for this request.
    pub fn select(&self, request: &RequestInfo<'_>) -> Option<usize> {
        self.candidates
            .iter()
            .find(|candidate| candidate.matches.iter().all(|m| matches(m, request)))
            .map(|candidate| candidate.route_index)
    }
}

fn matches(rule: &Match, request: &RequestInfo<'_>) -> bool {
    match rule {
        Match::Path(path) => request.path == path,
        Match::PathPrefix(prefix) => request.path.starts_with(prefix.as_str()),
        Match::QueryParam { name, value } => request.query.is_some_and(|query| {
            form_urlencoded::parse(query.as_bytes()).any(|(key, found)| {
                key == name.as_str() && value.as_ref().is_none_or(|value| found == value.as_str())
            })
        }),
        Match::Header { name, value } => request.headers.iter().any(|(key, found)| {
            key.eq_ignore_ascii_case(name)
                && value
                    .as_ref()
                    .is_none_or(|value| *found == value.as_bytes())
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{DataPath, RouteAction, WebSocketSettings};

    fn route(name: &str, priority: i64, matches: Vec<Match>) -> Route {
        Route {
            name: name.to_owned(),
            priority,
            matches,
            action: RouteAction::Upstream("backend".to_owned()),
            websocket: WebSocketSettings::default(),
            agents: Vec::new(),
            data_path: DataPath::Auto,
        }
    }

    fn request<'a>(
        path: &'a str,
        query: Option<&'a str>,
        headers: &'a [(&'a str, &'a [u8])],
    ) -> RequestInfo<'a> {
        RequestInfo {
            path,
            query,
            headers,
        }
    }

    fn path(path: &str) -> Match {
        Match::Path(path.to_owned())
    }

    fn prefix(path: &str) -> Match {
        Match::PathPrefix(path.to_owned())
    }

    #[test]
    fn highest_priority_wins_over_longer_match() {
        let routes = [
            route("long", 1, vec![prefix("/api/chat/")]),
            route("short", 2, vec![prefix("/api/")]),
        ];
        let router = Router::new(&routes);
        assert_eq!(router.select(&request("/api/chat/1", None, &[])), Some(1));
    }

    #[test]
    fn equal_priority_prefers_the_longest_match_then_config_order() {
        let routes = [
            route("catch-all", 0, vec![]),
            route("api", 0, vec![prefix("/api/")]),
            route("chat", 0, vec![prefix("/api/chat/")]),
            route("chat-again", 0, vec![prefix("/api/chat/")]),
        ];
        let router = Router::new(&routes);
        assert_eq!(
            router.select(&request("/api/chat/room", None, &[])),
            Some(2)
        );
        assert_eq!(router.select(&request("/api/users", None, &[])), Some(1));
        assert_eq!(router.select(&request("/other", None, &[])), Some(0));
    }

    #[test]
    fn exact_path_does_not_match_longer_paths() {
        let routes = [route("ws", 0, vec![path("/ws")])];
        let router = Router::new(&routes);
        assert_eq!(router.select(&request("/ws", Some("a=1"), &[])), Some(0));
        assert_eq!(router.select(&request("/ws/x", None, &[])), None);
        assert_eq!(router.select(&request("/w", None, &[])), None);
    }

    #[test]
    fn all_matches_must_hold() {
        let token = Match::QueryParam {
            name: "token".into(),
            value: None,
        };
        let routes = [
            route("auth", 10, vec![path("/ws"), token]),
            route("open", 0, vec![path("/ws")]),
        ];
        let router = Router::new(&routes);
        assert_eq!(
            router.select(&request("/ws", Some("token=abc"), &[])),
            Some(0)
        );
        assert_eq!(
            router.select(&request("/ws", Some("other=abc"), &[])),
            Some(1)
        );
        assert_eq!(router.select(&request("/ws", None, &[])), Some(1));
    }

    #[test]
    fn query_params_are_percent_decoded() {
        let routes = [route(
            "q",
            0,
            vec![Match::QueryParam {
                name: "user name".into(),
                value: Some("a&b é".into()),
            }],
        )];
        let router = Router::new(&routes);
        assert_eq!(
            router.select(&request("/", Some("x=1&user%20name=a%26b+%C3%A9"), &[])),
            Some(0)
        );
        assert_eq!(
            router.select(&request("/", Some("user+name=a%26b%20%C3%A9"), &[])),
            Some(0)
        );
        assert_eq!(
            router.select(&request("/", Some("user%20name=a&b"), &[])),
            None
        );
        assert_eq!(router.select(&request("/", Some("user%20name"), &[])), None);
    }

    #[test]
    fn query_param_without_value_checks_presence() {
        let routes = [route(
            "q",
            0,
            vec![Match::QueryParam {
                name: "token".into(),
                value: None,
            }],
        )];
        let router = Router::new(&routes);
        assert_eq!(router.select(&request("/", Some("token"), &[])), Some(0));
        assert_eq!(router.select(&request("/", Some("token="), &[])), Some(0));
        assert_eq!(router.select(&request("/", Some("tokens=1"), &[])), None);
    }

    #[test]
    fn header_names_are_case_insensitive_and_values_exact() {
        let routes = [
            route(
                "cookie",
                5,
                vec![Match::Header {
                    name: "Cookie".into(),
                    value: None,
                }],
            ),
            route(
                "v2",
                10,
                vec![Match::Header {
                    name: "X-Api".into(),
                    value: Some("v2".into()),
                }],
            ),
        ];
        let router = Router::new(&routes);
        assert_eq!(
            router.select(&request("/", None, &[("cookie", b"s=1")])),
            Some(0)
        );
        assert_eq!(
            router.select(&request("/", None, &[("x-api", b"v2"), ("COOKIE", b"")])),
            Some(1)
        );
        assert_eq!(
            router.select(&request("/", None, &[("x-api", b"V2")])),
            None
        );
        // Any of several headers of the same name may carry the value.
        assert_eq!(
            router.select(&request("/", None, &[("X-API", b"v1"), ("x-api", b"v2")])),
            Some(1)
        );
    }

    #[test]
    fn no_routes_select_nothing() {
        assert_eq!(Router::new(&[]).select(&request("/", None, &[])), None);
    }
}
