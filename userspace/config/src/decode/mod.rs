//! KDL document -> [`Config`], reporting every problem with the position of the offending node
//! or value. Each section lives in its own module; this one holds the shared value readers and
//! ties the sections together (routes are resolved against the upstreams and agents).

mod agents;
mod listeners;
mod observability;
mod routes;
mod system;
mod upstreams;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use kdl::{KdlDocument, KdlEntry, KdlNode, KdlValue};
use miette::SourceSpan;

use crate::diagnostic::Report;
use crate::model::{Config, Observability, System, Upstream};
use crate::size::parse_size;

pub(crate) use upstreams::check_target;

/// Durations written in seconds are capped so that adding one to an `Instant` cannot overflow.
const MAX_SECONDS: i128 = 30 * 24 * 60 * 60;

const TOP_LEVEL_KEYS: &[&str] = &[
    "system",
    "listeners",
    "routes",
    "upstreams",
    "agents",
    "observability",
];

pub(crate) fn decode<'a>(
    document: &KdlDocument,
    report: Report<'a>,
    file: &str,
) -> (Config, Report<'a>) {
    let mut decoder = Decoder { report };
    let mut system = System::default();
    let mut listeners = None;
    let mut routes = None;
    let mut upstreams = Upstreams::default();
    let mut agents = Vec::new();
    let mut observability = Observability::default();
    decoder.each_child(
        None,
        document.nodes(),
        TOP_LEVEL_KEYS,
        &[],
        |decoder, node| {
            match node.name().value() {
                "system" => system = system::decode(decoder, node),
                "listeners" => listeners = Some((listeners::decode(decoder, node), node)),
                "routes" => routes = Some((routes::decode(decoder, node), node)),
                "upstreams" => upstreams = upstreams::decode(decoder, node),
                "agents" => agents = agents::decode(decoder, node),
                "observability" => observability = observability::decode(decoder, node),
                _ => return false,
            }
            true
        },
    );

    // A section whose items were all invalid was reported already; only a section without any
    // item (or no section) is reported as missing.
    let listeners = match listeners {
        Some((listeners, node)) if writes_any(node, "listener") => listeners,
        missing => {
            let at = missing.map_or(0, |(_, node)| node.name().span().offset());
            decoder.report.error(
                at,
                "no listeners defined: add `listeners { listener \"http\" { address \"127.0.0.1:8080\" } }`",
            );
            Vec::new()
        }
    };
    let routes = match routes {
        Some((drafts, node)) if writes_any(node, "route") => {
            routes::resolve(&mut decoder, drafts, &upstreams, &agents)
        }
        missing => {
            let at = missing.map_or(0, |(_, node)| node.name().span().offset());
            decoder.report.error(
                at,
                "no routes defined: add `routes { route \"name\" { ... } }`",
            );
            Vec::new()
        }
    };
    let config = Config {
        system,
        listeners,
        routes,
        upstreams: upstreams.items,
        agents,
        observability,
        source: file.to_owned(),
    };
    (config, decoder.report)
}

fn writes_any(section: &KdlNode, item: &str) -> bool {
    section.children().is_some_and(|children| {
        children
            .nodes()
            .iter()
            .any(|node| node.name().value() == item)
    })
}

/// The upstreams that decoded, and the name of every upstream written, valid or not, so that a
/// reference to an invalid one (already reported) is not reported again as undefined.
#[derive(Default)]
pub(crate) struct Upstreams {
    pub(crate) items: Vec<Upstream>,
    pub(crate) names: Vec<String>,
}

pub(crate) struct Decoder<'a> {
    pub(crate) report: Report<'a>,
}

impl Decoder<'_> {
    pub(crate) fn error(&mut self, span: SourceSpan, message: impl Into<String>) {
        self.report.error(span.offset(), message);
    }

    pub(crate) fn warning(&mut self, span: SourceSpan, message: impl Into<String>) {
        self.report.warning(span.offset(), message);
    }

    /// Visits a block's child nodes. `visit` returns false for a name it does not know, which is
    /// reported as ignored (with a hint from `keys`); a second node of a name not in `repeatable`
    /// is an error and is not visited.
    pub(crate) fn each_child<'n>(
        &mut self,
        parent: Option<&str>,
        children: &'n [KdlNode],
        keys: &[&str],
        repeatable: &[&str],
        mut visit: impl FnMut(&mut Self, &'n KdlNode) -> bool,
    ) {
        let mut seen: HashMap<&'n str, SourceSpan> = HashMap::new();
        for node in children {
            let name = node.name().value();
            if let Some(annotation) = node.ty() {
                self.warning(
                    annotation.span(),
                    format!(
                        "type annotation `({})` on `{name}` ignored",
                        annotation.value()
                    ),
                );
            }
            if let Some(first) = seen.get(name) {
                let first = self.report.describe_position(first.offset());
                self.error(
                    node.name().span(),
                    format!("duplicate `{name}` (first at {first})"),
                );
                continue;
            }
            if visit(self, node) {
                if !repeatable.contains(&name) {
                    seen.insert(name, node.name().span());
                }
            } else {
                let place = match parent {
                    Some(parent) => format!("in `{parent}`"),
                    None => "at the top level".to_owned(),
                };
                let hint = did_you_mean(name, keys.iter().copied())
                    .map(|key| format!(" (did you mean `{key}`?)"))
                    .unwrap_or_default();
                self.warning(
                    node.name().span(),
                    format!("unknown node `{name}` {place}, ignored{hint}"),
                );
            }
        }
    }

    /// Visits each `item "name" { ... }` of a list section such as `routes`, once per name:
    /// a repeated name is an error and is not visited.
    pub(crate) fn each_named<'n>(
        &mut self,
        section: &'n KdlNode,
        item: &str,
        mut visit: impl FnMut(&mut Self, String, SourceSpan, &'n [KdlNode]),
    ) {
        let mut names: HashMap<String, SourceSpan> = HashMap::new();
        let children = self.block(section);
        let section_name = section.name().value();
        self.each_child(
            Some(section_name),
            children,
            &[item],
            &[item],
            |decoder, child| {
                if child.name().value() != item {
                    return false;
                }
                let Some((name, name_span, body)) = decoder.named_block(child) else {
                    return true;
                };
                if let Some(first) = names.get(&name) {
                    let first = decoder.report.describe_position(first.offset());
                    decoder.error(
                        name_span,
                        format!("duplicate {item} `{name}` (first at {first})"),
                    );
                    return true;
                }
                names.insert(name.clone(), name_span);
                visit(decoder, name, name_span, body);
                true
            },
        );
    }

    /// The children of a section node such as `routes { ... }`, which takes no values.
    pub(crate) fn block<'n>(&mut self, node: &'n KdlNode) -> &'n [KdlNode] {
        let name = node.name().value();
        for entry in node.entries() {
            self.warning(
                entry.span(),
                format!(
                    "`{name}` takes no values, `{entry}` ignored",
                    entry = entry_text(entry)
                ),
            );
        }
        node.children().map_or(&[], |children| children.nodes())
    }

    /// The name and children of `route "name" { ... }` and the like.
    pub(crate) fn named_block<'n>(
        &mut self,
        node: &'n KdlNode,
    ) -> Option<(String, SourceSpan, &'n [KdlNode])> {
        let kind = node.name().value();
        let entry = self.single_argument(node)?;
        match entry.value() {
            KdlValue::String(name) if !name.is_empty() => Some((
                name.clone(),
                entry.span(),
                node.children().map_or(&[], |children| children.nodes()),
            )),
            other => {
                self.error(
                    entry.span(),
                    format!("`{kind}` needs a name string, found {}", describe(other)),
                );
                None
            }
        }
    }

    /// The one value of `name value` where a children block is allowed (and read by the caller).
    pub(crate) fn single_argument<'n>(&mut self, node: &'n KdlNode) -> Option<&'n KdlEntry> {
        let name = node.name().value();
        let mut arguments = Vec::new();
        for entry in node.entries() {
            match entry.name() {
                Some(key) => self.warning(
                    entry.span(),
                    format!("unknown property `{}` on `{name}`, ignored", key.value()),
                ),
                None => arguments.push(entry),
            }
        }
        match arguments.as_slice() {
            [value] => {
                self.no_annotation(name, value);
                Some(value)
            }
            [] => {
                self.error(node.name().span(), format!("`{name}` needs a value"));
                None
            }
            [_, extra, ..] => {
                self.error(
                    extra.span(),
                    format!(
                        "`{name}` takes one value, found another: {}",
                        entry_text(extra)
                    ),
                );
                None
            }
        }
    }

    /// The one value of a `name value` leaf node.
    pub(crate) fn argument<'n>(&mut self, node: &'n KdlNode) -> Option<&'n KdlEntry> {
        self.no_children(node);
        self.single_argument(node)
    }

    pub(crate) fn no_children(&mut self, node: &KdlNode) {
        if let Some(children) = node.children() {
            let name = node.name().value();
            let at = children.span();
            self.warning(at, format!("`{name}` takes no children block, ignored"));
        }
    }

    fn no_annotation(&mut self, name: &str, entry: &KdlEntry) {
        if let Some(annotation) = entry.ty() {
            self.warning(
                entry.span(),
                format!(
                    "type annotation `({})` on the value of `{name}` ignored",
                    annotation.value()
                ),
            );
        }
    }

    pub(crate) fn string(&mut self, node: &KdlNode) -> Option<String> {
        let entry = self.argument(node)?;
        self.string_of(node.name().value(), entry)
    }

    pub(crate) fn string_of(&mut self, name: &str, entry: &KdlEntry) -> Option<String> {
        match entry.value() {
            KdlValue::String(text) if text.is_empty() => {
                self.error(entry.span(), format!("`{name}` must not be empty"));
                None
            }
            KdlValue::String(text) => Some(text.clone()),
            other => {
                self.error(
                    entry.span(),
                    format!("`{name}` expects a string, found {}", describe(other)),
                );
                None
            }
        }
    }

    /// One or more string values: `agents "a" "b"`.
    pub(crate) fn strings(&mut self, node: &KdlNode) -> Vec<(String, SourceSpan)> {
        self.no_children(node);
        let name = node.name().value();
        let mut values = Vec::new();
        for entry in node.entries() {
            if let Some(key) = entry.name() {
                self.warning(
                    entry.span(),
                    format!("unknown property `{}` on `{name}`, ignored", key.value()),
                );
                continue;
            }
            self.no_annotation(name, entry);
            if let Some(text) = self.string_of(name, entry) {
                values.push((text, entry.span()));
            }
        }
        if node.entries().iter().all(|entry| entry.name().is_some()) {
            self.error(
                node.name().span(),
                format!("`{name}` needs at least one value"),
            );
        }
        values
    }

    pub(crate) fn bool(&mut self, node: &KdlNode) -> Option<bool> {
        let entry = self.argument(node)?;
        match entry.value() {
            KdlValue::Bool(value) => Some(*value),
            other => {
                let name = node.name().value();
                self.error(
                    entry.span(),
                    format!(
                        "`{name}` expects #true or #false, found {}",
                        describe(other)
                    ),
                );
                None
            }
        }
    }

    /// An integer in `min..=max`.
    pub(crate) fn integer(&mut self, node: &KdlNode, min: i128, max: i128) -> Option<i128> {
        let entry = self.argument(node)?;
        let name = node.name().value();
        match entry.value() {
            KdlValue::Integer(value) if *value < min => {
                self.error(
                    entry.span(),
                    format!("`{name}` must be at least {min}, found {value}"),
                );
                None
            }
            KdlValue::Integer(value) if *value > max => {
                self.error(
                    entry.span(),
                    format!("`{name}` must be at most {max}, found {value}"),
                );
                None
            }
            KdlValue::Integer(value) => Some(*value),
            other => {
                self.error(
                    entry.span(),
                    format!("`{name}` expects an integer, found {}", describe(other)),
                );
                None
            }
        }
    }

    /// A count that fits `usize` on every supported target.
    pub(crate) fn count(&mut self, node: &KdlNode, min: u32, max: u32) -> Option<usize> {
        let value = self.integer(node, i128::from(min), i128::from(max))?;
        usize::try_from(value).ok()
    }

    /// Whole seconds, at least `min`.
    pub(crate) fn seconds(&mut self, node: &KdlNode, min: u64) -> Option<Duration> {
        let secs = self.integer(node, i128::from(min), MAX_SECONDS)?;
        u64::try_from(secs).ok().map(Duration::from_secs)
    }

    /// A byte size: an integer, or a string such as `"64KB"` (see [`parse_size`]).
    pub(crate) fn size(&mut self, node: &KdlNode) -> Option<u64> {
        let entry = self.argument(node)?;
        let name = node.name().value();
        let parsed = match entry.value() {
            KdlValue::Integer(value) if *value < 0 => {
                Err(format!("`{name}` must not be negative, found {value}"))
            }
            KdlValue::Integer(value) => {
                u64::try_from(*value).map_err(|_| format!("`{name}` {value} is too large"))
            }
            KdlValue::String(text) => parse_size(text).map_err(|why| format!("`{name}`: {why}")),
            other => Err(format!(
                "`{name}` expects a size such as \"64KB\" or a number of bytes, found {}",
                describe(other)
            )),
        };
        parsed
            .map_err(|message| self.error(entry.span(), message))
            .ok()
    }

    pub(crate) fn socket_address(&mut self, node: &KdlNode) -> Option<SocketAddr> {
        let entry = self.argument(node)?;
        let name = node.name().value();
        let text = self.string_of(name, entry)?;
        text.parse()
            .map_err(|_| {
                self.error(
                    entry.span(),
                    format!("`{name}` \"{text}\" is not an IP:PORT socket address such as \"127.0.0.1:8080\""),
                )
            })
            .ok()
    }

    /// A request path such as `"/ws"` (see [`check_path`]).
    pub(crate) fn path(&mut self, node: &KdlNode) -> Option<String> {
        let entry = self.argument(node)?;
        let name = node.name().value();
        let path = self.string_of(name, entry)?;
        check_path(&path)
            .map_err(|why| self.error(entry.span(), format!("`{name}` {why}")))
            .ok()?;
        Some(path)
    }

    /// One of a fixed set of strings.
    pub(crate) fn choice<T: Copy>(&mut self, node: &KdlNode, options: &[(&str, T)]) -> Option<T> {
        let entry = self.argument(node)?;
        self.choice_of(node.name().value(), entry, options)
    }

    pub(crate) fn choice_of<T: Copy>(
        &mut self,
        name: &str,
        entry: &KdlEntry,
        options: &[(&str, T)],
    ) -> Option<T> {
        let text = self.string_of(name, entry)?;
        if let Some((_, value)) = options.iter().find(|(option, _)| *option == text) {
            return Some(*value);
        }
        let expected: Vec<String> = options
            .iter()
            .map(|(option, _)| format!("\"{option}\""))
            .collect();
        self.error(
            entry.span(),
            format!(
                "unknown `{name}` \"{text}\" (expected one of {})",
                expected.join(", ")
            ),
        );
        None
    }

    /// `name="..." value="..."` of `query-param` and `header`.
    pub(crate) fn name_and_value(&mut self, node: &KdlNode) -> Option<(String, Option<String>)> {
        self.no_children(node);
        let kind = node.name().value();
        let mut name = None;
        let mut value = None;
        for entry in node.entries() {
            match entry.name().map(|key| key.value()) {
                Some("name") => name = Some(entry),
                Some("value") => value = Some(entry),
                Some(other) => {
                    self.warning(
                        entry.span(),
                        format!("unknown property `{other}` on `{kind}`, ignored"),
                    );
                }
                None => {
                    self.error(
                        entry.span(),
                        format!("`{kind}` takes properties: {kind} name=\"...\" value=\"...\" (value is optional)"),
                    );
                    return None;
                }
            }
        }
        let Some(name) = name else {
            self.error(node.name().span(), format!("`{kind}` needs name=\"...\""));
            return None;
        };
        let name = self.string_of(kind, name)?;
        let value = match value {
            Some(entry) => match entry.value() {
                KdlValue::String(text) => Some(text.clone()),
                other => {
                    self.error(
                        entry.span(),
                        format!(
                            "`{kind}` value= expects a string, found {}",
                            describe(other)
                        ),
                    );
                    return None;
                }
            },
            None => None,
        };
        Some((name, value))
    }
}

/// Where an error about a node's value should point: the value, or the name when it has none.
pub(crate) fn value_span(node: &KdlNode) -> SourceSpan {
    node.entries()
        .iter()
        .find(|entry| entry.name().is_none())
        .map_or(node.name().span(), |entry| entry.span())
}

/// A route path as written in `path`, `path-prefix` and the `--path` override.
pub(crate) fn check_path(path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err(format!("\"{path}\" must start with '/'"));
    }
    if path.contains('?') {
        return Err(format!(
            "\"{path}\" must not contain a query; match it with `query-param`"
        ));
    }
    if path.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "\"{path}\" must not contain spaces or control characters"
        ));
    }
    Ok(())
}

/// A value as it reads in a message: `string "x"`, `integer 5`, `#true`.
pub(crate) fn describe(value: &KdlValue) -> String {
    match value {
        KdlValue::String(text) => format!("string \"{text}\""),
        KdlValue::Integer(number) => format!("integer {number}"),
        KdlValue::Float(number) => format!("number {number:?}"),
        KdlValue::Bool(flag) => format!("#{flag}"),
        KdlValue::Null => "#null".to_owned(),
    }
}

fn entry_text(entry: &KdlEntry) -> String {
    match entry.name() {
        Some(key) => format!("{}={}", key.value(), describe(entry.value())),
        None => describe(entry.value()),
    }
}

/// The candidate closest to `name`, if it is close enough to be a likely typo.
pub(crate) fn did_you_mean<'c>(
    name: &str,
    candidates: impl IntoIterator<Item = &'c str>,
) -> Option<&'c str> {
    candidates
        .into_iter()
        .map(|candidate| (strsim::levenshtein(name, candidate), candidate))
        .filter(|&(distance, candidate)| {
            let longest = name.chars().count().max(candidate.chars().count());
            let contains = name.len() >= 3
                && candidate.len() >= 3
                && (name.contains(candidate) || candidate.contains(name));
            distance <= (longest / 3).max(1) || contains
        })
        .min_by_key(|&(distance, _)| distance)
        .map(|(_, candidate)| candidate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_need_a_close_name() {
        let keys = ["matches", "priority", "upstream"];
        assert_eq!(did_you_mean("match", keys), Some("matches"));
        assert_eq!(did_you_mean("prority", keys), Some("priority"));
        assert_eq!(did_you_mean("upstreams", keys), Some("upstream"));
        assert_eq!(did_you_mean("zzz", keys), None);
        assert_eq!(
            did_you_mean("ws-backend", ["backend", "other"]),
            Some("backend")
        );
    }

    #[test]
    fn values_are_described_with_their_type() {
        assert_eq!(describe(&KdlValue::String("x".into())), "string \"x\"");
        assert_eq!(describe(&KdlValue::Integer(-5)), "integer -5");
        assert_eq!(describe(&KdlValue::Float(1.5)), "number 1.5");
        assert_eq!(describe(&KdlValue::Bool(true)), "#true");
        assert_eq!(describe(&KdlValue::Null), "#null");
    }
}
