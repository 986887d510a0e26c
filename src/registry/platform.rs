//! Choosing an image for a platform from an index, as containerd's
//! `platforms.Only` matcher does for the exact platform: OS and
//! architecture equal after normalisation, and the variant equal once
//! defaults are filled in (`arm64` means `arm64/v8`, `arm` means `arm/v7`,
//! `amd64/v1` means plain `amd64`). Entries without a platform (attestation
//! manifests carry `unknown/unknown`) never match.

use crate::image::{Descriptor, Index, Platform as ImagePlatform};
use crate::plan::Platform;

/// The first manifest of `index` that runs on `wanted`.
pub fn select<'a>(index: &'a Index, wanted: &Platform) -> Option<&'a Descriptor> {
    let wanted = normalise(&wanted.os, &wanted.architecture, wanted.variant.as_deref());
    index.manifests.iter().find(|d| {
        d.platform
            .as_ref()
            .is_some_and(|p| normalise(&p.os, &p.architecture, p.variant.as_deref()) == wanted)
    })
}

/// `os/arch[/variant]` of every platform `index` offers, in its order, for
/// an error message.
pub fn available(index: &Index) -> Vec<String> {
    index
        .manifests
        .iter()
        .filter_map(|d| d.platform.as_ref())
        .filter(|p| p.os != "unknown")
        .map(display)
        .collect()
}

fn display(p: &ImagePlatform) -> String {
    match &p.variant {
        Some(v) if !v.is_empty() => format!("{}/{}/{v}", p.os, p.architecture),
        _ => format!("{}/{}", p.os, p.architecture),
    }
}

/// containerd's `platforms.Normalize`: lower-case OS, canonical
/// architecture names and default variants.
fn normalise(os: &str, architecture: &str, variant: Option<&str>) -> (String, String, String) {
    let os = os.to_ascii_lowercase();
    let variant = variant.unwrap_or("").to_ascii_lowercase();
    let (architecture, variant) = match architecture.to_ascii_lowercase().as_str() {
        "i386" => ("386".to_owned(), String::new()),
        "x86_64" | "x86-64" | "amd64" => (
            "amd64".to_owned(),
            if variant == "v1" {
                String::new()
            } else {
                variant
            },
        ),
        "aarch64" | "arm64" => (
            "arm64".to_owned(),
            if variant == "8" || variant.is_empty() {
                "v8".to_owned()
            } else {
                variant
            },
        ),
        "armhf" => ("arm".to_owned(), "v7".to_owned()),
        "armel" => ("arm".to_owned(), "v6".to_owned()),
        "arm" => (
            "arm".to_owned(),
            match variant.as_str() {
                "" | "7" => "v7".to_owned(),
                "5" | "6" | "8" => format!("v{variant}"),
                _ => variant,
            },
        ),
        other => (other.to_owned(), variant),
    };
    (os, architecture, variant)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::media_type::OCI_MANIFEST;
    use crate::layer::Digest;

    fn entry(n: u8, os: &str, arch: &str, variant: Option<&str>) -> Descriptor {
        let mut platform = ImagePlatform::new(os, arch);
        platform.variant = variant.map(str::to_owned);
        Descriptor::new(OCI_MANIFEST, Digest::of(&[n]), 1).with_platform(platform)
    }

    fn chosen(index: &Index, wanted: &str) -> Option<u8> {
        let wanted = Platform::parse(wanted).unwrap();
        let d = select(index, &wanted)?;
        index.manifests.iter().position(|m| m == d).map(|i| i as u8)
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
            available(&index),
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
        ]);
        assert_eq!(chosen(&index, "linux/arm64/v8"), Some(1));
        assert_eq!(chosen(&index, "linux/arm/v7"), Some(0));
        assert_eq!(chosen(&index, "linux/arm/v6"), None);
        assert_eq!(chosen(&index, "linux/arm64/v9"), None);
    }
}
