//! The form of remote addresses in the config file: `right` as a local path,
//! `host:/path`, `user@host:/path` or `ssh://user@host:port/path`, and
//! `remote_host`; a host or user ssh could take for an option is refused.
//! (The flags' addresses are parsed by [`crate::remote`].)

/// A path as written: not empty, no NUL.
///
/// # Errors
/// Why not.
pub(crate) fn check_path(s: &str) -> Result<(), &'static str> {
    if s.is_empty() {
        Err("it is empty")
    } else if s.contains('\0') {
        Err("it holds a NUL character")
    } else {
        Ok(())
    }
}

/// The `[user@]host` part of a remote `right`, or `None` for a local path.
/// Like rsync and scp: remote when a `:` comes before the first `/`, or for an
/// `ssh://` URL.
pub(crate) fn remote_of(s: &str) -> Option<&str> {
    if let Some(rest) = s.strip_prefix("ssh://") {
        return Some(rest.split('/').next().unwrap_or(rest));
    }
    let head = &s[..s.find('/').unwrap_or(s.len())];
    // A bracketed IPv6 host holds colons of its own.
    let after_bracket = head.find(']').map_or(0, |i| i + 1);
    head[after_bracket..]
        .find(':')
        .map(|i| &s[..after_bracket + i])
}

pub(crate) fn check_right(s: &str) -> Result<(), String> {
    check_path(s)?;
    let Some(authority) = remote_of(s) else {
        return Ok(());
    };
    let (user, hostport) = match authority.split_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    if let Some(u) = user {
        check_user(u)?;
    }
    if let Some(rest) = s.strip_prefix("ssh://") {
        let path = &rest[authority.len()..];
        if path.len() <= 1 {
            return Err("the ssh:// address has no /path after the host".into());
        }
        let (host, port) = match hostport.strip_prefix('[') {
            Some(v6) => match v6.split_once(']') {
                Some((h, "")) => (h, None),
                Some((h, p)) => match p.strip_prefix(':') {
                    Some(p) => (h, Some(p)),
                    None => return Err(format!("unexpected {p:?} after the host")),
                },
                None => return Err("unclosed [ in the host".into()),
            },
            None => match hostport.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            },
        };
        check_host(host)?;
        if let Some(p) = port {
            if !matches!(p.parse::<u16>(), Ok(n) if n > 0) || !p.bytes().all(|b| b.is_ascii_digit())
            {
                return Err(format!("the port {p:?} is not a number from 1 to 65535"));
            }
        }
    } else {
        let host = hostport
            .strip_prefix('[')
            .map_or(hostport, |h| h.trim_end_matches(']'));
        check_host(host)?;
        if s.len() <= authority.len() + 1 {
            return Err("there is no path after the host:".into());
        }
    }
    Ok(())
}

fn check_user(user: &str) -> Result<(), String> {
    if user.is_empty() {
        Err("the user name before @ is empty".into())
    } else if user.starts_with('-') {
        Err(format!("the user name {user:?} starts with -"))
    } else if user
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '@')
    {
        Err(format!(
            "the user name {user:?} holds a space, control character or @"
        ))
    } else {
        Ok(())
    }
}

fn check_host(host: &str) -> Result<(), String> {
    if host.is_empty() {
        Err("the host name is empty".into())
    } else if host.starts_with('-') {
        // ssh would take it for an option.
        Err(format!("the host name {host:?} starts with -"))
    } else if host
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '/' | '@' | '[' | ']'))
    {
        Err(format!(
            "the host name {host:?} holds a space, control character, /, @, [ or ]"
        ))
    } else {
        Ok(())
    }
}

/// `remote_host`: `host` or `user@host`.
///
/// # Errors
/// Why not.
pub(crate) fn check_user_host(s: &str) -> Result<(), String> {
    let host = match s.split_once('@') {
        Some((user, host)) => {
            check_user(user)?;
            host
        }
        None => s,
    };
    check_host(host)
}
