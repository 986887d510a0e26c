//! Where `hoist build` takes its context from, as `docker build` does: a
//! directory; `-`, standard input holding a tar (plain, gzip, bzip2, xz or
//! zstd) or else a Dockerfile and no context; or a git repository,
//! `URL#REF:SUBDIR` (`git://`, `git@`, `ssh://`, or an `http(s)://` URL
//! ending in `.git`), fetched at REF (default: the remote's HEAD) with its
//! `.git` left out, SUBDIR being the context.

use anyhow::{Context as _, bail};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A context ready to build: its directory, and the Dockerfile when
/// standard input was one.
pub struct Context {
    pub dir: PathBuf,
    pub dockerfile: Option<Vec<u8>>,
    /// The Dockerfile that came with the context (a context artifact's),
    /// used unless -f names another.
    pub dockerfile_path: Option<PathBuf>,
    /// Where a tar or a repository was unpacked, removed when dropped.
    _scratch: Option<tempfile::TempDir>,
}

/// Whether `text` names a git repository, by Docker's rules.
pub fn is_git_url(text: &str) -> bool {
    let url = text.split('#').next().unwrap_or_default();
    text.starts_with("git://")
        || text.starts_with("git@")
        || text.starts_with("ssh://")
        || ((url.starts_with("https://") || url.starts_with("http://")) && url.ends_with(".git"))
}

/// The context `arg` names (see the module's description).
pub fn resolve(arg: &Path) -> anyhow::Result<Context> {
    let text = arg.to_string_lossy();
    if text == "-" {
        return from_stdin(std::io::stdin().lock());
    }
    if is_git_url(&text) {
        return from_git(&text);
    }
    if !arg.is_dir() {
        bail!("build context {} is not a directory", arg.display());
    }
    Ok(Context {
        dir: arg.to_path_buf(),
        dockerfile: None,
        dockerfile_path: None,
        _scratch: None,
    })
}

impl Context {
    /// A context unpacked into `scratch` (removed when dropped), with the
    /// Dockerfile that came with it.
    pub fn unpacked(scratch: tempfile::TempDir, dir: PathBuf, dockerfile: PathBuf) -> Context {
        Context {
            dir,
            dockerfile: None,
            dockerfile_path: Some(dockerfile),
            _scratch: Some(scratch),
        }
    }
}

fn scratch() -> anyhow::Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix("hoist-context-")
        .tempdir()
        .context("cannot create a directory for the build context")
}

/// A tar (perhaps compressed) unpacked, or a Dockerfile with an empty
/// context.
pub fn from_stdin(input: impl Read) -> anyhow::Result<Context> {
    let reading = "cannot read the build context from standard input";
    // A pipe hands its bytes over as they come: the magic numbers are
    // looked for in whole heads, not in whatever the first read returned.
    let (head, input) = head_of(input, 512).context(reading)?;
    let kind = hoist_oci::compression::Compression::detect(&head);
    let stream = hoist_oci::compression::decompress(kind, std::io::Cursor::new(head).chain(input));
    let (head, mut stream) = head_of(stream, 512).context(reading)?;
    let is_tar = head.len() >= 262 && &head[257..262] == b"ustar";
    let mut stream = std::io::Cursor::new(head).chain(&mut stream);
    let scratch = scratch()?;
    let dir = scratch.path().join("context");
    std::fs::create_dir(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    if !is_tar {
        let mut dockerfile = Vec::new();
        stream
            .read_to_end(&mut dockerfile)
            .context("cannot read the Dockerfile from standard input")?;
        return Ok(Context {
            dir,
            dockerfile: Some(dockerfile),
            dockerfile_path: None,
            _scratch: Some(scratch),
        });
    }
    let options = hoist_oci::layer::ExtractOptions {
        chown: false,
        overlay_whiteouts: false,
        user_xattrs: false,
        oci_whiteouts: true,
    };
    hoist_oci::layer::extract(stream, &dir, &options)
        .context("cannot unpack the build context read from standard input")?;
    Ok(Context {
        dir,
        dockerfile: None,
        dockerfile_path: None,
        _scratch: Some(scratch),
    })
}

/// The first `n` bytes of `input` (fewer only at its end), and the rest.
fn head_of<R: Read>(mut input: R, n: u64) -> std::io::Result<(Vec<u8>, R)> {
    let mut head = Vec::new();
    (&mut input).take(n).read_to_end(&mut head)?;
    Ok((head, input))
}

/// The repository fetched at the fragment's ref, its subdirectory the
/// context.
fn from_git(text: &str) -> anyhow::Result<Context> {
    let (url, fragment) = text.split_once('#').unwrap_or((text, ""));
    let (reference, subdir) = fragment.split_once(':').unwrap_or((fragment, ""));
    if subdir.split('/').any(|part| part == "..") || subdir.starts_with('/') {
        bail!("git context {text}: the subdirectory `{subdir}` must stay inside the repository");
    }
    let scratch = scratch()?;
    let repo = scratch.path().join("repo");
    let git = |args: &[&str]| -> anyhow::Result<std::process::Output> {
        Command::new("git")
            .arg("-C")
            .arg(&repo)
            .args(args)
            .env("GIT_TERMINAL_PROMPT", "0")
            .output()
            .context("cannot run git, which a git build context needs: install git")
    };
    std::fs::create_dir(&repo)?;
    let init = git(&["init", "-q"])?;
    if !init.status.success() {
        bail!(
            "git init failed: {}",
            String::from_utf8_lossy(&init.stderr).trim()
        );
    }
    let wanted = if reference.is_empty() {
        "HEAD"
    } else {
        reference
    };
    // A branch, a tag or HEAD in one shallow fetch; a commit the server will
    // not serve by itself comes with the whole history.
    let mut fetched = git(&["fetch", "-q", "--depth", "1", url, wanted])?;
    if !fetched.status.success() {
        fetched = git(&[
            "fetch",
            "-q",
            url,
            "+refs/heads/*:refs/remotes/origin/*",
            "+refs/tags/*:refs/tags/*",
        ])?;
        if !fetched.status.success() {
            bail!(
                "cannot fetch {url}: {}",
                String::from_utf8_lossy(&fetched.stderr).trim()
            );
        }
        let checkout = git(&["checkout", "-q", "--detach", wanted])?;
        if !checkout.status.success() {
            bail!(
                "git context {text}: {url} has no ref or commit `{wanted}`: {}",
                String::from_utf8_lossy(&checkout.stderr).trim()
            );
        }
    } else {
        let checkout = git(&["checkout", "-q", "--detach", "FETCH_HEAD"])?;
        if !checkout.status.success() {
            bail!(
                "cannot check out {wanted} of {url}: {}",
                String::from_utf8_lossy(&checkout.stderr).trim()
            );
        }
    }
    std::fs::remove_dir_all(repo.join(".git"))
        .with_context(|| format!("cannot remove the checkout's .git of {url}"))?;
    let dir = if subdir.is_empty() {
        repo.clone()
    } else {
        repo.join(subdir)
    };
    let real = dir.canonicalize().with_context(|| {
        format!("git context {text}: {url} at {wanted} has no directory `{subdir}`")
    })?;
    if !real.starts_with(repo.canonicalize()?) || !real.is_dir() {
        bail!("git context {text}: `{subdir}` is not a directory inside the repository");
    }
    Ok(Context {
        dir: real,
        dockerfile: None,
        dockerfile_path: None,
        _scratch: Some(scratch),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_urls_are_told_as_docker_tells_them() {
        for url in [
            "git://host/repo.git",
            "git@github.com:org/repo.git#main",
            "ssh://git@host/repo",
            "https://host/org/repo.git#v1:sub/dir",
            "http://127.0.0.1:8080/repo.git",
        ] {
            assert!(is_git_url(url), "{url}");
        }
        for path in [
            "-",
            ".",
            "ctx",
            "https://host/archive.tar.gz",
            "./repo.git.d",
        ] {
            assert!(!is_git_url(path), "{path}");
        }
    }

    #[test]
    fn standard_input_is_a_tar_or_else_a_dockerfile() {
        let context = from_stdin(&b"FROM scratch\nENV A=1\n"[..]).unwrap();
        assert_eq!(
            context.dockerfile.as_deref(),
            Some(&b"FROM scratch\nENV A=1\n"[..])
        );
        assert_eq!(std::fs::read_dir(&context.dir).unwrap().count(), 0);
        let mut tar = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_ustar();
        header.set_size(3);
        header.set_mode(0o644);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        header.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut header, "app/a.txt", &b"abc"[..])
            .unwrap();
        let bytes = tar.into_inner().unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &bytes).unwrap();
        /// A pipe that hands over one byte per read.
        struct Trickle<'a>(&'a [u8]);
        impl Read for Trickle<'_> {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                let Some((first, rest)) = self.0.split_first() else {
                    return Ok(0);
                };
                buf[0] = *first;
                self.0 = rest;
                Ok(1)
            }
        }
        for input in [bytes.clone(), gz.finish().unwrap()] {
            let context = from_stdin(Trickle(&input)).unwrap();
            assert!(context.dockerfile.is_none());
            assert_eq!(
                std::fs::read(context.dir.join("app/a.txt")).unwrap(),
                b"abc"
            );
        }
    }
}
