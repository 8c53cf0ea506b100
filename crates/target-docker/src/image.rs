//! Container images made from an executable on this machine, with no registry and no
//! base image: a root filesystem holding the executable and the shared libraries `ldd`
//! says it loads, imported as one layer (`docker import`, five times faster than a
//! `FROM scratch` build). This is how `launchway demo` and the tests get an HTTP server
//! image on a machine that can pull nothing.

use std::path::{Path, PathBuf};
use std::process::Command;

use bollard::Docker;
use bollard::query_parameters::CreateImageOptionsBuilder;
use futures_util::StreamExt;
use launchway_target::TargetError;

use crate::replicas::api_error;

/// Label recording which build of the executable an image holds, so that an unchanged
/// executable is not packed again.
const SOURCE_LABEL: &str = "launchway.executable";

/// An image to build around one executable.
#[derive(Debug, Clone)]
pub struct ExecutableImage {
    pub tag: String,
    pub executable: PathBuf,
    /// Arguments after the executable in the image's entrypoint.
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
}

/// Makes (or finds already made) an image holding `image.executable` at
/// `/<file name>`, with its shared libraries at their host paths.
pub async fn build_executable_image(docker: &Docker, image: &ExecutableImage) -> Result<(), TargetError> {
    let metadata = std::fs::metadata(&image.executable)
        .map_err(|error| TargetError::local(format!("cannot read {}", image.executable.display()), error))?;
    let modified = metadata
        .modified()
        .ok()
        .and_then(|time| time.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |elapsed| elapsed.as_nanos());
    let fingerprint = format!("{}-{modified}-{}", metadata.len(), image_config_fingerprint(image));
    if let Ok(existing) = docker.inspect_image(&image.tag).await {
        let labels = existing.config.and_then(|config| config.labels).unwrap_or_default();
        if labels.get(SOURCE_LABEL) == Some(&fingerprint) {
            return Ok(());
        }
    }

    let root_fs = root_filesystem(image)?;
    let (repository, tag) = match image.tag.rsplit_once(':') {
        Some((repository, tag)) if !tag.contains('/') => (repository, tag),
        _ => (image.tag.as_str(), "latest"),
    };
    let options = CreateImageOptionsBuilder::new()
        .from_src("-")
        .repo(repository)
        .tag(tag)
        .changes(image_config(image, &fingerprint)?)
        .build();
    let mut import = docker.create_image(Some(options), Some(bollard::body_full(root_fs.into())), None);
    while let Some(step) = import.next().await {
        match step {
            Ok(info) => {
                if let Some(message) = info.error_detail.and_then(|detail| detail.message) {
                    return Err(TargetError::Invalid(format!("importing image {} failed: {message}", image.tag)));
                }
            }
            Err(error) => return Err(api_error(&format!("import image {}", image.tag), error)),
        }
    }
    Ok(())
}

fn image_config_fingerprint(image: &ExecutableImage) -> String {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::hash::DefaultHasher::new();
    (&image.args, &image.env).hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}

/// The image's configuration, as Dockerfile instructions `docker import` applies.
fn image_config(image: &ExecutableImage, fingerprint: &str) -> Result<Vec<String>, TargetError> {
    let mut entrypoint = vec![format!("/{}", executable_name(image)?)];
    entrypoint.extend(image.args.iter().cloned());
    let mut changes = vec![
        format!("ENTRYPOINT {}", serde_json::to_string(&entrypoint).expect("strings serialize")),
        format!("LABEL {SOURCE_LABEL}={fingerprint}"),
    ];
    for (key, value) in &image.env {
        changes.push(format!("ENV {key}={}", serde_json::to_string(value).expect("strings serialize")));
    }
    Ok(changes)
}

fn executable_name(image: &ExecutableImage) -> Result<&str, TargetError> {
    image
        .executable
        .file_name()
        .and_then(|name| name.to_str())
        .ok_or_else(|| TargetError::Invalid(format!("{} has no file name", image.executable.display())))
}

/// A tar of the root filesystem: the executable at the root, its libraries at the
/// paths the dynamic loader looks for them.
fn root_filesystem(image: &ExecutableImage) -> Result<Vec<u8>, TargetError> {
    let name = executable_name(image)?;
    let mut archive = tar::Builder::new(Vec::new());
    let executable = std::fs::read(&image.executable)
        .map_err(|error| TargetError::local(format!("cannot read {}", image.executable.display()), error))?;
    append(&mut archive, name, &executable, 0o755)?;
    for library in shared_libraries(&image.executable)? {
        let bytes = std::fs::read(&library)
            .map_err(|error| TargetError::local(format!("cannot read {}", library.display()), error))?;
        let inside = library.to_string_lossy().trim_start_matches('/').to_owned();
        append(&mut archive, &inside, &bytes, 0o755)?;
    }
    archive.into_inner().map_err(|error| TargetError::local("cannot pack the image", error))
}

fn append(archive: &mut tar::Builder<Vec<u8>>, path: &str, bytes: &[u8], mode: u32) -> Result<(), TargetError> {
    let mut header = tar::Header::new_gnu();
    header.set_size(bytes.len() as u64);
    header.set_mode(mode);
    header.set_cksum();
    archive
        .append_data(&mut header, path, bytes)
        .map_err(|error| TargetError::local(format!("cannot pack {path}"), error))
}

/// The shared libraries an executable loads, as `ldd` lists them (the dynamic loader
/// included). A static executable has none.
fn shared_libraries(executable: &Path) -> Result<Vec<PathBuf>, TargetError> {
    let output = Command::new("ldd").arg(executable).output().map_err(|error| {
        TargetError::local(format!("cannot run ldd to find {}'s libraries", executable.display()), error)
    })?;
    Ok(parse_ldd(&String::from_utf8_lossy(&output.stdout)))
}

/// `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)` and
/// `/lib64/ld-linux-x86-64.so.2 (0x…)` give paths; `linux-vdso.so.1 (0x…)` does not.
fn parse_ldd(output: &str) -> Vec<PathBuf> {
    output
        .lines()
        .filter_map(|line| {
            let line = line.trim();
            let path = match line.split_once("=>") {
                Some((_, target)) => target.split_whitespace().next()?,
                None => line.split_whitespace().next()?,
            };
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_library_paths_from_ldd_output() {
        let output = "\tlinux-vdso.so.1 (0x00007ffd6f5f2000)
\tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x00007f0a8c3e5000)
\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f0a8c204000)
\t/lib64/ld-linux-x86-64.so.2 (0x00007f0a8d1b4000)
";
        assert_eq!(
            parse_ldd(output),
            vec![
                PathBuf::from("/lib/x86_64-linux-gnu/libgcc_s.so.1"),
                PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2"),
            ]
        );
        assert!(parse_ldd("\tstatically linked\n").is_empty());
    }
}
