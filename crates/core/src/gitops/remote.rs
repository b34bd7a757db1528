//! Where the GitOps repository is and which branch names git accepts: a remote URL parsed once
//! (its transport decided, credentials in it refused and never echoed) and the `git
//! check-ref-format` rules, so that a bad URL or branch is a config error at start-up rather
//! than a failed fetch at the first commit. Reaching the remote is the git adapter's.

/// How a remote is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    File,
    Http,
    Ssh,
}

/// A remote URL that deploybot knows how to reach.
#[derive(Clone, PartialEq, Eq)]
pub struct RemoteUrl {
    url: String,
    transport: Transport,
}

impl RemoteUrl {
    pub fn parse(url: &str) -> Result<RemoteUrl, String> {
        let transport = if url.starts_with("file://") {
            Transport::File
        } else if url.starts_with("https://") || url.starts_with("http://") {
            Transport::Http
        } else if url.starts_with("ssh://") || is_scp_like(url) {
            Transport::Ssh
        } else {
            return Err(format!(
                "unsupported repository URL {:?}: use file://, https://, http://, ssh:// or \
                 user@host:path",
                redact(url)
            ));
        };
        if transport == Transport::Http && userinfo(url).is_some_and(|u| u.contains(':')) {
            return Err(format!(
                "{}: do not put credentials in the URL; use gitops.token_env or gitops.token_file",
                redact(url)
            ));
        }
        Ok(RemoteUrl {
            url: url.to_string(),
            transport,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.url
    }

    pub fn transport(&self) -> Transport {
        self.transport
    }

    /// The URL without any userinfo, for messages.
    pub fn redacted(&self) -> String {
        redact(&self.url)
    }

    /// `owner/name` when the repository is on github.com (`https://github.com/o/r.git`,
    /// `git@github.com:o/r.git`, `ssh://git@github.com/o/r.git`).
    pub fn github_full_name(&self) -> Option<&str> {
        self.repo_on("github.com")
    }

    /// `OWNER/NAME` when the repository is served by `host` (compared ignoring case and any
    /// port): `https://HOST[:port]/OWNER/NAME[.git]`, `ssh://[user@]HOST[:port]/OWNER/NAME[.git]`
    /// or `user@HOST:OWNER/NAME[.git]`. GitHub (github.com, or a GitHub Enterprise Server whose
    /// API is on `host`) names its repositories so; a URL of another host, a `file://` one or a
    /// deeper path names none.
    pub fn repo_on(&self, host: &str) -> Option<&str> {
        let (authority, path) = match self.transport {
            Transport::File => return None,
            Transport::Http | Transport::Ssh if self.url.contains("://") => {
                self.url.split_once("://")?.1.split_once('/')?
            }
            Transport::Http | Transport::Ssh => self.url.split_once(':')?,
        };
        let hostname = authority.rsplit('@').next()?.split(':').next()?;
        if !hostname.eq_ignore_ascii_case(host) {
            return None;
        }
        let name = path.trim_end_matches('/').trim_end_matches(".git");
        let (owner, repo) = name.split_once('/')?;
        (!owner.is_empty() && !repo.is_empty() && !repo.contains('/')).then_some(name)
    }
}

impl std::fmt::Debug for RemoteUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RemoteUrl({})", self.redacted())
    }
}

fn is_scp_like(url: &str) -> bool {
    match url.split_once(':') {
        Some((host, path)) => {
            !host.contains('/') && host.contains('@') && !path.is_empty() && !path.starts_with("//")
        }
        None => false,
    }
}

fn userinfo(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split('/').next()?;
    authority.rsplit_once('@').map(|(u, _)| u)
}

fn redact(url: &str) -> String {
    match (url.split_once("://"), userinfo(url)) {
        (Some((scheme, rest)), Some(u)) => {
            format!("{scheme}://***@{}", &rest[u.len() + 1..])
        }
        _ => url.to_string(),
    }
}

/// Whether `name` is a full reference name git accepts (`refs/heads/main`): the rules of `git
/// check-ref-format`, which libgit2's `Reference::is_valid_name` also applies.
pub fn is_valid_ref_name(name: &str) -> bool {
    if name.is_empty()
        || name == "@"
        || name.starts_with('/')
        || name.ends_with('/')
        || name.ends_with('.')
        || name.contains("..")
        || name.contains("//")
        || name.contains("@{")
        || !name.contains('/')
    {
        return false;
    }
    let forbidden = |c: char| c.is_ascii_control() || " ~^:?*[\\".contains(c);
    if name.chars().any(forbidden) {
        return false;
    }
    name.split('/')
        .all(|part| !part.starts_with('.') && !part.ends_with(".lock"))
}

/// Whether `branch` (`main`, `env/production`) names a branch git accepts.
pub fn is_valid_branch_name(branch: &str) -> bool {
    is_valid_ref_name(&format!("refs/heads/{branch}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_classified() {
        assert_eq!(
            RemoteUrl::parse("file:///tmp/x.git").unwrap().transport(),
            Transport::File
        );
        assert_eq!(
            RemoteUrl::parse("https://github.com/o/r.git")
                .unwrap()
                .transport(),
            Transport::Http
        );
        assert_eq!(
            RemoteUrl::parse("git@github.com:o/r.git")
                .unwrap()
                .transport(),
            Transport::Ssh
        );
        assert_eq!(
            RemoteUrl::parse("ssh://git@host/o/r.git")
                .unwrap()
                .transport(),
            Transport::Ssh
        );
        assert!(RemoteUrl::parse("/tmp/x").is_err());
    }

    #[test]
    fn credentials_in_urls_are_refused_and_never_echoed() {
        let e =
            RemoteUrl::parse("https://x-access-token:ghs_secret@github.com/o/r.git").unwrap_err();
        assert!(!e.contains("ghs_secret"), "{e}");
        assert!(e.contains("token_env"), "{e}");
    }

    #[test]
    fn github_names_are_read_from_github_urls_only() {
        for (url, name) in [
            ("https://github.com/acme/gitops.git", Some("acme/gitops")),
            ("git@github.com:acme/gitops.git", Some("acme/gitops")),
            ("ssh://git@github.com/acme/gitops/", Some("acme/gitops")),
            ("https://ghe.example.com/acme/gitops.git", None),
            ("file:///srv/gitops.git", None),
        ] {
            assert_eq!(
                RemoteUrl::parse(url).unwrap().github_full_name(),
                name,
                "{url}"
            );
        }
    }

    #[test]
    fn repositories_are_named_on_the_host_that_serves_them() {
        for (url, host, name) in [
            (
                "https://ghe.example.com/acme/gitops.git",
                "ghe.example.com",
                Some("acme/gitops"),
            ),
            (
                "https://GHE.example.com:8443/acme/gitops",
                "ghe.example.com",
                Some("acme/gitops"),
            ),
            (
                "http://127.0.0.1:3000/acme/prod-gitops.git",
                "127.0.0.1",
                Some("acme/prod-gitops"),
            ),
            (
                "git@ghe.example.com:acme/gitops.git",
                "ghe.example.com",
                Some("acme/gitops"),
            ),
            (
                "ssh://git@ghe.example.com:22/acme/gitops.git",
                "ghe.example.com",
                Some("acme/gitops"),
            ),
            (
                "https://ghe.example.com/acme/gitops.git",
                "github.com",
                None,
            ),
            (
                "https://ghe.example.com/scm/acme/gitops.git",
                "ghe.example.com",
                None,
            ),
            (
                "https://ghe.example.com/gitops.git",
                "ghe.example.com",
                None,
            ),
            ("file:///srv/acme/gitops.git", "srv", None),
        ] {
            assert_eq!(
                RemoteUrl::parse(url).unwrap().repo_on(host),
                name,
                "{url} on {host}"
            );
        }
    }

    #[test]
    fn branch_names_follow_check_ref_format() {
        for ok in ["main", "env/production", "deploybot/x", "release-1.2"] {
            assert!(is_valid_branch_name(ok), "{ok}");
        }
        for bad in [
            "", "a..b", "a b", "x.lock", ".hidden", "a/", "/a", "a//b", "a~1", "a^", "a:b", "a?",
            "a*", "a[", "a\\b", "a@{1}", "end.", "tab\t",
        ] {
            assert!(!is_valid_branch_name(bad), "{bad:?}");
        }
    }
}
