//! `amqp://` and `amqps://` URLs: `amqp[s]://[user[:password]@]host[:port][/…]`.

use super::ClientError;

/// A parsed AMQP URL.
#[derive(Clone, PartialEq, Eq)]
pub struct Url {
    /// `amqps`: TLS first.
    pub tls: bool,
    /// The user name (percent-decoded), if the URL has one.
    pub user: Option<String>,
    /// The password (percent-decoded), if the URL has one.
    pub password: Option<String>,
    /// The host (without brackets around an IPv6 literal).
    pub host: String,
    /// The port: given, else 5671 for amqps and 5672 for amqp.
    pub port: u16,
}

impl std::fmt::Debug for Url {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the password.
        f.debug_struct("Url")
            .field("tls", &self.tls)
            .field("user", &self.user)
            .field("host", &self.host)
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl Url {
    /// Parses `url`.
    ///
    /// # Errors
    ///
    /// [`ClientError::Url`] saying what is wrong.
    pub fn parse(url: &str) -> Result<Self, ClientError> {
        let bad = |why: &str| ClientError::Url(format!("{why}: {}", redact(url)));
        let (tls, rest) = if let Some(rest) = url.strip_prefix("amqps://") {
            (true, rest)
        } else if let Some(rest) = url.strip_prefix("amqp://") {
            (false, rest)
        } else {
            return Err(bad("not an amqp:// or amqps:// URL"));
        };
        let authority = rest.split('/').next().unwrap_or(rest);
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let (user, password) = match userinfo {
            None => (None, None),
            Some(u) => {
                let (user, pass) = match u.split_once(':') {
                    Some((user, pass)) => (user, Some(pass)),
                    None => (u, None),
                };
                let decode = |s: &str| decode(s).ok_or_else(|| bad("bad percent-encoding"));
                (Some(decode(user)?), pass.map(decode).transpose()?)
            }
        };
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (host, after) = v6.split_once(']').ok_or_else(|| bad("unclosed '['"))?;
            (host, after.strip_prefix(':'))
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            }
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let port = match port {
            Some(p) => p.parse().map_err(|_| bad("bad port"))?,
            None if tls => 5671,
            None => 5672,
        };
        Ok(Self {
            tls,
            user,
            password,
            host: host.to_string(),
            port,
        })
    }

    /// `host:port` to connect to, brackets around an IPv6 literal.
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// `url` with its password replaced, for error messages.
fn redact(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rsplit_once('@') {
        Some((userinfo, _)) if userinfo.contains(':') => {
            let user = userinfo.split(':').next().unwrap_or_default();
            format!(
                "{}{user}:***@{}",
                &url[..scheme_end + 3],
                &rest[userinfo.len() + 1..]
            )
        }
        _ => url.to_string(),
    }
}

/// RFC 3986 percent-decoding.
fn decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse() {
        let u = Url::parse("amqps://alice:p%40ss@ferry-1:5671/x").unwrap();
        assert!(u.tls);
        assert_eq!(u.user.as_deref(), Some("alice"));
        assert_eq!(u.password.as_deref(), Some("p@ss"));
        assert_eq!(u.address(), "ferry-1:5671");
        let u = Url::parse("amqp://[::1]").unwrap();
        assert_eq!((u.tls, u.address()), (false, "[::1]:5672".to_string()));
        assert_eq!(Url::parse("amqps://h").unwrap().port, 5671);
        assert!(Url::parse("http://h").is_err());
        assert!(Url::parse("amqp://:5672").is_err());
        assert!(Url::parse("amqp://h:x").is_err());
    }

    #[test]
    fn errors_never_show_the_password() {
        let e = Url::parse("amqp://bob:secret@h:bad").unwrap_err();
        assert!(!e.to_string().contains("secret"), "{e}");
        assert!(!format!("{:?}", Url::parse("amqp://bob:secret@h").unwrap()).contains("secret"));
    }
}
