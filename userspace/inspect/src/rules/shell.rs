//! Confirmation of command-injection candidates with a shell-token check: which separator
//! introduces the command, how unambiguous the command name is, and whether its arguments have
//! shell shape (flags, paths, addresses, redirections) rather than English words.

/// Commands that are almost never English words: any separator before them is enough.
const UNAMBIGUOUS: &[&str] = &[
    "whoami", "uname", "ifconfig", "ipconfig", "systeminfo", "sysinfo", "netstat", "nslookup",
    "wget", "curl", "ncat", "netcat", "nc", "bash", "sh", "zsh", "ksh", "csh", "tcsh",
    "powershell", "pwsh", "passwd",
    "tasklist", "taskkill", "certutil", "bitsadmin", "xterm", "mkfifo", "mknod", "socat",
    "chmod", "chown", "crontab", "wmic", "useradd", "usermod", "nohup", "xargs", "printenv",
    "ipconfig.exe", "cmd.exe", "whoami.exe", "lsof", "traceroute", "tracert", "nbtstat",
    "schtasks", "icacls", "cacls", "findstr", "telnet", "tftp", "gawk", "egrep", "base64",
    "pkill", "killall", "rmdir", "chattr", "iptables",
];

/// Commands whose arguments carry a number (delays, counts).
const TIMING: &[&str] = &["sleep", "ping", "timeout", "usleep", "choice"];

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Separator {
    /// `;`, `|`, `&`, backtick, `$(`, a line start inside the message.
    Shell,
    /// A quote or paren that closes the application's literal or call.
    Quote,
    /// The message starts with the command.
    Start,
}

/// Arguments that only make sense to a shell.
fn shell_shaped(command: &str, args: &str) -> bool {
    let args = args.trim_start();
    let Some(first) = args.split([' ', ';', '|', '&', '`', ')']).next() else {
        return true;
    };
    if first.is_empty() {
        return true;
    }
    let b = first.as_bytes();
    if matches!(b[0], b'-' | b'/' | b'\\' | b'~' | b'>' | b'<' | b'$' | b'*' | b'%' | b'`')
        || first.starts_with("./")
        || first.starts_with("../")
        || first.contains("://")
        || first.contains("/")
        || (b.len() >= 2 && b[0].is_ascii_alphabetic() && b[1] == b':')
        || first.contains('*')
        || first.starts_with("2>")
    {
        return true;
    }
    let numeric = first.bytes().all(|c| c.is_ascii_digit() || c == b'.');
    if numeric {
        return TIMING.contains(&command) || first.contains('.');
    }
    // `echo` output redirected or piped, e.g. `echo x > file`.
    command == "echo" && (args.contains('>') || args.contains('|'))
}

fn separator_at(text: &str, start: usize) -> (Separator, usize) {
    let rest = &text[start..];
    let first = rest.as_bytes().first().copied().unwrap_or(b' ');
    let kind = match first {
        b';' | b'|' | b'&' | b'`' | b'\n' => Separator::Shell,
        b'$' => Separator::Shell,
        b'\'' | b'"' | b'(' | b')' => Separator::Quote,
        _ => Separator::Start,
    };
    let skip = match kind {
        Separator::Start => 0,
        _ => rest.len() - rest[1..].trim_start_matches(['(', ' ']).len(),
    };
    (kind, start + skip)
}

/// A command after a separator: `; cat /etc/passwd`, `| id`, `" whoami`, `a);ls -la`.
pub fn chained_command(text: &str, start: usize, end: usize) -> bool {
    let (separator, command_start) = separator_at(text, start);
    let command_path = &text[command_start.min(end)..end];
    let command = command_path
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or(command_path)
        .to_ascii_lowercase();
    let absolute = command_path.contains('/') || command_path.contains('\\');
    let args = &text[end..];
    let shaped = shell_shaped(&command, args);
    let unambiguous = UNAMBIGUOUS.contains(&command.as_str()) || absolute;
    match separator {
        Separator::Shell => unambiguous || shaped,
        Separator::Quote => unambiguous || (shaped && !args.trim().is_empty()),
        Separator::Start => (unambiguous || absolute) && shaped && !args.trim().is_empty(),
    }
}

#[cfg(test)]
mod tests {
    use super::chained_command;

    fn check(text: &str, sep_at: usize, command: &str) -> bool {
        let end = text.find(command).unwrap() + command.len();
        chained_command(text, sep_at, end)
    }

    #[test]
    fn attacks() {
        assert!(check("; cat /etc/passwd", 0, "cat"));
        assert!(check("a | id", 2, "id"));
        assert!(check("\" whoami", 0, "whoami"));
        assert!(check("x && ping -c 10 10.0.0.1", 2, "ping"));
        assert!(check("& sleep 5", 0, "sleep"));
        assert!(check("$(id)", 0, "id"));
        assert!(check("'ls -la /home'", 0, "ls"));
        assert!(check("wget http://x/y.sh", 0, "wget"));
        assert!(check("|/usr/bin/id|", 0, "/usr/bin/id"));
    }

    #[test]
    fn chat() {
        assert!(!check("(id card)", 0, "id"));
        assert!(!check("I'm tired; sleep now", 9, "sleep"));
        assert!(!check("lol; echo that", 3, "echo"));
        assert!(!check("cat food is great", 0, "cat"));
        assert!(!check("so; time for bed", 2, "time"));
    }
}
