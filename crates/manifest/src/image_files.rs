//! The image files CI systems write: CodePipeline's `imagedefinitions.json`
//! (`[{"name": container, "imageUri": uri}]`) and CodeDeploy's `imageDetail.json`
//! (`{"ImageURI": uri}`), accepted exactly as those tools write them.

use serde_json::Value;

use crate::taskdef::{JsonProblem, parse_json};

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ImageFile {
    /// Container name → image.
    Definitions(Vec<(String, String)>),
    /// One image, for the app's one container.
    Detail(String),
}

pub(crate) fn parse(bytes: &[u8]) -> Result<ImageFile, JsonProblem> {
    let problem = |message: &str| JsonProblem { line: 1, column: 1, message: message.to_owned() };
    match parse_json(bytes)? {
        Value::Array(entries) => {
            let mut images = Vec::with_capacity(entries.len());
            for entry in entries {
                let (Some(name), Some(uri)) = (entry["name"].as_str(), entry["imageUri"].as_str()) else {
                    return Err(problem("each entry of imagedefinitions.json needs \"name\" and \"imageUri\""));
                };
                images.push((name.to_owned(), uri.to_owned()));
            }
            if images.is_empty() {
                return Err(problem("imagedefinitions.json lists no image"));
            }
            Ok(ImageFile::Definitions(images))
        }
        Value::Object(detail) => match detail.get("ImageURI").and_then(Value::as_str) {
            Some(uri) => Ok(ImageFile::Detail(uri.to_owned())),
            None => Err(problem(
                "expected imageDetail.json ({\"ImageURI\": …}) or imagedefinitions.json ([{\"name\", \"imageUri\"}])",
            )),
        },
        _ => Err(problem(
            "expected imageDetail.json ({\"ImageURI\": …}) or imagedefinitions.json ([{\"name\", \"imageUri\"}])",
        )),
    }
}

/// The images a published `imagedefinitions.json` or `imageDetail.json` sets for `app`,
/// by container name, checked against the containers `spec` has.
pub fn images_for(
    bytes: &[u8],
    app: &str,
    spec: &crate::AppSpec,
) -> Result<std::collections::BTreeMap<String, String>, String> {
    let containers: Vec<&str> = spec.images().into_keys().collect();
    match parse(bytes)
        .map_err(|problem| format!("line {}, column {}: {}", problem.line, problem.column, problem.message))?
    {
        ImageFile::Detail(uri) => match containers[..] {
            [only] => Ok([(only.to_owned(), uri)].into()),
            _ => Err(format!(
                "imageDetail.json names one image but {app} has {} containers ({}); publish imagedefinitions.json",
                containers.len(),
                containers.join(", ")
            )),
        },
        ImageFile::Definitions(entries) => {
            let unknown: Vec<&str> =
                entries.iter().map(|(name, _)| name.as_str()).filter(|name| !containers.contains(name)).collect();
            if !unknown.is_empty() {
                return Err(format!(
                    "{app} has no container named {} (its containers: {})",
                    unknown.join(", "),
                    containers.join(", ")
                ));
            }
            Ok(entries.into_iter().collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_formats_as_the_ci_tools_write_them() {
        assert_eq!(
            parse(br#"[{"name":"web","imageUri":"1234.dkr.ecr.ap-northeast-1.amazonaws.com/web:dev-3f9a1c2"},{"name":"log","imageUri":"fluent-bit:3"}]"#),
            Ok(ImageFile::Definitions(vec![
                ("web".into(), "1234.dkr.ecr.ap-northeast-1.amazonaws.com/web:dev-3f9a1c2".into()),
                ("log".into(), "fluent-bit:3".into())
            ]))
        );
        assert_eq!(parse(br#"{"ImageURI": "web:2"}"#), Ok(ImageFile::Detail("web:2".into())));
        assert!(parse(br#"[{"name": "web"}]"#).is_err());
        assert!(parse(br#"{"image": "web:2"}"#).is_err());
    }
}
