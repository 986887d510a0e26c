//! Platforms: the OS, architecture and variant an image runs on, as an
//! index entry states it and as `--platform` and `FROM --platform` name it.
//!
//! One type and one normalisation serve both: containerd's
//! `platforms.Normalize`, which BuildKit applies to what users type and
//! which its matcher applies to index entries before comparing. So the
//! platform a build targets, the config it writes and the index entry a
//! pull chooses can never disagree.

use serde::{Deserialize, Serialize};

use crate::image::serde_util::nullable;
use crate::image::{Descriptor, Index};

/// The platform an image runs on.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(
        rename = "os.version",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
    #[serde(
        rename = "os.features",
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub os_features: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl Platform {
    /// `os`/`architecture`, with no variant, as given (not normalised).
    pub fn new(os: &str, architecture: &str) -> Platform {
        Platform {
            architecture: architecture.to_owned(),
            os: os.to_owned(),
            ..Platform::default()
        }
    }

    /// The platform hoist runs on: Rust's name for the architecture where
    /// Go's (which OCI uses) differs, then normalised.
    pub fn host() -> Platform {
        let architecture = match std::env::consts::ARCH {
            "x86" => "386",
            "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
            "loongarch64" => "loong64",
            other => other,
        };
        Platform::new("linux", architecture).normalized()
    }

    /// Parses `os/arch[/variant]` (or `arch` alone, meaning linux/arch),
    /// normalised (see [`Platform::normalized`]). The OS and architecture
    /// must be ones Go (and so the OCI image spec) knows.
    pub fn parse(s: &str) -> Result<Platform, String> {
        if s.contains(',') {
            return Err(format!(
                "\"{s}\" names several platforms where one is expected: give one OS/ARCH[/VARIANT]"
            ));
        }
        let parts: Vec<&str> = s.split('/').collect();
        let bad =
            || format!("invalid platform \"{s}\": expected OS/ARCH[/VARIANT], e.g. linux/amd64");
        if parts.iter().any(|p| p.trim().is_empty()) {
            return Err(bad());
        }
        let (os, architecture, variant) = match parts.as_slice() {
            [arch] => ("linux", *arch, None),
            [os, arch] => (*os, *arch, None),
            [os, arch, variant] => (*os, *arch, Some(*variant)),
            _ => return Err(bad()),
        };
        let mut platform = Platform::new(os.trim(), architecture.trim());
        platform.variant = variant.map(|v| v.trim().to_owned());
        let platform = platform.normalized();
        if !KNOWN_OS.contains(&platform.os.as_str()) {
            return Err(format!(
                "unknown operating system \"{}\" in platform \"{s}\": known ones are {}",
                platform.os,
                KNOWN_OS.join(", ")
            ));
        }
        if !KNOWN_ARCHITECTURES.contains(&platform.architecture.as_str()) {
            return Err(format!(
                "unknown architecture \"{}\" in platform \"{s}\": known ones are {}",
                platform.architecture,
                KNOWN_ARCHITECTURES.join(", ")
            ));
        }
        Ok(platform)
    }

    /// Parses a comma-separated list of platforms (`--platform
    /// linux/amd64,linux/arm64`), each as [`Platform::parse`] does, in its
    /// order. A platform named twice (once normalised) is an error.
    pub fn parse_list(s: &str) -> Result<Vec<Platform>, String> {
        let mut out: Vec<Platform> = Vec::new();
        for part in s.split(',') {
            let platform = Platform::parse(part.trim())?;
            if out.contains(&platform) {
                return Err(format!(
                    "platform {platform} is named twice in \"{s}\": name each platform once"
                ));
            }
            out.push(platform);
        }
        Ok(out)
    }

    /// containerd's `platforms.Normalize`: lower-case names, canonical
    /// architectures (`x86_64` is `amd64`, `aarch64` is `arm64`, `armhf`
    /// is `arm/v7`), and default variants made explicit or dropped as
    /// containerd writes them: arm64's `v8` and amd64's `v1` are the
    /// default and dropped, arm without a variant is `v7`.
    pub fn normalized(&self) -> Platform {
        let mut variant = self.variant.as_deref().unwrap_or("").to_ascii_lowercase();
        let architecture = match self.architecture.to_ascii_lowercase().as_str() {
            "i386" => {
                variant.clear();
                "386".to_owned()
            }
            "x86_64" | "x86-64" | "amd64" => {
                if variant == "v1" {
                    variant.clear();
                }
                "amd64".to_owned()
            }
            "aarch64" | "arm64" => {
                match variant.as_str() {
                    "8" | "v8" | "v8.0" => variant.clear(),
                    "9" | "9.0" | "v9.0" => variant = "v9".to_owned(),
                    _ => {}
                }
                "arm64".to_owned()
            }
            "armhf" => {
                variant = "v7".to_owned();
                "arm".to_owned()
            }
            "armel" => {
                variant = "v6".to_owned();
                "arm".to_owned()
            }
            "arm" => {
                match variant.as_str() {
                    "" | "7" => variant = "v7".to_owned(),
                    "5" | "6" | "8" => variant = format!("v{variant}"),
                    _ => {}
                }
                "arm".to_owned()
            }
            other => other.to_owned(),
        };
        Platform {
            architecture,
            os: self.os.to_ascii_lowercase(),
            os_version: self.os_version.clone(),
            os_features: self.os_features.clone(),
            variant: (!variant.is_empty()).then_some(variant),
        }
    }

    /// Whether an image for `self` runs on `wanted`, as containerd's
    /// exact matcher decides: OS, architecture and variant equal once both
    /// are normalised. `os.version` and `os.features` are not compared
    /// (they only tell Windows builds apart).
    pub fn matches(&self, wanted: &Platform) -> bool {
        let (a, b) = (self.normalized(), wanted.normalized());
        a.os == b.os && a.architecture == b.architecture && a.variant == b.variant
    }
}

/// The operating systems Go knows (`go tool dist list`), which image
/// configs name.
pub const KNOWN_OS: [&str; 15] = [
    "aix",
    "android",
    "darwin",
    "dragonfly",
    "freebsd",
    "illumos",
    "ios",
    "js",
    "linux",
    "netbsd",
    "openbsd",
    "plan9",
    "solaris",
    "wasip1",
    "windows",
];

/// The architectures Go knows, normalised as containerd writes them.
pub const KNOWN_ARCHITECTURES: [&str; 14] = [
    "386", "amd64", "arm", "arm64", "loong64", "mips", "mips64", "mips64le", "mipsle", "ppc64",
    "ppc64le", "riscv64", "s390x", "wasm",
];

/// `os/arch[/variant]`, as `--platform` takes it.
impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        match &self.variant {
            Some(v) if !v.is_empty() => write!(f, "/{v}"),
            _ => Ok(()),
        }
    }
}

impl Index {
    /// The first manifest that runs on `wanted` ([`Platform::matches`]).
    /// Entries without a platform never match; attestation manifests
    /// (`unknown/unknown`) match no platform anyone builds for.
    pub fn select(&self, wanted: &Platform) -> Option<&Descriptor> {
        self.manifests
            .iter()
            .find(|d| d.platform.as_ref().is_some_and(|p| p.matches(wanted)))
    }

    /// `os/arch[/variant]` of every platform the index offers, in its
    /// order, for an error message.
    pub fn platforms(&self) -> Vec<String> {
        self.manifests
            .iter()
            .filter_map(|d| d.platform.as_ref())
            .filter(|p| p.os != "unknown")
            .map(Platform::to_string)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Digest;
    use crate::media_type::OCI_MANIFEST;

    fn entry(n: u8, os: &str, arch: &str, variant: Option<&str>) -> Descriptor {
        let mut platform = Platform::new(os, arch);
        platform.variant = variant.map(str::to_owned);
        Descriptor::new(OCI_MANIFEST, Digest::of(&[n]), 1).with_platform(platform)
    }

    fn chosen(index: &Index, wanted: &str) -> Option<u8> {
        let wanted = Platform::parse(wanted).unwrap();
        let d = index.select(&wanted)?;
        index.manifests.iter().position(|m| m == d).map(|i| i as u8)
    }

    #[test]
    fn parsing_normalises_as_containerd() {
        let parsed = |s: &str| Platform::parse(s).unwrap().to_string();
        assert_eq!(parsed("linux/arm64/v8"), "linux/arm64");
        assert_eq!(parsed("linux/aarch64"), "linux/arm64");
        assert_eq!(parsed("linux/arm64/9"), "linux/arm64/v9");
        assert_eq!(parsed("linux/arm"), "linux/arm/v7");
        assert_eq!(parsed("linux/arm/6"), "linux/arm/v6");
        assert_eq!(parsed("linux/armhf"), "linux/arm/v7");
        assert_eq!(parsed("linux/armel"), "linux/arm/v6");
        assert_eq!(parsed("Linux/X86_64"), "linux/amd64");
        assert_eq!(parsed("linux/amd64/v1"), "linux/amd64");
        assert_eq!(parsed("linux/amd64/v3"), "linux/amd64/v3");
        assert_eq!(parsed("linux/i386"), "linux/386");
        assert_eq!(parsed("s390x"), "linux/s390x");
        for bad in [
            "",
            "linux/",
            "/amd64",
            "linux/arm/v7/x",
            "linux//v7",
            "linux/bogus",
            "bogus/amd64",
            "linux/amd64,linux/arm64",
        ] {
            assert!(Platform::parse(bad).is_err(), "{bad:?}");
        }
        let err = Platform::parse("linux/bogus").unwrap_err();
        assert!(
            err.contains("unknown architecture") && err.contains("arm64"),
            "{err}"
        );
        assert_eq!(parsed("windows/amd64"), "windows/amd64");
    }

    #[test]
    fn lists_are_parsed_in_order_without_duplicates() {
        let list = Platform::parse_list("linux/amd64, linux/arm64/v8").unwrap();
        let names: Vec<String> = list.iter().map(Platform::to_string).collect();
        assert_eq!(names, ["linux/amd64", "linux/arm64"]);
        let err = Platform::parse_list("linux/arm64,linux/aarch64").unwrap_err();
        assert!(err.contains("named twice"), "{err}");
        assert!(Platform::parse_list("linux/amd64,").is_err());
    }

    #[test]
    fn selects_like_containerd() {
        let index = Index::new(vec![
            entry(0, "unknown", "unknown", None),
            entry(1, "linux", "amd64", None),
            entry(2, "linux", "arm", Some("v6")),
            entry(3, "linux", "arm", Some("v7")),
            entry(4, "linux", "arm64", Some("v8")),
            entry(5, "windows", "amd64", None),
            entry(6, "linux", "s390x", None),
        ]);
        assert_eq!(chosen(&index, "linux/amd64"), Some(1));
        assert_eq!(chosen(&index, "linux/x86_64"), Some(1));
        assert_eq!(chosen(&index, "linux/arm64"), Some(4));
        assert_eq!(chosen(&index, "linux/arm64/v8"), Some(4));
        assert_eq!(chosen(&index, "linux/arm/v6"), Some(2));
        assert_eq!(chosen(&index, "linux/arm/v7"), Some(3));
        assert_eq!(chosen(&index, "windows/amd64"), Some(5));
        assert_eq!(chosen(&index, "linux/ppc64le"), None);
        assert_eq!(
            index.platforms(),
            [
                "linux/amd64",
                "linux/arm/v6",
                "linux/arm/v7",
                "linux/arm64/v8",
                "windows/amd64",
                "linux/s390x"
            ]
        );
    }

    #[test]
    fn arm64_without_a_variant_is_v8_and_arm_defaults_to_v7() {
        let index = Index::new(vec![
            entry(0, "linux", "arm", None),
            entry(1, "linux", "arm64", None),
            entry(2, "linux", "AMD64", Some("v1")),
        ]);
        assert_eq!(chosen(&index, "linux/arm64/v8"), Some(1));
        assert_eq!(chosen(&index, "linux/arm/v7"), Some(0));
        assert_eq!(chosen(&index, "linux/arm/v6"), None);
        assert_eq!(chosen(&index, "linux/arm64/v9"), None);
        assert_eq!(chosen(&index, "linux/amd64"), Some(2));
    }

    #[test]
    fn index_entries_keep_their_fields_through_json() {
        let json = r#"{"architecture":"amd64","os":"windows","os.version":"10.0.17763.1","os.features":["win32k"]}"#;
        let p: Platform = serde_json::from_str(json).unwrap();
        assert_eq!(p.os_version.as_deref(), Some("10.0.17763.1"));
        assert_eq!(p.os_features, ["win32k"]);
        assert_eq!(p.to_string(), "windows/amd64");
        let null: Platform =
            serde_json::from_str(r#"{"architecture":"arm64","os":"linux","os.features":null}"#)
                .unwrap();
        assert!(null.os_features.is_empty());
    }
}
