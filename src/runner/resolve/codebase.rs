//! What `<+codebase.*>` and the `DRONE_*` variables say in a local run:
//! read from the git checkout holding the pipeline file. No git, or not a
//! checkout: everything is absent (expressions give `null`).

use std::path::Path;

/// The commit being built, as Harness would describe a push build.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Codebase {
    /// The checkout's top directory (what `cloneCodebase` copies).
    pub top: std::path::PathBuf,
    /// `None` on a detached HEAD.
    pub branch: Option<String>,
    pub commit_sha: String,
    /// The tag pointing exactly at HEAD, if any.
    pub tag: Option<String>,
    /// `remote.origin.url`, credentials removed.
    pub repo_url: Option<String>,
    /// `owner/name` from the remote URL, else the checkout's directory name.
    pub repo: String,
    pub commit_message: String,
    pub author_name: String,
    pub author_email: String,
}

/// Expression keys (after `codebase.`) with no value without git.
pub const KEYS: &[&str] = &[
    "branch",
    "commitSha",
    "shortCommitSha",
    "repoUrl",
    "build.type",
    "tag",
    "commitRef",
    "commitMessage",
    "gitUser",
    "gitUserEmail",
    "gitUserId",
    "sourceBranch",
    "targetBranch",
    "prNumber",
    "prTitle",
    "pullRequestLink",
    "pullRequestBody",
];

/// One line of git's answer; `None` without git, a checkout or an answer.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = super::super::checkout::git(dir, args).ok()?;
    let text = String::from_utf8(out).ok()?;
    Some(text.trim_end_matches('\n').to_string())
}

impl Codebase {
    /// Reads the checkout containing `dir`; `None` without git or a commit.
    pub fn read(dir: &Path) -> Option<Codebase> {
        let top = git(dir, &["rev-parse", "--show-toplevel"])?;
        let commit_sha = git(dir, &["rev-parse", "HEAD"])?;
        let branch = git(dir, &["symbolic-ref", "--quiet", "--short", "HEAD"]);
        let tag = git(dir, &["describe", "--tags", "--exact-match", "HEAD"]);
        let repo_url =
            git(dir, &["config", "--get", "remote.origin.url"]).map(|u| strip_userinfo(&u));
        let repo = repo_url
            .as_deref()
            .and_then(repo_from_url)
            .or_else(|| {
                Path::new(&top)
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
            })
            .unwrap_or_default();
        let show = |format: &str| git(dir, &["log", "-1", &format!("--format={format}")]);
        Some(Codebase {
            top: std::path::PathBuf::from(&top),
            branch,
            commit_sha,
            tag,
            repo_url,
            repo,
            commit_message: show("%B").unwrap_or_default().trim_end().to_string(),
            author_name: show("%an").unwrap_or_default(),
            author_email: show("%ae").unwrap_or_default(),
        })
    }

    fn build_type(&self) -> &'static str {
        if self.tag.is_some() && self.branch.is_none() {
            "tag"
        } else {
            "branch"
        }
    }

    fn commit_ref(&self) -> String {
        match (&self.branch, &self.tag) {
            (Some(b), _) => format!("refs/heads/{b}"),
            (None, Some(t)) => format!("refs/tags/{t}"),
            (None, None) => self.commit_sha.clone(),
        }
    }

    /// `codebase.KEY` values for expressions.
    pub fn expression_values(&self) -> Vec<(&'static str, String)> {
        let mut v = vec![
            ("commitSha", self.commit_sha.clone()),
            (
                "shortCommitSha",
                self.commit_sha.chars().take(7).collect::<String>(),
            ),
            ("build.type", self.build_type().to_string()),
            ("commitRef", self.commit_ref()),
            ("commitMessage", self.commit_message.clone()),
            ("gitUser", self.author_name.clone()),
            ("gitUserEmail", self.author_email.clone()),
        ];
        if let Some(b) = &self.branch {
            v.push(("branch", b.clone()));
        }
        if let Some(t) = &self.tag {
            v.push(("tag", t.clone()));
        }
        if let Some(u) = &self.repo_url {
            v.push(("repoUrl", u.clone()));
        }
        v
    }

    /// The Drone-named variables Harness sets for a push build.
    pub fn drone_env(&self) -> Vec<(&'static str, String)> {
        let mut v = vec![
            ("DRONE_COMMIT_SHA", self.commit_sha.clone()),
            ("DRONE_COMMIT", self.commit_sha.clone()),
            ("DRONE_COMMIT_REF", self.commit_ref()),
            ("DRONE_COMMIT_MESSAGE", self.commit_message.clone()),
            ("DRONE_COMMIT_AUTHOR", self.author_name.clone()),
            ("DRONE_COMMIT_AUTHOR_NAME", self.author_name.clone()),
            ("DRONE_COMMIT_AUTHOR_EMAIL", self.author_email.clone()),
            ("DRONE_REPO", self.repo.clone()),
            (
                "DRONE_REPO_NAME",
                self.repo.rsplit('/').next().unwrap_or_default().to_string(),
            ),
            (
                "DRONE_BUILD_EVENT",
                if self.build_type() == "tag" {
                    "tag"
                } else {
                    "push"
                }
                .to_string(),
            ),
        ];
        if let Some((owner, _)) = self.repo.split_once('/') {
            v.push(("DRONE_REPO_OWNER", owner.to_string()));
            v.push(("DRONE_REPO_NAMESPACE", owner.to_string()));
        }
        if let Some(b) = &self.branch {
            v.push(("DRONE_BRANCH", b.clone()));
            v.push(("DRONE_COMMIT_BRANCH", b.clone()));
            v.push(("DRONE_SOURCE_BRANCH", b.clone()));
            v.push(("DRONE_TARGET_BRANCH", b.clone()));
        }
        if let Some(t) = &self.tag {
            v.push(("DRONE_TAG", t.clone()));
        }
        if let Some(u) = &self.repo_url {
            v.push(("DRONE_REMOTE_URL", u.clone()));
            if u.starts_with("http") {
                v.push(("DRONE_GIT_HTTP_URL", u.clone()));
            } else {
                v.push(("DRONE_GIT_SSH_URL", u.clone()));
            }
        }
        v
    }
}

/// `https://user:token@host/x` -> `https://host/x`: a token in the remote
/// URL must not reach step environments or the dry-run output.
fn strip_userinfo(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let host_end = rest.find('/').unwrap_or(rest.len());
    match rest[..host_end].rfind('@') {
        Some(at) => format!("{scheme}://{}", &rest[at + 1..]),
        None => url.to_string(),
    }
}

/// `owner/name` of `https://host/owner/name.git` or `git@host:owner/name.git`.
fn repo_from_url(url: &str) -> Option<String> {
    let path = match url.split_once("://") {
        Some((_, rest)) => rest.split_once('/')?.1,
        None => url.split_once(':')?.1,
    };
    let path = path.trim_end_matches('/').trim_end_matches(".git");
    let mut parts = path.rsplitn(3, '/');
    let name = parts.next().filter(|n| !n.is_empty())?;
    Some(match parts.next() {
        Some(owner) if !owner.is_empty() => format!("{owner}/{name}"),
        _ => name.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_urls() {
        assert_eq!(
            strip_userinfo("https://me:tok@github.com/a/b.git"),
            "https://github.com/a/b.git"
        );
        assert_eq!(
            strip_userinfo("git@github.com:a/b.git"),
            "git@github.com:a/b.git"
        );
        assert_eq!(
            repo_from_url("https://github.com/a/b.git").as_deref(),
            Some("a/b")
        );
        assert_eq!(
            repo_from_url("git@github.com:org/repo").as_deref(),
            Some("org/repo")
        );
    }

    #[test]
    fn no_checkout_means_no_codebase() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Codebase::read(dir.path()), None);
    }
}
