//! AWS shared config files (`~/.aws/credentials`, `~/.aws/config`), which
//! `object_store` does not read: the profile named by `AWS_PROFILE` (else
//! `default`) gives the access key, secret, session token, region and
//! `endpoint_url`, each only where the environment does not (the AWS
//! CLI's precedence: environment, then the profile). Files at
//! `AWS_SHARED_CREDENTIALS_FILE` and `AWS_CONFIG_FILE` when set.
//!
//! Only static keys: a profile that assumes a role, uses SSO or a
//! `credential_process` is not followed (the error says so); the
//! environment's other sources (web identity, container and instance
//! credentials) are the crate's.

use std::collections::HashMap;
use std::path::PathBuf;

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey as Key};

/// The sections of an INI file: name → (key → value). Comments (`#`,
/// `;`) and blank lines are skipped; keys are lower case.
pub fn parse_ini(text: &str) -> HashMap<String, HashMap<String, String>> {
    let mut out: HashMap<String, HashMap<String, String>> = HashMap::new();
    let mut section: Option<String> = None;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let name = name.split_whitespace().collect::<Vec<_>>().join(" ");
            out.entry(name.clone()).or_default();
            section = Some(name);
        } else if let (Some(s), Some((k, v))) = (&section, line.split_once('=')) {
            if let Some(map) = out.get_mut(s) {
                map.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
            }
        }
    }
    out
}

fn file(var: &str, name: &str) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(var) {
        return Some(PathBuf::from(p));
    }
    let home = std::env::var_os("HOME")?;
    Some(PathBuf::from(home).join(".aws").join(name))
}

fn read(path: Option<PathBuf>) -> HashMap<String, HashMap<String, String>> {
    path.and_then(|p| std::fs::read_to_string(p).ok())
        .map(|t| parse_ini(&t))
        .unwrap_or_default()
}

/// The named profile's settings, from both files (the credentials file
/// first); None when neither has it.
pub fn settings(profile: &str) -> Option<HashMap<String, String>> {
    let credentials = read(file("AWS_SHARED_CREDENTIALS_FILE", "credentials"));
    let config = read(file("AWS_CONFIG_FILE", "config"));
    let in_config = if profile == "default" {
        "default".to_owned()
    } else {
        format!("profile {profile}")
    };
    let mut found = None::<HashMap<String, String>>;
    for section in [config.get(&in_config), credentials.get(profile)]
        .into_iter()
        .flatten()
    {
        found
            .get_or_insert_with(HashMap::new)
            .extend(section.clone());
    }
    found
}

/// `builder` with the profile's settings where the environment gave none.
/// Err when `AWS_PROFILE` names a profile that is not there, or one whose
/// credentials are not static keys.
pub fn apply(mut builder: AmazonS3Builder) -> Result<AmazonS3Builder, String> {
    let named = std::env::var("AWS_PROFILE").ok().filter(|p| !p.is_empty());
    let profile = named.clone().unwrap_or_else(|| "default".into());
    let Some(settings) = settings(&profile) else {
        return match named {
            Some(p) => Err(format!("the AWS profile {p:?} (AWS_PROFILE) is in neither ~/.aws/credentials nor ~/.aws/config")),
            None => Ok(builder),
        };
    };
    let keyed = builder.get_config_value(&Key::AccessKeyId).is_some();
    if !keyed {
        match (
            settings.get("aws_access_key_id"),
            settings.get("aws_secret_access_key"),
        ) {
            (Some(id), Some(secret)) => {
                builder = builder
                    .with_config(Key::AccessKeyId, id)
                    .with_config(Key::SecretAccessKey, secret);
                if let Some(token) = settings.get("aws_session_token") {
                    builder = builder.with_config(Key::Token, token);
                }
            }
            _ if named.is_some()
                && [
                    "role_arn",
                    "sso_session",
                    "sso_start_url",
                    "credential_process",
                ]
                .iter()
                .any(|k| settings.contains_key(*k)) =>
            {
                return Err(format!(
                    "the AWS profile {profile:?} does not hold static keys (role, SSO or credential_process): export its credentials (aws configure export-credentials --profile {profile} --format env)"
                ));
            }
            _ => {}
        }
    }
    let region_set = [Key::Region, Key::DefaultRegion]
        .iter()
        .any(|k| builder.get_config_value(k).is_some());
    if let (false, Some(region)) = (region_set, settings.get("region")) {
        builder = builder.with_config(Key::Region, region);
    }
    let endpoint_set = [Key::Endpoint, Key::S3Endpoint]
        .iter()
        .any(|k| builder.get_config_value(k).is_some());
    if let (false, Some(endpoint)) = (endpoint_set, settings.get("endpoint_url")) {
        builder = builder.with_config(Key::Endpoint, endpoint);
    }
    Ok(builder)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ini_sections_keys_and_comments() {
        let ini = parse_ini(
            "# comment\n[default]\naws_access_key_id = A\n\n[profile  lab]\n; note\nRegion= eu-west-1\nendpoint_url = http://127.0.0.1:9000\n",
        );
        assert_eq!(ini["default"]["aws_access_key_id"], "A");
        assert_eq!(ini["profile lab"]["region"], "eu-west-1");
        assert_eq!(ini["profile lab"]["endpoint_url"], "http://127.0.0.1:9000");
    }
}
