//! `launchway release publish`: CI hands over the images it built, and nothing else.

use anyhow::{Context as _, Result, anyhow, bail};
use launchway_api::{PublishRequest, ReconcileAnswer, ReconcileStatus};
use launchway_engine::Selection;
use launchway_manifest::EnvSource;
use launchway_store::{AuditKind, EventBody, NewEvent, Published, now_ms};
use serde_json::{Value, json};

use super::deploy::deploy;
use crate::cli::{Output, ReleaseCommand};
use crate::context::Context;
use crate::output::print_json;

pub async fn run(context: &Context, command: ReleaseCommand) -> Result<u8> {
    let ReleaseCommand::Publish { app, env, file, commit, author, retry } = command;
    let bytes = std::fs::read(&file).with_context(|| format!("could not read {}", file.display()))?;
    let bytes = image_file_in(&file, bytes)?;
    let parsed: Value = serde_json::from_slice(&bytes).with_context(|| {
        format!("{} is not JSON (expected imagedefinitions.json or imageDetail.json)", file.display())
    })?;

    if let Some(server) = context.server()? {
        let body = PublishRequest { app: app.clone(), env: env.clone(), file: parsed, commit, author, retry };
        let answer: ReconcileAnswer = server.post("/api/v1/releases", &body).await?;
        match context.output() {
            Output::Json => print_json(&answer),
            Output::Text => {
                println!("published {} for {app} in {env}", file.display());
                if answer.status == ReconcileStatus::Accepted {
                    println!("  the server is still deciding: `launchway --server … history` shows the runs");
                }
                for decision in &answer.runs {
                    println!("  {}@{}  {}", decision.app, decision.env, decision.describe());
                }
            }
        }
        return Ok(super::deploy::exit_code_of_answer(&answer));
    }

    // Local: the same checks the server makes, then a deploy of that one app.
    let loaded = context.load().await?;
    let environment = loaded
        .manifest
        .environments
        .get(&env)
        .ok_or_else(|| anyhow!("environment {env:?} is not declared in the manifest"))?;
    if let EnvSource::Promotion { from } = &environment.source {
        bail!("{env} only takes releases promoted from {from}; publish to {from}");
    }
    let spec = loaded
        .manifest
        .apps
        .get(&app)
        .and_then(|declared| declared.specs.get(&env))
        .ok_or_else(|| anyhow!("app {app:?} is not declared in {env}"))?;
    let images = launchway_manifest::published_images_for(&bytes, &app, spec)
        .map_err(|message| anyhow!("{}: {message}", file.display()))?;
    let engine = context.engine().await?;
    let by = context.identity();
    engine
        .store()
        .publish_images(Published {
            app: app.clone(),
            env: env.clone(),
            images: images.clone(),
            published_by: by.clone(),
            published_at: now_ms(),
            commit: commit.clone(),
            author: author.clone(),
        })
        .await?;
    engine
        .record(NewEvent::for_app(
            &app,
            &env,
            EventBody::Audit {
                kind: AuditKind::ReleasePublished,
                data: json!({"images": images, "by": by, "commit": commit, "author": author, "retry": retry}),
            },
            format!("{by} published {} for {app} in {env} (cli)", file.display()),
        ))
        .await?;
    let selection = Selection { env: Some(env), apps: vec![app] };
    let report = deploy(context, &engine, &loaded, &selection, retry).await?;
    if context.output() == Output::Json {
        print_json(&report);
    }
    Ok(report.exit_code)
}

/// The image file to publish: the file itself, or, for the zip CodePipeline's S3 source
/// action carries (what a CodeBuild job uploads as its artifact), the one
/// `imagedefinitions.json` or `imageDetail.json` in it.
fn image_file_in(file: &std::path::Path, bytes: Vec<u8>) -> Result<Vec<u8>> {
    use std::io::Read;
    const IMAGE_FILES: [&str; 2] = ["imagedefinitions.json", "imageDetail.json"];
    if !bytes.starts_with(b"PK\x03\x04") && !bytes.starts_with(b"PK\x05\x06") {
        return Ok(bytes);
    }
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes))
        .with_context(|| format!("{} looks like a zip but cannot be read as one", file.display()))?;
    let names: Vec<String> = archive
        .file_names()
        .map(|name| name.map(|name| name.into_owned()))
        .collect::<Result<_, _>>()
        .with_context(|| format!("could not list what {} holds", file.display()))?;
    let found: Vec<&String> =
        names.iter().filter(|name| IMAGE_FILES.iter().any(|wanted| name.rsplit('/').next() == Some(*wanted))).collect();
    let name = match found.as_slice() {
        [only] => only.to_string(),
        [] => bail!(
            "{} holds no imagedefinitions.json or imageDetail.json (it holds {})",
            file.display(),
            if names.is_empty() { "nothing".to_owned() } else { names.join(", ") }
        ),
        several => bail!(
            "{} holds several image files ({}); publish the one meant",
            file.display(),
            several.iter().map(|name| name.as_str()).collect::<Vec<_>>().join(", ")
        ),
    };
    let mut entry = archive.by_name(&name).with_context(|| format!("could not read {name} in {}", file.display()))?;
    // An image file is a few hundred bytes; a bigger one is not what CodePipeline wrote.
    let mut content = Vec::new();
    entry
        .by_ref()
        .take(1 << 20)
        .read_to_end(&mut content)
        .with_context(|| format!("could not unpack {name} from {}", file.display()))?;
    Ok(content)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::image_file_in;

    fn zip_of(entries: &[(&str, &str)]) -> Vec<u8> {
        let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        for (name, content) in entries {
            zip.start_file(*name, zip::write::SimpleFileOptions::default()).unwrap();
            zip.write_all(content.as_bytes()).unwrap();
        }
        zip.finish().unwrap().into_inner()
    }

    #[test]
    fn a_codepipeline_zip_gives_up_its_one_image_file() {
        let file = std::path::Path::new("artifact.zip");
        let json = br#"[{"name":"web","imageUri":"web:1"}]"#.to_vec();
        assert_eq!(image_file_in(file, json.clone()).unwrap(), json, "a plain file is itself");
        let zipped = zip_of(&[("README", "x"), ("imagedefinitions.json", r#"[{"name":"web","imageUri":"web:1"}]"#)]);
        assert_eq!(image_file_in(file, zipped).unwrap(), json);
        let none = image_file_in(file, zip_of(&[("README", "x")])).unwrap_err();
        assert_eq!(
            none.to_string(),
            "artifact.zip holds no imagedefinitions.json or imageDetail.json (it holds README)"
        );
        let two = zip_of(&[("a/imagedefinitions.json", "[]"), ("b/imageDetail.json", "{}")]);
        let several = image_file_in(file, two).unwrap_err();
        assert!(several.to_string().contains("several image files (a/imagedefinitions.json, b/imageDetail.json)"));
    }
}
