//! Artifact paths that cannot leave the artifact root.
//!
//! Every path a client names (upload, download, listing, deletion) becomes an [`ArtifactPath`]
//! before anything touches storage. Parsing follows MLflow's `validate_path_is_safe` and the
//! traversal advisories against it (CVE-2023-6909, CVE-2024-1560 and others): the input is
//! percent-decoded until it stops changing, so double encoding cannot smuggle `..` through; then
//! backslashes, drive letters, absolute paths, `.`/`..` segments, control characters and the URL
//! delimiters `#`, `?` and `;` are refused. What remains is a list of plain names, joined with `/`.
//! Symbolic links are a property of the storage, not of the string: the store checks them.

use crate::error::{Error, Result};

/// Longest accepted path, in bytes after decoding.
pub const MAX_ARTIFACT_PATH_BYTES: usize = 4096;

/// A relative path inside the artifact root, made only of plain segments.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct ArtifactPath {
    segments: Vec<String>,
}

impl ArtifactPath {
    /// The root itself.
    pub fn root() -> Self {
        ArtifactPath::default()
    }

    /// Parses a client-supplied path (possibly percent-encoded, possibly several times).
    /// An empty string is the root. A trailing slash is allowed.
    pub fn parse(raw: &str) -> Result<Self> {
        let decoded = decode_until_stable(raw)?;
        if decoded.len() > MAX_ARTIFACT_PATH_BYTES {
            return Err(Error::invalid(format!("Invalid artifact path: longer than {MAX_ARTIFACT_PATH_BYTES} bytes")));
        }
        let reject =
            |why: &str| Err(Error::invalid(format!("Invalid artifact path '{}': {why}", escape_for_message(&decoded))));
        if let Some(c) = decoded.chars().find(|c| c.is_control()) {
            return reject(&format!("control character U+{:04X} is not allowed", c as u32));
        }
        if decoded.contains('\\') {
            return reject("backslashes are not allowed");
        }
        if let Some(c) = decoded.chars().find(|c| matches!(c, '#' | '?' | ';')) {
            return reject(&format!("'{c}' is not allowed"));
        }
        if decoded.starts_with('/') || decoded.starts_with('~') {
            return reject("absolute paths are not allowed");
        }
        let bytes = decoded.as_bytes();
        if bytes.len() >= 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':' {
            return reject("drive letters are not allowed");
        }
        let mut segments = Vec::new();
        for seg in decoded.split('/') {
            match seg {
                "" => continue,
                "." | ".." => return reject("'.' and '..' segments are not allowed"),
                s => segments.push(s.to_owned()),
            }
        }
        Ok(ArtifactPath { segments })
    }

    /// The plain segments.
    pub fn segments(&self) -> &[String] {
        &self.segments
    }

    /// Whether this is the root.
    pub fn is_root(&self) -> bool {
        self.segments.is_empty()
    }

    /// This path followed by `other`.
    pub fn join(&self, other: &ArtifactPath) -> ArtifactPath {
        let mut segments = self.segments.clone();
        segments.extend(other.segments.iter().cloned());
        ArtifactPath { segments }
    }

    /// This path followed by one segment, checked like any other.
    pub fn child(&self, name: &str) -> Result<ArtifactPath> {
        Ok(self.join(&ArtifactPath::parse(name)?))
    }

    /// The last segment, if any.
    pub fn file_name(&self) -> Option<&str> {
        self.segments.last().map(String::as_str)
    }
}

impl ArtifactPath {
    /// The path under the artifact root of an `mlflow-artifacts:/...` URI (a run's or an
    /// experiment's artifact location), with or without a `//host:port` authority.
    pub fn from_proxied_uri(uri: &str) -> Result<Self> {
        let rest = uri
            .strip_prefix("mlflow-artifacts:")
            .ok_or_else(|| Error::invalid(format!("The artifact location '{uri}' is not served by this server")))?;
        let rest = match rest.strip_prefix("//") {
            Some(with_host) => with_host.split_once('/').map_or("", |(_, p)| p),
            None => rest,
        };
        ArtifactPath::parse(rest.trim_start_matches('/'))
    }
}

impl std::fmt::Display for ArtifactPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.segments.join("/"))
    }
}

/// Percent-decodes repeatedly until the string no longer changes (at most a few rounds).
fn decode_until_stable(raw: &str) -> Result<String> {
    let mut current = raw.to_owned();
    for _ in 0..8 {
        let next = percent_decode(&current)
            .ok_or_else(|| Error::invalid("Invalid artifact path: percent-encoding does not decode to UTF-8"))?;
        if next == current {
            return Ok(current);
        }
        current = next;
    }
    Err(Error::invalid("Invalid artifact path: too many levels of percent-encoding"))
}

/// Decodes `%XX` escapes; `None` when the result is not UTF-8. Malformed escapes stay as they are.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = |b: u8| (b as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// Renders a rejected path for an error message without echoing control characters.
fn escape_for_message(s: &str) -> String {
    s.chars().flat_map(char::escape_default).take(300).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn plain_paths_parse() {
        let p = ArtifactPath::parse("1/abc/artifacts/folder/sub/b.json").unwrap();
        assert_eq!(p.segments().len(), 6);
        assert_eq!(p.to_string(), "1/abc/artifacts/folder/sub/b.json");
        assert!(ArtifactPath::parse("").unwrap().is_root());
        assert_eq!(ArtifactPath::parse("a/b/").unwrap().to_string(), "a/b");
        assert_eq!(ArtifactPath::parse("a%20b.txt").unwrap().to_string(), "a b.txt");
        assert_eq!(ArtifactPath::parse("100%.txt").unwrap().to_string(), "100%.txt");
    }

    #[test]
    fn traversal_forms_are_rejected() {
        for bad in [
            "..",
            "../etc/passwd",
            "a/../../b",
            "a/./b",
            "/etc/passwd",
            "//host/share",
            "C:\\Windows",
            "c:/windows",
            "a\\..\\b",
            "%2e%2e/x",
            "%2E%2E%2Fx",
            "%252e%252e%252fx",
            "%25252e%25252e/x",
            "a/%2e%2e",
            "a%00b",
            "a\nb",
            "a#../b",
            "a?x=../b",
            "a;x=../b",
            "~/x",
        ] {
            let err = ArtifactPath::parse(bad).expect_err(bad);
            assert!(err.to_string().starts_with("Invalid artifact path"), "{bad}: {err}");
        }
    }

    proptest! {
        /// Whatever the input, an accepted path has only plain segments, so joining it under a
        /// root can never climb out of the root.
        #[test]
        fn accepted_paths_never_escape(raw in "[a-zA-Z0-9._%/\\\\:#?;~ -]{0,40}") {
            if let Ok(p) = ArtifactPath::parse(&raw) {
                for seg in p.segments() {
                    prop_assert!(!seg.is_empty());
                    prop_assert!(seg != "." && seg != "..");
                    prop_assert!(!seg.contains('/') && !seg.contains('\\'));
                }
                // Parsing the rendered form again gives the same path.
                let again = ArtifactPath::parse(&p.to_string());
                if !p.to_string().contains('%') {
                    prop_assert_eq!(again.unwrap(), p);
                }
            }
        }

        /// Any encoding depth of `..` is refused.
        #[test]
        fn encoded_dotdot_is_refused(depth in 0usize..4, prefix in "[a-z]{0,5}") {
            let mut dots = String::from("..");
            for _ in 0..depth {
                dots = dots.replace('%', "%25").replace('.', "%2e");
            }
            let raw = if prefix.is_empty() { format!("{dots}/x") } else { format!("{prefix}/{dots}/x") };
            prop_assert!(ArtifactPath::parse(&raw).is_err());
        }
    }
}
