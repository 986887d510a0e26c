//! ADD <url>: the download, as BuildKit's HTTP source makes it (the file
//! name from the URL's path, every redirect followed), and `--checksum`.

use super::{AddError, UNNAMED};
use hoist_oci::{Digest, Sha256};
use std::io::{self, Read, Write};
use std::path::Path;

/// The file name BuildKit's Dockerfile frontend gives a download: the last
/// component of the URL's (percent-decoded) path, as Go's `path.Base`.
pub fn download_name(url: &str) -> String {
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    let path = match after_scheme.find('/') {
        Some(i) => &after_scheme[i..],
        None => "",
    };
    let path = path.split(['?', '#']).next().unwrap_or("");
    let decoded = percent_decode(path);
    let trimmed = decoded.trim_end_matches('/');
    match trimmed.rsplit('/').next() {
        Some(base) if !base.is_empty() && base != "." => base.to_string(),
        _ => UNNAMED.to_string(),
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(v) = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Downloads `url` to `file` (following redirects); returns the content's
/// digest and size. The body is streamed to disk, never held in memory.
pub fn download(url: &str, file: &Path) -> Result<(Digest, u64), AddError> {
    let fail = |source: Box<dyn std::error::Error + Send + Sync>| AddError::Download {
        url: url.to_string(),
        source,
    };
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(std::time::Duration::from_secs(30)))
        .user_agent(concat!("hoist/", env!("CARGO_PKG_VERSION")))
        .build()
        .into();
    let response = agent.get(url).call().map_err(|e| fail(Box::new(e)))?;
    let status = response.status().as_u16();
    if !(200..300).contains(&status) {
        return Err(AddError::Status {
            url: url.to_string(),
            status,
        });
    }
    let mut body = response.into_body().into_reader();
    let mut out = std::fs::File::create(file).map_err(|e| fail(Box::new(e)))?;
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = body.read(&mut buf).map_err(|e| fail(Box::new(e)))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n]).map_err(|e| fail(Box::new(e)))?;
        size += n as u64;
    }
    Ok((hasher.finish(), size))
}

/// `--checksum=<algorithm>:<hex>` against the downloaded `file`, whose
/// SHA-256 is already known. The algorithms are those Go's `digest.Parse`
/// accepts (BuildKit's): sha256, sha384 and sha512, lower-case hex.
pub(super) fn verify_checksum(
    url: &str,
    expected: &str,
    file: &Path,
    sha256: &Digest,
) -> Result<(), AddError> {
    let bad = || AddError::BadChecksum {
        value: expected.to_string(),
    };
    let (algorithm, hex) = expected.split_once(':').ok_or_else(bad)?;
    let len = match algorithm {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => return Err(bad()),
    };
    if hex.len() != len || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(bad());
    }
    let read = |e| AddError::Read {
        path: file.display().to_string(),
        source: e,
    };
    let actual = match algorithm {
        "sha256" => sha256.hex(),
        "sha384" => hex::encode(hash_file::<sha2::Sha384>(file).map_err(read)?),
        _ => hex::encode(hash_file::<sha2::Sha512>(file).map_err(read)?),
    };
    if actual != hex {
        return Err(AddError::Checksum {
            url: url.to_string(),
            expected: expected.to_string(),
            actual: format!("{algorithm}:{actual}"),
        });
    }
    Ok(())
}

fn hash_file<H: sha2::Digest>(file: &Path) -> io::Result<Vec<u8>> {
    let mut hasher = H::new();
    let mut reader = std::fs::File::open(file)?;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            return Ok(hasher.finalize().to_vec());
        }
        hasher.update(&buf[..n]);
    }
}
